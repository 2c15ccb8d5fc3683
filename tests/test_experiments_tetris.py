"""experiments.tetris_hyp and experiments.ablations: the smoke presets end to end, and the cell logic.

The zoos are generated once per session into a temporary zoo cache. The fast tests run the TETRIS-HYP
smoke preset and one cell of the loss ablation through the command line (and its resumption); the
smoke preset of every ablation study (two cells each, two more compilations) is marked slow. Each
compares its results.json with the values recorded before the single pipeline (tests/smoke_results.py).
"""

import json
import math

import pytest

import smoke_results
from experiments import ablations, common, pipeline, tetris_hyp


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("zoos"))


@pytest.fixture
def no_setup_jax(monkeypatch):
  # The test session configures JAX itself (conftest: 4 virtual devices, its own compile cache).
  monkeypatch.setattr(common, "setup_jax", lambda: None)


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


def _check_ablation_outputs(out, cells, res):
  for name in ("config.json", "results.json", "results.md", "cells.png", "training_curves.png"):
    assert (out / name).is_file(), name
  assert res["rows"] == list(cells)
  assert res["columns"] == list(ablations.METRICS)
  assert len(list((out / "runs").glob("*.json"))) == len(cells)
  for cell in cells:
    for metric in ablations.METRICS:
      stat = res["cells"][cell][metric]
      assert _finite(stat["mean"]) and _finite(stat["std"]), (cell, metric)
      assert len(stat["values"]) == 1
  assert "Does the paper's finding hold?" in (out / "results.md").read_text()
  assert res["findings"]["claim"]


def test_ablation_cli_one_cell_and_resume(tmp_path, zoo_cache, no_setup_jax):
  # The CLI on one cell of the loss study (the full smoke presets of every study are the slow test below).
  out = tmp_path / "loss"
  argv = ["--study", "loss", "--preset", "smoke", "--cells", "EcD", "--out", str(out), "--zoo-cache", zoo_cache,
          "--quiet"]
  assert ablations.main(argv) == 0
  res = json.loads((out / "results.json").read_text())
  _check_ablation_outputs(out, ["EcD"], res)
  assert res["findings"]["holds"] is True and res["findings"]["ranking"] == ["EcD"]
  md = (out / "results.md").read_text()
  assert "| EcD |" in md and "(84.1)" in md  # the paper's EcD reconstruction R² beside ours
  assert "Not run in this preset: Ec, ED, Ec+D, Ec+D(code)." in md
  # A rerun finds every run finished and trains nothing.
  before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
  assert ablations.main(argv) == 0
  assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == before
  assert json.loads((out / "results.json").read_text())["cells"] == res["cells"]
  smoke_results.check("ablations_loss_cell_EcD", res)


@pytest.mark.slow
@pytest.mark.parametrize("study", ablations.STUDIES)
def test_ablation_smoke(study, tmp_path, zoo_cache):
  out = tmp_path / study
  pipeline.run(ablations.get_config("smoke", study), str(out), zoo_cache=zoo_cache, progress=False)
  res = json.loads((out / "results.json").read_text())
  _check_ablation_outputs(out, ablations.SMOKE_CELLS[study], res)
  found = res["findings"]
  if study == "augmentation":
    assert "Test reconstruction R² (Table 3)" in (out / "results.md").read_text()
    assert found["compared"] == 1 and found["pairs"][0]["with"] == "P,E,N"
  else:
    assert set(found["ranking"]) == set(ablations.SMOKE_CELLS[study])
    assert found["holds"] in (True, False)
  smoke_results.check(f"ablations_{study}", res)


# ---- the cells, without training ------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_configs_of_every_preset_and_cell(preset):
  hyp = tetris_hyp.get_config(preset)
  assert hyp.ssl.batch_size % 4 == 0  # the test session's 4 devices
  for study in ablations.STUDIES:
    config = ablations.get_config(preset, study)
    assert config.study == study and config.seeds == (1 if preset == "smoke" else 3)
    if preset != "smoke":
      assert config.cells == ablations.all_cells(study)
    for cell in ablations.all_cells(study):
      cfg = ablations.cell_config(study, cell, config.ssl)
      assert cfg.batch_size % 4 == 0
      json.dumps(cfg.to_dict())
    assert not config.encoder.monitor_test and config.probes.columns == ("EcD",)
  with pytest.raises(ValueError, match="unknown cells"):
    ablations.get_config(preset, "loss").replace(cells=["EcD", "Dropout"])


def test_all_cells_match_the_paper_tables():
  assert len(ablations.all_cells("augmentation")) == 24
  assert ablations.all_cells("architecture") == ("FF", "AttW", "AttW+t", "AttN", "AttN+t")
  assert ablations.all_cells("loss") == ("Ec", "ED", "EcD", "Ec+D", "Ec+D(code)")
  assert ablations.paper_values("augmentation", "EcD / P,E") == {"rec_r2": 84.1}
  assert ablations.paper_values("architecture", "AttN+t")["test_acc"] == 90.2
  assert ablations.paper_values("loss", "Ec")["rec_r2"] is None
  assert ablations.paper_values("loss", "Ec+D(code)") == {}
  with pytest.raises(ValueError):
    ablations.all_cells("dropout")


def test_augmentation_cells():
  from wsl_jax import configs
  base = configs.preset("tetris")
  none = ablations.cell_config("augmentation", "ED / none", base)
  assert (none.augment.permute, none.augment.erase_p, none.augment.noise_std) == (False, 0.0, 0.0)
  assert not none.eval_augment.permute and none.loss.gamma == 0.0
  full = ablations.cell_config("augmentation", "Ec+D / P,E,N", base)
  assert (full.augment.permute, full.augment.erase_p, full.augment.noise_std) == (True, 0.5, 0.05)
  assert full.eval_augment.permute and full.eval_augment.erase_p == 0.0 and full.eval_augment.noise_std == 0.0
  assert full.loss.contrast == "positive"
  assert ablations.cell_config("architecture", "FF", base).lr == pytest.approx(3 * base.lr)
  assert ablations.cell_config("loss", "Ec+D(code)", base).loss.contrast == "positive_code"
  with pytest.raises(ValueError):
    ablations.cell_config("augmentation", "EcD / X", base)


def _stats(**means):
  return {m: {"mean": means.get(m, 0.1), "std": 0.0, "values": [means.get(m, 0.1)]} for m in ablations.METRICS}


def test_findings():
  cells = {"ED / none": _stats(rec_r2=0.5), "ED / P": _stats(rec_r2=0.7),
           "EcD / E": _stats(rec_r2=0.4), "EcD / P,E": _stats(rec_r2=0.3)}
  found = ablations.findings("augmentation", cells)
  assert (found["raised"], found["compared"], found["holds"]) == (1, 2, False)
  assert "1 of 2 pairs" in ablations.describe_findings("augmentation", found)
  cells = {"FF": _stats(epoch=0.2), "AttN+t": _stats(epoch=0.9)}
  found = ablations.findings("architecture", cells)
  assert found["holds"] is True and found["ranking"] == ["AttN+t", "FF"]
  assert found["best_per_target"]["epoch"] == "AttN+t"
  found = ablations.findings("loss", {"Ec": _stats(test_acc=0.9)})
  assert found["holds"] is None and "not testable" in ablations.describe_findings("loss", found)


def test_reconstruction_r2():
  import numpy as np
  w = np.random.default_rng(0).normal(size=(20, 5))
  assert ablations.reconstruction_r2(w, w) == 1.0
  assert ablations.reconstruction_r2(w, np.broadcast_to(w.mean(0), w.shape)) == pytest.approx(0.0)
