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
import warnings
from typing import Any

import numpy as np

from wsl_jax import outputs
from wsl_jax.weights import nets
from wsl_jax.outputs import atomic_write, atomic_write_text  # noqa: F401  (the writer; re-exported)
from wsl_jax.weights.layout import Layout
from wsl_jax.zoo.core import Zoo

FORMAT_VERSION = 1
META_FILE = "zoo.json"
ARRAY_FILES = ("weights.npy", "properties.npz", "hparams.npz", "diverged.npy")
WRITER = "wsl_jax"
# What wsl_jax writes into a zoo folder (hidden `.name.*.tmp` files are its interrupted atomic writes);
# a folder holding anything else is not replaced or deleted.
ZOO_ENTRIES = (META_FILE,) + ARRAY_FILES + (".*.tmp",)


def sha256_file(path: str, chunk: int = 1 << 24) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      h.update(block)
  return h.hexdigest()


def _npz_save(path: str, arrays: dict[str, np.ndarray]) -> None:
  with open(path, "wb") as f:
    np.savez(f, **arrays)


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
      "writer": WRITER,
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


def is_project_zoo(folder: str) -> bool:
  """Whether `folder` holds a zoo written by wsl_jax: its zoo.json is a JSON object that says so
  (`writer`), or, for zoos written before that field, has this format's version, files and layout."""
  path = os.path.join(folder, META_FILE)
  if not os.path.isfile(path):
    return False
  try:
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return False
  if not isinstance(meta, dict):
    return False
  return meta.get("writer") == WRITER or (meta.get("format_version") == 1 and isinstance(meta.get("files"), dict)
                                          and isinstance(meta.get("layout"), dict) and "net" in meta)


def replace_problem(folder: str, entries: tuple[str, ...] = ZOO_ENTRIES, is_ours=is_project_zoo) -> str | None:
  """Why wsl_jax may not replace `folder` (None: it may): it must be a folder wsl_jax wrote (`is_ours`)
  holding only what wsl_jax writes there (`entries`, names or glob patterns)."""
  if os.path.islink(folder) or not os.path.isdir(folder):
    return f"{folder} is not a folder"
  if not is_ours(folder):
    return f"{folder} is not a zoo written by wsl_jax (no zoo.json of ours)"
  foreign = outputs.foreign_entries(folder, entries)
  if foreign:
    return (f"{folder} holds files wsl_jax did not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''})")
  return None


def check_output(folder: str, overwrite: bool, what: str = "--out", entries: tuple[str, ...] = ZOO_ENTRIES,
                 is_ours=is_project_zoo) -> str:
  """Resolve output folder `folder` (`outputs.resolve_output`) and check it may be written: it does not
  exist, or `overwrite` is set and it is a folder wsl_jax wrote with nothing else in it.

  Raises:
    outputs.UnsafeOutputError: an unsafe path, or `overwrite` of a folder wsl_jax did not write.
    FileExistsError: it exists and `overwrite` is not set.
  """
  resolved = outputs.resolve_output(folder, what)
  if not os.path.lexists(resolved):
    return resolved
  problem = replace_problem(resolved, entries, is_ours)
  if not overwrite:
    hint = ("; pass overwrite=True (CLI: --overwrite) to replace it" if problem is None
            else f" and is not replaceable ({problem}); choose another {what}")
    raise FileExistsError(f"{resolved} exists{hint}")
  if problem is not None:
    raise outputs.UnsafeOutputError(f"refusing to replace {resolved}: {problem}; choose another {what}")
  return resolved


def save(zoo: Zoo, folder: str, overwrite: bool = False) -> str:
  """Write `zoo` to `folder` atomically. An existing folder is replaced only with `overwrite`, and only
  when it is a zoo written by wsl_jax holding nothing else (`check_output`)."""
  folder = check_output(folder, overwrite)
  parent = os.path.dirname(folder)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(folder)}.writing-")
  try:
    outputs.apply_umask(tmp, directory=True)
    with outputs.disk_full_is_resumable(tmp, "free space and save again"):
      files = write_arrays(tmp, zoo)
      atomic_write_text(os.path.join(tmp, META_FILE), json.dumps(zoo_meta(zoo, files), indent=1))
    finalize_folder(tmp, folder, overwrite=overwrite)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return folder


def finalize_folder(tmp: str, folder: str, overwrite: bool = False, entries: tuple[str, ...] = ZOO_ENTRIES,
                    is_ours=is_project_zoo) -> None:
  """Move the finished folder `tmp` to `folder` with atomic renames.

  Without `overwrite`, a `folder` that exists (even one that appeared while `tmp` was written) is never
  replaced: `FileExistsError`, and both stay. With `overwrite`, an existing `folder` must pass
  `replace_problem` (checked again here, since it may have changed); it is renamed aside, `tmp` takes
  its place, and then it is deleted.
  """
  old = None
  if overwrite and os.path.lexists(folder):
    problem = replace_problem(folder, entries, is_ours)
    if problem is not None:
      raise outputs.UnsafeOutputError(f"refusing to replace {folder}: {problem}")
    old = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=f".{os.path.basename(folder)}.old-")
    os.rmdir(old)
    outputs.rename_noreplace(folder, old)
  try:
    outputs.rename_noreplace(tmp, folder)
  except FileExistsError as e:
    kept = f"; the replaced folder was moved to {old}" if old else ""
    raise FileExistsError(f"{folder} appeared while the new one was written; nothing was replaced (the new "
                          f"one is at {tmp}{kept})") from e
  if old is not None:
    outputs.remove_own_folder(old, entries)


class ZooFormatError(ValueError):
  """A zoo folder is missing, truncated, damaged, or does not match its zoo.json.

  The message is one line and starts with the path of the offending file (or folder)."""


# zoo.json keys `load` needs ("meta" and "written" are optional).
REQUIRED_KEYS = ("format_version", "dataset", "net", "layout", "epochs", "num_models", "properties", "hparams",
                 "files")
_FILE_RECORD_KEYS = ("sha256", "bytes", "arrays")
_NET_FIELDS = ("input_shape", "num_classes", "convs", "hidden", "global_pool", "bias")
_CONV_FIELDS = ("out_channels", "kernel", "stride", "pool")
_NONFINITE_CHUNK = 1 << 24  # floats per block of the finiteness scan (64 MB)


def _one_line(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return text or type(e).__name__


def _short(value: Any, limit: int = 60) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _json_kind(value: Any) -> str:
  for types, name in ((dict, "an object"), (list, "an array"), (str, "a string"), (bool, "a boolean"),
                      ((int, float), "a number"), (type(None), "null")):
    if isinstance(value, types):
      return name
  return type(value).__name__


def _is_int(value: Any, minimum: int = 0) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_names(path: str, key: str, names: Any) -> None:
  if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
    raise ZooFormatError(f"{path}: '{key}' must be a list of names, got {_short(names)}")
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ZooFormatError(f"{path}: '{key}' lists {twice} more than once")


def _check_record(path: str, name: str, record: Any) -> None:
  """One entry of zoo.json's `files`: {"sha256": hex, "bytes": int, "arrays": {name: [shape, dtype]}}."""
  where = f"{path}: files[{name!r}]"
  if not isinstance(record, dict):
    raise ZooFormatError(f"{where} is {_json_kind(record)}, not an object")
  missing = [k for k in _FILE_RECORD_KEYS if k not in record]
  if missing:
    raise ZooFormatError(f"{where} lacks {missing}")
  sha = record["sha256"]
  if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
    raise ZooFormatError(f"{where}['sha256'] is not a SHA-256 hex digest: {_short(sha)}")
  if not _is_int(record["bytes"]):
    raise ZooFormatError(f"{where}['bytes'] is not a non-negative integer: {_short(record['bytes'])}")
  arrays = record["arrays"]
  if not isinstance(arrays, dict):
    raise ZooFormatError(f"{where}['arrays'] is {_json_kind(arrays)}, not an object")
  for key, entry in arrays.items():
    ok = (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list)
          and all(_is_int(d) for d in entry[0]) and isinstance(entry[1], str))
    if ok:
      try:
        np.dtype(entry[1])
      except TypeError:
        ok = False
    if not ok:
      raise ZooFormatError(f"{where}['arrays'][{key!r}] is not [shape, dtype]: {_short(entry)}")


def _check_meta(path: str, meta: Any) -> None:
  """Raise ZooFormatError unless `meta` (zoo.json's contents) has every key `load` needs, of the right type."""
  if not isinstance(meta, dict):
    raise ZooFormatError(f"{path} holds {_json_kind(meta)}, not a JSON object")
  version = meta.get("format_version")
  if "format_version" in meta and (version != FORMAT_VERSION or isinstance(version, bool)):
    raise ZooFormatError(f"{path}: format_version {_short(version)} is not supported "
                         f"(this code reads {FORMAT_VERSION})")
  missing = [k for k in REQUIRED_KEYS if k not in meta]
  if missing:
    raise ZooFormatError(f"{path} lacks the keys {missing}")
  if not isinstance(meta["dataset"], str):
    raise ZooFormatError(f"{path}: 'dataset' must be a string, got {_short(meta['dataset'])}")
  for key in ("net", "layout"):
    if not isinstance(meta[key], dict):
      raise ZooFormatError(f"{path}: '{key}' is {_json_kind(meta[key])}, not an object")
  epochs = meta["epochs"]
  if not isinstance(epochs, list) or not all(_is_int(e) and e < 2 ** 31 for e in epochs):
    raise ZooFormatError(f"{path}: 'epochs' must be a list of non-negative integers, got {_short(epochs)}")
  if not _is_int(meta["num_models"]):
    raise ZooFormatError(f"{path}: 'num_models' must be a non-negative integer, got {_short(meta['num_models'])}")
  for key in ("properties", "hparams"):
    _check_names(path, key, meta[key])
  if not isinstance(meta.get("meta", {}), dict):
    raise ZooFormatError(f"{path}: 'meta' is {_json_kind(meta['meta'])}, not an object")
  files = meta["files"]
  if not isinstance(files, dict):
    raise ZooFormatError(f"{path}: 'files' is {_json_kind(files)}, not an object")
  for name in ARRAY_FILES:
    if name not in files:
      raise ZooFormatError(f"{path}: 'files' does not list {name}")
    _check_record(path, name, files[name])
  for name, key in (("weights.npy", "weights"), ("diverged.npy", "diverged")):
    if set(files[name]["arrays"]) != {key}:
      raise ZooFormatError(f"{path}: files[{name!r}]['arrays'] lists {sorted(files[name]['arrays'])}, "
                           f"expected ['{key}']")
  for name, key in (("properties.npz", "properties"), ("hparams.npz", "hparams")):
    if set(files[name]["arrays"]) != set(meta[key]):
      raise ZooFormatError(f"{path}: '{key}' lists {sorted(meta[key])} but files[{name!r}]['arrays'] lists "
                           f"{sorted(files[name]['arrays'])}")


def _parse_net(path: str, d: dict[str, Any]) -> nets.NetSpec:
  """zoo.json's `net`, type-checked field by field (NetSpec itself would truncate 5.5 to 5)."""
  where = f"{path}: 'net'"
  unknown = sorted(set(d) - set(_NET_FIELDS))
  if unknown:
    raise ZooFormatError(f"{where} has unknown fields {unknown}")
  missing = [k for k in ("input_shape", "num_classes") if k not in d]
  if missing:
    raise ZooFormatError(f"{where} lacks {missing}")
  for key in ("input_shape", "hidden"):
    value = d.get(key, [])
    if not isinstance(value, list) or not all(_is_int(v, 1) for v in value):
      raise ZooFormatError(f"{where}['{key}'] must be a list of positive integers, got {_short(value)}")
  if not _is_int(d["num_classes"], 1):
    raise ZooFormatError(f"{where}['num_classes'] must be a positive integer, got {_short(d['num_classes'])}")
  for key in ("global_pool", "bias"):
    if key in d and not isinstance(d[key], bool):
      raise ZooFormatError(f"{where}['{key}'] must be true or false, got {_short(d[key])}")
  convs = d.get("convs", [])
  if not isinstance(convs, list):
    raise ZooFormatError(f"{where}['convs'] must be a list, got {_short(convs)}")
  for i, c in enumerate(convs):
    if not isinstance(c, dict) or not set(c) <= set(_CONV_FIELDS) or not {"out_channels", "kernel"} <= set(c):
      raise ZooFormatError(f"{where}['convs'][{i}] must be an object with out_channels, kernel and optional "
                           f"stride, pool; got {_short(c)}")
    bad = [k for k, v in c.items() if not _is_int(v, 1)]
    if bad:
      raise ZooFormatError(f"{where}['convs'][{i}]: {bad} must be positive integers, got {_short(c)}")
  try:
    net = nets.NetSpec.from_dict(d)
    net.layout()
  except (ValueError, TypeError, KeyError) as e:
    raise ZooFormatError(f"{where} is not a valid architecture: {_one_line(e)}") from e
  return net


def _parse_layout(path: str, d: dict[str, Any], net: nets.NetSpec) -> Layout:
  try:
    layout = Layout.from_dict(d)
  except (ValueError, TypeError, KeyError) as e:
    raise ZooFormatError(f"{path}: 'layout' is not valid: {_one_line(e)}") from e
  expected = net.layout()
  if layout != expected:
    if layout.num_layers != expected.num_layers:
      detail = f"{layout.num_layers} layers, 'net' has {expected.num_layers}"
    else:
      i = next(i for i, (a, b) in enumerate(zip(layout.layers, expected.layers)) if a != b)
      detail = f"layer {i} is {layout.layers[i].to_dict()}, 'net' gives {expected.layers[i].to_dict()}"
    raise ZooFormatError(f"{path}: 'layout' does not match 'net' ({detail})")
  return layout


def _check_file(folder: str, name: str, record: dict[str, Any], verify: bool) -> str:
  path = os.path.join(folder, name)
  if not os.path.lexists(path):
    raise ZooFormatError(f"{path} is missing (zoo.json lists it)")
  if os.path.isdir(path):
    raise ZooFormatError(f"{path} is a directory, not a file")
  if not os.path.isfile(path):
    raise ZooFormatError(f"{path} is not a regular file (a broken link or a special file)")
  size = os.path.getsize(path)
  if size != record["bytes"]:
    raise ZooFormatError(f"{path} has {size} bytes, zoo.json says {record['bytes']}: the file is truncated "
                         "or was changed after the zoo was written")
  if verify:
    try:
      digest = sha256_file(path)
    except OSError as e:
      raise ZooFormatError(f"{path} cannot be read: {_one_line(e)}") from e
    if digest != record["sha256"]:
      raise ZooFormatError(f"{path} does not match its SHA-256 in zoo.json: the file is corrupt or was "
                           "changed after the zoo was written")
  return path


def read_meta(folder: str) -> dict[str, Any]:
  """The contents of `folder`/zoo.json, checked: a JSON object with every key `load` needs, of the right
  types (`files` records included). Raises `ZooFormatError` (one line, naming the file) otherwise."""
  folder = os.fspath(folder)
  path = os.path.join(folder, META_FILE)
  if not os.path.exists(folder):
    raise ZooFormatError(f"no zoo at {folder}: the folder does not exist")
  if not os.path.isdir(folder):
    raise ZooFormatError(f"{folder} is not a zoo: it is a file, not a folder")
  if not os.path.lexists(path):
    raise ZooFormatError(f"{folder} is not a zoo: it has no {META_FILE} (an unfinished or killed write "
                         "leaves no zoo.json)")
  if os.path.isdir(path):
    raise ZooFormatError(f"{path} is a directory, not a file")
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise ZooFormatError(f"{path} cannot be read: {_one_line(e)}") from e
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ZooFormatError(f"{path} is not UTF-8 text (invalid byte at offset {e.start})") from e
  try:
    meta = json.loads(text)
  except json.JSONDecodeError as e:
    raise ZooFormatError(f"{path} is not valid JSON: {_one_line(e)}") from e
  except RecursionError as e:
    raise ZooFormatError(f"{path} is not valid JSON: nested too deeply") from e
  _check_meta(path, meta)
  return meta


def _read_npy(path: str, mmap: bool) -> np.ndarray:
  try:
    array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
  except Exception as e:  # numpy raises ValueError, OSError, EOFError, ... for a damaged file
    raise ZooFormatError(f"{path} is not a readable .npy file: {_one_line(e)}") from e
  if not isinstance(array, np.ndarray):
    array.close()
    raise ZooFormatError(f"{path} is not a .npy array file (it is an .npz archive)")
  return array


def _read_npz(path: str) -> dict[str, np.ndarray]:
  try:
    f = open(path, "rb")
  except OSError as e:
    raise ZooFormatError(f"{path} is not a readable .npz file: {_one_line(e)}") from e
  with f:  # ours to close: np.load(path) leaves its file open when the archive turns out damaged
    try:
      archive = np.load(f, allow_pickle=False)
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, ...
      raise ZooFormatError(f"{path} is not a readable .npz file: {_one_line(e)}") from e
    if isinstance(archive, np.ndarray):
      raise ZooFormatError(f"{path} is a .npy array, not an .npz archive")
    try:
      with archive:
        return {k: archive[k] for k in archive.files}
    except Exception as e:  # a damaged member: bad CRC-32, zlib.error, a bad .npy header, ...
      raise ZooFormatError(f"{path} is not a readable .npz file: {_one_line(e)}") from e


def _check_arrays(path: str, arrays: dict[str, np.ndarray], listed: dict[str, Any], names_key: str,
                  shape: tuple[int, ...], what: str, kinds: str) -> None:
  """The arrays of one file against zoo.json: names, the expected shape, allowed dtype kinds, records."""
  if set(arrays) != set(listed):
    raise ZooFormatError(f"{path} holds {sorted(arrays)}, zoo.json '{names_key}' lists {sorted(listed)}")
  for k in sorted(arrays):
    v = arrays[k]
    if v.shape != shape:
      raise ZooFormatError(f"{path}: {k!r} has shape {v.shape}, expected {shape} ({what})")
    if v.dtype.kind not in kinds:
      allowed = "numeric or string" if "U" in kinds else "bool" if kinds == "b" else "numeric"
      raise ZooFormatError(f"{path}: {k!r} has dtype {v.dtype}, not a {allowed} array")
    rec_shape, rec_dtype = listed[k]
    if list(v.shape) != rec_shape or v.dtype != np.dtype(rec_dtype):
      raise ZooFormatError(f"{path}: {k!r} has shape {list(v.shape)} and dtype {v.dtype}, zoo.json's "
                           f"files record says {rec_shape} {rec_dtype}")


def _nonfinite_models(weights: np.ndarray) -> np.ndarray:
  """bool (M,): models with a NaN or inf anywhere, read in blocks of `_NONFINITE_CHUNK` floats (a
  memory-mapped file is never read into memory at once)."""
  m = weights.shape[0]
  flat = weights.reshape(m, -1)
  cols = flat.shape[1]
  bad = np.zeros(m, bool)
  if m == 0 or cols == 0:
    return bad
  rows = max(1, _NONFINITE_CHUNK // cols)
  step = min(cols, _NONFINITE_CHUNK)
  for r in range(0, m, rows):
    for c in range(0, cols, step):
      bad[r:r + rows] |= ~np.isfinite(flat[r:r + rows, c:c + step]).all(axis=1)
  return bad


def load(folder: str, verify: bool = True, mmap: bool = False) -> Zoo:
  """Load the zoo in `folder`.

  Args:
    folder: a folder written by `save` / `generate`.
    verify: check every file's SHA-256 against zoo.json, and scan the weights for NaN / inf (both read
      every byte; `verify=False` skips both and still checks sizes, shapes, dtypes and names).
    mmap: memory-map weights.npy read-only instead of reading it (the finiteness scan then reads it in
      64 MB blocks).

  Returns:
    The `Zoo`. A model whose weights hold NaN or inf but which diverged.npy does not flag (found only
    with `verify=True`) is flagged as diverged in the returned zoo (the files are not changed), with a
    `UserWarning` naming weights.npy and the model indices; loading does not fail for it.

  Raises:
    ZooFormatError: (a ValueError) for any damaged or inconsistent folder: a missing, truncated or
      corrupt file, a directory where a file should be, zoo.json that is not UTF-8 JSON or lacks keys,
      an architecture or layout that does not parse or disagree, arrays whose shapes, dtypes or names
      disagree with zoo.json. One line, starting with the offending file's path.
  """
  folder = os.fspath(folder)
  meta = read_meta(folder)
  meta_path = os.path.join(folder, META_FILE)
  net = _parse_net(meta_path, meta["net"])
  layout = _parse_layout(meta_path, meta["layout"], net)
  files = meta["files"]
  paths = {name: _check_file(folder, name, files[name], verify) for name in ARRAY_FILES}
  m, e, n = meta["num_models"], len(meta["epochs"]), layout.num_params

  path = paths["weights.npy"]
  weights = _read_npy(path, mmap)
  if weights.ndim != 3 or weights.dtype != np.float32:
    raise ZooFormatError(f"{path} holds a {weights.dtype} array of shape {weights.shape}; zoo weights are "
                         "float32 (models, checkpoints, parameters)")
  if weights.shape[0] != m:
    raise ZooFormatError(f"{path} holds {weights.shape[0]} models, zoo.json says num_models={m}")
  if weights.shape[1] != e:
    raise ZooFormatError(f"{path} holds {weights.shape[1]} checkpoints per model, zoo.json lists {e} epochs")
  if weights.shape[2] != n:
    raise ZooFormatError(f"{path} holds {weights.shape[2]} parameters per network, the layout in zoo.json "
                         f"has {n}")
  _check_arrays(path, {"weights": weights}, files["weights.npy"]["arrays"], "files", (m, e, n),
                "models, checkpoints, parameters", "f")

  properties = _read_npz(paths["properties.npz"])
  _check_arrays(paths["properties.npz"], properties, {k: files["properties.npz"]["arrays"][k]
                                                      for k in meta["properties"]},
                "properties", (m, e), "models, checkpoints", "biuf")
  hparams = _read_npz(paths["hparams.npz"])
  _check_arrays(paths["hparams.npz"], hparams, {k: files["hparams.npz"]["arrays"][k] for k in meta["hparams"]},
                "hparams", (m,), "one value per model", "biufU")
  path = paths["diverged.npy"]
  diverged = _read_npy(path, False)
  _check_arrays(path, {"diverged": diverged}, files["diverged.npy"]["arrays"], "files", (m,),
                "one flag per model", "b")
  diverged = diverged.astype(bool)

  if verify:
    bad = _nonfinite_models(weights)
    unflagged = np.flatnonzero(bad & ~diverged)
    if unflagged.size:
      shown = unflagged[:20].tolist()
      warnings.warn(f"{paths['weights.npy']}: models {shown}{' ...' if unflagged.size > 20 else ''} "
                    f"({unflagged.size} in all) hold NaN or inf weights but {paths['diverged.npy']} does not "
                    "flag them; the loaded zoo flags them as diverged", UserWarning, stacklevel=2)
      diverged = diverged | bad
  try:
    return Zoo(weights=weights, epochs=np.asarray(meta["epochs"], np.int32), properties=properties,
               hparams=hparams, net=net, dataset=meta["dataset"], diverged=diverged,
               meta=meta.get("meta", {}))
  except ValueError as err:
    raise ZooFormatError(f"{meta_path}: inconsistent zoo: {_one_line(err)}") from err
