"""The main experiment end to end on its smoke preset: outputs, table (the values recorded before the single
pipeline, tests/smoke_results.py), zoo cache reuse, resume."""

import json
import math
import os

import pytest

import smoke_results
from experiments import pipeline, tetris_seed

EXPECTED_FILES = ("config.json", "results.json", "results.md", "results.csv", "training_curves.png",
                  "scores.png", "predictions_EcD.png", "embedding_EcD.png", "diagnostics.json", "diagnostics.txt")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("tetris_seed")
  out, cache = str(root / "out"), str(root / "zoos")
  results = pipeline.run(tetris_seed.get_config("smoke"), out, seed=0, zoo_cache=cache, progress=False)
  return out, cache, results


def test_smoke_writes_every_output(smoke_run):
  out, _, _ = smoke_run
  for name in EXPECTED_FILES:
    path = os.path.join(out, name)
    assert os.path.isfile(path) and os.path.getsize(path) > 0, name
  with open(os.path.join(out, "results.md")) as f:
    text = f.read()
  assert "EcD" in text and "reconstruction R²" in text
  with open(os.path.join(out, "diagnostics.json")) as f:
    diagnostic = json.load(f)  # the zoo's signal: accuracy / gap per checkpoint, variances, PCA ceiling
  assert diagnostic["num_models"] == 48 and len(diagnostic["per_checkpoint"]["weight_var"]) == 7


def test_smoke_table_has_every_target_and_method(smoke_run):
  out, _, results = smoke_run
  with open(os.path.join(out, "results.json")) as f:
    on_disk = json.load(f)
  table = on_disk["table"]
  assert tuple(table["rows"]) == tetris_seed.TARGETS
  assert set(table["methods"]) >= {"W", "PCAl", "PCAc", "PCAr", "s(W)", "EcD"}
  for target in tetris_seed.TARGETS:
    for method in table["methods"]:
      value = table["values"][target][method]
      assert value is not None and math.isfinite(value), (target, method)
  assert math.isfinite(on_disk["reconstruction_r2_test"])
  assert on_disk["zoo"]["models"] == tetris_seed.get_config("smoke").zoo.models
  assert results["table"] == on_disk["table"]
  smoke_results.check("tetris_seed", on_disk)


def test_second_run_reuses_zoo_and_resumes_ssl(smoke_run, capsys):
  out, cache, first = smoke_run
  again = pipeline.run(tetris_seed.get_config("smoke"), out, seed=0, zoo_cache=cache, progress=False)
  err = capsys.readouterr().err
  assert "zoo: reusing" in err
  # The finished SSL run is restored from its checkpoint, so the whole result is identical.
  assert again["reconstruction_r2_test"] == first["reconstruction_r2_test"]
  assert again["table"]["values"] == first["table"]["values"]


def test_presets_and_bad_preset():
  quick = tetris_seed.get_config("quick")
  paper = tetris_seed.get_config("paper")
  assert quick.zoo.models == paper.zoo.models == 1000
  assert (quick.ssl.model.dim, quick.encoder.checkpoint_stride, quick.encoder.seeds) == (64, 5, 3)
  assert paper.encoder.seeds == 3 and tetris_seed.get_config("smoke").encoder.seeds == 1
  assert paper.ssl.model.dim == 256 and paper.encoder.checkpoint_stride == 1
  # TETRIS: exactly the strided checkpoints, every batch as configured, R² on the test models.
  assert not (paper.encoder.add_last_checkpoint or paper.encoder.cap_batch_size or paper.encoder.drop_nonfinite)
  assert paper.encoder.reconstruction == "test"
  with pytest.raises(ValueError, match="unknown preset"):
    tetris_seed.get_config("huge")


def test_overrides():
  """The quick preset's search (module docstring) is a --set away; bad values are refused by the configs."""
  config = tetris_seed.get_config("quick")
  sets = ["ssl.model.dim=32", "ssl.model.ff_dim=64", "ssl.epochs=5", "ssl.batch_size=50", "ssl.lr=3e-3",
          "encoder.checkpoint_stride=2", "probes.checkpoint_stride=3"]
  changed = config.replace(**pipeline.parse_sets(sets))
  assert (changed.ssl.model.dim, changed.ssl.model.ff_dim, changed.ssl.epochs) == (32, 64, 5)
  assert (changed.ssl.batch_size, changed.ssl.lr) == (50, 3e-3)
  assert (changed.encoder.checkpoint_stride, changed.probes.checkpoint_stride) == (2, 3)
  assert config.replace() == config and config.ssl.model.dim == 64
  with pytest.raises(ValueError, match="not divisible by model.heads=4"):
    config.replace(**{"ssl.model.dim": 30})
  with pytest.raises(ValueError, match="encoder.checkpoint_stride must be a positive integer"):
    config.replace(**{"encoder.checkpoint_stride": 0})


def test_beats_sw_needs_the_margin_beyond_the_spread():
  """EcD "beats" s(W) on a target only where its seed mean is above s(W) by more than its sample std."""
  from wsl_jax.evaluation import report
  rows = ("epoch", "test_acc", "ggap")
  per_seed = {"epoch": {"EcD": (0.96, 0.97, 0.98)},      # mean 0.97, std 0.01: 0.8 points above s(W)
              "test_acc": {"EcD": (0.90, 0.91, 0.92)},   # 2 points above 0.89, std 1: beats
              "ggap": {"EcD": (0.70, 0.80, 0.90)}}       # 4 points above, but std 10: does not
  sw = {"epoch": 0.962, "test_acc": 0.89, "ggap": 0.76}
  table = report.ResultTable(
      title="t", rows=rows, methods=("s(W)", "EcD"), metrics={r: "r2" for r in rows},
      values={r: {"s(W)": sw[r], "EcD": sum(per_seed[r]["EcD"]) / 3} for r in rows}, per_seed=per_seed)
  assert report.wins(table, "EcD", "s(W)") == {"epoch": False, "test_acc": True, "ggap": False}
  one_seed = report.ResultTable(title="t", rows=rows, methods=("s(W)", "EcD"), metrics={r: "r2" for r in rows},
                                values={r: {"s(W)": 0.0, "EcD": 1.0} for r in rows},
                                per_seed={r: {"EcD": (1.0,)} for r in rows})
  assert not any(report.wins(one_seed, "EcD", "s(W)").values())  # one seed: no spread measured, no claim
