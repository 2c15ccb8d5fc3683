"""Embedded data sets: deterministic, balanced, the documented shapes; clear errors."""

import numpy as np
import pytest

from wsl_jax.data import datasets


def test_tetris_is_deterministic_balanced_and_documented_size():
  a, b = datasets.tetris(seed=0), datasets.tetris(seed=0)
  np.testing.assert_array_equal(a.x_train, b.x_train)
  np.testing.assert_array_equal(a.y_test, b.y_test)
  assert a.x_train.shape == (200, 16) and a.x_test.shape == (2000, 16)
  assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int32
  assert np.bincount(a.y_train).tolist() == [50] * 4 and np.bincount(a.y_test).tolist() == [500] * 4
  assert a.x_train.min() >= 0 and a.x_train.max() <= 1
  c = datasets.tetris(seed=1)
  assert not np.array_equal(a.x_train, c.x_train)


def test_tetris_placements_are_every_translation():
  counts = [len(p) for p in datasets.tetris_placements()]
  assert counts == [9, 4, 6, 6]  # O, I, T, L
  for masks, cells in zip(datasets.tetris_placements(), [4, 4, 4, 4]):
    assert (masks.reshape(len(masks), -1).sum(1) == cells).all()
    assert len({m.tobytes() for m in masks}) == len(masks)


def test_tetris_images_show_their_shape():
  d = datasets.tetris()
  # Mean image of each class, thresholded, has the class's pixel count near 4 cells' worth of mass.
  for k in range(4):
    mass = d.x_train[d.y_train == k].sum(1).mean()
    assert 2.5 < mass < 4.5


def test_digits_split_and_scale():
  d = datasets.load("digits")
  assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
  assert d.num_classes == 10 and 0 <= d.x_train.min() and d.x_train.max() <= 1
  img = datasets.load("digits_image")
  assert img.x_train.shape == (1437, 8, 8, 1)
  np.testing.assert_array_equal(img.x_train.reshape(-1, 64), d.x_train)


def test_unknown_dataset_raises():
  with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
    datasets.load("imagenet")
