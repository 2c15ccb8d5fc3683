"""Command line: generate, inspect and list zoos.

  python -m wsl_jax.zoo generate --preset tetris_seed --out zoos/tetris_seed [--models M] [--epochs E]
                                 [--seed S] [--paper] [--chunk-size C] [--overwrite]
  python -m wsl_jax.zoo info zoos/tetris_seed
  python -m wsl_jax.zoo list
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from wsl_jax import outputs
from wsl_jax.zoo import io as zoo_io
from wsl_jax.zoo import presets as zoo_presets


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m wsl_jax.zoo", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  gen = sub.add_parser("generate", help="train a zoo and write it to a folder")
  gen.add_argument("--preset", required=True, help=f"one of: {', '.join(sorted(zoo_presets.PRESETS))}")
  gen.add_argument("--out", required=True, help="output folder")
  gen.add_argument("--models", type=int, default=None, help="number of models (default: the preset's)")
  gen.add_argument("--paper", action="store_true",
                   help="the paper's zoo size, epochs and data (default: the CPU-sized zoo)")
  gen.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
  gen.add_argument("--seed", type=int, default=0, help="zoo seed (default 0)")
  gen.add_argument("--chunk-size", type=int, default=None,
                   help="models per compiled call (default: the preset's, else 512)")
  gen.add_argument("--overwrite", action="store_true", help="replace an existing zoo at --out (only a zoo written by wsl_jax, "
                   "holding nothing else)")
  gen.add_argument("--quiet", action="store_true", help="no progress bar")
  info = sub.add_parser("info", help="print a zoo's summary")
  info.add_argument("folder")
  sub.add_parser("list", help="list the presets")
  args = parser.parse_args(argv)

  if args.command == "list":
    for name, p in sorted(zoo_presets.PRESETS.items()):
      print(f"{name:24s} {p.num_models:6d} models (paper: {p.paper_models}), {p.net.layout().num_params} "
            f"params, {p.epochs} epochs, data set {p.dataset}")
    return 0
  if args.command == "info":
    return outputs.user_errors_as_one_line(lambda: _info(args.folder), code=1)
  return outputs.user_errors_as_one_line(lambda: _generate(args))


def _info(folder: str) -> None:
  zoo = zoo_io.load(folder, verify=True)
  print(zoo.summary())


def _generate(args: argparse.Namespace) -> None:
  from wsl_jax import runtime
  out = outputs.resolve_output(args.out)  # before any work: a bad --out is reported at once
  preset = zoo_presets.get(args.preset)
  if args.paper:  # the paper's zoo size, epochs and data (`ZooPreset.paper_scale`)
    preset = preset.paper_scale()
  runtime.configure()
  from wsl_jax.zoo.generate import generate
  t0 = time.time()
  zoo = generate(preset, num_models=args.models, epochs=args.epochs, seed=args.seed, out=out,
                 chunk_size=args.chunk_size, progress=not args.quiet, overwrite=args.overwrite)
  print(zoo.summary())
  print(f"wrote {out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
  sys.exit(main())
