"""experiments.pipeline without training: the module structure of experiments/, `--set` on every
experiment's command line, the overrides' errors, and the stage helpers' settings.

The smoke runs themselves (and the comparison with the values stored before the single pipeline) are in
test_tetris_seed_experiment.py, test_experiments_tetris.py and test_experiments_cnn.py.
"""

import ast
import doctest
import os

import numpy as np
import pytest

from experiments import ablations, common, generating_factors, hyp_zoos, ood, pipeline, tetris_hyp, tetris_seed

EXPERIMENTS_DIR = os.path.dirname(pipeline.__file__)
SHARED = {"__init__", "common", "pipeline"}
EXPERIMENTS = {"tetris_seed": tetris_seed, "tetris_hyp": tetris_hyp, "ablations": ablations,
               "generating_factors": generating_factors, "hyp_zoos": hyp_zoos, "ood": ood}


def _imported_experiment_modules(path):
  """The modules of the experiments package that the file at `path` imports."""
  tree = ast.parse(open(path, encoding="utf-8").read())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("experiments.")}
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: from . import x / from .x import y
        names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
      elif node.module == "experiments":
        names |= {a.name for a in node.names}
      elif node.module and node.module.startswith("experiments."):
        names.add(node.module.split(".")[1])
  return names


def test_no_experiment_imports_another():
  files = sorted(f[:-3] for f in os.listdir(EXPERIMENTS_DIR) if f.endswith(".py"))
  experiments = [f for f in files if f not in SHARED]
  assert set(experiments) == set(EXPERIMENTS), "a new experiment module: add it to EXPERIMENTS"
  for name in files:
    imported = _imported_experiment_modules(os.path.join(EXPERIMENTS_DIR, f"{name}.py"))
    assert imported <= SHARED, f"experiments/{name}.py imports {sorted(imported - SHARED)}"


def test_import_check_sees_every_form(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("import experiments.ood\nfrom experiments import common, hyp_zoos\n"
                  "from experiments.tetris_seed import NAME\nfrom . import ablations\nfrom .pipeline import run\n")
  assert _imported_experiment_modules(str(path)) == {"ood", "common", "hyp_zoos", "tetris_seed", "ablations",
                                                     "pipeline"}


# ---- --set on every experiment's command line -------------------------------------------------------

SET_CASES = {
    "tetris_seed": (["--set", "ssl.model.dim=32", "ssl.model.ff_dim=64", "encoder.checkpoint_stride=2",
                     "--set", "zoo.models=60"],
                    lambda c: (c.ssl.model.dim, c.ssl.model.ff_dim, c.encoder.checkpoint_stride, c.zoo.models)
                    == (32, 64, 2, 60)),
    "tetris_hyp": (["--set", "probes.checkpoint_stride=3", "ssl.lr=1", "probes.columns=[\"W\", \"EcD\"]"],
                   lambda c: (c.probes.checkpoint_stride, c.ssl.lr, c.probes.columns) == (3, 1.0, ("W", "EcD"))
                   and isinstance(c.ssl.lr, float)),
    "ablations": (["--study", "loss", "--set", "seeds=2", "cells=[\"Ec\", \"EcD\"]", "encoder.monitor_test=true"],
                  lambda c: (c.study, c.seeds, c.cells, c.encoder.monitor_test) == ("loss", 2, ("Ec", "EcD"), True)),
    "generating_factors": (["--data", "digits_28", "--set", "zoos=[[\"mnist_seed\", 4]]", "canonical_variance=false"],
                           lambda c: (c.zoos, c.canonical_variance, c.zoo.data)
                           == ((("mnist_seed", 4),), False, "digits_28")),
    "hyp_zoos": (["--dataset", "fashion_mnist", "--set", "zoo.models=16", "ssl.epochs=3",
                  "encoder.add_last_checkpoint=false"],
                 lambda c: (c.zoo.data, c.zoo.models, c.ssl.epochs, c.encoder.add_last_checkpoint)
                 == ("fashion_mnist", 16, 3, False)),
    "ood": (["--set", "datasets=[\"digits_28\"]", "probes.targets=[\"ggap\"]", "ssl=small"],
            lambda c: (c.datasets, c.probes.targets, c.ssl.model.dim) == (("digits_28",), ("ggap",), 64)),
}


@pytest.fixture
def captured(monkeypatch):
  """`pipeline.run` replaced by a recorder: the config and arguments each command line would run."""
  calls = []
  monkeypatch.setattr(pipeline, "run", lambda config, out, **kw: calls.append((config, out, kw)))
  monkeypatch.setattr(common, "setup_jax", lambda: None)
  return calls


@pytest.mark.parametrize("name", sorted(SET_CASES))
def test_set_on_the_command_line(name, captured, tmp_path):
  argv, holds = SET_CASES[name]
  module = EXPERIMENTS[name]
  assert module.main(["--preset", "smoke", "--out", str(tmp_path / "o"), "--quiet"] + argv) == 0
  (config, out, kw), = captured
  assert config.experiment == name and config.preset == "smoke" and out == str(tmp_path / "o")
  assert holds(config), config
  assert kw["progress"] is False
  # The same flags without --set give the preset, and --set is `replace` on top of it.
  captured.clear()
  flags = argv[:argv.index("--set")]
  assert module.main(["--preset", "smoke", "--quiet"] + flags) == 0
  (plain, out, _), = captured
  assert out.startswith(os.path.join("runs", name))
  assert plain.replace(**pipeline.parse_sets([a for a in argv[len(flags):] if a != "--set"])) == config


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_set_errors_are_one_line(name, captured, capsys):
  study = ["--study", "loss"] if name == "ablations" else []
  assert EXPERIMENTS[name].main(["--preset", "smoke", "--quiet", "--set", "zoo.modles=5"] + study) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "unknown key 'zoo.modles'" in err[0] and "valid: preset, models, epochs" in err[0]
  assert not captured


def test_override_errors():
  config = tetris_seed.get_config("smoke")
  with pytest.raises(pipeline.ConfigError, match=r"unknown key 'ssl.model.dimm': ssl.model has no field 'dimm'; "
                                                 r"valid: arch, tokens"):
    config.replace(**{"ssl.model.dimm": 3})
  with pytest.raises(pipeline.ConfigError, match=r"unknown key 'sssl': the config has no field 'sssl'; "
                                                 r"valid: zoo, ssl, encoder, probes"):
    config.replace(sssl=1)
  with pytest.raises(pipeline.ConfigError, match="zoo.models must be an integer"):
    config.replace(**{"zoo.models": "many"})
  with pytest.raises(pipeline.ConfigError, match="encoder.cap_batch_size must be true or false"):
    config.replace(**{"encoder.cap_batch_size": 1})
  with pytest.raises(pipeline.ConfigError, match="cannot be set"):
    config.replace(preset="paper")
  with pytest.raises(pipeline.ConfigError, match="zoo is a group of settings"):
    config.replace(zoo=3)
  with pytest.raises(pipeline.ConfigError, match="not a group of settings"):
    config.replace(**{"zoo.models.x": 3})
  with pytest.raises(pipeline.ConfigError, match="probes.columns: unknown"):
    config.replace(**{"probes.columns": ["W", "X"]})
  paper = hyp_zoos.get_config("paper")  # ssl None: each data set's original config
  with pytest.raises(pipeline.ConfigError, match="ssl is None in this preset.*ssl=<preset name>"):
    paper.replace(**{"ssl.epochs": 3})
  assert paper.replace(ssl="unterthiner_mnist", **{"ssl.epochs": 3}).ssl.epochs == 3
  with pytest.raises(pipeline.ConfigError, match="--set takes KEY=VALUE"):
    pipeline.parse_sets(["ssl.epochs"])


def test_parse_sets_values():
  assert pipeline.parse_sets(["a=1", "b=1.5", "c=true", "d=null", "e=text", "f=[1, 2]", "g=a=b", "h="]) == {
      "a": 1, "b": 1.5, "c": True, "d": None, "e": "text", "f": [1, 2], "g": "a=b", "h": ""}


def test_pipeline_docstring_examples():
  failures, tried = doctest.testmod(pipeline, optionflags=doctest.ELLIPSIS)[:2]
  assert tried >= 4 and failures == 0


# ---- settings that used to differ between experiments without anyone choosing ---------------------

def test_encoder_settings_of_each_experiment():
  tetris = [tetris_seed.get_config(p).encoder for p in common.PRESETS] + [
      tetris_hyp.get_config(p).encoder for p in common.PRESETS]
  assert all(not (e.add_last_checkpoint or e.cap_batch_size or e.drop_nonfinite) and e.reconstruction == "test"
             for e in tetris)
  cnn = [m.get_config(p).encoder for m in (generating_factors, hyp_zoos, ood) for p in common.PRESETS]
  assert all(e.add_last_checkpoint and e.cap_batch_size and e.drop_nonfinite and e.reconstruction == "all"
             for e in cnn)
  assert not ablations.get_config("smoke", "loss").encoder.monitor_test


def test_encoder_checkpoints():
  ec = pipeline.EncoderConfig(checkpoint_stride=5)
  np.testing.assert_array_equal(pipeline.encoder_checkpoints(12, ec), [0, 5, 10])
  np.testing.assert_array_equal(pipeline.encoder_checkpoints(12, ec.replace(add_last_checkpoint=True)),
                                [0, 5, 10, 11])
  np.testing.assert_array_equal(pipeline.encoder_checkpoints(11, ec.replace(add_last_checkpoint=True)), [0, 5, 10])


def test_cap_batch_size_and_drop_nonfinite(tetris_zoo, monkeypatch):
  """`fit_encoder` with the CNN experiments' rules: rows with non-finite weights are left out, the batch is
  capped at the training samples (multiple of 4); TETRIS's rules: every row, the batch as configured."""
  from wsl_jax.hyperrep import train
  seen = {}

  def fake_fit(config, w_train, w_val, w_test, **kw):
    seen.update(batch=config.batch_size, rows=w_train.shape[0], test=None if w_test is None else w_test.shape[0])
    raise StopIteration

  monkeypatch.setattr(train, "fit", fake_fit)
  zoo = tetris_zoo.subset(models=np.arange(6), checkpoints=np.arange(0, 10))  # a copy
  zoo.weights[0, 3, 0] = np.nan
  split = type(zoo.split())(train=np.arange(4), val=np.array([4]), test=np.array([5]))
  ssl = tetris_seed.get_config("smoke").ssl
  with pytest.raises(StopIteration):
    pipeline.fit_encoder(zoo, split, ssl, pipeline.CNN_ENCODER, workdir=None, seed=0, progress=False)
  assert seen == {"batch": 36, "rows": 39, "test": 10}
  with pytest.raises(StopIteration):
    pipeline.fit_encoder(zoo, split, ssl, pipeline.EncoderConfig(monitor_test=False), workdir=None, seed=0,
                         progress=False)
  assert seen == {"batch": 50, "rows": 40, "test": None}
  with pytest.raises(ValueError, match="only 3 training samples"):
    pipeline.fit_encoder(zoo, type(split)(train=np.array([1]), val=split.val, test=split.test), ssl,
                         pipeline.CNN_ENCODER.replace(checkpoint_stride=5), workdir=None, seed=0, progress=False)


# ---- the stored smoke values ------------------------------------------------------------------------

def test_stored_smoke_values_and_their_comparison():
  import smoke_results
  names = {f.split(".jax-")[0] for f in os.listdir(smoke_results.FOLDER)}
  assert names == {"tetris_seed", "tetris_hyp", "ablations_loss_cell_EcD", "ablations_augmentation",
                   "ablations_architecture", "ablations_loss", "generating_factors", "hyp_zoos", "ood",
                   "hyp_zoos_unterthiner_export", "hyp_zoos_hsg_dump"}
  for name in names:  # both supported set-ups were recorded
    for version in ("0.10", "0.12"):
      assert os.path.exists(os.path.join(smoke_results.FOLDER, f"{name}.jax-{version}.json")), (name, version)
  expected = {"a": 1.0, "b": [2, "x", True], "c": {"d": 0.0}}
  assert smoke_results.differences({"a": 1.0 + 1e-9, "b": [2, "x", True], "c": {"d": 1e-12}}, expected) == []
  assert smoke_results.differences({"a": 1.001, "b": [3, "x", True], "c": {}}, expected) == [
      ".a: 1.001, stored 1.0", ".b[0]: 3, stored 2", ".c.d: missing"]
  assert smoke_results.differences({**expected, "e": 1}, expected) == [".e: not in the stored values"]
  assert smoke_results.differences({**expected, "b": [2, "x", 1]}, expected) == [".b[2]: 1, stored True"]
  volatile = {"timings_s": {"zoo": 1.0}, "x": [{"seconds": 2, "epoch_time_s": 1.0, "loss": 0.5}]}
  assert smoke_results.numeric_content(volatile) == {"x": [{"loss": 0.5}]}
