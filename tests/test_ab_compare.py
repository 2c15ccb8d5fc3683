"""benchmarks/ab_compare.py: metrics parsed from a benchmark's output, paired ratios, an end-to-end run."""

import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("ab_compare", os.path.join(ROOT, "benchmarks", "ab_compare.py"))
ab_compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab_compare)


def test_numbers_with_units_are_metrics_keyed_by_their_line():
  out = ("vmap,   256 models: 4.20 us/model-step, 61.5 models/s, 9.8x faster\njax 0.10.2, 2 cores\n"
         "vmap, 64 models: 5.00 us/model-step, 50.0 models/s, 8.0x faster\n")
  m = ab_compare.parse_metrics(out, None)
  assert m == {("vmap, 256 models: # us/model-step, # models/s, #x faster [0]", "us"): 4.2,
               ("vmap, 256 models: # us/model-step, # models/s, #x faster [1]", "models/s"): 61.5,
               ("vmap, 256 models: # us/model-step, # models/s, #x faster [2]", "x"): 9.8,
               ("vmap, 64 models: # us/model-step, # models/s, #x faster [0]", "us"): 5.0,
               ("vmap, 64 models: # us/model-step, # models/s, #x faster [1]", "models/s"): 50.0,
               ("vmap, 64 models: # us/model-step, # models/s, #x faster [2]", "x"): 8.0}


def test_ratios_are_paired_and_a_verdict_needs_every_pair():
  old = [{("t", "s"): v} for v in (2.0, 2.2, 2.1)]
  rows = ab_compare.summarize({"old": old, "new": [{("t", "s"): v} for v in (1.0, 1.1, 1.05)]})
  assert rows == [(("t", "s"), 2.1, 1.05, 0.5, 0.5, 0.5, "new better")]
  rows = ab_compare.summarize({"old": old, "new": [{("t", "s"): v} for v in (1.9, 2.4, 2.1)]})
  assert rows[0][-1] == "within spread"
  rows = ab_compare.summarize({"old": old, "new": [{("t", "samples/s"): 0}, {}, {}]})
  assert rows == []  # a metric missing from a run is not compared


def test_two_checkouts_end_to_end(tmp_path):
  for side, value in (("a", 2.0), ("b", 3.0)):
    (tmp_path / side / "wsl_jax").mkdir(parents=True)
    (tmp_path / side / "wsl_jax" / "__init__.py").write_text(f"VALUE = {value}\n")
  code = "import wsl_jax; print(f'step {wsl_jax.VALUE} s')"
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "ab_compare.py"), "--old",
                         str(tmp_path / "a"), "--new", str(tmp_path / "b"), "--repeats", "3", "--",
                         sys.executable, "-c", code], capture_output=True, text=True, check=True)
  row = next(line for line in proc.stdout.splitlines() if line.startswith("step"))
  assert row.split()[-5:] == ["1.500", "1.500..", "1.500", "new", "worse"], proc.stdout
