"""The zoo CNNs: layouts, forward passes against NumPy and lax.conv, conv implementations, Keras inits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layer, Layout

CNNS = {"paper": nets.PAPER_CNN, "unterthiner": nets.UNTERTHINER_CNN}
apply = jax.jit(nets.apply, static_argnames=("spec", "activation", "conv_impl"))  # eager: one dispatch per op


def _images(n, shape=(28, 28, 1), seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, size=(n,) + shape).astype(np.float32)


def test_paper_cnn_layout_is_the_reference_index_dict():
  layout = nets.PAPER_CNN.layout()
  assert layout.num_params == 2464
  assert layout.layer_offsets == (0, 208, 1414, 1514, 2254)  # reference.md §2.2 idx_start
  assert [l.num_params for l in layout.layers] == [208, 1206, 100, 740, 210]
  assert [l.out_units for l in layout.layers] == [8, 6, 4, 20, 10]
  assert layout.layers[3].in_block == 9  # the dense layer reads 4 channels x 3x3 positions
  assert [layout.unit_index(l).shape[1] for l in range(5)] == [26, 201, 25, 37, 21]  # token lengths
  assert nets.PAPER_CNN.conv_output_shapes() == ((12, 12, 8), (4, 4, 6), (3, 3, 4))


def test_unterthiner_cnn_layout_has_the_correct_offsets():
  layout = nets.UNTERTHINER_CNN.layout()
  assert layout.num_params == 4970
  assert layout.layer_offsets == (0, 160, 2480, 4800)  # not the 2320 of the reference's index dict (§9 B3)
  assert [layout.unit_index(l).shape[1] for l in range(4)] == [10, 145, 145, 17]
  assert layout.layers[3].in_block == 1  # global average pooling: one input per channel
  assert nets.UNTERTHINER_CNN.conv_output_shapes() == ((13, 13, 16), (6, 6, 16), (2, 2, 16))


# Every implementation on the Unterthiner CNN, the default one on the paper's (the conv-level test below
# checks the others on the paper's kernel shapes): each case is one compilation.
@pytest.mark.parametrize("name, impl, activation", [("paper", "taps", "relu"), ("paper", "taps", "tanh"),
                                                    ("unterthiner", "taps", "tanh"),
                                                    ("unterthiner", "im2col", "relu"),
                                                    ("unterthiner", "lax", "tanh")])
def test_cnn_forward_matches_numpy(name, impl, activation):
  spec = CNNS[name]
  w = nets.init_weights(jax.random.key(1), spec.layout(), "kaiming_uniform", bias_value=0.1)
  x = _images(3)
  got = apply(spec, w, jnp.asarray(x), activation, conv_impl=impl)
  np.testing.assert_allclose(got, nets.numpy_forward(spec, np.asarray(w), x, activation), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride, kernel_hw, channels", [(1, (5, 5), (1, 8)), (2, (3, 3), (16, 16)),
                                                         (1, (2, 3), (3, 4)), (3, (4, 2), (2, 5))])
def test_conv_implementations_equal_lax_conv_and_its_gradient(stride, kernel_hw, channels):
  rng = np.random.default_rng(0)
  c_in, c_out = channels
  x = jnp.asarray(rng.normal(size=(2, 11, 13, c_in)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(c_out, c_in, *kernel_hw)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(c_out,)), jnp.float32)
  ref = jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                     dimension_numbers=("NHWC", "OIHW", "NHWC")) + bias[None, None, None, :]
  conv = jax.jit(nets.conv2d, static_argnums=(3, 4))
  grad_of = jax.jit(jax.grad(lambda k, impl: jnp.sum(jnp.sin(nets.conv2d(x, k, bias, stride, impl)))),
                    static_argnums=1)
  ref_grad = grad_of(kernel, "lax")
  for impl in ("taps", "im2col"):
    np.testing.assert_allclose(conv(x, kernel, bias, stride, impl), ref, rtol=1e-5, atol=1e-4)
    grad = grad_of(kernel, impl)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_vmapped_forward_over_models_equals_each_model():
  spec = nets.UNTERTHINER_CNN
  ws = jax.vmap(lambda k: nets.init_weights(k, spec.layout(), "glorot_uniform"))(
      jax.random.split(jax.random.key(2), 4))
  x = jnp.asarray(_images(5))
  batched = jax.jit(jax.vmap(lambda w: nets.apply(spec, w, x, "relu")))(ws)
  for m in range(4):
    np.testing.assert_allclose(batched[m], apply(spec, ws[m], x, "relu"), rtol=1e-5, atol=1e-6)


def test_permuting_hidden_units_keeps_the_cnn_function():
  """Conv channels and the flattened dense inputs (blocks of h*w) move together (Layout.permutation_index)."""
  spec = nets.PAPER_CNN
  layout = spec.layout()
  w = np.asarray(nets.init_weights(jax.random.key(3), layout, "kaiming_normal", bias_value=0.05))
  rng = np.random.default_rng(1)
  perms = [rng.permutation(n) for n in layout.permutable_sizes]
  w_perm = w[layout.permutation_index(perms)]
  assert not np.allclose(w, w_perm)
  x = jnp.asarray(_images(4))
  np.testing.assert_allclose(apply(spec, w_perm, x, "tanh"), apply(spec, w, x, "tanh"), rtol=1e-5, atol=1e-5)


def test_dropout_is_off_without_a_key_and_inverted_with_one():
  spec = nets.UNTERTHINER_CNN
  w = nets.init_weights(jax.random.key(4), spec.layout(), "kaiming_uniform")
  x = jnp.asarray(_images(64))
  plain = apply(spec, w, x, "relu")
  np.testing.assert_array_equal(apply(spec, w, x, "relu", dropout_rate=0.5), plain)
  np.testing.assert_allclose(apply(spec, w, x, "relu", dropout_rate=0.0, dropout_key=jax.random.key(0)),
                             plain, rtol=1e-6)
  dropped = apply(spec, w, x, "relu", dropout_rate=0.5, dropout_key=jax.random.key(0))
  assert not np.allclose(dropped, plain)


BIG_CONV = Layer("conv", 64, 32, (3, 3), bias=True)  # fan_in 288, fan_out 576


@pytest.mark.parametrize("init, bound, std", [
    ("glorot_uniform", math.sqrt(6 / 864), math.sqrt(6 / 864) / math.sqrt(3)),
    ("he_uniform", math.sqrt(6 / 288), math.sqrt(6 / 288) / math.sqrt(3)),
    ("glorot_normal", 2 * math.sqrt(2 / 864) / 0.8796256610342398, math.sqrt(2 / 864)),
    ("he_normal", 2 * math.sqrt(2 / 288) / 0.8796256610342398, math.sqrt(2 / 288)),
    ("TruncatedNormal", 2 * 0.3, 0.3 * 0.8796256610342398),
    ("RandomNormal", None, 0.3),
])
def test_keras_initializers_have_keras_distributions(init, bound, std):
  layout = Layout((BIG_CONV,))
  w = np.asarray(nets.init_weights(jax.random.key(0), layout, init, bias_value=0.0, init_std=0.3))
  weights, bias = w[:BIG_CONV.num_weights], w[BIG_CONV.num_weights:]
  np.testing.assert_array_equal(bias, np.zeros(64, np.float32))
  assert abs(weights.mean()) < 5 * std / math.sqrt(weights.size)
  assert abs(weights.std() / std - 1) < 0.03
  if bound is not None:
    assert np.abs(weights).max() <= bound * (1 + 1e-6) and np.abs(weights).max() > 0.97 * bound
  else:
    assert np.abs(weights).max() > 3 * std  # not truncated


@pytest.mark.parametrize("layer", [Layer("conv", 16, 1, (3, 3)), Layer("conv", 16, 16, (3, 3)),
                                   Layer("dense", 10, 16)])
def test_orthogonal_init_is_orthonormal_along_the_short_side(layer):
  w = np.asarray(nets.init_weights(jax.random.key(1), Layout((layer,)), "orthogonal"))
  mat = w[:layer.num_weights].reshape(layer.out_units, layer.fan_in)
  gram = mat @ mat.T if layer.out_units <= layer.fan_in else mat.T @ mat
  np.testing.assert_allclose(gram, np.eye(min(mat.shape)), atol=1e-5)


@pytest.mark.parametrize("shape", [(144, 16), (16, 10), (200, 6), (7, 7)])
def test_orthonormalize_columns_equals_sign_fixed_lapack_qr(shape):
  a = jax.random.normal(jax.random.key(shape[0]), shape)
  q, r = np.linalg.qr(np.asarray(a, np.float64))
  expected = q * np.sign(np.diagonal(r))[None, :]
  np.testing.assert_allclose(nets.orthonormalize_columns(a), expected, atol=2e-5)
  with pytest.raises(ValueError, match="at least as many rows"):
    nets.orthonormalize_columns(a.T if shape[0] > shape[1] else jnp.zeros((2, 3)))


def test_vmapped_orthogonal_init_compiles_without_lapack():
  # jaxlib 0.10's batched LAPACK QR deadlocked vmapped zoo programs on 2 cores (see nets._orthogonal).
  layout = nets.UNTERTHINER_CNN.layout()
  init = jax.vmap(lambda k: nets.init_weights_choice(k, layout, ("orthogonal", "he_normal"), jnp.int32(0)))
  hlo = jax.jit(init).lower(jax.random.split(jax.random.key(0), 8)).as_text()
  assert "custom_call" not in hlo and "lapack" not in hlo.lower()


def test_constant_init_is_keras_zero_and_init_std_is_per_model():
  layout = nets.UNTERTHINER_CNN.layout()
  w = nets.init_weights(jax.random.key(0), layout, "constant", bias_value=0.0)
  np.testing.assert_array_equal(w, np.zeros(4970, np.float32))
  stds = jnp.array([0.01, 0.1, 1.0])
  ws = jax.vmap(lambda s: nets.init_weights(jax.random.key(7), layout, "RandomNormal", 0.0, s))(stds)
  np.testing.assert_allclose(ws[1], 10 * ws[0], rtol=1e-5)
  np.testing.assert_allclose(ws[2], 100 * ws[0], rtol=1e-5)


def test_mixed_initializer_choice_equals_each_initializer():
  layout = Layout((Layer("conv", 4, 2, (3, 3)), Layer("dense", 3, 4)))
  inits = ("kaiming_uniform", "orthogonal", "TruncatedNormal", "normal")
  choose = jax.jit(lambda i: nets.init_weights_choice(jax.random.key(5), layout, inits, i, 0.0, 0.2))
  for i, name in enumerate(inits):
    np.testing.assert_allclose(choose(jnp.int32(i)), nets.init_weights(jax.random.key(5), layout, name, 0.0, 0.2),
                               rtol=1e-6, atol=1e-7)


def test_bad_cnn_inputs_raise():
  w = jnp.zeros(2464)
  with pytest.raises(ValueError, match="unknown conv implementation"):
    nets.apply(nets.PAPER_CNN, w, jnp.zeros((1, 28, 28, 1)), "relu", conv_impl="fft")
  with pytest.raises(ValueError, match="expects"):
    nets.apply(nets.PAPER_CNN, w, jnp.zeros((1, 8, 8, 1)), "relu")
  with pytest.raises(ValueError, match="unknown initializer"):
    nets.init_weights(jax.random.key(0), nets.PAPER_CNN.layout(), "lecun_normal")
  with pytest.raises(ValueError, match="channels"):
    nets.conv2d(jnp.zeros((1, 5, 5, 2)), jnp.zeros((4, 3, 3, 3)), None, 1)
