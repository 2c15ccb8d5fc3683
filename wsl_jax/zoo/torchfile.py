"""Read and write PyTorch's checkpoint files without PyTorch, safely.

A torch file is a pickle, and unpickling runs whatever callables the file names. `load(path)` never
imports torch and never calls anything the file names except an allow-list of pure rebuilders:

  torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_tensor_v3 / _rebuild_parameter(_with_state),
  torch._tensor._rebuild_from_type_v2 (plain Tensor / Parameter only)   -> numpy arrays
  torch.<X>Storage, torch.cuda.<X>Storage, torch.UntypedStorage          -> storage dtypes
  torch.<dtype> (float32, int64, ...), torch.Size, torch.device          -> numpy dtypes, tuples, strings
  collections.OrderedDict, builtins.set / frozenset / complex, _codecs.encode (latin-1 only)
  pathlib.(Pure)(Posix|Windows)Path                                      -> str
  numpy scalars, dtypes and arrays (numpy.core.multiarray.scalar / _reconstruct, numpy.dtype)
  the HSG dataset classes (`HSG_DATASET_MODULES`: `checkpoints_to_datasets.dataset_*` and
  `.random_erasing`, with or without a package prefix)              -> `Record` (class name + attributes)

Every other global (`os.system`, `builtins.eval`, `subprocess.*`, `torch.load`, a dotted name such as
`collections.OrderedDict.fromkeys`, ...) raises `TorchFileError` naming it, before it is called: nothing
the file names runs. The rebuilders and stand-ins are created per lookup or per load (immutable callable
wrappers, fresh classes and markers), so a crafted pickle's BUILD opcodes cannot change anything that
outlives the load.

Formats (`zoo_formats.md`, "torch's file format"):
* zip (torch >= 1.6): `<name>/data.pkl` plus one raw record `<name>/data/<key>` per storage, byte order in
  `<name>/byteorder` (little-endian when absent). Persistent ids `("storage", storage_type, key, location,
  numel)`.
* legacy (torch < 1.6): magic number, protocol version and sys_info pickles, the object pickle (persistent
  ids `("storage", storage_type, key, location, numel, view_metadata)`), the list of storage keys, then per
  storage an int64 element count and its raw bytes. Read by unpickling twice: once to learn the storages'
  dtypes, then again with the storages read.
* tar files (torch < 0.4) are refused.

Tensors come back as NumPy arrays (copies: views of one storage do not share memory). A tensor whose
size / stride / offset would read outside its storage raises. bfloat16 needs `ml_dtypes` (installed with
JAX). Quantized, sparse, meta and subclassed tensors are refused, and so is a stride-0 view holding more
than `MAX_EXPANSION` times its storage's elements (it would be copied out). Pickles of protocol 0 / 1
objects (`copyreg._reconstructor`) are refused: torch writes protocol 2.

`save_state_dict(path, tensors)` writes an `OrderedDict` of NumPy arrays as a zip torch file that
`torch.load(path, weights_only=True)` reads (the pickle is written opcode by opcode: no torch needed).

Example:
  >>> import numpy as np
  >>> from wsl_jax.zoo import torchfile
  >>> _ = torchfile.save_state_dict("checkpoints", {"module_list.0.weight": np.ones((2, 3), np.float32)})
  >>> sd = torchfile.load("checkpoints")          # OrderedDict name -> np.ndarray, no torch needed
  >>> sd["module_list.0.weight"].shape
  (2, 3)
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import io
import math
import os
import pickle
import re
import struct
import tarfile
import zipfile
from typing import Any

import numpy as np


class TorchFileError(ValueError):
  """A torch file is malformed, uses an unsupported feature, or names a global outside the allow-list."""


# Storage classes and torch dtypes -> NumPy dtypes (little-endian; the byte order is applied on read).
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bfloat16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?", "ComplexFloatStorage": "c8", "ComplexDoubleStorage": "c16", "UntypedStorage": "u1",
}
TORCH_DTYPES = {
    "float32": "f4", "float": "f4", "float64": "f8", "double": "f8", "float16": "f2", "half": "f2",
    "bfloat16": "bfloat16", "int64": "i8", "long": "i8", "int32": "i4", "int": "i4", "int16": "i2",
    "short": "i2", "int8": "i1", "uint8": "u1", "bool": "?", "complex64": "c8", "cfloat": "c8",
    "complex128": "c16", "cdouble": "c16",
}
HSG_DATASET_MODULES = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?checkpoints_to_datasets\.(?:dataset_\w+|random_erasing)$")
_PATH_CLASSES = {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path", "PurePath"}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
MAX_EXPANSION = 64  # a tensor may hold at most this many times its storage's elements (stride-0 views)
_TENSOR_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                      "_rebuild_parameter_with_state")


def numpy_dtype(name: str, byteorder: str = "little") -> np.dtype:
  """The NumPy dtype of a storage / torch dtype code ("f4", "bfloat16", ...) in the file's byte order."""
  if name == "bfloat16":
    try:
      import ml_dtypes  # a JAX dependency
    except ImportError as e:  # pragma: no cover - ml_dtypes comes with jax
      raise TorchFileError("bfloat16 tensors need the ml_dtypes package") from e
    if byteorder != "little":
      raise TorchFileError("big-endian bfloat16 tensors are not supported")
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(("<" if byteorder == "little" else ">") + name)


@dataclasses.dataclass(frozen=True)
class StorageType:
  """A storage class or torch dtype named by the file (e.g. `torch.FloatStorage`)."""

  name: str
  code: str  # key of STORAGE_DTYPES / TORCH_DTYPES values

  def __setstate__(self, state):  # a BUILD on it would otherwise write to its __dict__
    raise TorchFileError(f"the file tries to modify {self.name}")


class Record:
  """A pickled object of an allowed class, kept as data: `cls` ("module.Class"), `attrs`, `args`.

  Never runs the class's code; the attributes are what the pickle stored (`__dict__`, or the state it
  passed to `__setstate__`).
  """

  _cls = "Record"

  def __new__(cls, *args: Any) -> Record:  # NEWOBJ calls __new__ only, REDUCE calls the class
    self = super().__new__(cls)
    self.args = args
    self.attrs = {}
    return self

  @property
  def cls(self) -> str:
    return type(self)._cls

  def __setstate__(self, state: Any) -> None:
    if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
      state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, __slots__ state)
    if isinstance(state, dict):
      self.attrs.update({str(k): v for k, v in state.items()})
    else:
      self.attrs["__state__"] = state

  def __getitem__(self, name: str) -> Any:
    return self.attrs[name]

  def get(self, name: str, default: Any = None) -> Any:
    return self.attrs.get(name, default)

  def __repr__(self) -> str:
    return f"Record({self.cls}, attrs={sorted(self.attrs)})"


def _record_class(module: str, name: str) -> type:
  """A fresh stand-in class for `module.name` (fresh per load: nothing outlives it)."""
  if not name.isidentifier():
    raise TorchFileError(f"refusing global {module}.{name}: not a class name")
  return type(name, (Record,), {"_cls": f"{module}.{name}", "__module__": __name__})


@dataclasses.dataclass
class _Storage:
  """One storage's elements (a flat NumPy array); `data` is None during a legacy file's first pass, which
  learns every storage's dtype before the bytes that follow the pickle are read."""

  key: str
  dtype_code: str
  data: np.ndarray | None


class _Rebuilder:
  """The allow-list for one load: `find(module, name)` returns a safe object or raises."""

  def __init__(self, path: str, storage: Any):
    self.path = path
    self.storage = storage  # callable(pid tuple) -> _Storage
    self.records: dict[tuple[str, str], type] = {}

  # -- globals ------------------------------------------------------------------------------------
  def find(self, module: str, name: str) -> Any:
    found = self._lookup(module, name)
    return _Safe(found, f"{module}.{name}") if inspect.ismethod(found) or inspect.isfunction(found) else found

  def _lookup(self, module: str, name: str) -> Any:
    if module in ("torch", "torch.storage", "torch.cuda") and name in STORAGE_DTYPES:
      return StorageType(f"{module}.{name}", STORAGE_DTYPES[name])
    if module == "torch" and name in TORCH_DTYPES:
      return StorageType(f"torch.{name}", TORCH_DTYPES[name])
    if module == "torch._utils" and name in _TENSOR_REBUILDERS:
      return getattr(self, name)
    if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
      return self._rebuild_from_type_v2
    if (module, name) in (("torch", "Tensor"), ("torch.nn.parameter", "Parameter"), ("torch", "Size")):
      return self._marker(f"{module}.{name}") if name != "Size" else self._size
    if (module, name) == ("torch", "device"):
      return self._device
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "complex"):
      return {"set": set, "frozenset": frozenset, "complex": complex}[name]
    if (module, name) == ("_codecs", "encode"):
      return self._encode
    if module in ("pathlib", "pathlib._local") and name in _PATH_CLASSES:
      return self._path
    if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
      numpy_global = {"dtype": self._np_dtype, "scalar": self._np_scalar, "_reconstruct": self._np_reconstruct,
                      "ndarray": _Marker("numpy.ndarray")}.get(name)
      if numpy_global is not None:
        return numpy_global
    if HSG_DATASET_MODULES.match(module):
      key = (module, name)
      if key not in self.records:
        self.records[key] = _record_class(module, name)
      return self.records[key]
    raise TorchFileError(f"{self.path}: refusing to load global {module}.{name}: it is not on the allow-list "
                         "of tensor rebuilders, state-dict containers and known zoo dataset classes "
                         "(a torch file that names it may be malicious; nothing was run)")

  # -- tensors ------------------------------------------------------------------------------------
  def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    return _as_strided(self.path, storage, offset, size, stride)

  def _rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                         backward_hooks: Any = None, metadata: Any = None) -> np.ndarray:
    return _as_strided(self.path, storage, offset, size, stride)

  def _rebuild_tensor_v3(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                         backward_hooks: Any, dtype: Any, metadata: Any = None) -> np.ndarray:
    if isinstance(storage, _Storage) and isinstance(dtype, StorageType) and storage.data is not None:
      storage = _Storage(storage.key, dtype.code, storage.data.view(numpy_dtype(dtype.code)))
    return _as_strided(self.path, storage, offset, size, stride)

  def _rebuild_parameter(self, data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    return data

  def _rebuild_parameter_with_state(self, data: Any, requires_grad: Any, backward_hooks: Any, state: Any) -> Any:
    return data

  def _rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if not isinstance(new_type, _Marker) or new_type.name not in ("torch.Tensor", "torch.nn.parameter.Parameter"):
      raise TorchFileError(f"{self.path}: tensor subclass {new_type!r} is not supported")
    if not (isinstance(func, _Safe) and getattr(func.fn, "__self__", None) is self
            and func.fn.__name__ in _TENSOR_REBUILDERS):
      raise TorchFileError(f"{self.path}: _rebuild_from_type_v2 with a function outside the allow-list")
    return func(*args)

  # -- small values -------------------------------------------------------------------------------
  def _marker(self, name: str) -> _Marker:
    return _Marker(name)

  @staticmethod
  def _size(*args: Any) -> tuple:
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)

  @staticmethod
  def _device(*args: Any) -> str:
    return ":".join(str(a) for a in args)

  def _encode(self, text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
      raise TorchFileError(f"{self.path}: _codecs.encode is allowed for latin-1 text only")
    return text.encode("latin1")

  @staticmethod
  def _path(*parts: Any) -> str:
    if not all(isinstance(p, str) for p in parts):
      raise TorchFileError("a pickled path has non-string parts")
    return os.path.join(*parts) if parts else ""

  def _np_dtype(self, name: Any, *args: Any) -> _NumpyDtype:
    if not isinstance(name, str) or not re.fullmatch(r"[<>|=]?[biufcU?]\d*", name):
      raise TorchFileError(f"{self.path}: numpy dtype {name!r} is not supported")
    return _NumpyDtype(np.dtype(name))

  def _np_scalar(self, dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, bytes):
      raise TorchFileError(f"{self.path}: unsupported numpy scalar")
    if len(data) != dtype.dtype.itemsize:
      raise TorchFileError(f"{self.path}: numpy scalar of {len(data)} bytes for {dtype.dtype}")
    return np.frombuffer(data, dtype.dtype)[0]

  def _np_reconstruct(self, cls: Any, shape: Any, dtype_code: Any) -> _NumpyArray:
    if not isinstance(cls, _Marker) or cls.name != "numpy.ndarray":
      raise TorchFileError(f"{self.path}: numpy _reconstruct of {cls!r} is not supported")
    return _NumpyArray()


class _Safe:
  """A callable handed to the unpickler: fresh per lookup and immutable, so a BUILD opcode aimed at it
  can neither change it nor reach the function behind it."""

  __slots__ = ("fn", "name")

  def __init__(self, fn: Any, name: str):
    object.__setattr__(self, "fn", fn)
    object.__setattr__(self, "name", name)

  def __call__(self, *args: Any) -> Any:
    return self.fn(*args)

  def __setattr__(self, key: str, value: Any) -> None:
    raise TorchFileError(f"the file tries to modify {self.name}")

  def __setstate__(self, state: Any) -> None:
    raise TorchFileError(f"the file tries to modify {self.name}")

  def __repr__(self) -> str:
    return self.name


class _Marker:
  """A class the file names only as a tag (torch.Tensor, numpy.ndarray)."""

  def __init__(self, name: str):
    self.name = name

  def __setstate__(self, state):
    raise TorchFileError(f"the file tries to modify {self.name}")

  def __repr__(self) -> str:
    return self.name


@dataclasses.dataclass
class _NumpyDtype:
  dtype: np.dtype

  def __setstate__(self, state):  # numpy pickles pass (version, byteorder, ...); the name already fixed it
    if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
      self.dtype = self.dtype.newbyteorder(state[1]) if state[1] in "<>" else self.dtype


class _NumpyArray:
  """numpy's pickled ndarray: `_reconstruct` then BUILD with (version, shape, dtype, fortran, data)."""

  def __init__(self):
    self.array: np.ndarray | None = None

  def __setstate__(self, state: Any) -> None:
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _NumpyDtype)):
      raise TorchFileError("unsupported numpy array state")
    _, shape, dtype, fortran, data = state
    shape = tuple(int(s) for s in shape)
    if isinstance(data, (bytes, bytearray)):
      flat = np.frombuffer(bytes(data), dtype.dtype)
    else:
      raise TorchFileError("numpy object arrays are not supported")
    if any(s < 0 for s in shape) or flat.size != math.prod(shape):
      raise TorchFileError(f"numpy array of shape {shape} with {flat.size} elements")
    self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _as_strided(path: str, storage: Any, offset: Any, size: Any, stride: Any) -> np.ndarray:
  """The tensor `storage[offset + sum(i_k * stride_k)]` as a NumPy array, bounds-checked."""
  if not isinstance(storage, _Storage):
    raise TorchFileError(f"{path}: a tensor refers to {type(storage).__name__}, not a storage")
  ints = [offset, *tuple(size), *tuple(stride)]
  if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
    raise TorchFileError(f"{path}: tensor offset / size / stride must be non-negative integers "
                         f"(offset {offset!r}, size {size!r}, stride {stride!r})")
  size, stride = tuple(size), tuple(stride)
  if len(size) != len(stride):
    raise TorchFileError(f"{path}: tensor size {size} and stride {stride} differ in length")
  if storage.data is None:  # legacy first pass: the dtype is known, the bytes are not read yet
    return np.zeros(0, numpy_dtype(storage.dtype_code))
  data = storage.data
  if 0 in size:
    return np.zeros(size, data.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= data.size:
    raise TorchFileError(f"{path}: tensor (offset {offset}, size {size}, stride {stride}) reads element "
                         f"{last} of storage {storage.key}, which has {data.size} elements")
  if math.prod(size) > max(MAX_EXPANSION * data.size, 1 << 20):  # stride-0 views copied out: bounded memory
    raise TorchFileError(f"{path}: tensor of size {size} repeats the {data.size} elements of storage "
                         f"{storage.key} more than {MAX_EXPANSION} times")
  view = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                         strides=[s * data.itemsize for s in stride], writeable=False)
  return np.array(view, dtype=data.dtype.newbyteorder("="))


class _Unpickler(pickle.Unpickler):
  def __init__(self, file: Any, rebuilder: _Rebuilder):
    super().__init__(file)
    self._rebuilder = rebuilder

  def find_class(self, module: str, name: str) -> Any:
    return self._rebuilder.find(module, name)

  def persistent_load(self, pid: Any) -> Any:
    return self._rebuilder.storage(pid)


def _unpickle(data: bytes | io.BufferedIOBase, rebuilder: _Rebuilder) -> Any:
  stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
  try:
    obj = _Unpickler(stream, rebuilder).load()
  except TorchFileError:
    raise
  except Exception as e:  # a truncated or malformed pickle
    raise TorchFileError(f"{rebuilder.path}: cannot unpickle: {type(e).__name__}: {e}") from e
  return _unwrap(obj)


def _unwrap(obj: Any, active: set[int] | None = None) -> Any:
  """Replace numpy stand-ins by their arrays / dtypes, recursively through containers and records.

  `active` holds the containers being unwrapped: a cyclic reference is left as it is.
  """
  if isinstance(obj, _NumpyArray):
    return obj.array
  if isinstance(obj, _NumpyDtype):
    return obj.dtype
  if not isinstance(obj, (dict, list, tuple, Record)) or (active is not None and id(obj) in active):
    return obj
  active = set() if active is None else active
  active.add(id(obj))
  try:
    if isinstance(obj, Record):
      obj.attrs = {k: _unwrap(v, active) for k, v in obj.attrs.items()}
      return obj
    if isinstance(obj, dict):
      items = [(k, _unwrap(v, active)) for k, v in obj.items()]
      if isinstance(obj, collections.OrderedDict):
        new = collections.OrderedDict(items)
        new.__dict__.update(getattr(obj, "__dict__", {}))  # e.g. a state_dict's _metadata
        return new
      return dict(items)
    values = [_unwrap(v, active) for v in obj]
    return values if isinstance(obj, list) else tuple(values)
  finally:
    active.discard(id(obj))


# ---- zip format -----------------------------------------------------------------------------------

def _zip_prefix(path: str, names: list[str]) -> str:
  pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
  if len(pickles) != 1:
    raise TorchFileError(f"{path}: a torch zip file has exactly one <name>/data.pkl record, found {pickles}")
  return pickles[0][:-len("data.pkl")]


def _load_zip(path: str, archive: zipfile.ZipFile) -> Any:
  names = archive.namelist()
  prefix = _zip_prefix(path, names)
  byteorder = "little"
  if prefix + "byteorder" in names:
    byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
    if byteorder not in ("little", "big"):
      raise TorchFileError(f"{path}: unknown byteorder record {byteorder!r}")
  cache: dict[str, _Storage] = {}

  def storage(pid: Any) -> _Storage:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise TorchFileError(f"{path}: unsupported persistent id {pid!r:.200}")
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, StorageType) or not isinstance(key, str) or not isinstance(numel, int):
      raise TorchFileError(f"{path}: malformed storage reference {pid!r:.200}")
    if key not in cache:
      record = f"{prefix}data/{key}"
      if record not in names:
        raise TorchFileError(f"{path}: storage {key} has no record {record}")
      raw = archive.read(record)
      dtype = numpy_dtype(storage_type.code, byteorder)
      if len(raw) < numel * dtype.itemsize:
        raise TorchFileError(f"{path}: storage {key} holds {len(raw)} bytes, {numel} elements of {dtype} "
                             f"need {numel * dtype.itemsize}")
      cache[key] = _Storage(key, storage_type.code, np.frombuffer(raw, dtype, count=numel))
    return cache[key]

  return _unpickle(archive.read(prefix + "data.pkl"), _Rebuilder(path, storage))


# ---- legacy format ---------------------------------------------------------------------------------

def _load_legacy(path: str, f: io.BufferedIOBase) -> Any:
  header = _Rebuilder(path, lambda pid: _refuse_pid(path, pid))
  magic = _unpickle(f, header)
  if magic != _LEGACY_MAGIC:
    raise TorchFileError(f"{path}: not a torch file (neither a zip archive nor the legacy magic number)")
  if _unpickle(f, header) != _LEGACY_PROTOCOL:
    raise TorchFileError(f"{path}: unsupported legacy torch protocol version")
  sys_info = _unpickle(f, header)
  byteorder = "little" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else "big"
  start = f.tell()
  dtypes: dict[str, str] = {}
  views: dict[str, tuple[str, int, int]] = {}

  def learn(pid: Any) -> _Storage:
    key, code, view = _legacy_pid(path, pid)
    dtypes.setdefault(key, code)
    if view is not None:
      views[view[0]] = (key, view[1], view[2])
      return _Storage(view[0], code, None)
    return _Storage(key, code, None)

  _unpickle(f, _Rebuilder(path, learn))
  keys = _unpickle(f, header)
  if not isinstance(keys, list) or set(keys) != set(dtypes):
    raise TorchFileError(f"{path}: the legacy storage key list does not match the storages the file uses")
  data: dict[str, np.ndarray] = {}
  for key in keys:
    count = f.read(8)
    if len(count) != 8:
      raise TorchFileError(f"{path}: truncated before storage {key}")
    (numel,) = struct.unpack("<q" if byteorder == "little" else ">q", count)
    dtype = numpy_dtype(dtypes[key], byteorder)
    raw = f.read(numel * dtype.itemsize)
    if numel < 0 or len(raw) != numel * dtype.itemsize:
      raise TorchFileError(f"{path}: storage {key} is truncated")
    data[key] = np.frombuffer(raw, dtype)
  end = f.tell()

  def storage(pid: Any) -> _Storage:
    key, code, view = _legacy_pid(path, pid)
    if view is None:
      return _Storage(key, code, data[key])
    view_key, view_offset, view_size = view
    if view_offset < 0 or view_offset + view_size > data[key].size:
      raise TorchFileError(f"{path}: storage view {view_key} lies outside storage {key}")
    return _Storage(view_key, code, data[key][view_offset:view_offset + view_size])

  f.seek(start)
  obj = _unpickle(f, _Rebuilder(path, storage))
  f.seek(end)
  return obj


def _legacy_pid(path: str, pid: Any) -> tuple[str, str, tuple[str, int, int] | None]:
  if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
    raise TorchFileError(f"{path}: unsupported legacy persistent id {pid!r:.200}")
  _, storage_type, key, _location, _numel, view = pid
  if not isinstance(storage_type, StorageType) or not isinstance(key, str):
    raise TorchFileError(f"{path}: malformed legacy storage reference {pid!r:.200}")
  if view is not None:
    if not (isinstance(view, tuple) and len(view) == 3 and all(isinstance(v, int) for v in view[1:])):
      raise TorchFileError(f"{path}: malformed legacy storage view {view!r:.200}")
    view = (str(view[0]), view[1], view[2])
  return key, storage_type.code, view


def _refuse_pid(path: str, pid: Any) -> Any:
  raise TorchFileError(f"{path}: unexpected storage reference in a legacy header pickle")


# ---- public API ------------------------------------------------------------------------------------

def load(path: str | os.PathLike) -> Any:
  """Read a torch file (zip or legacy) into Python containers, NumPy arrays and `Record`s.

  Raises:
    TorchFileError: the file is not a torch file, is truncated, uses an unsupported tensor type, or
      names a global outside the allow-list (nothing it names is run).
    FileNotFoundError: no such file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such torch file")
  if zipfile.is_zipfile(path):
    try:
      with zipfile.ZipFile(path) as archive:
        return _load_zip(path, archive)
    except (zipfile.BadZipFile, OSError, KeyError) as e:
      raise TorchFileError(f"{path}: broken torch zip file: {e}") from e
  if tarfile.is_tarfile(path):
    raise TorchFileError(f"{path}: a tar-format torch file (torch < 0.4) is not supported; re-save it with a "
                         "newer torch (torch.save(torch.load(f), f2))")
  with open(path, "rb") as f:
    if f.read(1) != b"\x80":
      raise TorchFileError(f"{path}: not a torch file (neither a zip archive nor a pickle)")
    f.seek(0)
    return _load_legacy(path, f)


def is_torch_file(path: str | os.PathLike) -> bool:
  """Cheap check: a zip archive with one `<name>/data.pkl`, or a file starting like a legacy torch pickle."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    return False
  if zipfile.is_zipfile(path):
    try:
      with zipfile.ZipFile(path) as archive:
        _zip_prefix(path, archive.namelist())
      return True
    except (TorchFileError, zipfile.BadZipFile, OSError):
      return False
  with open(path, "rb") as f:
    return f.read(3) == b"\x80\x02\x8a"  # PROTO 2, LONG1: the legacy magic number


# ---- writer ----------------------------------------------------------------------------------------

_WRITE_STORAGES = {np.dtype("f4"): "FloatStorage", np.dtype("f8"): "DoubleStorage", np.dtype("f2"): "HalfStorage",
                   np.dtype("i8"): "LongStorage", np.dtype("i4"): "IntStorage", np.dtype("i2"): "ShortStorage",
                   np.dtype("i1"): "CharStorage", np.dtype("u1"): "ByteStorage", np.dtype("?"): "BoolStorage"}


class _PickleWriter:
  """Protocol-2 pickle opcodes for an OrderedDict of str -> tensor (what torch.save writes for it)."""

  def __init__(self):
    self.out = io.BytesIO()

  def op(self, code: bytes, payload: bytes = b"") -> None:
    self.out.write(code + payload)

  def global_(self, module: str, name: str) -> None:
    self.op(pickle.GLOBAL, f"{module}\n{name}\n".encode("ascii"))

  def str_(self, text: str) -> None:
    raw = text.encode("utf-8")
    self.op(pickle.BINUNICODE, struct.pack("<I", len(raw)) + raw)

  def int_(self, value: int) -> None:
    if 0 <= value < 256:
      self.op(pickle.BININT1, bytes([value]))
    elif -2 ** 31 <= value < 2 ** 31:
      self.op(pickle.BININT, struct.pack("<i", value))
    else:
      raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
      self.op(pickle.LONG1, bytes([len(raw)]) + raw)

  def tuple_(self, values: tuple[int, ...]) -> None:
    self.op(pickle.MARK)
    for v in values:
      self.int_(int(v))
    self.op(pickle.TUPLE)

  def ordered_dict(self) -> None:
    self.global_("collections", "OrderedDict")
    self.op(pickle.EMPTY_TUPLE)
    self.op(pickle.REDUCE)

  def tensor(self, key: str, array: np.ndarray) -> None:
    """`_rebuild_tensor_v2(("storage", <X>Storage, key, "cpu", numel), 0, shape, strides, False, OrderedDict())`."""
    self.global_("torch._utils", "_rebuild_tensor_v2")
    self.op(pickle.MARK)
    self.op(pickle.MARK)
    self.str_("storage")
    self.global_("torch", _WRITE_STORAGES[array.dtype])
    self.str_(key)
    self.str_("cpu")
    self.int_(array.size)
    self.op(pickle.TUPLE)
    self.op(pickle.BINPERSID)
    self.int_(0)
    self.tuple_(array.shape)
    self.tuple_(_contiguous_strides(array.shape))
    self.op(pickle.NEWFALSE)
    self.ordered_dict()
    self.op(pickle.TUPLE)
    self.op(pickle.REDUCE)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
  strides, step = [], 1
  for n in reversed(shape):
    strides.append(step)
    step *= max(int(n), 1)
  return tuple(reversed(strides))


def state_dict_bytes(tensors: dict[str, np.ndarray]) -> tuple[bytes, list[bytes]]:
  """The pickle and the storage records (little-endian) of an OrderedDict of arrays."""
  writer = _PickleWriter()
  writer.op(pickle.PROTO, b"\x02")
  writer.ordered_dict()
  records = []
  if tensors:
    writer.op(pickle.MARK)
    for name, value in tensors.items():
      array = np.asarray(value)
      if array.dtype.newbyteorder("=") not in _WRITE_STORAGES:
        raise TorchFileError(f"cannot write tensor {name!r} of dtype {array.dtype}")
      array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
      writer.str_(str(name))
      writer.tensor(str(len(records)), array.astype(array.dtype.newbyteorder("="), copy=False))
      records.append(array.tobytes())
    writer.op(pickle.SETITEMS)
  writer.op(pickle.STOP)
  return writer.out.getvalue(), records


def save_state_dict(path: str | os.PathLike, tensors: dict[str, np.ndarray]) -> str:
  """Write `tensors` (name -> array) as torch.save writes a state_dict (zip format, little-endian).

  The archive's folder is the file's base name, as torch names it. Written atomically
  (`wsl_jax.zoo.io.atomic_write`).
  """
  from wsl_jax.zoo.io import atomic_write
  path = os.fspath(path)
  name = os.path.splitext(os.path.basename(path))[0] or "archive"
  pickled, records = state_dict_bytes(tensors)

  def write(f) -> None:
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
      archive.writestr(f"{name}/data.pkl", pickled)
      archive.writestr(f"{name}/byteorder", "little")
      for key, raw in enumerate(records):
        archive.writestr(f"{name}/data/{key}", raw)
      archive.writestr(f"{name}/version", "3\n")
  return atomic_write(path, write, binary=True)
