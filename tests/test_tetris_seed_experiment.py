"""The main experiment end to end on its smoke preset: outputs, table, zoo cache reuse, resume."""

import json
import math
import os

import pytest

from experiments import tetris_seed

EXPECTED_FILES = ("config.json", "results.json", "results.md", "results.csv", "training_curves.png",
                  "scores.png", "predictions_EcD.png", "embedding_EcD.png")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("tetris_seed")
  out, cache = str(root / "out"), str(root / "zoos")
  results = tetris_seed.run(tetris_seed.get_config("smoke"), out, seed=0, zoo_cache=cache, progress=False)
  return out, cache, results


def test_smoke_writes_every_output(smoke_run):
  out, _, _ = smoke_run
  for name in EXPECTED_FILES:
    path = os.path.join(out, name)
    assert os.path.isfile(path) and os.path.getsize(path) > 0, name
  with open(os.path.join(out, "results.md")) as f:
    text = f.read()
  assert "EcD" in text and "reconstruction R²" in text


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
  assert on_disk["zoo"]["models"] == tetris_seed.get_config("smoke").zoo_models
  assert results["table"] == on_disk["table"]


def test_second_run_reuses_zoo_and_resumes_ssl(smoke_run, capsys):
  out, cache, first = smoke_run
  again = tetris_seed.run(tetris_seed.get_config("smoke"), out, seed=0, zoo_cache=cache, progress=False)
  err = capsys.readouterr().err
  assert "zoo: reusing" in err
  # The finished SSL run is restored from its checkpoint, so the whole result is identical.
  assert again["reconstruction_r2_test"] == first["reconstruction_r2_test"]
  assert again["table"]["values"] == first["table"]["values"]


def test_presets_and_bad_preset():
  quick = tetris_seed.get_config("quick")
  paper = tetris_seed.get_config("paper")
  assert quick.zoo_models == paper.zoo_models == 1000
  assert paper.ssl.model.dim == 256 and paper.ssl_checkpoint_stride == 1
  with pytest.raises(ValueError, match="unknown preset"):
    tetris_seed.get_config("huge")


def test_overrides():
  config = tetris_seed.with_overrides(tetris_seed.get_config("quick"), dim=32, ssl_epochs=5, batch_size=50,
                                      lr=3e-3, ssl_stride=2, eval_stride=3)
  assert (config.ssl.model.dim, config.ssl.model.ff_dim, config.ssl.epochs) == (32, 64, 5)
  assert (config.ssl.batch_size, config.ssl.lr) == (50, 3e-3)
  assert (config.ssl_checkpoint_stride, config.eval_checkpoint_stride) == (2, 3)
  assert tetris_seed.with_overrides(config) == config
  with pytest.raises(ValueError, match="not divisible by the 4 attention heads"):
    tetris_seed.with_overrides(config, dim=30)
  with pytest.raises(ValueError, match="--ssl-stride must be at least 1"):
    tetris_seed.with_overrides(config, ssl_stride=0)
