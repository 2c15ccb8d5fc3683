"""experiments.ablations: the smoke presets end to end, the cells, the paper's columns (Ec+D's attached to
the loss the paper ran), and findings decided only beyond the spread over seeds.

(Replaces the ablation tests of test_experiments_tetris.py.) The fast tests run one cell of the loss study
through the command line (and its resumption); the smoke preset of every study is marked slow. Each
compares its results.json with the stored smoke values (tests/smoke_results.py).
"""

import json
import math

import numpy as np
import pytest

import smoke_results
from experiments import ablations, pipeline


def _finite(v):
  return v is not None and math.isfinite(float(v))


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
    # The permutation-invariant reconstruction is at least the plain one (same rows).
    assert res["cells"][cell]["rec_r2_pi"]["mean"] >= res["cells"][cell]["rec_r2_plain"]["mean"] - 1e-12
  ceiling = res["pca_ceiling"]
  assert ceiling["k"] == ceiling["latent_dim"] == 8 and _finite(ceiling["r2"])
  md = (out / "results.md").read_text()
  assert "Does the paper's finding hold?" in md and "PCA ceiling: the top-8 PCA" in md
  assert res["findings"]["claim"]


def test_ablation_cli_one_cell_and_resume(tmp_path, zoo_cache, no_setup_jax):
  out = tmp_path / "loss"
  argv = ["--study", "loss", "--preset", "smoke", "--cells", "EcD", "--out", str(out), "--zoo-cache", zoo_cache,
          "--quiet"]
  assert ablations.main(argv) == 0
  res = json.loads((out / "results.json").read_text())
  _check_ablation_outputs(out, ["EcD"], res)
  # Only the reference cell: nothing to compare it with.
  assert res["findings"]["holds"] is None and res["findings"]["ranking"] == ["EcD"]
  md = (out / "results.md").read_text()
  assert "| EcD |" in md and "(84.1)" in md  # the paper's EcD reconstruction R² beside ours
  assert "Not run in this preset: Ec, ED, Ec+D, Ec+D(code)." in md
  assert "not testable: no cell beside the reference EcD" in md
  # A rerun finds every run finished and trains nothing.
  before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
  assert ablations.main(argv) == 0
  assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == before
  assert json.loads((out / "results.json").read_text())["cells"] == res["cells"]
  # A run record without a metric of this version is run again.
  (path,) = (out / "runs").glob("*.json")
  record = json.loads(path.read_text())
  del record["metrics"]["rec_r2_pi"]
  path.write_text(json.dumps(record))
  assert ablations._load_run(str(path), ablations.cell_config("loss", "EcD", ablations.get_config("smoke").ssl),
                             0) is None
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
    md = (out / "results.md").read_text()
    assert "Test reconstruction R² (Table 3)" in md and "up to the hidden-unit permutation" in md
    assert found["compared"] == 1 and found["pairs"][0]["with"] == "P,E,N"
    assert found["pairs"][0]["verdict"] == "undecided" and found["holds"] is None  # one seed
  else:
    assert set(found["ranking"]) == set(ablations.SMOKE_CELLS[study])
    assert found["holds"] is None  # one seed: no spread, nothing decided
  smoke_results.check(f"ablations_{study}", res)


# ---- the cells, without training ------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_configs_of_every_preset_and_cell(preset):
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


def test_paper_columns_belong_to_the_loss_the_paper_ran():
  assert len(ablations.all_cells("augmentation")) == 24
  assert ablations.all_cells("architecture") == ("FF", "AttW", "AttW+t", "AttN", "AttN+t")
  assert ablations.all_cells("loss") == ("Ec", "ED", "EcD", "Ec+D", "Ec+D(code)")
  assert ablations.paper_values("augmentation", "EcD / P,E") == {"rec_r2": 84.1}
  assert ablations.paper_values("architecture", "AttN+t")["test_acc"] == 90.2
  assert ablations.paper_values("loss", "Ec")["rec_r2"] is None
  # The paper's Ec+D row came from the original code's loss (reference.md §9 B1): it sits beside
  # Ec+D(code); the Eq. 3 variant has no paper column.
  assert ablations.paper_values("loss", "Ec+D(code)") == {"rec_r2": 95.9, "epoch": 94.0, "test_acc": 69.9,
                                                          "f1_class_0": 48.9, "f1_class_1": 58.1,
                                                          "f1_class_2": 32.5, "f1_class_3": 58.8}
  assert ablations.paper_values("loss", "Ec+D") == {}
  assert "Ec+D(code) / P" in ablations.all_cells("augmentation")
  assert not any(c.startswith("Ec+D /") for c in ablations.all_cells("augmentation"))
  assert ablations.paper_values("augmentation", "Ec+D(code) / none") == {"rec_r2": 86.3}
  with pytest.raises(ValueError):
    ablations.all_cells("dropout")


def test_augmentation_cells():
  from wsl_jax.hyperrep import configs
  base = configs.preset("tetris")
  none = ablations.cell_config("augmentation", "ED / none", base)
  assert (none.augment.permute, none.augment.erase_p, none.augment.noise_std) == (False, 0.0, 0.0)
  assert not none.eval_augment.permute and none.loss.gamma == 0.0
  full = ablations.cell_config("augmentation", "Ec+D(code) / P,E,N", base)
  assert (full.augment.permute, full.augment.erase_p, full.augment.noise_std) == (True, 0.5, 0.05)
  assert full.eval_augment.permute and full.eval_augment.erase_p == 0.0 and full.eval_augment.noise_std == 0.0
  assert full.loss.contrast == "positive_code" and full.loss.code_batch == 500
  assert ablations.cell_config("architecture", "FF", base).lr == pytest.approx(3 * base.lr)
  assert ablations.cell_config("loss", "Ec+D(code)", base).loss.contrast == "positive_code"
  assert ablations.cell_config("loss", "Ec+D", base).loss.contrast == "positive"
  with pytest.raises(ValueError):
    ablations.cell_config("augmentation", "EcD / X", base)
  with pytest.raises(ValueError):
    ablations.cell_config("augmentation", "Ec+D / P", base)


def _stats(seeds=1, spread=0.0, **means):
  """Per-metric stats of `seeds` runs: values mean - spread, mean, mean + spread, ..."""
  out = {}
  for m in ablations.METRICS:
    mu = means.get(m, 0.1)
    values = [mu + spread * (i - (seeds - 1) / 2) for i in range(seeds)]
    out[m] = ablations.mean_std(values)
  return out


def test_findings_count_only_beyond_the_spread():
  # One seed: nothing is decided, whatever the margins.
  cells = {"ED / none": _stats(rec_r2=0.5), "ED / P": _stats(rec_r2=0.7),
           "EcD / E": _stats(rec_r2=0.4), "EcD / P,E": _stats(rec_r2=0.3)}
  found = ablations.findings("augmentation", cells)
  assert (found["compared"], found["decided"], found["holds"]) == (2, 0, None)
  assert ablations.describe_findings("augmentation", found).startswith("Undecided")
  # Three seeds: ED raised beyond the spread, EcD lowered; a margin within the spread is level.
  cells = {"ED / none": _stats(3, 0.01, rec_r2=0.5), "ED / P": _stats(3, 0.01, rec_r2=0.7),
           "EcD / E": _stats(3, 0.01, rec_r2=0.4), "EcD / P,E": _stats(3, 0.01, rec_r2=0.3),
           "Ec+D(code) / N": _stats(3, 0.05, rec_r2=0.5), "Ec+D(code) / P,N": _stats(3, 0.05, rec_r2=0.53)}
  found = ablations.findings("augmentation", cells)
  assert [p["verdict"] for p in found["pairs"]] == ["above", "below", "level"]
  assert (found["raised"], found["lowered"], found["level"], found["holds"]) == (1, 1, 1, False)
  assert "in 1 of 3 pairs (lowered in 1, level in 1" in ablations.describe_findings("augmentation", found)
  # Best downstream: decided on the per-seed downstream means.
  cells = {"FF": _stats(3, 0.01, epoch=0.2), "AttN+t": _stats(3, 0.01, epoch=0.9)}
  found = ablations.findings("architecture", cells)
  assert found["holds"] is True and found["ranking"] == ["AttN+t", "FF"]
  assert found["reference_against"] == {"FF": "above"} and found["best_per_target"]["epoch"] == "AttN+t"
  cells = {"Ec": _stats(3, 0.3, epoch=0.92), "EcD": _stats(3, 0.3, epoch=0.9), "ED": _stats(3, 0.01, epoch=0.1)}
  found = ablations.findings("loss", cells)
  assert found["ranking"][0] == "Ec" and found["holds"] == "level"
  assert "Not shown" in ablations.describe_findings("loss", found)
  assert ablations.findings("loss", {"Ec": _stats(3, 0.01, epoch=0.9), "EcD": _stats(3, 0.01, epoch=0.5)})["holds"] is False
  found = ablations.findings("loss", {"Ec": _stats(test_acc=0.9), "EcD": _stats(test_acc=0.5)})
  assert found["holds"] is None and "Undecided" in ablations.describe_findings("loss", found)
  found = ablations.findings("loss", {"Ec": _stats(test_acc=0.9)})
  assert found["holds"] is None and "not testable" in ablations.describe_findings("loss", found)


def test_mean_std_and_reconstruction_scores():
  st = ablations.mean_std([0.1, 0.2, 0.3])
  assert st["std"] == pytest.approx(0.1) and ablations.mean_std([0.4])["std"] == 0.0  # sample std
  w = np.random.default_rng(0).normal(size=(20, 5))
  assert ablations.reconstruction_r2(w, w) == 1.0
  assert ablations.reconstruction_r2(w, np.broadcast_to(w.mean(0), w.shape)) == pytest.approx(0.0)
