"""Data sets that need no download: procedural tetris, scikit-learn's embedded digits.

`load(name, seed=0)` returns a `Dataset` of NumPy arrays (float32 inputs, int32 labels).

tetris (re-creation; the paper's recipe is in its unavailable appendix, `reference.md` §1.1)
------
4x4 grey images of four tetromino classes, flattened to 16 features:

  class 0: O (2x2 square)      class 1: I (1x4, horizontal)
  class 2: T (3 wide, 2 high)  class 3: L (2 wide, 3 high)

Each shape keeps its canonical orientation and is placed at every translation that fits in the grid
(O: 9, I: 4, T: 6, L: 6 placements). An image is made from one placement by

  1. drawing the shape's intensity from U(0.5, 1.0) (background 0),
  2. adding Gaussian pixel noise with std 0.1,
  3. clipping to [0, 1].

Classes are balanced (placements drawn uniformly within a class). Train: 200 images, test: 2000
images, both deterministic functions of the seed (default 0).

Why this recipe: the paper's 16-5-4 MLP has no biases and five hidden units, so recognising a shape
wherever it sits is hard for it, and 200 noisy training images leave room to overfit, so the
generalisation gap grows with training; the large test set keeps the measured accuracies precise
(the standard error of a test accuracy is about 1 point). See `wsl_jax.zoo.presets.TETRIS_SEED` for the
zoo this produces and the alternatives that were measured.

digits
------
scikit-learn's embedded 8x8 digits (1797 images, 10 classes), pixels scaled from 0..16 to [0, 1].
A stratified split with a fixed seed: 1437 train, 360 test images. `digits` gives flattened (64,)
inputs; `digits_image` gives (8, 8, 1) images for CNNs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

TETRIS_CLASSES = ("O", "I", "T", "L")
_TETROMINOES = {
    "O": ["11", "11"],
    "I": ["1111"],
    "T": ["111", "010"],
    "L": ["10", "10", "11"],
}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train and test arrays of one classification data set."""

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.x_train.shape[1:])

  def __post_init__(self):
    for split in ("train", "test"):
      x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
      if len(x) != len(y):
        raise ValueError(f"{self.name}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
      if y.min() < 0 or y.max() >= self.num_classes:
        raise ValueError(f"{self.name}: y_{split} has labels outside 0..{self.num_classes - 1}")


# ---- tetris -----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def tetris_placements() -> tuple[np.ndarray, ...]:
  """For each class: bool (P, 4, 4) masks of every translation of the shape that fits the 4x4 grid."""
  out = []
  for name in TETRIS_CLASSES:
    shape = np.array([[c == "1" for c in row] for row in _TETROMINOES[name]], dtype=bool)
    h, w = shape.shape
    masks = []
    for r in range(4 - h + 1):
      for c in range(4 - w + 1):
        m = np.zeros((4, 4), bool)
        m[r:r + h, c:c + w] = shape
        masks.append(m)
    out.append(np.stack(masks))
  return tuple(out)


def make_tetris(num_images: int, rng: np.random.Generator, noise_std: float = 0.1
                ) -> tuple[np.ndarray, np.ndarray]:
  """`num_images` balanced tetris images (num_images, 16) and their labels, drawn with `rng`."""
  placements = tetris_placements()
  labels = np.arange(num_images) % len(placements)
  rng.shuffle(labels)
  images = np.zeros((num_images, 4, 4), np.float32)
  for k, masks in enumerate(placements):
    idx = np.flatnonzero(labels == k)
    chosen = masks[rng.integers(0, len(masks), len(idx))]
    images[idx] = chosen * rng.uniform(0.5, 1.0, (len(idx), 1, 1))
  images += rng.normal(0.0, noise_std, images.shape)
  images = np.clip(images, 0.0, 1.0)
  return images.reshape(num_images, 16).astype(np.float32), labels.astype(np.int32)


def tetris(seed: int = 0, num_train: int = 200, num_test: int = 2000) -> Dataset:
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E7]))
  x_train, y_train = make_tetris(num_train, rng)
  x_test, y_test = make_tetris(num_test, rng)
  name = "tetris" if num_train == 200 else f"tetris_{num_train}"
  return Dataset(name, x_train, y_train, x_test, y_test, num_classes=4)


def tetris_2000(seed: int = 0) -> Dataset:
  """The tetris recipe with 2000 training images (the TETRIS-HYP recipe before 2026-12-06; no preset uses it now)."""
  return tetris(seed, num_train=2000)


# ---- digits -----------------------------------------------------------------------------------------

def _digits_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
  d = load_digits()
  x = (d.data / 16.0).astype(np.float32)
  y = d.target.astype(np.int32)
  return train_test_split(x, y, test_size=360, random_state=seed, stratify=y)


def digits(seed: int = 0) -> Dataset:
  x_train, x_test, y_train, y_test = _digits_arrays(seed)
  return Dataset("digits", x_train, y_train, x_test, y_test, num_classes=10)


def digits_image(seed: int = 0) -> Dataset:
  x_train, x_test, y_train, y_test = _digits_arrays(seed)
  return Dataset("digits_image", x_train.reshape(-1, 8, 8, 1), y_train,
                 x_test.reshape(-1, 8, 8, 1), y_test, num_classes=10)


# ---- registry ---------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., Dataset]] = {
    "tetris": tetris,
    "tetris_2000": tetris_2000,
    "digits": digits,
    "digits_image": digits_image,
}


# Modules that register more data sets (they import this registry, never the other way round at import
# time: they are imported on first use of the registry, which keeps the import graph acyclic).
PROVIDERS = ("wsl_jax.data.image_data",)


def register(name: str, loader: Callable[..., Dataset]) -> None:
  """Add a data set loader under `name` (used by modules that provide file-backed data sets)."""
  LOADERS[name] = loader


@functools.lru_cache(maxsize=1)
def _load_providers() -> None:
  import importlib
  for module in PROVIDERS:
    importlib.import_module(module)


def available() -> list[str]:
  _load_providers()
  return sorted(LOADERS)


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, seed: int) -> Dataset:
  return LOADERS[name](seed=seed)


def load(name: str, seed: int = 0) -> Dataset:
  """Train and test arrays of data set `name` (see `available()`)."""
  _load_providers()
  if name not in LOADERS:
    raise ValueError(f"unknown data set {name!r}; available: {', '.join(available())}")
  return _load_cached(name, int(seed))

