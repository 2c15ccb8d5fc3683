"""benchmarks/device_check.py runs every benchmark and writes its JSON (tiny sizes on the CPU), so that it
is known to work before an accelerator is lent for a few minutes."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_device_check_small_runs_every_section(tmp_path):
  out = tmp_path / "check.json"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "device_check.py"), "--small",
                         "--out", str(out)], cwd=tmp_path, env={**env, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["environment"]["platform"] == "cpu" and report["small"] is True
  sections = report["sections"]
  assert set(sections) == {"zoo_throughput", "cnn_zoo_throughput", "augment_throughput", "ssl_throughput",
                           "augment_share", "probe_speed", "zoo_generation", "tetris_seed_paper_slice"}
  for name in ("zoo_throughput", "cnn_zoo_throughput", "augment_throughput", "ssl_throughput", "augment_share",
               "probe_speed"):
    assert sections[name]["rc"] == 0 and sections[name]["lines"], name
  assert any("faster per model than the loop" in line for line in sections["zoo_throughput"]["lines"])
  assert any("samples/s" in line for line in sections["ssl_throughput"]["lines"])
  for size in sections["zoo_generation"]["sizes"].values():
    assert size["us_per_model_step"] > 0 and size["vs_loop"] > 0
  slice_ = sections["tetris_seed_paper_slice"]
  assert slice_["epochs_run"] == 2 and slice_["projected_paper_run_minutes"] > 0
