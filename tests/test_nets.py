"""Zoo networks: forward pass against NumPy, activations, PyTorch-semantics initializers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layer, Layout

MLP_SPECS = [nets.TETRIS_MLP, nets.NetSpec((7,), 3, hidden=(6, 5), bias=True)]


@pytest.mark.parametrize("spec", MLP_SPECS)
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_mlp_forward_matches_numpy(spec, activation):
  layout = spec.layout()
  w = nets.init_weights(jax.random.key(3), layout, "kaiming_uniform")
  x = np.random.default_rng(0).normal(size=(11,) + spec.input_shape).astype(np.float32)
  got = nets.apply(spec, w, jnp.asarray(x), activation)
  np.testing.assert_allclose(got, nets.numpy_forward(spec, np.asarray(w), x, activation), rtol=1e-5, atol=1e-5)


def test_mlp_forward_by_hand():
  spec = nets.NetSpec((2,), 2, hidden=(2,), bias=True)
  # Layer 0: W=[[1,2],[3,4]], b=[0.5,-0.5]; layer 1: W=[[1,-1],[0,2]], b=[0,1].
  w = jnp.array([1, 2, 3, 4, 0.5, -0.5, 1, -1, 0, 2, 0, 1], jnp.float32)
  x = jnp.array([[1.0, -1.0]])
  hidden = np.maximum([1 * 1 + 2 * -1 + 0.5, 3 * 1 + 4 * -1 - 0.5], 0)  # relu([-0.5, -1.5]) = 0
  expected = np.array([[hidden[0] - hidden[1], 2 * hidden[1] + 1]])
  np.testing.assert_allclose(nets.apply(spec, w, x, "relu"), expected)


def test_gelu_is_the_exact_erf_form():
  x = jnp.linspace(-3, 3, 13)
  from scipy.special import erf
  np.testing.assert_allclose(nets.ACTIVATIONS["gelu"](x), 0.5 * x * (1 + erf(np.asarray(x) / math.sqrt(2))),
                             rtol=1e-5, atol=1e-6)


BIG = Layer("dense", 300, 400, bias=True)  # fan_in 400, fan_out 300


@pytest.mark.parametrize("init, low, high, mean, std", [
    ("uniform", 0.0, 1.0, 0.5, math.sqrt(1 / 12)),
    ("normal", None, None, 0.0, 1.0),
    ("kaiming_uniform", -math.sqrt(6 / 400), math.sqrt(6 / 400), 0.0, math.sqrt(6 / 400) / math.sqrt(3)),
    ("kaiming_normal", None, None, 0.0, math.sqrt(2 / 400)),
    ("xavier_uniform", -math.sqrt(6 / 700), math.sqrt(6 / 700), 0.0, math.sqrt(6 / 700) / math.sqrt(3)),
    ("xavier_normal", None, None, 0.0, math.sqrt(2 / 700)),
])
def test_initializers_have_pytorch_distributions(init, low, high, mean, std):
  layout = Layout((BIG,))
  w = np.asarray(nets.init_weights(jax.random.key(0), layout, init))
  weights, bias = w[:BIG.num_weights], w[BIG.num_weights:]
  np.testing.assert_array_equal(bias, np.full(300, 0.01, np.float32))  # biases filled with 0.01
  n = weights.size
  assert abs(weights.mean() - mean) < 5 * std / math.sqrt(n)
  assert abs(weights.std() / std - 1) < 0.02
  if low is not None:
    assert weights.min() >= low and weights.max() <= high
    assert weights.min() < low + 0.01 * (high - low) and weights.max() > high - 0.01 * (high - low)
  else:  # Gaussian: about 4.55% beyond two standard deviations
    assert abs(np.mean(np.abs(weights - mean) > 2 * std) - 0.0455) < 0.005


def test_conv_fan_in_includes_the_kernel():
  layer = Layer("conv", 6, 8, (5, 5), bias=False)
  w = np.asarray(nets.init_weights(jax.random.key(1), Layout((layer,)), "kaiming_uniform"))
  bound = math.sqrt(6 / (8 * 25))
  assert w.max() <= bound and w.max() > 0.95 * bound


def test_init_choice_equals_direct_init_and_keys_differ_per_layer():
  layout = Layout.mlp([16, 16, 16], bias=False)
  inits = ("normal", "xavier_uniform", "uniform")
  for i, name in enumerate(inits):
    np.testing.assert_array_equal(nets.init_weights_choice(jax.random.key(5), layout, inits, jnp.int32(i)),
                                  nets.init_weights(jax.random.key(5), layout, name))
  w = np.asarray(nets.init_weights(jax.random.key(5), layout, "normal"))
  assert not np.allclose(w[:256], w[256:])  # layers of equal shape get different draws


def test_bad_inputs_raise():
  layout = nets.TETRIS_MLP.layout()
  with pytest.raises(ValueError, match="unknown initializer"):
    nets.init_weights(jax.random.key(0), layout, "he")
  with pytest.raises(ValueError, match="unknown activation"):
    nets.apply(nets.TETRIS_MLP, jnp.zeros(100), jnp.zeros((2, 16)), "swish")
  with pytest.raises(ValueError, match="expects"):
    nets.apply(nets.TETRIS_MLP, jnp.zeros(100), jnp.zeros((2, 15)), "tanh")
  with pytest.raises(ValueError, match="expected"):
    nets.apply(nets.TETRIS_MLP, jnp.zeros(99), jnp.zeros((2, 16)), "tanh")
  with pytest.raises(ValueError, match="does not fit"):
    nets.NetSpec((4, 4, 1), 2, convs=(nets.ConvBlock(3, 5),))


def test_netspec_json_round_trip():
  for spec in (nets.TETRIS_MLP, nets.PAPER_CNN, nets.UNTERTHINER_CNN):
    assert nets.NetSpec.from_dict(spec.to_dict()) == spec
