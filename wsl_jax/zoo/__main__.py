"""Command line: generate, inspect and list zoos.

  python -m wsl_jax.zoo generate --preset tetris_seed --out zoos/tetris_seed [--models M] [--epochs E]
                                 [--seed S] [--paper] [--chunk-size C] [--overwrite] [--worker I/N]
  python -m wsl_jax.zoo info zoos/tetris_seed
  python -m wsl_jax.zoo list
  python -m wsl_jax.zoo import [--format F] SRC --out DIR [--split-file CSV]   (any public zoo format)
  python -m wsl_jax.zoo export --format {hsg,unterthiner,native} ZOO --out DIR
  python -m wsl_jax.zoo probe SRC [--format F] [--protocol paper|final|nfn]   (the paper's baselines)

Formats (docs/public_zoos.md): native, unterthiner, hsg (ray folders), hsg_dump (.pt), sane.
"""

from __future__ import annotations

import argparse
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
  gen.add_argument("--overwrite", action="store_true",
                   help="replace an existing zoo at --out (only a zoo written by wsl_jax, holding nothing else)")
  gen.add_argument("--worker", default=None, metavar="I/N",
                   help="train only worker I's share of the chunks (of N workers) into --out's staging folder; "
                        "the last worker to finish, or a rerun without --worker, puts the zoo in place")
  gen.add_argument("--quiet", action="store_true", help="no progress bar")
  info = sub.add_parser("info", help="print a zoo's summary")
  info.add_argument("folder")
  sub.add_parser("list", help="list the presets")
  imp = sub.add_parser("import", help="convert a public zoo (any format) to a wsl_jax zoo folder")
  imp.add_argument("source", help="the zoo: a folder or an HSG .pt dump")
  imp.add_argument("--format", default=None, help="the source's format (default: detected)")
  imp.add_argument("--split-file", default=None, help="Unterthiner et al. zoos: NFN's split CSV")
  imp.add_argument("--out", required=True, help="output folder (a wsl_jax zoo)")
  imp.add_argument("--overwrite", action="store_true", help="replace a zoo written by wsl_jax at --out")
  exp = sub.add_parser("export", help="write a wsl_jax zoo in a public format")
  exp.add_argument("zoo", help="a wsl_jax zoo folder")
  exp.add_argument("--format", required=True, choices=("hsg", "unterthiner", "native"))
  exp.add_argument("--out", required=True, help="output folder")
  exp.add_argument("--overwrite", action="store_true", help="replace an earlier export of wsl_jax at --out")
  probe = sub.add_parser("probe", help="the paper's baselines (W, PCA, s(W)) on a zoo of any format")
  probe.add_argument("source", help="the zoo: a folder or an HSG .pt dump")
  probe.add_argument("--format", default=None, help="the source's format (default: detected)")
  probe.add_argument("--split-file", default=None, help="Unterthiner et al. zoos: NFN's split CSV")
  probe.add_argument("--protocol", default="paper", choices=("paper", "final", "nfn"),
                     help="paper: every checkpoint, R²; final: last checkpoint, Kendall's tau; nfn: final on "
                          "the source's own split (required)")
  args = parser.parse_args(argv)

  if args.command == "list":
    for name, p in sorted(zoo_presets.PRESETS.items()):
      print(f"{name:24s} {p.num_models:6d} models (paper: {p.paper_models}), {p.net.layout().num_params} "
            f"params, {p.epochs} epochs, data set {p.dataset}")
    return 0
  if args.command == "info":
    return outputs.user_errors_as_one_line(lambda: _info(args.folder), code=1)
  if args.command == "import":
    return outputs.user_errors_as_one_line(lambda: _import(args))
  if args.command == "export":
    return outputs.user_errors_as_one_line(lambda: _export(args))
  if args.command == "probe":
    return outputs.user_errors_as_one_line(lambda: _probe(args))
  return outputs.user_errors_as_one_line(lambda: _generate(args))


def _reader_options(args: argparse.Namespace) -> dict:
  return {"split_file": args.split_file} if args.split_file else {}


def _import(args: argparse.Namespace) -> None:
  from wsl_jax.zoo import formats
  out = outputs.resolve_output(args.out)
  zoo = formats.load_any(args.source, args.format, **_reader_options(args))
  zoo_io.save(zoo, out, overwrite=args.overwrite)
  print(zoo.summary())
  print(f"wrote {out} ({formats.detect_format(args.source) if args.format is None else args.format} -> native)")


def _export(args: argparse.Namespace) -> None:
  from wsl_jax.zoo import formats
  out = outputs.resolve_output(args.out)
  zoo = zoo_io.load(args.zoo, verify=True)
  formats.export(zoo, out, args.format, overwrite=args.overwrite)
  print(f"wrote {out} ({args.format})")


def _probe(args: argparse.Namespace) -> None:
  from wsl_jax.evaluation import baselines, evaluate, report
  from wsl_jax.zoo import formats
  zoo = formats.load_any(args.source, args.format, **_reader_options(args))
  split = formats.source_split(zoo)
  evaluation = evaluate.evaluate_zoo(zoo, baselines.paper_extractors(zoo.layout), split=split,
                                     protocol=args.protocol, progress=False)
  print(zoo.summary())
  own = split is not None
  print("split: the source's own" if own else "split: by model, 70/15/15 (seed 42)")
  print(report.to_markdown(report.results_table(evaluation, paper=None)))


def _info(folder: str) -> None:
  from wsl_jax.zoo import diagnostics
  zoo = zoo_io.load(folder, verify=True)
  print(zoo.summary())
  print(diagnostics.format_diagnostics(diagnostics.diagnose(zoo)))


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
                 chunk_size=args.chunk_size, progress=not args.quiet, overwrite=args.overwrite, worker=args.worker)
  if zoo is None:
    print(f"worker {args.worker}: its chunks are in {out}.partial ({time.time() - t0:.1f} s); the zoo is put "
          "in place by the last worker to finish")
    return
  print(zoo.summary())
  print(f"wrote {out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
  sys.exit(main())
