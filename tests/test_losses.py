"""Losses against hand-computed values and against optax's NT-Xent."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wsl_jax.hyperrep import losses

# Jitted once each: eager dispatch would compile every primitive separately.
ntxent = jax.jit(losses.ntxent)
positive_contrast = jax.jit(losses.positive_contrast)
positive_contrast_code = jax.jit(losses.positive_contrast_code)
reconstruction_mse = jax.jit(losses.reconstruction_mse)


def _ntxent_by_hand(p_i, p_j, t):
  """SimCLR's definition, one anchor at a time."""
  p = np.concatenate([p_i, p_j]).astype(np.float64)
  p /= np.linalg.norm(p, axis=1, keepdims=True)
  n, b = len(p), len(p_i)
  total = 0.0
  for a in range(n):
    pos = (a + b) % n
    denom = sum(math.exp(p[a] @ p[k] / t) for k in range(n) if k != a)
    total += -math.log(math.exp(p[a] @ p[pos] / t) / denom)
  return total / n


def test_reconstruction_mse_by_hand():
  pred = jnp.array([[1.0, 2.0], [0.0, 0.0], [5.0, 5.0]])
  target = jnp.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
  assert float(reconstruction_mse(pred, target)) == pytest.approx((1 + 4 + 1 + 1 + 25 + 25) / 6)
  # A mask drops rows entirely.
  mask = jnp.array([True, True, False])
  assert float(reconstruction_mse(pred, target, mask)) == pytest.approx((1 + 4 + 1 + 1) / 4)


def test_ntxent_tiny_batch_by_hand():
  p_i = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
  p_j = np.array([[1.0, 1.0], [-1.0, 1.0]], np.float32)
  # Written out for anchor 0 (the others by the loop): cos(0, 2) = 1/sqrt2, cos(0, 1) = 0, cos(0, 3) = -1/sqrt2.
  t = 0.5
  s = 1 / math.sqrt(2)
  anchor0 = -math.log(math.exp(s / t) / (math.exp(0) + math.exp(s / t) + math.exp(-s / t)))
  by_hand = _ntxent_by_hand(p_i, p_j, t)
  assert by_hand == pytest.approx(
      (anchor0 + _anchor(p_i, p_j, t, 1) + _anchor(p_i, p_j, t, 2) + _anchor(p_i, p_j, t, 3)) / 4)
  assert float(ntxent(jnp.asarray(p_i), jnp.asarray(p_j), t)) == pytest.approx(by_hand, rel=1e-5)


def _anchor(p_i, p_j, t, a):
  p = np.concatenate([p_i, p_j]) / np.linalg.norm(np.concatenate([p_i, p_j]), axis=1, keepdims=True)
  pos = (a + len(p_i)) % len(p)
  denom = sum(math.exp(p[a] @ p[k] / t) for k in range(len(p)) if k != a)
  return -math.log(math.exp(p[a] @ p[pos] / t) / denom)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_ntxent_agrees_with_optax(temperature):
  rng = np.random.default_rng(0)
  p_i = rng.normal(size=(6, 5)).astype(np.float32)
  p_j = (p_i + 0.5 * rng.normal(size=(6, 5))).astype(np.float32)
  labels = jnp.concatenate([jnp.arange(6), jnp.arange(6)])
  expected = optax.ntxent(jnp.concatenate([p_i, p_j]), labels, temperature)
  ours = ntxent(jnp.asarray(p_i), jnp.asarray(p_j), temperature)
  assert float(ours) == pytest.approx(float(expected), rel=1e-5)
  assert float(ours) == pytest.approx(_ntxent_by_hand(p_i, p_j, temperature), rel=1e-5)


def test_ntxent_mask_equals_the_unpadded_batch():
  rng = np.random.default_rng(1)
  p_i, p_j = rng.normal(size=(2, 5, 4)).astype(np.float32)
  padded_i = np.concatenate([p_i, rng.normal(size=(3, 4))]).astype(np.float32)
  padded_j = np.concatenate([p_j, rng.normal(size=(3, 4))]).astype(np.float32)
  mask = np.arange(8) < 5
  full = ntxent(jnp.asarray(p_i), jnp.asarray(p_j), 0.1)
  masked = ntxent(jnp.asarray(padded_i), jnp.asarray(padded_j), 0.1, mask)
  assert float(masked) == pytest.approx(float(full), rel=1e-5)


def test_positive_contrast_is_equation_3():
  p_i = jnp.array([[1.0, 0.0], [0.0, 3.0]])
  p_j = jnp.array([[2.0, 0.0], [1.0, 0.0]])  # cosines 1 and 0
  t = 0.1
  assert float(positive_contrast(p_i, p_j, t)) == pytest.approx(-(1 + 0) / 2 + math.log(t), rel=1e-6)
  # Aligning the views lowers it (the paper's intent).
  assert float(positive_contrast(p_i, p_i, t)) < float(positive_contrast(p_i, p_j, t))


def test_positive_contrast_code_reproduces_the_original():
  p_i = jnp.array([[1.0, 0.0], [0.0, 3.0]])
  p_j = jnp.array([[2.0, 0.0], [1.0, 0.0]])  # cosines 1 and 0
  t = 0.1
  # MSE of the 2B positive logits [10, 0, 10, 0] against 0 = 50, divided by 2B = 4.
  assert float(positive_contrast_code(p_i, p_j, t)) == pytest.approx(12.5, rel=1e-6)
  # It is smallest for orthogonal views (reference.md B1): the opposite of eq. 3.
  orthogonal = jnp.array([[0.0, 1.0], [1.0, 0.0]])
  assert float(positive_contrast_code(p_i, orthogonal, t)) == pytest.approx(0.0, abs=1e-6)
  masked = positive_contrast_code(p_i, p_j, t, jnp.array([True, False]))
  assert float(masked) == pytest.approx(100.0 / 2, rel=1e-6)  # one pair: (10^2) / (2 * 1)


def test_contrast_dispatch_and_combined():
  p_i = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  p_j = jnp.array([[1.0, 1.0], [0.0, 1.0]])
  contrast = jax.jit(losses.contrast, static_argnums=0)
  for name, fn in (("ntxent", ntxent), ("positive", positive_contrast), ("positive_code", positive_contrast_code)):
    assert float(contrast(name, p_i, p_j, 0.2)) == pytest.approx(float(fn(p_i, p_j, 0.2)))
  with pytest.raises(ValueError, match="unknown contrast"):
    losses.contrast("byol", p_i, p_j, 0.2)
  assert losses.combined(4.0, 2.0, 0.25) == pytest.approx(0.25 * 4.0 + 0.75 * 2.0)
  assert losses.combined(4.0, 2.0, 0.0) == 2.0 and losses.combined(4.0, 2.0, 1.0) == 4.0
  with pytest.raises(ValueError, match="gamma"):
    losses.combined(4.0, 2.0, 1.5)


def test_r2_from_sums_is_variance_weighted_r2():
  from sklearn.metrics import r2_score
  rng = np.random.default_rng(2)
  target = rng.normal(size=(50, 7)) * np.arange(1, 8)
  pred = target + rng.normal(size=(50, 7))
  sse = np.sum((pred - target) ** 2)
  r2 = losses.r2_from_sums(sse, target.sum(0), (target ** 2).sum(0), 50)
  assert r2 == pytest.approx(r2_score(target, pred, multioutput="variance_weighted"), rel=1e-10)


def test_shape_errors():
  with pytest.raises(ValueError, match="shape"):
    reconstruction_mse(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"\(B, D\)"):
    ntxent(jnp.zeros((2, 3)), jnp.zeros((3, 3)), 0.1)
  with pytest.raises(ValueError, match="mask has shape"):
    ntxent(jnp.zeros((2, 3)), jnp.zeros((2, 3)), 0.1, jnp.ones(3, bool))
