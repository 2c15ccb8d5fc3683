"""Layout: offsets, flatten/unflatten, permutation structure, JSON, validation."""

import json

import numpy as np
import pytest

from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layer, Layout


def test_tetris_layout_matches_the_original_index_dict():
  layout = nets.TETRIS_MLP.layout()
  assert layout.num_params == 100
  assert layout.layer_offsets == (0, 80)
  assert [layer.num_params for layer in layout.layers] == [80, 20]


def test_paper_cnn_layout_matches_the_original_index_dict():
  # reference.md §2.2: idx_start 0, 208, 1414, 1514, 2254; kernel_size 25, 25, 4, 9 (block), 1.
  layout = nets.PAPER_CNN.layout()
  assert layout.num_params == 2464
  assert layout.layer_offsets == (0, 208, 1414, 1514, 2254)
  assert layout.layers[3].in_block == 9 and layout.layers[3].in_units == 36
  assert [layout.unit_index(l).shape for l in range(5)] == [(8, 26), (6, 201), (4, 25), (20, 37), (10, 21)]


def test_unterthiner_layout_has_correct_offsets():
  layout = nets.UNTERTHINER_CNN.layout()
  assert layout.num_params == 4970
  # The original index dict had 2320 for layer 2 (reference.md §9 B3); the correct start is 2480.
  assert layout.layer_offsets == (0, 160, 2480, 4800)


@pytest.mark.parametrize("spec", [nets.TETRIS_MLP, nets.PAPER_CNN, nets.UNTERTHINER_CNN,
                                  nets.NetSpec((7,), 3, hidden=(4, 6), bias=True)])
def test_flatten_unflatten_round_trip(spec):
  layout = spec.layout()
  w = np.random.default_rng(0).normal(size=(3, layout.num_params)).astype(np.float32)
  params = layout.unflatten(w)
  for layer, p in zip(layout.layers, params):
    assert p["w"].shape == (3,) + layer.weight_shape
    assert ("b" in p) == layer.bias
  np.testing.assert_array_equal(layout.flatten(params), w)


def test_unit_index_rows_are_each_units_weights_then_bias():
  layout = Layout.mlp([3, 2, 2], bias=True)
  np.testing.assert_array_equal(layout.unit_index(0), [[0, 1, 2, 6], [3, 4, 5, 7]])
  np.testing.assert_array_equal(layout.unit_index(1), [[8, 9, 12], [10, 11, 13]])


def test_permutation_groups_describe_rows_and_next_input_axis():
  groups = nets.PAPER_CNN.layout().permutation_groups()
  assert [g.size for g in groups] == [8, 6, 4, 20]
  assert groups[2].moves == ((2, "rows", 1), (3, "in", 9))  # conv -> flattened dense: blocks of 3x3
  assert groups[0].moves == ((0, "rows", 1), (1, "in", 1))


def test_permutation_index_moves_flattened_blocks():
  layout = Layout((Layer("conv", 2, 1, (1, 1), bias=False), Layer("dense", 1, 4, bias=False, in_block=2)))
  idx = layout.permutation_index([np.array([1, 0])])
  # conv rows swap (positions 0,1), dense inputs move in blocks of 2: [2,3,4,5] -> [4,5,2,3].
  np.testing.assert_array_equal(idx, [1, 0, 4, 5, 2, 3])


def test_json_round_trip():
  layout = nets.PAPER_CNN.layout()
  again = Layout.from_json(json.dumps(json.loads(layout.to_json())))
  assert again == layout and hash(again) == hash(layout)


@pytest.mark.parametrize("make, message", [
    (lambda: Layout((Layer("dense", 5, 16), Layer("dense", 4, 6))), "has 6 inputs"),
    (lambda: Layout((Layer("dense", 5, 16), Layer("conv", 4, 5, (3, 3)))), "conv layer after a dense"),
    (lambda: Layout((Layer("conv", 5, 1, (3, 3)), Layer("conv", 4, 6, (3, 3)))), "6 input channels"),
    (lambda: Layer("dense", 0, 3), "positive integer"),
    (lambda: Layer("pool", 3, 3), "layer kind"),
    (lambda: Layer("dense", 3, 10, in_block=3), "not a multiple"),
    (lambda: Layout(()), "at least one layer"),
])
def test_invalid_construction_raises(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_wrong_vector_length_raises():
  layout = nets.TETRIS_MLP.layout()
  with pytest.raises(ValueError, match=r"expected \(\.\.\., 100\)"):
    layout.unflatten(np.zeros(99))
  with pytest.raises(ValueError, match="expected 1 permutations"):
    layout.permutation_index([])
  with pytest.raises(ValueError, match="num_params"):
    Layout.from_dict({**layout.to_dict(), "num_params": 7})
