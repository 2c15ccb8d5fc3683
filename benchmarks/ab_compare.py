"""A/B timing of one benchmark command in two checkouts (two git revisions), interleaved.

  python benchmarks/ab_compare.py --old main~1 --new . --repeats 4 -- python benchmarks/ssl_throughput.py --steps 2
  python benchmarks/ab_compare.py --old /tmp/before --new /tmp/after -- \
      python benchmarks/zoo_throughput.py --sizes 256 --skip-full

`--old` / `--new` are checkout folders or git revisions of this repository (a revision is checked out
into a temporary `git worktree`, removed afterwards). The command runs in each checkout (working
directory the checkout, the checkout first on PYTHONPATH, which the script checks by importing
wsl_jax there), alternating in ABBA order (old new, new old, ...) so that a drift of the machine's
load hits both sides alike. From each run's output it takes every number followed by a unit (s, ms,
us, µs, .../s, x, %) on a line, keyed by the line with those numbers blanked out, plus the run's wall
time, or only the `--metric LABEL=REGEX` values (one capture group) when given. For each metric it
prints the median of both sides and the ratio new/old: the median of the per-pair ratios, with their
min..max (the spread). "better"/"worse" is said only when every pair agrees (the spread excludes 1),
and only from 3 pairs on.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*(\w+/s|µs|us|ms|s|x|%)(?!\w)")
_TIME_UNITS = {"s", "ms", "us", "µs"}  # lower is better; rates, ratios and percentages: higher


def parse_metrics(output: str, patterns: dict[str, re.Pattern] | None) -> dict[tuple[str, str], float]:
  """{(label, unit): value} of one run's output."""
  if patterns:
    out = {}
    for label, pattern in patterns.items():
      m = pattern.search(output)
      if m:
        out[(label, "")] = float(m.group(1))
    return out
  out = {}
  for line in output.splitlines():
    found = list(_NUMBER.finditer(line))
    if not found:
      continue
    # The measured numbers blanked out; the others (a zoo size, a device count) name the line.
    line = " ".join(line.split())
    found = list(_NUMBER.finditer(line))
    template = _NUMBER.sub(lambda m: "#" + m[0][len(m[1]):], line)
    for i, m in enumerate(found):
      out[(f"{template} [{i}]", m.group(2))] = float(m.group(1))
  return out


def checkout(spec: str, repo: str, temp: str) -> tuple[str, bool]:
  """A folder for `spec` (a folder, or a git revision checked out into a temporary worktree)."""
  if os.path.isdir(spec):
    return os.path.abspath(spec), False
  path = os.path.join(temp, re.sub(r"\W", "_", spec))
  subprocess.run(["git", "-C", repo, "worktree", "add", "--detach", path, spec], check=True, capture_output=True)
  return path, True


def run_once(cmd: list[str], folder: str) -> tuple[str, float]:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([folder] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if proc.returncode:
    raise SystemExit(f"ab_compare: {' '.join(cmd)} failed in {folder} (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
  return proc.stdout, wall


def check_import(python: str, folder: str) -> None:
  env = dict(os.environ, PYTHONPATH=folder)
  where = subprocess.run([python, "-c", "import wsl_jax; print(wsl_jax.__file__)"], cwd=folder, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
  if not os.path.abspath(where).startswith(os.path.abspath(folder) + os.sep):
    raise SystemExit(f"ab_compare: in {folder}, wsl_jax imports from {where}, not from the checkout")


def summarize(runs: dict[str, list[dict]]) -> list[tuple]:
  """(key, old median, new median, median ratio, min ratio, max ratio, verdict) per metric."""
  rows = []
  keys = [k for k in runs["old"][0] if all(k in r for side in runs.values() for r in side)]
  for key in keys:
    old = [r[key] for r in runs["old"]]
    new = [r[key] for r in runs["new"]]
    if all(v == 0 for v in old):
      continue
    if all(a == b for a, b in zip(old, new)) and len(set(old)) == 1:
      continue  # a constant (a size, a device count): nothing to compare
    ratios = [b / a for a, b in zip(old, new) if a]
    lo, mid, hi = min(ratios), statistics.median(ratios), max(ratios)
    lower_better = key[1] in _TIME_UNITS
    if len(ratios) < 3:
      verdict = "too few pairs for a verdict"
    elif lo <= 1 <= hi:
      verdict = "within spread"
    else:
      verdict = "new better" if (hi < 1) == lower_better else "new worse"
    rows.append((key, statistics.median(old), statistics.median(new), mid, lo, hi, verdict))
  return rows


def main(argv=None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  if "--" not in argv:
    raise SystemExit("ab_compare: give the benchmark command after --")
  split = argv.index("--")
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--old", required=True, help="checkout folder or git revision (the baseline)")
  p.add_argument("--new", required=True, help="checkout folder or git revision")
  p.add_argument("--repeats", type=int, default=3, help="runs per side (interleaved ABBA)")
  p.add_argument("--metric", action="append", default=[], metavar="LABEL=REGEX",
                 help="take only these values (REGEX with one capture group) instead of every number+unit")
  p.add_argument("--repo", default=".", help="the git repository revisions refer to")
  args = p.parse_args(argv[:split])
  cmd = argv[split + 1:]
  if not cmd or args.repeats < 1:
    raise SystemExit("ab_compare: an empty command, or --repeats below 1")
  patterns = {}
  for m in args.metric:
    label, sep, regex = m.partition("=")
    if not sep or re.compile(regex).groups != 1:
      raise SystemExit(f"ab_compare: --metric {m!r} is not LABEL=REGEX with one capture group")
    patterns[label] = re.compile(regex)

  temp = tempfile.mkdtemp(prefix="ab_compare_")
  made = []
  try:
    folders = {}
    for side in ("old", "new"):
      folders[side], temp_made = checkout(getattr(args, side), args.repo, temp)
      if temp_made:
        made.append(folders[side])
      if os.path.basename(cmd[0]).startswith("python"):
        check_import(cmd[0], folders[side])
    print(f"old: {folders['old']}\nnew: {folders['new']}\ncommand: {' '.join(cmd)}", flush=True)
    runs = {"old": [], "new": []}
    for i in range(args.repeats):
      for side in (("old", "new") if i % 2 == 0 else ("new", "old")):
        out, wall = run_once(cmd, folders[side])
        metrics = parse_metrics(out, patterns or None)
        metrics[("wall time of the run", "s")] = wall
        runs[side].append(metrics)
        shown = ", ".join(f"{v:.4g} {unit}" for (_, unit), v in metrics.items())
        print(f"  run {i + 1}/{args.repeats} {side}: {shown}", flush=True)  # kept if the run is cut short
    rows = summarize(runs)
    print(f"\n{'metric':<70} {'unit':>9} {'old':>10} {'new':>10} {'new/old':>8} {'spread':>14}  verdict")
    for (label, unit), old, new, mid, lo, hi, verdict in rows:
      label = label if len(label) <= 70 else label[:67] + "..."
      print(f"{label:<70} {unit:>9} {old:10.4g} {new:10.4g} {mid:8.3f} {lo:6.3f}..{hi:6.3f}  {verdict}")
  finally:
    for path in made:
      subprocess.run(["git", "-C", args.repo, "worktree", "remove", "--force", path], capture_output=True)
    shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
  main()
