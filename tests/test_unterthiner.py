"""Unterthiner et al.'s zoo format: Keras order <-> Layout, export -> import bit-identical, imported networks
reproduce their recorded accuracy, and clear errors for bad folders."""

import csv
import gzip
import importlib
import os

import jax
import numpy as np
import pytest

from wsl_jax.weights import nets
from wsl_jax.zoo import presets, train, unterthiner
from wsl_jax.zoo.io import ZooFormatError

gen = importlib.import_module("wsl_jax.zoo.generate")

TINY = presets.ZooPreset(
    name="tiny_unterthiner", net=nets.UNTERTHINER_CNN, dataset="digits_28", epochs=3, batch_size=16,
    num_models=4, paper_models=4, fixed=(("activation", "relu"), ("init", "he_normal"), ("optimizer", "adam")),
    sample=(("lr", presets.log_uniform(3e-3, 1e-2)), ("l2", presets.log_uniform(1e-6, 1e-4))),
    seed_mode="rand", bias_value=0.0, train_examples=320, test_examples=64, train_eval_examples=64,
    eval_batch_size=50)


@pytest.fixture(scope="module")
def cnn_zoo():
  """4 Unterthiner CNNs trained 3 epochs on a digits subset (one compiled program)."""
  return gen.generate(TINY, progress=False, chunk_size=4)


def keras_forward(spec, row, x, activation):
  """NumPy forward pass of a network stored in Keras order and conventions (HWIO kernels, (in, out) dense
  kernels, NHWC flatten): an independent reference for the conversion."""
  act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[activation]
  variables = unterthiner.keras_variables(spec.layout())
  values = [np.asarray(row[s:e], np.float64).reshape(shape) for _, s, e, shape in variables]
  pairs = [(values[k], values[k + 1]) for k in range(0, len(values), 2)]  # (bias, kernel) per layer
  h = np.asarray(x, np.float64)
  for (bias, kernel), block in zip(pairs, spec.convs):
    kh, kw, _, out = kernel.shape
    ho, wo = (h.shape[1] - kh) // block.stride + 1, (h.shape[2] - kw) // block.stride + 1
    y = np.zeros((h.shape[0], ho, wo, out))
    for r in range(ho):
      for s in range(wo):
        window = h[:, r * block.stride:r * block.stride + kh, s * block.stride:s * block.stride + kw, :]
        y[:, r, s, :] = np.einsum("bijc,ijco->bo", window, kernel) + bias
    if block.pool > 1:
      p = block.pool
      y = y[:, :ho // p * p, :wo // p * p].reshape(len(y), ho // p, p, wo // p, p, out).max(axis=(2, 4))
    h = act(y)
  h = h.mean(axis=(1, 2)) if spec.global_pool else h.reshape(len(h), -1)  # Keras flattens NHWC
  for k, (bias, kernel) in enumerate(pairs[len(spec.convs):]):
    h = h @ kernel + bias
    if k < len(spec.hidden):
      h = act(h)
  return h


@pytest.mark.parametrize("spec", [nets.UNTERTHINER_CNN, nets.PAPER_CNN], ids=["unterthiner", "paper"])
def test_keras_order_runs_the_same_network(spec):
  layout = spec.layout()
  w = np.asarray(nets.init_weights(jax.random.key(0), layout, "glorot_uniform", bias_value=0.0))
  w = w + np.random.default_rng(0).normal(0, 0.05, w.shape).astype(np.float32)  # non-zero biases too
  keras_row = unterthiner.to_keras(w, layout)
  np.testing.assert_array_equal(unterthiner.from_keras(keras_row, layout), w)
  assert sorted(unterthiner.keras_index(layout).tolist()) == list(range(layout.num_params))
  x = np.random.default_rng(1).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
  logits = jax.jit(nets.apply, static_argnums=(0, 3))(spec, w, x, "tanh")
  np.testing.assert_allclose(keras_forward(spec, keras_row, x, "tanh"), logits, rtol=1e-4, atol=1e-5)


def test_layout_csv_has_the_unterthiner_offsets(tmp_path, cnn_zoo):
  folder = unterthiner.export_zoo(cnn_zoo, str(tmp_path / "u"))
  with open(os.path.join(folder, "layout.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [(r["start_idx"], r["end_idx"]) for r in rows] == [
      ("0", "16"), ("16", "160"), ("160", "176"), ("176", "2480"), ("2480", "2496"), ("2496", "4800"),
      ("4800", "4810"), ("4810", "4970")]  # reference.md §1.4
  assert rows[1]["varname"] == "sequential/conv2d/kernel:0" and rows[1]["shape"] == "(3, 3, 1, 16)"
  assert rows[7]["varname"] == "sequential/dense/kernel:0" and rows[7]["shape"] == "(16, 10)"


def test_export_import_is_bit_identical_and_reproduces_accuracy(tmp_path, cnn_zoo):
  assert not cnn_zoo.diverged.any()
  folder = unterthiner.export_zoo(cnn_zoo, str(tmp_path / "u"))
  assert sorted(os.listdir(folder)) == ["layout.csv", "metrics.csv", "weights.npy", "wsl_jax_export.json"]
  rows = np.load(os.path.join(folder, "weights.npy"))
  assert rows.shape == (4 * 4, 4970) and rows.dtype == np.float32
  with open(os.path.join(folder, "metrics.csv")) as f:
    header = next(csv.reader(f))
  for column in ("config.activation", "config.w_init", "config.learning_rate", "config.l2reg", "config.dropout",
                 "config.train_fraction", "config.init_std", "config.optimizer", "modeldir", "step",
                 "test_accuracy", "test_loss", "train_accuracy", "train_loss"):
    assert column in header

  back = unterthiner.import_zoo(folder)
  np.testing.assert_array_equal(back.weights, cnn_zoo.weights)
  np.testing.assert_array_equal(back.epochs, cnn_zoo.epochs)
  np.testing.assert_array_equal(back.diverged, cnn_zoo.diverged)
  for group in ("properties", "hparams"):
    a, b = getattr(cnn_zoo, group), getattr(back, group)
    assert set(a) == set(b), group
    for k in a:
      assert a[k].dtype == b[k].dtype, k
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert back.dataset == "digits_28" and back.net == cnn_zoo.net

  data = gen.dataset_for(cnn_zoo)
  train_rows = train.train_eval_indices(len(data.y_train), TINY.train_eval_examples)
  for m in range(back.num_models):
    for e in range(back.num_checkpoints):
      test_pred = np.asarray(back.forward(back.weights[m, e], data.x_test, m)).argmax(1)
      assert back.properties["test_acc"][m, e] == pytest.approx((test_pred == data.y_test).mean(), abs=1e-6)
      train_pred = np.asarray(back.forward(back.weights[m, e], data.x_train[train_rows], m)).argmax(1)
      assert back.properties["train_acc"][m, e] == pytest.approx(
          (train_pred == data.y_train[train_rows]).mean(), abs=1e-6)
  assert back.properties["test_acc"][:, -1].mean() > back.properties["test_acc"][:, 0].mean() + 0.15  # learned


def _write_folder(folder, rows_per_model, layout, dataset="svhn_cropped", nan_model=None, gz=False):
  """A folder in the original format, written by hand: Keras-order rows, metrics rows per checkpoint."""
  os.makedirs(folder)
  rng = np.random.default_rng(0)
  n = layout.num_params
  weights, lines = [], []
  header = ["", "config.activation", "config.dataset", "config.learning_rate", "config.random_seed",
            "config.w_init", "config.num_units", "modeldir", "step", "test_accuracy", "test_loss",
            "train_accuracy", "train_loss"]
  for m, steps in enumerate(rows_per_model):
    for step in steps:
      row = rng.normal(size=n).astype(np.float32)
      if m == nan_model:
        row[5] = np.nan
      weights.append(row)
      d = f"/gcs/zoo/{m}"
      lines.append([f"{d}/permanent_ckpt-{step}", "relu", dataset, "0.01", "42", "he_normal", "16", d, str(step),
                    "0.5", "1.2", "0.6", "1.1"])
  np.save(os.path.join(folder, "weights.npy"), np.stack(weights))
  opener, name = (gzip.open, "metrics.csv.gz") if gz else (open, "metrics.csv")
  with opener(os.path.join(folder, name), "wt", newline="") as f:
    csv.writer(f).writerows([header] + lines)
  with open(os.path.join(folder, "layout.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(unterthiner.LAYOUT_HEADER)
    for varname, s, e, shape in unterthiner.keras_variables(layout):
      w.writerow([varname, s, e, e - s, str(tuple(shape))])
  return np.stack(weights)


def test_import_of_the_original_format_groups_sorts_and_filters(tmp_path):
  net32 = nets.NetSpec((32, 32, 1), 10, convs=nets.UNTERTHINER_CNN.convs, global_pool=True)
  folder = str(tmp_path / "svhn")
  rows = _write_folder(folder, [(0, 1, 86), (86, 0, 1), (0, 1), (0, 1, 86)], net32.layout(), nan_model=3, gz=True)
  z = unterthiner.import_zoo(folder)
  assert z.dataset == "svhn" and z.net == net32  # TFDS name mapped, 32x32 inputs
  assert z.num_models == 3 and z.meta["dropped_models"] == ["/gcs/zoo/2"]
  np.testing.assert_array_equal(z.epochs, [0, 1, 86])
  # Model 1's rows were written in step order 86, 0, 1: sorted by step on import.
  np.testing.assert_array_equal(z.weights[1, 0], unterthiner.from_keras(rows[4], net32.layout()))
  np.testing.assert_array_equal(z.weights[1, 2], unterthiner.from_keras(rows[3], net32.layout()))
  assert z.diverged.tolist() == [False, False, True]
  assert z.hparams["seed"].tolist() == [42, 42, 42] and z.hparams["lr"].dtype == np.float32
  assert z.hparams["init"].tolist() == ["he_normal"] * 3
  assert z.meta["config"] == {"dataset": ["svhn_cropped"], "num_units": ["16"]}
  np.testing.assert_allclose(z.properties["ggap"], 0.1, atol=1e-6)
  with pytest.raises(ZooFormatError, match="lack checkpoints"):
    unterthiner.import_zoo(folder, incomplete="error")


def test_bad_folders_give_clear_errors(tmp_path, cnn_zoo):
  layout = nets.UNTERTHINER_CNN.layout()
  folder = str(tmp_path / "z")
  _write_folder(folder, [(0, 1), (0, 1)], layout, dataset="mnist")
  wider = nets.NetSpec((28, 28, 1), 10, convs=(nets.ConvBlock(16, 5, 2),) + nets.UNTERTHINER_CNN.convs[1:],
                       global_pool=True)
  with pytest.raises(ZooFormatError, match=r"row 2: .* expected a kernel at 16:416 with shape \(5, 5, 1, 16\)"):
    unterthiner.import_zoo(folder, net=wider)
  with pytest.raises(ZooFormatError, match="lists 8 variables; the network has 10"):
    unterthiner.import_zoo(folder, net=nets.PAPER_CNN)
  np.save(os.path.join(folder, "weights.npy"), np.zeros((3, 4970), np.float32))
  with pytest.raises(ZooFormatError, match="has 3 rows but .* has 4"):
    unterthiner.import_zoo(folder)
  np.save(os.path.join(folder, "weights.npy"), np.zeros((4, 4000), np.float32))
  with pytest.raises(ZooFormatError, match=r"expected \(rows, 4970\)"):
    unterthiner.import_zoo(folder)
  os.remove(os.path.join(folder, "layout.csv"))
  with pytest.raises(ZooFormatError, match="layout.csv is missing"):
    unterthiner.import_zoo(folder)

  other = str(tmp_path / "z2")
  _write_folder(other, [(0, 1)], layout, dataset="mnist")
  path = os.path.join(other, "metrics.csv")
  text = open(path).read().replace("0.5,1.2", "high,1.2", 1)
  open(path, "w").write(text)
  with pytest.raises(ZooFormatError, match="column test_accuracy has a non-numeric value"):
    unterthiner.import_zoo(other)
  open(path, "w").write(text.replace("test_accuracy", "test_acc"))
  with pytest.raises(ZooFormatError, match=r"missing columns \['test_accuracy'\]"):
    unterthiner.import_zoo(other)
  with pytest.raises(FileExistsError):
    unterthiner.export_zoo(cnn_zoo, other)
