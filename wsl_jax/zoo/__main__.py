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
  gen.add_argument("--overwrite", action="store_true", help="replace an existing zoo at --out")
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
    try:
      print(zoo_io.load(args.folder, verify=True).summary())
    except (zoo_io.ZooFormatError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
    return 0

  from wsl_jax import runtime
  runtime.configure()
  from wsl_jax.zoo.generate import generate
  try:
    preset = zoo_presets.get(args.preset)
  except ValueError as e:
    parser.error(str(e))
  if args.paper:  # the paper's zoo size, epochs and data (`ZooPreset.paper_scale`)
    preset = preset.paper_scale()
  num_models = args.models
  t0 = time.time()
  try:
    zoo = generate(preset, num_models=num_models, epochs=args.epochs, seed=args.seed, out=args.out,
                   chunk_size=args.chunk_size, progress=not args.quiet, overwrite=args.overwrite)
  except (ValueError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(zoo.summary())
  print(f"wrote {os.path.abspath(args.out)} in {time.time() - t0:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
