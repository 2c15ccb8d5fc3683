"""Evaluation of one zoo member: losses, accuracies and per-class F1 on the training and test splits,
in chunks of `TrainSpec.eval_batch_size` examples (bounded memory), the training metrics optionally on
a fixed subset (`TrainSpec.train_eval_size`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wsl_jax.weights import nets
from wsl_jax.zoo.spec import Data, TrainSpec

def kernel_mask(spec: TrainSpec) -> np.ndarray:
  return ~spec.net.layout().param_is_bias()


def net_logits(spec: TrainSpec, w: jax.Array, x: jax.Array, dropout_rate=0.0, dropout_key=None) -> jax.Array:
  return nets.apply(spec.net, w, x, spec.activation, dropout_rate=dropout_rate, dropout_key=dropout_key,
                    conv_impl=spec.conv_impl)


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def split_metrics(spec: TrainSpec, w: jax.Array, x: jax.Array, y: jax.Array, num_classes: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
  """Summed loss, correct count, and per-class TP / predicted / true counts over one split."""
  def chunk_stats(xc, yc, valid):
    return logits_stats(net_logits(spec, w, xc), yc, valid, num_classes)

  return summed_over_chunks(chunk_stats, x, y, spec.eval_batch_size)


def logits_stats(logits: jax.Array, y: jax.Array, valid: jax.Array, num_classes: int):
  """`split_metrics`' statistics of one chunk of logits `(n, C)`, rows where `valid` is False left out."""
  pred = jnp.argmax(logits, axis=-1)
  loss = jnp.sum(jnp.where(valid, cross_entropy(logits, y), 0.0))
  correct = jnp.sum(valid & (pred == y))
  onehot_pred = jax.nn.one_hot(pred, num_classes) * valid[:, None]
  onehot_true = jax.nn.one_hot(y, num_classes) * valid[:, None]
  return loss, correct, (onehot_pred * onehot_true).sum(0), onehot_pred.sum(0), onehot_true.sum(0)


def summed_over_chunks(chunk_stats, x: jax.Array, y: jax.Array, chunk_size: int):
  """`chunk_stats(x, y, valid)` summed over equal chunks of at most `chunk_size` examples (0: one chunk);
  the last chunk is zero-padded (by fewer rows than there are chunks: 360 test images in chunks of 250
  are 2 x 180, not 250 + 110 padded to 250) and `valid` (bool, per example) marks its real rows."""
  n = x.shape[0]
  if chunk_size <= 0 or chunk_size >= n:
    return chunk_stats(x, y, jnp.ones((n,), bool))
  n_chunks = -(-n // chunk_size)
  chunk_size = -(-n // n_chunks)
  pad = n_chunks * chunk_size - n
  xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]).reshape((n_chunks, chunk_size) + x.shape[1:])
  yp = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]).reshape(n_chunks, chunk_size)
  valid = (jnp.arange(n_chunks * chunk_size) < n).reshape(n_chunks, chunk_size)
  stats = jax.lax.map(lambda a: chunk_stats(*a), (xp, yp, valid))
  return jax.tree.map(lambda s: s.sum(0), stats)


def train_eval_indices(n_train: int, train_eval_size: int) -> np.ndarray | None:
  """The training examples the training metrics are computed on: None = all of them; else a fixed
  random subset of `train_eval_size` (sorted; the same for every model and zoo)."""
  if train_eval_size <= 0 or train_eval_size >= n_train:
    return None
  return np.sort(np.random.default_rng(0x7E57).permutation(n_train)[:train_eval_size])


def train_eval_split(spec: TrainSpec, data: Data) -> tuple[jax.Array, jax.Array]:
  """The training examples and labels the training metrics are computed on."""
  subset = train_eval_indices(data.x_train.shape[0], spec.train_eval_size)
  if subset is None:
    return data.x_train, data.y_train
  return data.x_train[subset], data.y_train[subset]


def evaluate(spec: TrainSpec, w: jax.Array, data: Data, num_classes: int, split_fn=split_metrics) -> jax.Array:
  """Metrics vector (see `metric_names`) of flat weights `w`: losses, accuracies, test F1 per class.

  Training metrics use the subset `train_eval_indices(n_train, spec.train_eval_size)` when it is set.
  `split_fn(spec, w, x, y, num_classes)` computes one split's statistics (`split_metrics`; the batched
  CNN rule passes one for many models at once, whose statistics carry a leading model axis).
  """
  x_tr, y_tr = train_eval_split(spec, data)
  tr_loss, tr_correct, *_ = split_fn(spec, w, x_tr, y_tr, num_classes)
  te_loss, te_correct, tp, n_pred, n_true = split_fn(spec, w, data.x_test, data.y_test, num_classes)
  return metrics_vector(tr_loss, tr_correct, x_tr.shape[0], te_loss, te_correct, tp, n_pred, n_true,
                         data.x_test.shape[0])


def metrics_vector(tr_loss, tr_correct, n_tr, te_loss, te_correct, tp, n_pred, n_true, n_te) -> jax.Array:
  """`metric_names` order from summed split statistics; leading axes (models) broadcast."""
  denom = n_pred + n_true
  f1 = jnp.where(denom > 0, 2.0 * tp / jnp.maximum(denom, 1.0), 0.0)  # sklearn's zero_division=0
  scalars = jnp.stack([tr_loss / n_tr, tr_correct / n_tr, te_loss / n_te, te_correct / n_te], axis=-1)
  return jnp.concatenate([scalars, f1], axis=-1).astype(jnp.float32)
