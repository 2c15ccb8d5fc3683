"""experiments.tetris_hyp: the smoke preset end to end, and the configs of every preset.

The zoo is generated once per session into a temporary zoo cache. The smoke run compares its
results.json with the recorded values (tests/smoke_results.py). The ablations are tested in
tests/test_ablations.py.
"""

import json
import math

import pytest

import smoke_results
from experiments import tetris_hyp


def _finite(v):
  return v is not None and math.isfinite(float(v))


def test_tetris_hyp_smoke(tmp_path, zoo_cache, no_setup_jax):
  out = tmp_path / "hyp"
  # --set with the preset's own values: the command line's override path, and the same results.
  assert tetris_hyp.main(["--preset", "smoke", "--out", str(out), "--zoo-cache", zoo_cache, "--quiet",
                          "--set", "probes.pca_fit_samples=200", "zoo.models=72"]) == 0
  for name in ("config.json", "results.json", "results.md", "results.csv", "training_curves.png", "scores.png",
               "predictions_EcD.png", "predictions_W.png", "embedding_EcD.png", "embedding_s_W.png"):
    assert (out / name).is_file(), name
  res = json.loads((out / "results.json").read_text())
  table = res["table"]
  assert table["rows"] == list(tetris_hyp.TARGETS)
  assert table["methods"] == ["W", "PCAl", "PCAc", "PCAr", "s(W)", "EcD"]
  for row in table["rows"]:
    for method in table["methods"]:
      assert _finite(table["values"][row][method]), (row, method)
  assert table["metrics"]["activation"] == table["metrics"]["init"] == "accuracy"
  assert table["metrics"]["lr"] == "r2"
  assert table["paper_source"] == "table5_tetris_hyp"
  assert isinstance(res["excluded_diverged"], int) and res["excluded_diverged"] == res["zoo"]["diverged"]
  assert _finite(res["reconstruction_r2_test"])
  assert set(res["timings_s"]) >= {"zoo", "probes", "report"}
  md = (out / "results.md").read_text()
  assert "Diverged models excluded" in md and "| init |" in md
  cfg = json.loads((out / "config.json").read_text())
  assert cfg["experiment"] == "tetris_hyp" and cfg["config"]["preset"] == "smoke"
  smoke_results.check("tetris_hyp", res)


# ---- the presets, without training ---------------------------------------------------------------

@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_configs_of_every_preset(preset):
  hyp = tetris_hyp.get_config(preset)
  assert hyp.ssl.batch_size % 4 == 0  # the test session's 4 devices
  json.dumps(hyp.ssl.to_dict())
