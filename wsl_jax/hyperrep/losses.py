"""Losses of hyper-representation learning (reference.md §5).

* `reconstruction_mse`: mean squared error over all elements (the original's `MSELoss`).
* `ntxent`: SimCLR's NT-Xent on the projections of the two views (EcD); agrees with
  `optax.losses.ntxent` with labels `[0..B-1, 0..B-1]`.
* `positive_contrast`: the positive-only contrast of the paper's eq. (3), `-cos(p_i, p_j) + log T`,
  averaged over pairs (Ec+D as the paper writes it: it pulls the two views together).
* `positive_contrast_code`: what the original code computes for Ec+D (`NT_Xent_pos`, reference.md B1):
  `mean((cos / T)^2) / (2B)`. It pushes positive pairs towards orthogonality, with a tiny weight.
* `combined`: `gamma * contrast + (1 - gamma) * mse`.
* `r2_from_sums`: reconstruction R^2 against the per-position variance of the targets.

Every loss takes an optional boolean `mask` over the batch: rows where it is False (padding of a
fixed-shape evaluation batch) take no part, neither as anchors nor as negatives.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

# Cosine similarity as PyTorch's CosineSimilarity: x.y / max(|x| |y|, eps).
COSINE_EPS = 1e-8

CONTRASTS = ("ntxent", "positive", "positive_code")

# Excluded logits: finite (not -inf) so that fully masked rows have finite gradients; |cos / T| is far smaller.
_MASKED_LOGIT = -1e9


def _row_weights(mask: Any, n: int) -> jax.Array:
  if mask is None:
    return jnp.ones((n,), jnp.float32)
  mask = jnp.asarray(mask)
  if mask.shape != (n,):
    raise ValueError(f"mask has shape {mask.shape}, expected ({n},)")
  return mask.astype(jnp.float32)


def _check_pair(p_i: jax.Array, p_j: jax.Array) -> None:
  if p_i.ndim != 2 or p_i.shape != p_j.shape:
    raise ValueError(f"the two views' projections must both be (B, D), got {p_i.shape} and {p_j.shape}")


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
  """Row-wise cosine similarity of `(B, D)` arrays -> `(B,)`."""
  dot = jnp.sum(a * b, axis=-1)
  norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
  return dot / jnp.maximum(norms, COSINE_EPS)


def reconstruction_mse(pred: jax.Array, target: jax.Array, mask: Any = None) -> jax.Array:
  """Mean of `(pred - target)^2` over every element of the rows in `mask` (all rows if None).

  `pred` and `target` are `(B, ..., N)`; `mask` is `(B,)`.
  """
  if pred.shape != target.shape:
    raise ValueError(f"pred has shape {pred.shape}, target has shape {target.shape}")
  sq = jnp.square(pred - target).reshape(pred.shape[0], -1)
  w = _row_weights(mask, pred.shape[0])
  return jnp.sum(sq.sum(axis=1) * w) / jnp.maximum(w.sum() * sq.shape[1], 1.0)


def ntxent(p_i: jax.Array, p_j: jax.Array, temperature: float, mask: Any = None) -> jax.Array:
  """NT-Xent (SimCLR) of two views' projections `(B, D)`, averaged over the 2B anchors.

  For anchor a among the 2B stacked projections, the positive is the other view of the same sample and
  the negatives are the 2B - 2 others: `-log(exp(s_ap) / sum_{k != a} exp(s_ak))`, `s = cos / T`.
  """
  _check_pair(p_i, p_j)
  b = p_i.shape[0]
  w = _row_weights(mask, b)
  p = jnp.concatenate([p_i, p_j], axis=0)
  p = p / jnp.maximum(jnp.linalg.norm(p, axis=-1, keepdims=True), COSINE_EPS)
  sim = (p @ p.T) / temperature  # (2B, 2B)
  valid = jnp.concatenate([w, w]) > 0
  others = valid[None, :] & ~jnp.eye(2 * b, dtype=bool)
  logits = jnp.where(others, sim, _MASKED_LOGIT)
  lse = jax.nn.logsumexp(logits, axis=1)
  positive = jnp.concatenate([jnp.diagonal(sim, offset=b), jnp.diagonal(sim, offset=-b)])
  per_anchor = jnp.where(valid, lse - positive, 0.0)
  return per_anchor.sum() / jnp.maximum(2.0 * w.sum(), 1.0)


def positive_contrast(p_i: jax.Array, p_j: jax.Array, temperature: float, mask: Any = None) -> jax.Array:
  """The paper's eq. (3): `-cos(p_i, p_j) + log T`, averaged over the pairs (no negatives)."""
  _check_pair(p_i, p_j)
  w = _row_weights(mask, p_i.shape[0])
  cos = cosine_similarity(p_i, p_j)
  return -jnp.sum(cos * w) / jnp.maximum(w.sum(), 1.0) + jnp.log(temperature)


def positive_contrast_code(p_i: jax.Array, p_j: jax.Array, temperature: float,
                           mask: Any = None, code_batch: int = 0) -> jax.Array:
  """The original code's Ec+D term (`NT_Xent_pos`, reference.md B1): `mean((cos / T)^2) / (2B)`.

  The original takes the MSE of the 2B positive logits (each pair twice) against 0, then divides by 2B
  once more. B is `code_batch` when given (the original's batch size, 500 in all its configs: the term
  then weighs what it weighed in the paper's runs whatever this batch size is), else the number of
  (valid) pairs of this batch, as the code.
  """
  _check_pair(p_i, p_j)
  w = _row_weights(mask, p_i.shape[0])
  n = jnp.maximum(w.sum(), 1.0)
  s = cosine_similarity(p_i, p_j) / temperature
  b = float(code_batch) if code_batch else n
  return (jnp.sum(jnp.square(s) * w) / n) / (2.0 * b)


def contrast(name: str, p_i: jax.Array, p_j: jax.Array, temperature: float, mask: Any = None,
             code_batch: int = 0) -> jax.Array:
  """The contrastive term `name` (one of `CONTRASTS`); `code_batch` see `positive_contrast_code`."""
  if name == "ntxent":
    return ntxent(p_i, p_j, temperature, mask)
  if name == "positive":
    return positive_contrast(p_i, p_j, temperature, mask)
  if name == "positive_code":
    return positive_contrast_code(p_i, p_j, temperature, mask, code_batch)
  raise ValueError(f"unknown contrast {name!r}; choose from {CONTRASTS}")


def combined(contrast_value: Any, mse: Any, gamma: float) -> Any:
  """`gamma * contrast + (1 - gamma) * mse` (gamma = 0: reconstruction only; 1: contrast only)."""
  # A traced weight (a curriculum's, `LossConfig.gamma_at`) cannot be checked here; its config was.
  if not isinstance(gamma, jax.core.Tracer) and not 0.0 <= float(gamma) <= 1.0:
    raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
  return gamma * contrast_value + (1.0 - gamma) * mse


def r2_from_sums(sse: Any, target_sum: Any, target_sq_sum: Any, count: Any) -> Any:
  """R^2 = 1 - SSE / SST, with SST the summed per-position variance of the targets.

  Args:
    sse: summed squared reconstruction error over all samples and positions.
    target_sum: `(N,)` per-position sum of the targets.
    target_sq_sum: `(N,)` per-position sum of the squared targets.
    count: number of samples.

  `1 - MSE / mean per-position variance` (reference.md §5), computed from sums so that it can be
  accumulated over batches (pass float64 NumPy sums for accuracy).
  """
  sst = (target_sq_sum - target_sum ** 2 / count).sum()
  return 1.0 - sse / sst
