"""benchmarks/zoo_processes.py: one process on every core (one XLA device, or one per core as the CLI)
against pinned single-threaded processes; it runs end to end at a tiny size, times the same amount of work
in every layout and reports the ratios."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "zoo_processes.py"


def test_every_layout_is_timed_and_compared(tmp_path):
  out = tmp_path / "zp.json"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, str(_SCRIPT), "--presets", "tetris_seed", "--models", "5", "--epochs", "1",
                         "--processes", "2", "--repeats", "1", "--json", str(out)],
                        capture_output=True, text=True, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  (row,) = json.loads(out.read_text())
  # tetris_seed: batch 5 of 50 images, 10 steps per epoch; the 5 models split 3 + 2 over the processes
  assert row["preset"] == "tetris_seed" and row["model_steps"] == 5 * 10 * 1 and row["processes"] == 2
  assert row["one_process_s"] > 0 and row["pinned_processes_s"] > 0 and row["sharded_process_s"] > 0
  assert row["ratio"] == pytest.approx(row["one_process_s"] / row["pinned_processes_s"])
  assert row["ratio_vs_sharded"] == pytest.approx(row["sharded_process_s"] / row["pinned_processes_s"])
  assert row["one_process_us"] == pytest.approx(row["one_process_s"] / 50 * 1e6)
  assert "pinned 1-thread processes" in proc.stdout and "a device per core (the CLI's)" in proc.stdout


def test_refuses_bad_arguments_before_any_work(tmp_path):
  proc = subprocess.run([sys.executable, str(_SCRIPT), "--models", "1", "--processes", "2"], capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode != 0 and "need 1 <= --processes <= --models" in proc.stderr
  mine = tmp_path / "mine.json"
  mine.write_text("user data")
  proc = subprocess.run([sys.executable, str(_SCRIPT), "--json", str(mine)], capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode != 0 and "does not overwrite" in proc.stderr and mine.read_text() == "user data"
