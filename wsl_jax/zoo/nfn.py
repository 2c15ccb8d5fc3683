"""The NFN / NFT split files for Unterthiner et al.'s zoos (the Kendall tau protocol of NFN, Neural Graphs,
ScaleGMN), reproduced exactly.

A split file (`cifar10_split.csv`, ...) is one column of row indices into the zoo's `weights.npy`. Its
first line, `0`, is the header pandas wrote for a column named 0; NFN reads the file with
`header=None`, so that line is data and row 0 appears twice (true of all four published files).
`read_split_csv` keeps it, as NFN does.

NFN's protocol (`zoo_formats.md`): take the rows in the file's order (`weights[idcs]`, duplicates
included), keep those with `step == 86` (the final checkpoint), the last half (from `int(0.5 n)`) is
test, and the first half, shuffled by `random.Random(0)`, is split at `int(0.8 len)` into train and val.
`split_rows` returns those row indices in NFN's order; `model_split` maps them to the models of a
`Zoo` read by `unterthiner.import_zoo` (rows of dropped models are left out and counted).
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np

from wsl_jax.zoo import unterthiner
from wsl_jax.zoo.core import Zoo
from wsl_jax.zoo.io import ZooFormatError

FINAL_STEP = 86


def read_split_csv(path: str) -> np.ndarray:
  """int64 (R,): every line of an NFN split file as a row index, the first line (pandas' header "0")
  included, as NFN's `pd.read_csv(path, header=None)` reads it."""
  try:
    with open(path) as f:
      lines = [line.strip() for line in f]
  except OSError as e:
    raise ZooFormatError(f"{path}: cannot read the split file ({e})") from e
  values = []
  for number, line in enumerate(lines, 1):
    if not line:
      continue
    try:
      values.append(int(float(line.split(",")[0])))
    except ValueError as e:
      raise ZooFormatError(f"{path} line {number}: {line!r} is not a row index") from e
  if not values:
    raise ZooFormatError(f"{path} is empty")
  return np.asarray(values, np.int64)


def split_rows(indices: np.ndarray, steps: np.ndarray, final_step: int = FINAL_STEP) -> dict[str, np.ndarray]:
  """NFN's train / val / test row indices (into weights.npy), in NFN's order, duplicates kept.

  Args:
    indices: the split file's row indices (`read_split_csv`).
    steps: (R,) the step of every weights.npy row.
  """
  indices = np.asarray(indices, np.int64)
  steps = np.asarray(steps)
  if indices.size and (indices.min() < 0 or indices.max() >= len(steps)):
    raise ZooFormatError(f"split rows range over {indices.min()}..{indices.max()}, the zoo has {len(steps)} rows")
  final = indices[steps[indices] == final_step]
  test_point = int(0.5 * len(final))
  trainval = list(range(test_point))
  val_point = int(0.8 * len(trainval))
  random.Random(0).shuffle(trainval)
  return {"train": final[np.asarray(trainval[:val_point], np.int64)],
          "val": final[np.asarray(trainval[val_point:], np.int64)],
          "test": final[test_point:]}


def metrics_rows(folder: str) -> tuple[list[str], np.ndarray]:
  """(modeldir, step) of every row of an Unterthiner zoo's metrics.csv(.gz)."""
  path = next((os.path.join(folder, f) for f in ("metrics.csv", "metrics.csv.gz")
               if os.path.exists(os.path.join(folder, f))), None)
  if path is None:
    raise ZooFormatError(f"{folder} has no metrics.csv or metrics.csv.gz")
  header, rows = unterthiner._read_csv(path)
  if "modeldir" not in header or "step" not in header:
    raise ZooFormatError(f"{path}: needs modeldir and step columns")
  m, s = header.index("modeldir"), header.index("step")
  try:
    steps = np.asarray([int(float(r[s])) for r in rows], np.int64)
  except (ValueError, IndexError) as e:
    raise ZooFormatError(f"{path}: a step is not a number ({e})") from e
  return [r[m] for r in rows], steps


def model_split(zoo: Zoo, folder: str, split_file: str, final_step: int = FINAL_STEP) -> dict[str, Any]:
  """NFN's split of an imported Unterthiner zoo as model indices (duplicates kept, NFN's order).

  Models are numbered as `unterthiner.import_zoo` numbers them: `modeldir`s in order of first appearance,
  without `zoo.meta["dropped_models"]`. Returns {"train", "val", "test": [model, ...],
  "unmapped_rows": rows of dropped models}.
  """
  modeldirs, steps = metrics_rows(folder)
  dropped = set(zoo.meta.get("dropped_models", []))
  order: dict[str, int] = {}
  for d in modeldirs:
    if d not in order and d not in dropped:
      order[d] = len(order)
  if len(order) != zoo.num_models:
    raise ZooFormatError(f"{folder}: metrics.csv lists {len(order)} kept models, the zoo has {zoo.num_models}: "
                         "is this the folder the zoo was imported from?")
  rows = split_rows(read_split_csv(split_file), steps, final_step)
  out: dict[str, Any] = {}
  unmapped = 0
  for name, r in rows.items():
    models = [order[modeldirs[i]] for i in r if modeldirs[i] in order]
    unmapped += len(r) - len(models)
    out[name] = models
  out["unmapped_rows"] = unmapped
  return out


def load_unterthiner(folder: str, split_file: str | None = None, **kwargs: Any) -> Zoo:
  """`unterthiner.import_zoo(folder, **kwargs)`, with NFN's split in `zoo.meta["split"]` when a split file is
  given (`meta["split_file"]`, `meta["split_unmapped_rows"]`)."""
  zoo = unterthiner.import_zoo(folder, **kwargs)
  if split_file is None:
    return zoo
  split = model_split(zoo, folder, split_file)
  zoo.meta.update({"split": {k: split[k] for k in ("train", "val", "test")},
                   "split_file": os.path.abspath(split_file), "split_unmapped_rows": split["unmapped_rows"],
                   "split_protocol": "nfn"})
  return zoo
