"""Zoo storage: a folder readable with NumPy and json alone, written atomically.

Layout of a zoo folder:

  zoo.json          metadata: format version, data set, architecture (`net`), `layout`, `epochs`,
                    property and hparam names, generation settings, and for every array file its
                    shape, dtype and SHA-256
  weights.npy       float32 (M, E, N)   model x checkpoint x flat parameters (Layout order)
  properties.npz    (M, E) arrays: test_acc, train_acc, test_loss, train_loss, ggap, epoch, f1_class_<k>
  hparams.npz       (M,) arrays: seed and every hyper-parameter (strings as NumPy unicode arrays)
  diverged.npy      bool (M,)

Reading without wsl_jax:

  meta = json.load(open("zoo.json")); w = np.load("weights.npy", mmap_mode="r")
  props = dict(np.load("properties.npz")); hp = dict(np.load("hparams.npz"))

A zoo is written into a temporary sibling folder and renamed into place as the last step, so a killed
write never leaves a folder that loads as a zoo; `load` checks every file's shape, dtype and checksum and
names the file that does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np

from wsl_jax import nets
from wsl_jax.layout import Layout
from wsl_jax.zoo.core import Zoo

FORMAT_VERSION = 1
META_FILE = "zoo.json"
ARRAY_FILES = ("weights.npy", "properties.npz", "hparams.npz", "diverged.npy")


def sha256_file(path: str, chunk: int = 1 << 24) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      h.update(block)
  return h.hexdigest()


def _npz_save(path: str, arrays: dict[str, np.ndarray]) -> None:
  with open(path, "wb") as f:
    np.savez(f, **arrays)


def atomic_write(path: str | os.PathLike, write: Any, binary: bool = False) -> str:
  """Write via `write(file)` into a temporary file beside `path`, then rename it over `path` (a reader
  never sees a half-written file). Creates the folder; returns the path."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
  """Write `text` to `path` atomically (see `atomic_write`)."""
  return atomic_write(path, lambda f: f.write(text))


def _file_record(path: str, shapes: dict[str, Any]) -> dict[str, Any]:
  return {"sha256": sha256_file(path), "bytes": os.path.getsize(path), "arrays": shapes}


def write_arrays(folder: str, zoo: Zoo, weights_written: bool = False) -> dict[str, Any]:
  """Write the array files of `zoo` into `folder`; returns their records for zoo.json.

  `weights_written`: weights.npy is already in `folder` (a generation's memory-mapped file).
  """
  records = {}
  path = os.path.join(folder, "weights.npy")
  if not weights_written:
    np.save(path, np.ascontiguousarray(zoo.weights, np.float32))
  records["weights.npy"] = _file_record(path, {"weights": [list(zoo.weights.shape), "float32"]})
  for name, arrays in (("properties.npz", zoo.properties), ("hparams.npz", zoo.hparams)):
    path = os.path.join(folder, name)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _npz_save(path, arrays)
    records[name] = _file_record(path, {k: [list(v.shape), v.dtype.str] for k, v in arrays.items()})
  path = os.path.join(folder, "diverged.npy")
  np.save(path, np.asarray(zoo.diverged, bool))
  records["diverged.npy"] = _file_record(path, {"diverged": [[zoo.num_models], "|b1"]})
  return records


def zoo_meta(zoo: Zoo, files: dict[str, Any]) -> dict[str, Any]:
  return {
      "format_version": FORMAT_VERSION,
      "dataset": zoo.dataset,
      "net": zoo.net.to_dict(),
      "layout": zoo.layout.to_dict(),
      "epochs": [int(e) for e in zoo.epochs],
      "num_models": zoo.num_models,
      "properties": sorted(zoo.properties),
      "hparams": sorted(zoo.hparams),
      "meta": zoo.meta,
      "files": files,
      "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }


def save(zoo: Zoo, folder: str, overwrite: bool = False) -> str:
  """Write `zoo` to `folder` atomically. An existing zoo there is replaced only with `overwrite`."""
  folder = os.path.abspath(folder)
  if os.path.exists(folder) and not overwrite:
    raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
  parent = os.path.dirname(folder)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(folder)}.writing-")
  try:
    files = write_arrays(tmp, zoo)
    atomic_write_text(os.path.join(tmp, META_FILE), json.dumps(zoo_meta(zoo, files), indent=1))
    finalize_folder(tmp, folder)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return folder


def finalize_folder(tmp: str, folder: str) -> None:
  """Move the finished folder `tmp` to `folder`, replacing an existing one (renames only)."""
  if os.path.exists(folder):
    old = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=f".{os.path.basename(folder)}.old-")
    os.rmdir(old)
    os.rename(folder, old)
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.rename(tmp, folder)


class ZooFormatError(ValueError):
  """A zoo folder is missing, truncated, or does not match its zoo.json."""


def _check_file(folder: str, name: str, record: dict[str, Any], verify: bool) -> str:
  path = os.path.join(folder, name)
  if not os.path.exists(path):
    raise ZooFormatError(f"{path} is missing (zoo.json lists it)")
  size = os.path.getsize(path)
  if size != record["bytes"]:
    raise ZooFormatError(f"{path} has {size} bytes, zoo.json says {record['bytes']}: the file is truncated "
                         "or was changed after the zoo was written")
  if verify and sha256_file(path) != record["sha256"]:
    raise ZooFormatError(f"{path} does not match its SHA-256 in zoo.json: the file is corrupt or was "
                         "changed after the zoo was written")
  return path


def read_meta(folder: str) -> dict[str, Any]:
  path = os.path.join(folder, META_FILE)
  if not os.path.isdir(folder):
    raise ZooFormatError(f"no zoo at {folder}: the folder does not exist")
  if not os.path.exists(path):
    raise ZooFormatError(f"{folder} is not a zoo: it has no {META_FILE} (an unfinished or killed write "
                         "leaves no zoo.json)")
  try:
    with open(path) as f:
      meta = json.load(f)
  except json.JSONDecodeError as e:
    raise ZooFormatError(f"{path} is not valid JSON: {e}") from e
  if meta.get("format_version") != FORMAT_VERSION:
    raise ZooFormatError(f"{path}: format_version {meta.get('format_version')} is not supported "
                         f"(this code reads {FORMAT_VERSION})")
  return meta


def load(folder: str, verify: bool = True, mmap: bool = False) -> Zoo:
  """Load the zoo in `folder`; `verify` checks SHA-256 checksums, `mmap` memory-maps the weights."""
  meta = read_meta(folder)
  files = meta["files"]
  for name in ARRAY_FILES:
    if name not in files:
      raise ZooFormatError(f"{folder}/{META_FILE} does not list {name}")
    _check_file(folder, name, files[name], verify)
  net = nets.NetSpec.from_dict(meta["net"])
  layout = Layout.from_dict(meta["layout"])
  if layout != net.layout():
    raise ZooFormatError(f"{folder}: the stored layout does not match the stored architecture")
  try:
    weights = np.load(os.path.join(folder, "weights.npy"), mmap_mode="r" if mmap else None)
    with np.load(os.path.join(folder, "properties.npz")) as f:
      properties = {k: f[k] for k in f.files}
    with np.load(os.path.join(folder, "hparams.npz")) as f:
      hparams = {k: f[k] for k in f.files}
    diverged = np.load(os.path.join(folder, "diverged.npy"))
  except (ValueError, OSError, EOFError) as e:
    raise ZooFormatError(f"{folder}: an array file cannot be read: {e}") from e
  expected = files["weights.npy"]["arrays"]["weights"][0]
  if list(weights.shape) != expected or weights.dtype != np.float32:
    raise ZooFormatError(f"{folder}/weights.npy has shape {weights.shape} and dtype {weights.dtype}, "
                         f"zoo.json says {expected} float32")
  for name, arrays in (("properties.npz", properties), ("hparams.npz", hparams)):
    listed = files[name]["arrays"]
    if set(listed) != set(arrays):
      raise ZooFormatError(f"{folder}/{name} holds {sorted(arrays)}, zoo.json lists {sorted(listed)}")
  try:
    return Zoo(weights=weights, epochs=np.asarray(meta["epochs"], np.int32), properties=properties,
               hparams=hparams, net=net, dataset=meta["dataset"], diverged=diverged.astype(bool),
               meta=meta.get("meta", {}))
  except ValueError as e:
    raise ZooFormatError(f"{folder}: inconsistent zoo: {e}") from e
