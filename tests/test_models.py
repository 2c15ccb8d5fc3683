"""Encoder / decoder / projection head: shapes, ablation variants, eval determinism, dropout, norms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wsl_jax.hyperrep import configs, models
from wsl_jax.hyperrep.configs import ModelConfig
from wsl_jax.weights import nets

TINY = ModelConfig(dim=16, heads=2, ff_dim=32, blocks=1, latent_dim=8, head_layers=1, head_hidden=12,
                   head_out=6, ff_hidden_layers=2)
TETRIS = nets.TETRIS_MLP.layout()


def _run_impl(graphdef, state, w, key):
  model = nnx.merge(graphdef, state)
  return model(w, rngs=None if key is None else nnx.Rngs(dropout=key))


_run = jax.jit(_run_impl, static_argnums=0)  # one compilation per model structure and input shape


def _apply(model, w, key=None):
  """(z, reconstruction) under jit; training mode (dropout) iff a key is given."""
  graphdef, state = nnx.split(model)
  return _run(graphdef, state, w, key)


def _shapes(cfg, layout, input_shape):
  """Output shapes of (z, reconstruction), traced without compiling."""
  model = nnx.eval_shape(lambda: models.HyperRepresentation(cfg, layout, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  out = jax.eval_shape(lambda s, w: _run_impl(graphdef, s, w, None), state,
                       jax.ShapeDtypeStruct(input_shape, jnp.float32))
  return tuple(o.shape for o in out)


@pytest.mark.parametrize("variant", sorted(configs.ARCHITECTURES))
@pytest.mark.parametrize("net", ["tetris", "paper_cnn"])
def test_every_ablation_variant_has_the_right_shapes(variant, net):
  layout = TETRIS if net == "tetris" else nets.PAPER_CNN.layout()
  cfg = configs.with_architecture(configs.TrainConfig(model=TINY), variant).model
  n = layout.num_params
  assert _shapes(cfg, layout, (3, n)) == ((3, 8), (3, n))
  assert _shapes(cfg, layout, (2, 3, n)) == ((2, 3, 8), (2, 3, n))


def test_encoder_output_is_bounded_and_samples_are_independent():
  model = models.HyperRepresentation(TINY, TETRIS, rngs=nnx.Rngs(0))
  w = 3 * jax.random.normal(jax.random.key(1), (4, 100))
  z, w_hat = _apply(model, w)
  assert bool(jnp.all(jnp.abs(z) < 1.0)) and bool(jnp.all(jnp.isfinite(w_hat)))  # tanh bottleneck
  z_rev, _ = _apply(model, w[::-1])  # each sample is encoded on its own
  np.testing.assert_allclose(np.asarray(z_rev)[::-1], np.asarray(z), rtol=1e-5, atol=1e-6)


def test_variants_differ_in_structure():
  def n_params(cfg):
    abstract = nnx.eval_shape(lambda: models.HyperRepresentation(cfg, TETRIS, rngs=nnx.Rngs(0)))
    return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
  base = configs.TrainConfig(model=TINY)
  att_n = n_params(configs.with_architecture(base, "AttN").model)
  att_nt = n_params(configs.with_architecture(base, "AttN+t").model)
  # The compression token adds its own vector and position and shrinks the bottleneck from T*d to d.
  assert att_nt == att_n + 2 * 16 - (9 * 16 - 16) * 8
  att_w = n_params(configs.with_architecture(base, "AttW").model)
  assert att_w > att_n  # 100 weight tokens: more positions and a larger bottleneck


def test_tetris_preset_has_the_reference_parameter_count():
  # reference.md §4: tetris_seed ~ 1.08M encoder + 1.18M decoder + 9k head ~ 2.26M.
  abstract = nnx.eval_shape(lambda: models.HyperRepresentation(configs.preset("tetris").model, TETRIS,
                                                               rngs=nnx.Rngs(0)))
  counts = {k: sum(x.size for x in jax.tree.leaves(nnx.state(getattr(abstract, k), nnx.Param)))
            for k in ("encoder", "decoder", "head")}
  assert counts["encoder"] == pytest.approx(1.08e6, rel=0.01)
  assert counts["decoder"] == pytest.approx(1.18e6, rel=0.01)
  assert counts["head"] == pytest.approx(9e3, rel=0.1)


def test_eval_mode_is_deterministic_and_dropout_only_trains():
  model = models.HyperRepresentation(TINY, TETRIS, rngs=nnx.Rngs(0))
  w = jax.random.normal(jax.random.key(1), (4, 100))
  z1, y1 = _apply(model, w)
  z2, y2 = _apply(model, w)
  np.testing.assert_array_equal(np.asarray(z1), np.asarray(z2))
  np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
  za, _ = _apply(model, w, jax.random.key(2))
  zb, _ = _apply(model, w, jax.random.key(3))
  za2, _ = _apply(model, w, jax.random.key(2))
  assert not np.allclose(np.asarray(za), np.asarray(z1))  # dropout changes the training output
  assert not np.allclose(np.asarray(za), np.asarray(zb))  # different keys, different masks
  np.testing.assert_array_equal(np.asarray(za), np.asarray(za2))  # same key, same masks
  # With every dropout rate 0, training equals evaluation.
  no_drop = dataclasses.replace(TINY, dropout=0.0, attention_dropout=0.0)
  model0 = models.HyperRepresentation(no_drop, TETRIS, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(np.asarray(_apply(model0, w, jax.random.key(2))[0]),
                                np.asarray(_apply(model0, w)[0]))


def test_dropout_rate_and_mask_independence():
  x = jnp.ones((400, 250))
  out = jax.jit(lambda k: models.dropout(x, 0.1, nnx.Rngs(dropout=k)))(jax.random.key(0))
  dropped = np.asarray(out == 0)
  assert dropped.mean() == pytest.approx(0.1, abs=0.005)
  np.testing.assert_allclose(np.asarray(out)[~dropped], 1 / 0.9, rtol=1e-6)
  # Rows and columns are dropped independently (no striping from the hash of the flat index).
  assert np.abs(dropped.mean(axis=0) - 0.1).max() < 0.08 and np.abs(dropped.mean(axis=1) - 0.1).max() < 0.08
  assert np.corrcoef(dropped[:, :-1].ravel(), dropped[:, 1:].ravel())[0, 1] == pytest.approx(0.0, abs=0.02)
  assert models.dropout(x, 0.1, None) is x


def test_hash_bits_are_uniform_and_keyed():
  bits = jax.jit(lambda k: models.hash_bits(k, (1000, 100)))(jax.random.key(0))
  u = np.asarray(bits, np.float64) / 2.0 ** 32
  assert u.mean() == pytest.approx(0.5, abs=0.005)
  assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 9000  # 10 bins of ~10000
  other = jax.jit(lambda k: models.hash_bits(k, (1000, 100)))(jax.random.key(1))
  assert (np.asarray(bits) == np.asarray(other)).mean() < 0.001


@pytest.mark.parametrize("kind", ["layernorm", "original"])
def test_norms_match_their_formulas(kind):
  x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32) * 3 + 1
  norm = models.Norm(8, kind)
  y = np.asarray(norm(jnp.asarray(x)))
  centred = x - x.mean(-1, keepdims=True)
  if kind == "layernorm":
    expected = centred / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  else:  # reference.md B15: unbiased std, eps added to the std
    expected = centred / (x.std(-1, ddof=1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["layernorm", "original"])
def test_normed_linear_equals_linear_of_norm(kind):
  norm = models.Norm(8, kind)
  norm.scale[...] = jnp.linspace(0.5, 2.0, 8)
  norm.bias[...] = jnp.linspace(-1.0, 1.0, 8)
  linear = models.torch_linear(8, 5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 3, 8))
  np.testing.assert_allclose(np.asarray(models.normed_linear(norm, linear, x)), np.asarray(linear(norm(x))),
                             rtol=1e-5, atol=1e-5)


def test_batchnorm_train_eval_and_mask():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32) * 2 + 5)
  bn = models.BatchNorm(3)
  y = bn(x, train=True)
  np.testing.assert_allclose(np.asarray(y).mean(0), 0.0, atol=1e-5)
  # Running stats: momentum 0.1, unbiased variance (as PyTorch).
  np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.1 * np.asarray(x).mean(0), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(bn.var[...]), 0.9 + 0.1 * np.asarray(x).var(0, ddof=1), rtol=1e-5)
  y_eval = bn(x, train=False)
  expected = (np.asarray(x) - np.asarray(bn.mean[...])) / np.sqrt(np.asarray(bn.var[...]) + 1e-5)
  np.testing.assert_allclose(np.asarray(y_eval), expected, rtol=1e-5)
  # "batch" evaluation (the original, B6) uses this batch's statistics and leaves the running ones alone.
  bn_b = models.BatchNorm(3, eval_mode="batch")
  np.testing.assert_allclose(np.asarray(bn_b(x, train=False)), np.asarray(y), rtol=1e-5, atol=1e-5)
  assert float(bn_b.mean[...].sum()) == 0.0
  # Masked rows (padding) do not enter the statistics.
  padded = jnp.concatenate([x, 100 * jnp.ones((2, 3))])
  mask = jnp.arange(8) < 6
  np.testing.assert_allclose(np.asarray(bn_b(padded, train=False, mask=mask))[:6], np.asarray(y), rtol=1e-5,
                             atol=1e-5)


def test_projection_head_structure():
  cfg = dataclasses.replace(TINY, head_layers=3, head_hidden=10, head_out=4)
  head = models.ProjectionHead(cfg, rngs=nnx.Rngs(0))
  assert [(l.in_features, l.out_features) for l in head.linears] == [(8, 10), (10, 10), (10, 10), (10, 4)]
  assert len(head.norms) == 4  # BN after every Linear, including the last
  p = jax.jit(lambda h, z: h(z, train=True))(head, jax.random.normal(jax.random.key(0), (5, 8)))
  np.testing.assert_allclose(np.asarray(p).mean(0), 0.0, atol=1e-5)  # ends in BN
  with pytest.raises(ValueError, match=r"\(B, L\)"):
    head(jnp.zeros((2, 3, 8)), train=True)


def test_ff_baseline_widths_match_the_original():
  # reference.md §4: linspace(N, L, 12) for 10 hidden layers: 100, 95, ..., 50.
  assert models.ff_widths(100, 50, 10) == (100, 95, 90, 86, 81, 77, 72, 68, 63, 59, 54, 50)
  model = nnx.eval_shape(lambda: models.HyperRepresentation(
      dataclasses.replace(TINY, arch="ff", ff_hidden_layers=10, latent_dim=50), TETRIS, rngs=nnx.Rngs(0)))
  assert len(model.encoder.layers) == 11 and model.decoder.layers[-1].out_features == 100


def test_bad_input_raises_clear_errors():
  with pytest.raises(ValueError, match="divisible by model.heads"):
    ModelConfig(dim=10, heads=3)
  with pytest.raises(ValueError, match="model.norm"):
    ModelConfig(norm="rms")
  with pytest.raises(ValueError, match="model.dropout"):
    ModelConfig(dropout=1.0)
  model = models.HyperRepresentation(TINY, TETRIS, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="100 parameters"):
    model.encode(jnp.zeros((2, 99)))
  with pytest.raises(ValueError, match=r"expected \(\.\.\., 8\)"):
    model.decode(jnp.zeros((2, 5)))
  with pytest.raises(ValueError, match="must be a Layout"):
    models.HyperRepresentation(TINY, "tetris", rngs=nnx.Rngs(0))
