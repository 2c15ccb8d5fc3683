"""Batched rules of the zoo trainer (`jax.custom_batching.custom_vmap`).

Under `jax.vmap`, the generic code of a tiny MLP becomes per-model batched dots with a handful of units,
which XLA's CPU backend runs badly. The rules here replace the hot spots when `train_one` is vmapped
over models: `evaluate_models` evaluates all dense models on the shared evaluation inputs with one
first-layer GEMM, `evaluate_cnn_models` does the same for the first conv layer of CNNs, and
`models_ce_value_and_grad` computes the cross-entropy gradient of dense models with unrolled broadcast
products. One model alone, CNN training steps, dropout, and `TrainSpec(batched_rules=False)` run the
generic code; tests check both give the same numbers. Measured on tetris_seed (2 cores, 1024 models, one
device): 15.4 -> 4.4-6.2 µs per model-step; 1.2x over the cleanest einsum rewrite, 1.7x over plain
vmap (`benchmarks/zoo_throughput.py`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from wsl_jax.weights import nets
from wsl_jax.zoo.metrics import (cross_entropy, evaluate, logits_stats, metrics_vector, net_logits,
                                 summed_over_chunks, train_eval_split)
from wsl_jax.zoo.spec import Data, TrainSpec

# ---- evaluation of many dense networks at once --------------------------------------------------------
# Under `jax.vmap`, `evaluate` of an MLP becomes (models, samples, units) batched dots with a handful of
# units, a transpose of every hidden activation, and reductions over the sample axis fused with their
# producers, all slow on CPU (measured: 60 % of the tetris_seed trainer). Every model of a program sees
# the same evaluation inputs, so the batched rule below computes the first layer of all models as one
# GEMM, keeps samples on the minor axis (units x samples per model), and turns the per-class counts into
# a confusion matrix contracted with the one-hot labels. Same metrics, different float summation order.

def models_logits(spec: TrainSpec, w: jax.Array, x: jax.Array) -> jax.Array:
  """Logits `(M, C, n)` of M dense networks with flat weights `w (M, N)` on shared inputs `x (n, F)`."""
  layout = spec.net.layout()
  act = nets.get_activation(spec.activation)
  m = w.shape[0]
  h = None
  for l, layer in enumerate(layout.layers):
    kernel = w[:, layout.weight_slice(l)].reshape(m, layer.out_units, layer.in_units)
    if h is None:  # one GEMM over all models: (M*O, F) @ (F, n)
      h = (kernel.reshape(m * layer.out_units, layer.in_units) @ x.T).reshape(m, layer.out_units, x.shape[0])
    else:
      h = jnp.einsum("moi,min->mon", kernel, act(h))
    if layer.bias:
      h = h + w[:, layout.bias_slice(l)][:, :, None]
  return h


def models_split_stats(spec: TrainSpec, w: jax.Array, x: jax.Array, y: jax.Array, num_classes: int):
  """Per model: summed loss `(M,)` and confusion counts `(M, predicted, true)` over one split."""
  def chunk_stats(xc, yc, valid):
    logits = models_logits(spec, w, xc)
    valid = valid.astype(logits.dtype)
    y_onehot = jax.nn.one_hot(yc, num_classes, dtype=logits.dtype) * valid[:, None]  # padding rows are 0
    picked = jnp.einsum("mcn,nc->m", logits, y_onehot)
    # Classes are few: max, argmax and logsumexp over them as elementwise ops on (M, n) slices.
    classes = [logits[:, c] for c in range(num_classes)]
    top, pred = classes[0], jnp.zeros(classes[0].shape, jnp.int32)
    for c in range(1, num_classes):  # strict ">" keeps the first maximum, as argmax
      better = classes[c] > top
      top, pred = jnp.where(better, classes[c], top), jnp.where(better, c, pred)
    lse = top + jnp.log(sum(jnp.exp(l - top) for l in classes))
    loss = jnp.einsum("mn,n->m", lse, valid) - picked
    pred_onehot = (pred[:, None, :] == jnp.arange(num_classes)[None, :, None]).astype(logits.dtype)  # (M, C, n)
    return loss, jnp.einsum("mcn,nd->mcd", pred_onehot, y_onehot)

  return summed_over_chunks(chunk_stats, x, y, spec.eval_batch_size)


def evaluate_models(spec: TrainSpec, w: jax.Array, data: Data, num_classes: int) -> jax.Array:
  """`evaluate` of M dense networks at once: `w (M, N)` -> metrics `(M, len(metric_names))`.

  Equal to `jax.vmap(evaluate)` up to float summation order; the batched form of `evaluate` inside the
  zoo trainer. Dense networks only (`spec.net.is_cnn` False).
  """
  if spec.net.is_cnn:
    raise ValueError("evaluate_models computes dense networks only; vmap `evaluate` for a CNN")
  x_tr, y_tr = train_eval_split(spec, data)
  tr_loss, tr_conf = models_split_stats(spec, w, x_tr, y_tr, num_classes)
  te_loss, te_conf = models_split_stats(spec, w, data.x_test, data.y_test, num_classes)
  trace = lambda conf: jnp.trace(conf, axis1=1, axis2=2)
  tp = jnp.diagonal(te_conf, axis1=1, axis2=2)
  return metrics_vector(tr_loss, trace(tr_conf), x_tr.shape[0], te_loss, trace(te_conf), tp,
                         te_conf.sum(2), te_conf.sum(1), data.x_test.shape[0])


# ---- evaluation of many CNNs at once ------------------------------------------------------------------
# The models of a program evaluate the same inputs, so the first conv layer of all of them is one GEMM:
# the inputs' patches (n * positions, C * kh * kw) times every model's kernels stacked as output channels
# (C * kh * kw, M * O). Under plain vmap it is M per-model products with a handful of output channels.
# The rest of each network runs vmapped from there (`nets.apply_after_first_conv`). Same metrics as
# `jax.vmap(evaluate)` up to float summation order. Measured with the two scratch scripts that became
# `python benchmarks/cnn_first_conv.py` (same computations; digits_seed's evaluation sets: 500 training
# and 360 test images in chunks of 250, before the chunks were balanced; paper CNN, 32 models; 2 cores
# under load average ~12 from other jobs): 7.7 -> 5.7 s per evaluation of all models
# (min of 5; medians 7.8 -> 6.1 s). The same GEMM in the training step needs every model on the same
# mini-batch; autodiffed, the rest vmapped, it was 1.55x slower than vmapped `taps` on per-model batches
# (32 models, batch 32: 47.8 vs 30.7 ms per model-step, same load), so training keeps the generic code.

def first_conv_all_models(spec: TrainSpec, w: jax.Array, x: jax.Array) -> jax.Array:
  """The first conv layer's output `(M, n, H', W', O)` (bias added) of M CNNs `w (M, N)` on shared `x`."""
  layout = spec.net.layout()
  block, layer = spec.net.convs[0], layout.layers[0]
  o, c, kh, kw = layer.weight_shape
  m = w.shape[0]
  kernel = w[:, layout.weight_slice(0)].reshape(m, o, c, kh * kw)
  patches = jnp.stack([nets._tap(x, i, j, kh, kw, block.stride) for i in range(kh) for j in range(kw)], axis=-1)
  y = jnp.einsum("nhwck,mock->mnhwo", patches, kernel)
  if layer.bias:
    y = y + w[:, layout.bias_slice(0)][:, None, None, None, :]
  return y


def cnn_models_split_metrics(spec: TrainSpec, w: jax.Array, x: jax.Array, y: jax.Array, num_classes: int):
  """`split_metrics` of M CNNs `w (M, N)` on one shared split: every statistic with a leading model axis."""
  def chunk_stats(xc, yc, valid):
    first = first_conv_all_models(spec, w, xc)
    rest = lambda wm, fm: logits_stats(nets.apply_after_first_conv(spec.net, wm, fm, spec.activation,
                                                                   conv_impl=spec.conv_impl), yc, valid, num_classes)
    return jax.vmap(rest)(w, first)

  return summed_over_chunks(chunk_stats, x, y, spec.eval_batch_size)


def evaluate_cnn_models(spec: TrainSpec, w: jax.Array, data: Data, num_classes: int) -> jax.Array:
  """`evaluate` of M CNNs at once: `w (M, N)` -> metrics `(M, len(metric_names))`."""
  if not spec.net.is_cnn:
    raise ValueError("evaluate_cnn_models computes CNNs only; use evaluate_models for dense networks")
  return evaluate(spec, w, data, num_classes, split_fn=cnn_models_split_metrics)


@functools.lru_cache(maxsize=64)
def batchable_evaluate(spec: TrainSpec, num_classes: int):
  """`evaluate` on (w, x_train, y_train, x_test, y_test), whose vmap over `w` alone is `evaluate_models`."""
  def single(w, x_tr, y_tr, x_te, y_te):
    return evaluate(spec, w, Data(x_tr, y_tr, x_te, y_te, None), num_classes)

  fn = jax.custom_batching.custom_vmap(single)

  @fn.def_vmap
  def _rule(axis_size, in_batched, w, x_tr, y_tr, x_te, y_te):
    if in_batched[0] and not any(in_batched[1:]):
      models_fn = evaluate_cnn_models if spec.net.is_cnn else evaluate_models
      return models_fn(spec, w, Data(x_tr, y_tr, x_te, y_te, None), num_classes), True
    in_axes = tuple(0 if b else None for b in in_batched)
    return jax.vmap(single, in_axes=in_axes, axis_size=axis_size)(w, x_tr, y_tr, x_te, y_te), True

  return fn



# ---- training steps of many dense networks at once ----------------------------------------------------
# Under `jax.vmap`, the gradient of a tiny MLP becomes (models, batch, units) batched dots with a few
# units per model; XLA's CPU backend runs the weight-gradient ones (contracting the batch axis) about 7x
# slower than the same contraction written as an unrolled sum of broadcast products, which fuses into
# one elementwise loop (measured: 0.92 vs 0.14 ms at 1024 models, batch 20, 5x16 weights). The batched
# rule below computes the cross-entropy gradient of M dense networks by hand in that form; one model
# alone keeps `jax.value_and_grad`.

UNROLL_MAX = 32  # contractions over at most this many terms are unrolled; larger ones stay dots


def contract(lhs: jax.Array, rhs: jax.Array, spec: str, axis: int) -> jax.Array:
  """`jnp.einsum(spec, lhs, rhs)`, unrolled into broadcast products when the contracted axis is short.

  `axis` is the contracted axis of `lhs`; `spec` names it once on each side (e.g. "mbi,moi->mbo")."""
  n = lhs.shape[axis]
  if n > UNROLL_MAX:
    return jnp.einsum(spec, lhs, rhs)
  ins, out = spec.split("->")
  lhs_names, rhs_names = ins.split(",")
  summed = lhs_names[axis]
  total = None
  for k in range(n):
    a = jax.lax.index_in_dim(lhs, k, axis, keepdims=False)  # static slices (jnp.take adds bounds selects)
    b = jax.lax.index_in_dim(rhs, k, rhs_names.index(summed), keepdims=False)
    a_names, b_names = lhs_names.replace(summed, ""), rhs_names.replace(summed, "")
    term = jnp.einsum(f"{a_names},{b_names}->{out}", a, b)  # a broadcast product, no contraction
    total = term if total is None else total + term
  return total


def models_ce_value_and_grad(spec: TrainSpec, w: jax.Array, x: jax.Array, y: jax.Array):
  """Mean cross-entropy and its gradient for M dense networks: `w (M, N)`, `x (M, B, F)`, `y (M, B)`."""
  layout = spec.net.layout()
  act = nets.get_activation(spec.activation)
  m, batch = x.shape[0], x.shape[1]
  kernels, pre_acts, inputs = [], [], []
  a = x
  for l, layer in enumerate(layout.layers):
    if l > 0:
      a = act(pre_acts[-1])
    kernel = w[:, layout.weight_slice(l)].reshape(m, layer.out_units, layer.in_units)
    z = contract(a, kernel, "mbi,moi->mbo", axis=2)
    if layer.bias:
      z = z + w[:, None, layout.bias_slice(l)]
    kernels.append(kernel)
    inputs.append(a)
    pre_acts.append(z)
  logits = pre_acts[-1]
  y_onehot = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
  lse = jax.nn.logsumexp(logits, axis=-1)
  loss = (jnp.sum(lse, axis=1) - jnp.sum(logits * y_onehot, axis=(1, 2))) / batch  # row sums, not (M, B, C) -> (M, B)
  dz = (jnp.exp(logits - lse[..., None]) - y_onehot) / batch
  grads = [None] * len(layout.layers)
  for l in reversed(range(len(layout.layers))):
    g = [contract(dz, inputs[l], "mbo,mbi->moi", axis=1).reshape(m, -1)]
    if layout.layers[l].bias:
      g.append(dz.sum(axis=1))
    grads[l] = g
    if l > 0:
      da = contract(dz, kernels[l], "mbo,moi->mbi", axis=2)
      _, pullback = jax.vjp(act, pre_acts[l - 1])
      dz = pullback(da)[0]
  grad = jnp.concatenate([part for g in grads for part in g], axis=1)  # Layout order: weight, bias per layer
  return loss, grad


@functools.lru_cache(maxsize=64)
def batchable_ce_value_and_grad(spec: TrainSpec):
  """(w, x, y) -> (mean cross-entropy, gradient) without dropout; its vmap is `models_ce_value_and_grad`."""
  def single(w, x, y):
    return jax.value_and_grad(lambda v: cross_entropy(net_logits(spec, v, x), y).mean())(w)

  fn = jax.custom_batching.custom_vmap(single)

  @fn.def_vmap
  def _rule(axis_size, in_batched, w, x, y):
    if all(in_batched) and not spec.net.is_cnn:
      return models_ce_value_and_grad(spec, w, x, y), (True, True)
    in_axes = tuple(0 if b else None for b in in_batched)
    return jax.vmap(single, in_axes=in_axes, axis_size=axis_size)(w, x, y), (True, True)

  return fn
