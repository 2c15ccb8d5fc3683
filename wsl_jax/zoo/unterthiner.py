"""Import and export of the zoo format of Unterthiner et al., "Predicting Neural Network Accuracy from
Weights" (their "Small CNN Zoo"; `reference.md` §1.4).

A folder in that format holds

  weights.npy   float32 (R, N): one row per checkpoint (model x step), each a network's parameters in
                Keras order: per layer its bias (if any), then its kernel; conv kernels HWIO
                (kh, kw, in, out), dense kernels (in, out), where the input of a dense layer after a
                flattened conv is in Keras' NHWC-flatten order (h, w, c)
  metrics.csv   one row per weights row: an unnamed index column ("<modeldir>/permanent_ckpt-<step>"),
                `config.*` columns (activation, w_init, optimizer, learning_rate, l2reg, dropout,
                train_fraction, init_std, random_seed, ...), modeldir, step, test_accuracy, test_loss,
                train_accuracy, train_loss (the reader accepts metrics.csv.gz too)
  layout.csv    varname, start_idx, end_idx, size, shape of every variable of a row, e.g.
                "sequential/conv2d/bias:0,0,16,16,(16,)" and "sequential/conv2d/kernel:0,16,160,144,(3, 3, 1, 16)"

`export_zoo(zoo, folder)` writes a `Zoo` in this format and `import_zoo(folder)` reads one back into the
canonical `Layout` order (conv OIHW, dense (out, in), weights before bias): both are pure index
permutations of every row, so export -> import is bit-identical (§9 B3, B4: the reference code only moved
the biases; here the kernels are transposed too, which `tests/test_unterthiner.py` proves by running the
imported networks on their data).

Column mapping (zoo hparam / property <-> metrics.csv column):

  activation <-> config.activation      init <-> config.w_init         optimizer <-> config.optimizer
  lr <-> config.learning_rate           l2 <-> config.l2reg            dropout <-> config.dropout
  train_fraction <-> config.train_fraction   init_std <-> config.init_std   seed <-> config.random_seed
  any other hparam X <-> config.X       test_acc <-> test_accuracy     train_acc <-> train_accuracy
  test_loss, train_loss <-> same names  epoch <-> step                 other properties: own columns

Import groups rows by `modeldir` (in order of first appearance) and sorts each model's rows by step.
Models whose steps differ from the most common set of steps (crashed runs) are dropped (and listed in
`zoo.meta["dropped_models"]`), or raise with `incomplete="error"`. Models with non-finite weights or
metrics are flagged `diverged`. The config columns that describe the whole collection (b_init, dataset,
dnn_architecture, epochs, epochs_between_checkpoints, num_layers, num_units) go to `zoo.meta["config"]`.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import tempfile
from collections import Counter
from typing import Any

import numpy as np

from wsl_jax import outputs
from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layout
from wsl_jax.zoo import io as zoo_io
from wsl_jax.zoo.core import Zoo
from wsl_jax.zoo.io import ZooFormatError
from wsl_jax.zoo.train import CONTINUOUS_HPARAMS

HPARAM_COLUMNS = {"activation": "config.activation", "init": "config.w_init", "optimizer": "config.optimizer",
                  "lr": "config.learning_rate", "l2": "config.l2reg", "dropout": "config.dropout",
                  "train_fraction": "config.train_fraction", "init_std": "config.init_std",
                  "seed": "config.random_seed"}
PROPERTY_COLUMNS = {"test_acc": "test_accuracy", "test_loss": "test_loss", "train_acc": "train_accuracy",
                    "train_loss": "train_loss"}
COLLECTION_CONFIG = ("b_init", "dataset", "dnn_architecture", "epochs", "epochs_between_checkpoints",
                     "num_layers", "num_units")
NOT_PROPERTIES = {"modeldir", "step", "laststep", ""}
DATASET_NAMES = {"svhn_cropped": "svhn"}  # their TFDS names -> ours
LAYOUT_HEADER = ("varname", "start_idx", "end_idx", "size", "shape")


# ---- weight order -----------------------------------------------------------------------------------

def keras_variables(layout: Layout) -> list[tuple[str, int, int, tuple[int, ...]]]:
  """(varname, start, end, Keras shape) of every variable of a Keras-order row, in order."""
  rows, start = [], 0
  counts = Counter()
  for layer in layout.layers:
    kind = "conv2d" if layer.kind == "conv" else "dense"
    scope = kind if counts[kind] == 0 else f"{kind}_{counts[kind]}"
    counts[kind] += 1
    if layer.kind == "conv":
      kernel_shape = (*layer.kernel_size, layer.in_units, layer.out_units)
    else:
      kernel_shape = (layer.in_units, layer.out_units)
    variables = ([("bias", (layer.out_units,))] if layer.bias else []) + [("kernel", kernel_shape)]
    for name, shape in variables:
      size = int(np.prod(shape))
      rows.append((f"sequential/{scope}/{name}:0", start, start + size, shape))
      start += size
  return rows


def keras_index(layout: Layout) -> np.ndarray:
  """int (N,): `keras_row = canonical_row[keras_index(layout)]`.

  Per layer: bias, then the kernel; conv OIHW -> HWIO; dense (out, in) -> (in, out), where a dense layer
  after a flattened conv (in_block = h * w > 1) also reorders its inputs from channel-major (c, h, w) to
  Keras' (h, w, c).
  """
  parts = []
  for l, layer in enumerate(layout.layers):
    b = layout.bias_slice(l)
    if b is not None:
      parts.append(np.arange(b.start, b.stop))
    w = layout.weight_slice(l)
    idx = np.arange(w.start, w.stop).reshape(layer.weight_shape)
    if layer.kind == "conv":
      idx = idx.transpose(2, 3, 1, 0)  # (O, I, H, W) -> (H, W, I, O)
    else:
      channels = layer.in_units // layer.in_block
      idx = idx.reshape(layer.out_units, channels, layer.in_block).transpose(2, 1, 0)  # -> (hw, c, out)
    parts.append(idx.reshape(-1))
  return np.concatenate(parts).astype(np.int64)


def to_keras(w: np.ndarray, layout: Layout) -> np.ndarray:
  """Canonical `(..., N)` -> Keras order (a permutation of the last axis)."""
  layout.check_vector(w)
  return np.asarray(w)[..., keras_index(layout)]


def from_keras(w: np.ndarray, layout: Layout) -> np.ndarray:
  """Keras order `(..., N)` -> canonical `Layout` order (inverse of `to_keras`)."""
  layout.check_vector(w)
  return np.asarray(w)[..., np.argsort(keras_index(layout))]


# ---- export -----------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
  """A CSV cell that reads back to the same value: floats as the shortest exact repr of their float32."""
  if isinstance(value, (np.floating, float)):
    return repr(float(np.float32(value)))
  if isinstance(value, (np.integer, int, np.bool_, bool)):
    return str(int(value))
  return str(value)


# An export also writes this marker, so that `overwrite` replaces only folders wsl_jax exported (a
# downloaded Unterthiner et al. data set holds the same three files and must never be replaced).
EXPORT_MARKER = "wsl_jax_export.json"
EXPORT_ENTRIES = ("weights.npy", "metrics.csv", "layout.csv", EXPORT_MARKER, ".*.tmp")


def _is_our_export(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, EXPORT_MARKER))


def export_zoo(zoo: Zoo, folder: str, overwrite: bool = False) -> str:
  """Write `zoo` in Unterthiner et al.'s format (weights.npy, metrics.csv, layout.csv), atomically.

  Rows are model-major: row `m * E + e` is model m at checkpoint e. `overwrite` replaces only a folder
  that an earlier export wrote (it holds `wsl_jax_export.json`) with nothing else in it.
  """
  folder = zoo_io.check_output(folder, overwrite, entries=EXPORT_ENTRIES, is_ours=_is_our_export)
  layout = zoo.layout
  m, e, n = zoo.weights.shape
  parent = os.path.dirname(folder)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(folder)}.writing-")
  try:
    index = keras_index(layout)
    rows = np.lib.format.open_memmap(os.path.join(tmp, "weights.npy"), mode="w+", dtype=np.float32,
                                     shape=(m * e, n))
    for i in range(m):  # one model at a time: bounded memory for large zoos
      rows[i * e:(i + 1) * e] = np.asarray(zoo.weights[i], np.float32)[:, index]
    rows.flush()
    del rows
    _write_layout_csv(os.path.join(tmp, "layout.csv"), layout)
    _write_metrics_csv(os.path.join(tmp, "metrics.csv"), zoo)
    zoo_io.atomic_write_text(os.path.join(tmp, EXPORT_MARKER), json.dumps(
        {"writer": zoo_io.WRITER, "format": "unterthiner", "models": m, "checkpoints": e}))
    outputs.apply_umask(tmp, directory=True)
    zoo_io.finalize_folder(tmp, folder, overwrite=overwrite, entries=EXPORT_ENTRIES, is_ours=_is_our_export)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return folder


def _write_layout_csv(path: str, layout: Layout) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(LAYOUT_HEADER)
    for name, start, end, shape in keras_variables(layout):
      writer.writerow([name, start, end, end - start, str(tuple(shape))])


def _write_metrics_csv(path: str, zoo: Zoo) -> None:
  hp_columns = {k: HPARAM_COLUMNS.get(k, f"config.{k}") for k in sorted(zoo.hparams)}
  preset = zoo.meta.get("preset_config", {})
  collection = {"config.dataset": zoo.dataset, "config.dnn_architecture": "cnn" if zoo.net.is_cnn else "fcn",
                "config.epochs": int(zoo.epochs.max()),
                "config.b_init": "zeros" if preset.get("bias_value", 0.01) == 0 else
                f"constant({preset.get('bias_value', 0.01)})"}
  extra_props = sorted(set(zoo.properties) - set(PROPERTY_COLUMNS) - {"epoch", "ggap"})
  config_cols = sorted(set(hp_columns.values()) | set(collection))
  header = [""] + config_cols + ["modeldir", "step"] + [PROPERTY_COLUMNS[k] for k in
                                                          ("test_acc", "test_loss", "train_acc", "train_loss")]
  header += extra_props
  column_of = {v: k for k, v in hp_columns.items()}
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for i in range(zoo.num_models):
      modeldir = f"model_{i:06d}"
      config = [_cell(zoo.hparams[column_of[c]][i]) if c in column_of else _cell(collection[c])
                for c in config_cols]
      for j, step in enumerate(zoo.epochs):
        metrics = [_cell(zoo.properties[k][i, j]) for k in ("test_acc", "test_loss", "train_acc", "train_loss")]
        writer.writerow([f"{modeldir}/permanent_ckpt-{int(step)}"] + config + [modeldir, int(step)] + metrics
                        + [_cell(zoo.properties[k][i, j]) for k in extra_props])


# ---- import -----------------------------------------------------------------------------------------

def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rt", newline="") as f:
      rows = list(csv.reader(f))
  except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
    raise ZooFormatError(f"{path}: not a readable CSV file ({e})") from e
  if not rows:
    raise ZooFormatError(f"{path} is empty")
  return rows[0], rows[1:]


def _parse_shape(text: str, path: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in text.strip().strip("()[]").split(",") if v.strip())
  except ValueError as e:
    raise ZooFormatError(f"{path}: shape {text!r} is not a tuple of integers") from e


def check_layout_csv(path: str, layout: Layout) -> None:
  """Raise ZooFormatError unless layout.csv describes `layout` in Keras order (bias, kernel per layer)."""
  header, rows = _read_csv(path)
  missing = [c for c in LAYOUT_HEADER if c not in header]
  if missing:
    raise ZooFormatError(f"{path}: missing columns {missing} (has {header})")
  col = {c: header.index(c) for c in LAYOUT_HEADER}
  expected = keras_variables(layout)
  if len(rows) != len(expected):
    raise ZooFormatError(f"{path} lists {len(rows)} variables; the network has {len(expected)} "
                         f"({', '.join(v[0] for v in expected)})")
  for k, (row, (name, start, end, shape)) in enumerate(zip(rows, expected)):
    got_name = row[col["varname"]]
    kind = name.rsplit("/", 1)[-1]
    try:
      got = (int(row[col["start_idx"]]), int(row[col["end_idx"]]), _parse_shape(row[col["shape"]], path))
    except ValueError as e:
      raise ZooFormatError(f"{path} row {k + 1}: start_idx / end_idx are not integers: {row}") from e
    if not got_name.endswith("/" + kind) or got != (start, end, tuple(shape)):
      raise ZooFormatError(f"{path} row {k + 1}: {got_name} at {got[0]}:{got[1]} with shape {got[2]}; "
                           f"expected a {kind.split(':')[0]} at {start}:{end} with shape {tuple(shape)} "
                           "(is this the right architecture?)")


def _column_values(name: str, values: list[str]) -> np.ndarray:
  """Typed (M,) array of one hparam column: our continuous hparams float32, seeds int64, else inferred."""
  if name in CONTINUOUS_HPARAMS:
    return np.asarray(values, np.float64).astype(np.float32)
  if name == "seed":
    return np.asarray(values, np.float64).astype(np.int64)
  for dtype in (np.int64, np.float64):
    try:
      return np.asarray([dtype(v) for v in values], dtype)
    except ValueError:
      continue
  return np.asarray(values, dtype=str)


def import_zoo(folder: str, net: nets.NetSpec | None = None, dataset: str | None = None,
               incomplete: str = "drop") -> Zoo:
  """Read a zoo in Unterthiner et al.'s format into canonical order.

  Args:
    folder: holds weights.npy, metrics.csv (or metrics.csv.gz) and layout.csv.
    net: the architecture (default: Unterthiner et al.'s CNN for 28x28 inputs, 32x32 for cifar10/svhn).
    dataset: data set name (default: from config.dataset).
    incomplete: "drop" models that lack some checkpoints, or "error".

  Returns:
    The `Zoo` (weights (M, E, N) in memory).
  """
  if incomplete not in ("drop", "error"):
    raise ValueError(f"incomplete must be 'drop' or 'error', got {incomplete!r}")
  paths = {"weights": os.path.join(folder, "weights.npy"), "layout": os.path.join(folder, "layout.csv"),
           "metrics": next((os.path.join(folder, f) for f in ("metrics.csv", "metrics.csv.gz")
                            if os.path.exists(os.path.join(folder, f))), os.path.join(folder, "metrics.csv"))}
  for key, path in paths.items():
    if not os.path.exists(path):
      raise ZooFormatError(f"{path} is missing: a zoo in Unterthiner et al.'s format has weights.npy, "
                           "metrics.csv (or metrics.csv.gz) and layout.csv")
  header, rows = _read_csv(paths["metrics"])
  needed = ["modeldir", "step"] + list(PROPERTY_COLUMNS.values())
  missing = [c for c in needed if c not in header]
  if missing:
    raise ZooFormatError(f"{paths['metrics']}: missing columns {missing}")
  col = {c: i for i, c in enumerate(header)}
  for k, row in enumerate(rows):
    if len(row) != len(header):
      raise ZooFormatError(f"{paths['metrics']} row {k + 2} has {len(row)} cells, the header {len(header)}")

  config = {c[len("config."):]: c for c in header if c.startswith("config.")}
  if dataset is None:
    if "config.dataset" not in col or not rows:
      raise ZooFormatError(f"{paths['metrics']} has no config.dataset column; pass dataset=")
    dataset = DATASET_NAMES.get(rows[0][col["config.dataset"]], rows[0][col["config.dataset"]])
  if net is None:
    size = 32 if dataset in ("cifar10", "svhn") else 28
    net = nets.UNTERTHINER_CNN if size == 28 else nets.NetSpec(
        (size, size, 1), 10, convs=nets.UNTERTHINER_CNN.convs, global_pool=True)
  layout = net.layout()
  check_layout_csv(paths["layout"], layout)
  try:
    weights = np.load(paths["weights"], mmap_mode="r")
  except (OSError, ValueError, EOFError) as e:
    raise ZooFormatError(f"{paths['weights']}: not a readable .npy file ({e})") from e
  if weights.ndim != 2 or weights.shape[1] != layout.num_params:
    raise ZooFormatError(f"{paths['weights']} has shape {weights.shape}; expected (rows, {layout.num_params})")
  if weights.shape[0] != len(rows):
    raise ZooFormatError(f"{paths['weights']} has {weights.shape[0]} rows but {paths['metrics']} has "
                         f"{len(rows)}: they must correspond row by row")

  # Group rows by model, order checkpoints by step.
  try:
    steps = np.asarray([int(float(r[col["step"]])) for r in rows], np.int64)
  except ValueError as e:
    raise ZooFormatError(f"{paths['metrics']}: a step is not a number ({e})") from e
  groups: dict[str, list[int]] = {}
  for k, r in enumerate(rows):
    groups.setdefault(r[col["modeldir"]], []).append(k)
  groups = {d: sorted(ks, key=lambda k: steps[k]) for d, ks in groups.items()}
  step_sets = {d: tuple(steps[ks]) for d, ks in groups.items()}
  common = Counter(step_sets.values()).most_common(1)[0][0]
  dropped = [d for d, s in step_sets.items() if s != common]
  if dropped and incomplete == "error":
    raise ZooFormatError(f"{len(dropped)} models lack checkpoints of steps {list(common)} (e.g. {dropped[0]})")
  if len(set(common)) != len(common):
    raise ZooFormatError(f"{paths['metrics']}: a model has two rows for one step ({list(common)})")
  kept = [d for d in groups if d not in set(dropped)]
  if not kept:
    raise ZooFormatError(f"{folder}: no model has a complete set of checkpoints")
  order = np.asarray([groups[d] for d in kept], np.int64)  # (M, E) row indices

  inverse = np.argsort(keras_index(layout))
  zoo_weights = np.empty((len(kept), len(common), layout.num_params), np.float32)
  for i, ks in enumerate(order):
    zoo_weights[i] = np.asarray(weights[ks], np.float32)[:, inverse]

  def column(name: str, dtype=np.float32) -> np.ndarray:
    try:
      return np.asarray([[float(rows[k][col[name]]) for k in ks] for ks in order], np.float64).astype(dtype)
    except ValueError as e:
      raise ZooFormatError(f"{paths['metrics']}: column {name} has a non-numeric value ({e})") from e

  properties = {k: column(c) for k, c in PROPERTY_COLUMNS.items()}
  properties["ggap"] = (properties["train_acc"] - properties["test_acc"]).astype(np.float32)
  properties["epoch"] = np.broadcast_to(np.asarray(common, np.int32), order.shape).copy()
  for c in header:
    if c in NOT_PROPERTIES or c.startswith("config.") or c in PROPERTY_COLUMNS.values():
      continue
    try:
      properties[c] = column(c)
    except ZooFormatError:
      continue  # a text column: not a property

  reverse = {v: k for k, v in HPARAM_COLUMNS.items()}
  hparams, collection = {}, {}
  for short, c in config.items():
    per_model = [rows[ks[0]][col[c]] for ks in order]
    for ks, value in zip(order, per_model):
      if any(rows[k][col[c]] != value for k in ks):
        raise ZooFormatError(f"{paths['metrics']}: {c} changes between the checkpoints of model "
                             f"{rows[ks[0]][col['modeldir']]}")
    if short in COLLECTION_CONFIG:
      collection[short] = sorted(set(per_model))
      continue
    name = reverse.get(c, short)
    try:
      hparams[name] = _column_values(name, per_model)
    except ValueError as e:
      raise ZooFormatError(f"{paths['metrics']}: column {c} has a non-numeric value ({e})") from e
  if "activation" not in hparams:
    raise ZooFormatError(f"{paths['metrics']}: no config.activation column (needed to run the networks)")
  unknown = set(hparams["activation"].tolist()) - set(nets.ACTIVATIONS)
  if unknown:
    raise ZooFormatError(f"{paths['metrics']}: activations {sorted(unknown)} are not supported "
                         f"(known: {sorted(nets.ACTIVATIONS)})")

  finite_w = np.isfinite(zoo_weights).all(axis=(1, 2))
  finite_m = np.all([np.isfinite(properties[k]).all(axis=1) for k in PROPERTY_COLUMNS], axis=0)
  meta = {"source": "unterthiner", "folder": os.path.abspath(folder), "dropped_models": dropped,
          "config": collection}
  return Zoo(weights=zoo_weights, epochs=np.asarray(common, np.int32), properties=properties, hparams=hparams,
             net=net, dataset=dataset, diverged=~(finite_w & finite_m), meta=json.loads(json.dumps(meta)))
