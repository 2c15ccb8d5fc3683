"""Tokenizers: token shapes and contents from the Layout, and the exact inverse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsl_jax.hyperrep.tokenize import Tokenizer, neuron_tokens, weight_tokens
from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layer, Layout

LAYOUTS = {
    "tetris_no_bias": nets.TETRIS_MLP.layout(),
    "mlp_bias": Layout.mlp([7, 5, 3, 2], bias=True),
    "paper_cnn": nets.PAPER_CNN.layout(),
    "unterthiner_cnn": nets.UNTERTHINER_CNN.layout(),
    "cnn_no_bias": Layout((Layer("conv", 3, 2, (2, 2), bias=False), Layer("dense", 4, 12, bias=False, in_block=4))),
}


@pytest.mark.parametrize("kind", ["neuron", "weight"])
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_detokenize_inverts_tokenize(name, kind):
  layout = LAYOUTS[name]
  tok = Tokenizer(layout, kind)
  w = np.random.default_rng(0).normal(size=(2, 3, layout.num_params)).astype(np.float32)
  groups = tok.tokenize(w)
  assert [g.shape for g in groups] == [(2, 3, grp.count, grp.size) for grp in tok.groups]
  np.testing.assert_array_equal(tok.detokenize(groups), w)
  # Same under jit with JAX arrays (the decoder's path).
  roundtrip = jax.jit(lambda x: tok.detokenize(tok.tokenize(x)))(jnp.asarray(w))
  np.testing.assert_array_equal(np.asarray(roundtrip), w)


def test_detokenize_is_a_bijection_on_tokens():
  # Every token slot lands on a distinct flat position: perturbing one slot changes one position.
  layout = LAYOUTS["paper_cnn"]
  tok = neuron_tokens(layout)
  groups = [np.zeros((g.count, g.size)) for g in tok.groups]
  groups[1][3, 17] = 1.0
  flat = tok.detokenize(groups)
  assert flat.sum() == 1.0 and flat[tok.indices()[1][3, 17]] == 1.0


def test_neuron_tokens_hold_incoming_weights_then_bias():
  layout = LAYOUTS["paper_cnn"]
  w = np.random.default_rng(1).normal(size=layout.num_params)
  params = layout.unflatten(w)
  groups = neuron_tokens(layout).tokenize(w)
  for l, (group, p) in enumerate(zip(groups, params)):
    for u in range(layout.layers[l].out_units):
      np.testing.assert_array_equal(group[u], np.concatenate([p["w"][u].ravel(), [p["b"][u]]]))


def test_tetris_neuron_tokens_match_the_original():
  # reference.md §2.3: 5 tokens of 16 weights (rows of W0), 4 tokens of 5 weights, no bias slot.
  tok = neuron_tokens(nets.TETRIS_MLP.layout())
  assert [(g.count, g.size) for g in tok.groups] == [(5, 16), (4, 5)]
  assert tok.num_tokens == 9
  w = np.arange(100.0)
  groups = tok.tokenize(w)
  np.testing.assert_array_equal(groups[0][2], np.arange(32, 48))
  np.testing.assert_array_equal(groups[1][3], np.arange(95, 100))


@pytest.mark.parametrize("name,sizes,counts", [
    ("paper_cnn", (26, 201, 25, 37, 21), (8, 6, 4, 20, 10)),
    ("unterthiner_cnn", (10, 145, 145, 17), (16, 16, 16, 10)),
])
def test_cnn_token_lengths_match_the_reference(name, sizes, counts):
  tok = neuron_tokens(LAYOUTS[name])
  assert tok.token_sizes == sizes
  assert tuple(g.count for g in tok.groups) == counts
  assert tok.num_tokens == sum(counts)
  np.testing.assert_array_equal(np.bincount(tok.token_layer()), counts)


def test_weight_tokens_are_scalars_in_flat_order():
  layout = LAYOUTS["mlp_bias"]
  tok = weight_tokens(layout)
  w = np.arange(float(layout.num_params))
  (group,) = tok.tokenize(w)
  assert group.shape == (layout.num_params, 1)
  np.testing.assert_array_equal(group[:, 0], w)
  assert tok.groups[0].layer == -1 and tok.num_tokens == layout.num_params


def test_group_starts_are_cumulative():
  tok = neuron_tokens(LAYOUTS["paper_cnn"])
  assert [g.start for g in tok.groups] == [0, 8, 14, 18, 38]


def test_tokenizer_is_hashable_and_compares_by_value():
  a = Tokenizer(nets.TETRIS_MLP.layout(), "neuron")
  b = Tokenizer(Layout.mlp([16, 5, 4], bias=False), "neuron")
  assert a == b and hash(a) == hash(b)
  assert a != Tokenizer(nets.TETRIS_MLP.layout(), "weight")


def test_bad_input_raises_clear_errors():
  layout = nets.TETRIS_MLP.layout()
  with pytest.raises(ValueError, match="token kind"):
    Tokenizer(layout, "kernel")
  with pytest.raises(ValueError, match="must be a Layout"):
    Tokenizer("tetris", "neuron")
  tok = neuron_tokens(layout)
  with pytest.raises(ValueError, match="100 parameters"):
    tok.tokenize(np.zeros((2, 99)))
  with pytest.raises(ValueError, match="expected 2 token groups"):
    tok.detokenize([np.zeros((5, 16))])
  with pytest.raises(ValueError, match=r"expected \(\.\.\., 4, 5\)"):
    tok.detokenize([np.zeros((5, 16)), np.zeros((4, 6))])
  with pytest.raises(ValueError, match="different batch shapes"):
    tok.detokenize([np.zeros((2, 5, 16)), np.zeros((3, 4, 5))])
