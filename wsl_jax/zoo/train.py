"""Training one zoo member as a pure function, and many of them as one `jit(vmap(...))` program.

`train_one(key, hparams, data, spec)` initialises a network, trains it with an optax optimizer
(`lax.scan` over epochs, and over mini-batches inside each epoch, data on device), and records the flat
weights and the evaluation metrics at every checkpoint epoch. Everything that differs between models
of one compiled program is a traced array (key, learning rate, weight decay, momentum, dropout, train
fraction, initializer index, initializer std); discrete choices that change the program (activation,
optimizer) are static fields of `TrainSpec`: the generator buckets models by them (`jax_notes.md` §3.3).

For large data sets the training-set metrics can be computed on a fixed subset of the training set
(`TrainSpec.train_eval_size`), and every split is evaluated in chunks of `eval_batch_size` examples so
that memory stays bounded.

Dense networks have batched rules (`jax.custom_batching.custom_vmap`) for the two hot spots, so that
`vmap(train_one)` does not run what plain vmapping would produce (tiny per-model batched dots):
`evaluate_models` evaluates all models on the shared evaluation inputs with one first-layer GEMM, and
`_models_ce_value_and_grad` computes the cross-entropy gradient with unrolled broadcast products. One
model alone runs the generic code; tests check both give the same numbers. Measured on tetris_seed
(2 cores, 1024 models, one device): 15.4 -> 4.4-6.2 µs per model-step; the full 1000-model zoo with
`generate()` on both cores 7.4 -> 2.3-3.7 s (`benchmarks/zoo_throughput.py`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wsl_jax import nets

OPTIMIZERS = ("adam", "sgd", "rmsprop")
# Continuous per-model hyper-parameters every compiled program takes (with these defaults).
CONTINUOUS_HPARAMS = {
    "lr": 1e-3,            # learning rate
    "wd": 0.0,             # coupled L2 weight decay on every parameter (PyTorch's `weight_decay`)
    "l2": 0.0,             # L2 penalty on kernels only, added to the loss (Keras' kernel_regularizer)
    "momentum": 0.0,       # SGD momentum
    "dropout": 0.0,        # dropout rate after every activation
    "train_fraction": 1.0,  # fraction of the training set this model sees
    "init_std": nets.DEFAULT_INIT_STD,  # std of the "RandomNormal" / "TruncatedNormal" initializers
}


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """The static part of a zoo member's training: one compiled program per distinct TrainSpec."""

  net: nets.NetSpec
  epochs: int
  batch_size: int
  checkpoint_epochs: tuple[int, ...]
  activation: str
  optimizer: str
  inits: tuple[str, ...]  # initializers used in this bucket; a per-model index picks one
  bias_value: float = 0.01
  eval_batch_size: int = 0  # 0: evaluate each split in one batch; else in chunks of this size
  dropout: bool = False  # models of this program use dropout (rate per model in hparams)
  train_subsets: bool = False  # models train on per-model subsets (train_fraction per model)
  train_eval_size: int = 0  # 0: training metrics on the whole training set; else on a fixed subset this big
  conv_impl: str = "taps"  # how conv layers are computed (`nets.CONV_IMPLS`)

  def __post_init__(self):
    nets.get_activation(self.activation)
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {OPTIMIZERS}")
    for name in self.inits:
      if name not in nets.ALL_INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; choose from {nets.ALL_INITIALIZERS}")
    if self.conv_impl not in nets.CONV_IMPLS:
      raise ValueError(f"unknown conv implementation {self.conv_impl!r}; choose from {nets.CONV_IMPLS}")
    if self.train_eval_size < 0 or self.eval_batch_size < 0:
      raise ValueError(f"train_eval_size and eval_batch_size must be >= 0, got {self.train_eval_size}, "
                       f"{self.eval_batch_size}")
    if self.epochs < 0 or self.batch_size < 1:
      raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
    ck = tuple(int(e) for e in self.checkpoint_epochs)
    if not ck or list(ck) != sorted(set(ck)) or ck[0] < 0 or ck[-1] > self.epochs:
      raise ValueError(f"checkpoint_epochs must be increasing epochs in 0..{self.epochs}, got {ck}")
    object.__setattr__(self, "checkpoint_epochs", ck)


class Data(NamedTuple):
  """Device-resident data of one data set (shared by every model of a program)."""

  x_train: jax.Array
  y_train: jax.Array
  x_test: jax.Array
  y_test: jax.Array
  order_key: jax.Array  # zoo-level key of the per-epoch data shuffles (not per model)


class Record(NamedTuple):
  """What `train_one` returns for one model: C = number of checkpoints."""

  weights: jax.Array   # (C, N)
  metrics: jax.Array   # (C, len(metric_names(num_classes)))
  diverged: jax.Array  # () bool


def metric_names(num_classes: int) -> tuple[str, ...]:
  return ("train_loss", "train_acc", "test_loss", "test_acc") + tuple(
      f"f1_class_{k}" for k in range(num_classes))


def make_optimizer(name: str, hp: dict[str, jax.Array]) -> optax.GradientTransformation:
  """The optimizer with PyTorch's defaults; `hp["lr"]` (and momentum) may be traced per-model values."""
  if name == "adam":
    return optax.adam(hp["lr"], b1=0.9, b2=0.999, eps=1e-8)
  if name == "sgd":
    return optax.chain(optax.trace(decay=hp["momentum"], nesterov=False), optax.scale(-hp["lr"]))
  if name == "rmsprop":
    return optax.rmsprop(hp["lr"], decay=0.99, eps=1e-8)
  raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")


def _kernel_mask(spec: TrainSpec) -> np.ndarray:
  return ~spec.net.layout().param_is_bias()


def _logits(spec: TrainSpec, w: jax.Array, x: jax.Array, dropout_rate=0.0, dropout_key=None) -> jax.Array:
  return nets.apply(spec.net, w, x, spec.activation, dropout_rate=dropout_rate, dropout_key=dropout_key,
                    conv_impl=spec.conv_impl)


def _cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def _split_metrics(spec: TrainSpec, w: jax.Array, x: jax.Array, y: jax.Array, num_classes: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
  """Summed loss, correct count, and per-class TP / predicted / true counts over one split."""
  def chunk_stats(xc, yc, valid):
    logits = _logits(spec, w, xc)
    pred = jnp.argmax(logits, axis=-1)
    loss = jnp.sum(jnp.where(valid, _cross_entropy(logits, yc), 0.0))
    correct = jnp.sum(valid & (pred == yc))
    onehot_pred = jax.nn.one_hot(pred, num_classes) * valid[:, None]
    onehot_true = jax.nn.one_hot(yc, num_classes) * valid[:, None]
    return loss, correct, (onehot_pred * onehot_true).sum(0), onehot_pred.sum(0), onehot_true.sum(0)

  return _summed_over_chunks(chunk_stats, x, y, spec.eval_batch_size)


def _summed_over_chunks(chunk_stats, x: jax.Array, y: jax.Array, chunk_size: int):
  """`chunk_stats(x, y, valid)` summed over chunks of `chunk_size` examples (0: one chunk); the last
  chunk is zero-padded and `valid` (bool, per example) marks its real rows."""
  n = x.shape[0]
  if chunk_size <= 0 or chunk_size >= n:
    return chunk_stats(x, y, jnp.ones((n,), bool))
  n_chunks = -(-n // chunk_size)
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


def _train_eval_split(spec: TrainSpec, data: Data) -> tuple[jax.Array, jax.Array]:
  """The training examples and labels the training metrics are computed on."""
  subset = train_eval_indices(data.x_train.shape[0], spec.train_eval_size)
  if subset is None:
    return data.x_train, data.y_train
  return data.x_train[subset], data.y_train[subset]


def evaluate(spec: TrainSpec, w: jax.Array, data: Data, num_classes: int) -> jax.Array:
  """Metrics vector (see `metric_names`) of flat weights `w`: losses, accuracies, test F1 per class.

  Training metrics use the subset `train_eval_indices(n_train, spec.train_eval_size)` when it is set.
  """
  x_tr, y_tr = _train_eval_split(spec, data)
  tr_loss, tr_correct, *_ = _split_metrics(spec, w, x_tr, y_tr, num_classes)
  te_loss, te_correct, tp, n_pred, n_true = _split_metrics(spec, w, data.x_test, data.y_test, num_classes)
  return _metrics_vector(tr_loss, tr_correct, x_tr.shape[0], te_loss, te_correct, tp, n_pred, n_true,
                         data.x_test.shape[0])


def _metrics_vector(tr_loss, tr_correct, n_tr, te_loss, te_correct, tp, n_pred, n_true, n_te) -> jax.Array:
  """`metric_names` order from summed split statistics; leading axes (models) broadcast."""
  denom = n_pred + n_true
  f1 = jnp.where(denom > 0, 2.0 * tp / jnp.maximum(denom, 1.0), 0.0)  # sklearn's zero_division=0
  scalars = jnp.stack([tr_loss / n_tr, tr_correct / n_tr, te_loss / n_te, te_correct / n_te], axis=-1)
  return jnp.concatenate([scalars, f1], axis=-1).astype(jnp.float32)


# ---- evaluation of many dense networks at once --------------------------------------------------------
# Under `jax.vmap`, `evaluate` of an MLP becomes (models, samples, units) batched dots with a handful of
# units, a transpose of every hidden activation, and reductions over the sample axis fused with their
# producers, all slow on CPU (measured: 60 % of the tetris_seed trainer). Every model of a program sees
# the same evaluation inputs, so the batched rule below computes the first layer of all models as one
# GEMM, keeps samples on the minor axis (units x samples per model), and turns the per-class counts into
# a confusion matrix contracted with the one-hot labels. Same metrics, different float summation order.

def _models_logits(spec: TrainSpec, w: jax.Array, x: jax.Array) -> jax.Array:
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


def _models_split_stats(spec: TrainSpec, w: jax.Array, x: jax.Array, y: jax.Array, num_classes: int):
  """Per model: summed loss `(M,)` and confusion counts `(M, predicted, true)` over one split."""
  def chunk_stats(xc, yc, valid):
    logits = _models_logits(spec, w, xc)
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

  return _summed_over_chunks(chunk_stats, x, y, spec.eval_batch_size)


def evaluate_models(spec: TrainSpec, w: jax.Array, data: Data, num_classes: int) -> jax.Array:
  """`evaluate` of M dense networks at once: `w (M, N)` -> metrics `(M, len(metric_names))`.

  Equal to `jax.vmap(evaluate)` up to float summation order; the batched form of `evaluate` inside the
  zoo trainer. Dense networks only (`spec.net.is_cnn` False).
  """
  if spec.net.is_cnn:
    raise ValueError("evaluate_models computes dense networks only; vmap `evaluate` for a CNN")
  x_tr, y_tr = _train_eval_split(spec, data)
  tr_loss, tr_conf = _models_split_stats(spec, w, x_tr, y_tr, num_classes)
  te_loss, te_conf = _models_split_stats(spec, w, data.x_test, data.y_test, num_classes)
  trace = lambda conf: jnp.trace(conf, axis1=1, axis2=2)
  tp = jnp.diagonal(te_conf, axis1=1, axis2=2)
  return _metrics_vector(tr_loss, trace(tr_conf), x_tr.shape[0], te_loss, trace(te_conf), tp,
                         te_conf.sum(2), te_conf.sum(1), data.x_test.shape[0])


@functools.lru_cache(maxsize=64)
def _batchable_evaluate(spec: TrainSpec, num_classes: int):
  """`evaluate` on (w, x_train, y_train, x_test, y_test), whose vmap over `w` alone is `evaluate_models`."""
  def single(w, x_tr, y_tr, x_te, y_te):
    return evaluate(spec, w, Data(x_tr, y_tr, x_te, y_te, None), num_classes)

  fn = jax.custom_batching.custom_vmap(single)

  @fn.def_vmap
  def _rule(axis_size, in_batched, w, x_tr, y_tr, x_te, y_te):
    if in_batched[0] and not any(in_batched[1:]) and not spec.net.is_cnn:
      return evaluate_models(spec, w, Data(x_tr, y_tr, x_te, y_te, None), num_classes), True
    in_axes = tuple(0 if b else None for b in in_batched)
    return jax.vmap(single, in_axes=in_axes, axis_size=axis_size)(w, x_tr, y_tr, x_te, y_te), True

  return fn


def _primes_above(n: int, count: int) -> np.ndarray:
  primes, candidate = [], n + 1
  while len(primes) < count:
    if candidate > 1 and all(candidate % p for p in range(2, int(candidate ** 0.5) + 1)):
      primes.append(candidate)
    candidate += 1
  return np.asarray(primes, np.int64)


def epoch_order(spec: TrainSpec, data: Data, model_key: jax.Array, subset_order: jax.Array,
                n_seen: jax.Array, epoch: jax.Array) -> jax.Array:
  """Example indices of one model's epoch: `steps * batch_size` of them (the remainder is dropped).

  Sorting a fresh permutation per model and epoch dominates training time on CPU (XLA's sort), so the
  shuffle is built from one permutation per epoch shared by the zoo (`data.order_key`; computed once,
  not per model) composed with a random per-model affine bijection i -> (a i + b) mod n, with `a` a
  prime larger than n. Each model's epoch order is then a uniformly random permutation (marginally),
  different for every model and epoch. With `train_subsets`, a model visits the first `n_seen`
  examples of its own fixed shuffle `subset_order`, in the affine order of that epoch.
  """
  n_train = data.x_train.shape[0]
  steps = n_train // spec.batch_size
  primes = jnp.asarray(_primes_above(n_train, 64))
  k_a, k_b = jax.random.split(jax.random.fold_in(model_key, epoch))
  a = primes[jax.random.randint(k_a, (), 0, len(primes))]
  positions = jnp.arange(steps * spec.batch_size, dtype=jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
  if spec.train_subsets:
    b = jax.random.randint(k_b, (), 0, n_seen)
    return subset_order[(a * positions + b) % n_seen]
  b = jax.random.randint(k_b, (), 0, n_train)
  shared = jax.random.permutation(jax.random.fold_in(data.order_key, epoch), n_train)
  return shared[(a * positions + b) % n_train]


# ---- training steps of many dense networks at once ----------------------------------------------------
# Under `jax.vmap`, the gradient of a tiny MLP becomes (models, batch, units) batched dots with a few
# units per model; XLA's CPU backend runs the weight-gradient ones (contracting the batch axis) about 7x
# slower than the same contraction written as an unrolled sum of broadcast products, which fuses into
# one elementwise loop (measured: 0.92 vs 0.14 ms at 1024 models, batch 20, 5x16 weights). The batched
# rule below computes the cross-entropy gradient of M dense networks by hand in that form; one model
# alone keeps `jax.value_and_grad`.

_UNROLL_MAX = 32  # contractions over at most this many terms are unrolled; larger ones stay dots


def _contract(lhs: jax.Array, rhs: jax.Array, spec: str, axis: int) -> jax.Array:
  """`jnp.einsum(spec, lhs, rhs)`, unrolled into broadcast products when the contracted axis is short.

  `axis` is the contracted axis of `lhs`; `spec` names it once on each side (e.g. "mbi,moi->mbo")."""
  n = lhs.shape[axis]
  if n > _UNROLL_MAX:
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


def _models_ce_value_and_grad(spec: TrainSpec, w: jax.Array, x: jax.Array, y: jax.Array):
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
    z = _contract(a, kernel, "mbi,moi->mbo", axis=2)
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
    g = [_contract(dz, inputs[l], "mbo,mbi->moi", axis=1).reshape(m, -1)]
    if layout.layers[l].bias:
      g.append(dz.sum(axis=1))
    grads[l] = g
    if l > 0:
      da = _contract(dz, kernels[l], "mbo,moi->mbi", axis=2)
      _, pullback = jax.vjp(act, pre_acts[l - 1])
      dz = pullback(da)[0]
  grad = jnp.concatenate([part for g in grads for part in g], axis=1)  # Layout order: weight, bias per layer
  return loss, grad


@functools.lru_cache(maxsize=64)
def _batchable_ce_value_and_grad(spec: TrainSpec):
  """(w, x, y) -> (mean cross-entropy, gradient) without dropout; its vmap is `_models_ce_value_and_grad`."""
  def single(w, x, y):
    return jax.value_and_grad(lambda v: _cross_entropy(_logits(spec, v, x), y).mean())(w)

  fn = jax.custom_batching.custom_vmap(single)

  @fn.def_vmap
  def _rule(axis_size, in_batched, w, x, y):
    if all(in_batched) and not spec.net.is_cnn:
      return _models_ce_value_and_grad(spec, w, x, y), (True, True)
    in_axes = tuple(0 if b else None for b in in_batched)
    return jax.vmap(single, in_axes=in_axes, axis_size=axis_size)(w, x, y), (True, True)

  return fn


def train_one(key: jax.Array, hp: dict[str, jax.Array], data: Data, spec: TrainSpec) -> Record:
  """Train one model; record weights and metrics at every checkpoint epoch.

  Args:
    key: the model's PRNG key (initialisation, data order, dropout).
    hp: per-model hyper-parameters: every key of `CONTINUOUS_HPARAMS` and "init_index" (an index into
      `spec.inits`). Scalars here; arrays of shape (M,) under `jax.vmap`. A missing "init_std" means
      `nets.DEFAULT_INIT_STD`.
    data: the data set on device, and the zoo's data-order key.
    spec: the static training settings.

  Returns:
    A `Record`. A model whose loss or weights become non-finite is flagged `diverged`; its training
    continues (with non-finite values) so that every model of a program runs the same steps.
  """
  layout = spec.net.layout()
  num_classes = spec.net.num_classes
  n_train = data.x_train.shape[0]
  steps = n_train // spec.batch_size
  if steps < 1:
    raise ValueError(f"batch size {spec.batch_size} exceeds the {n_train} training examples")
  kernel_mask = jnp.asarray(_kernel_mask(spec), jnp.float32)

  k_init, k_subset, k_order, k_drop = jax.random.split(key, 4)
  w0 = nets.init_weights_choice(k_init, layout, spec.inits, hp["init_index"], spec.bias_value,
                                hp.get("init_std", nets.DEFAULT_INIT_STD))
  if spec.train_subsets:
    # This model sees the first `n_seen` examples of its own fixed shuffle.
    n_seen = jnp.clip(jnp.floor(hp["train_fraction"] * n_train), spec.batch_size, n_train).astype(jnp.int32)
    subset_order = jax.random.permutation(k_subset, n_train)
  else:
    n_seen, subset_order = jnp.int32(n_train), None
  steps_seen = n_seen // spec.batch_size
  tx = make_optimizer(spec.optimizer, hp)
  opt_state = tx.init(w0)

  def dropout_ce(w, xb, yb, k_step):
    return _cross_entropy(_logits(spec, w, xb, hp["dropout"], k_step), yb).mean()

  def l2_penalty(w):
    return hp["l2"] * jnp.sum(kernel_mask * w * w)

  def train_step(carry, inp):
    w, opt_state, finite, epoch = carry
    step, idx = inp
    k_step = jax.random.fold_in(jax.random.fold_in(k_drop, epoch), step) if spec.dropout else None
    xb, yb = data.x_train[idx], data.y_train[idx]
    if spec.dropout:
      loss, grad = jax.value_and_grad(dropout_ce)(w, xb, yb, k_step)
    else:  # no randomness in the loss: the batched rule of the cross-entropy gradient applies
      loss, grad = _batchable_ce_value_and_grad(spec)(w, xb, yb)
    l2_loss, l2_grad = jax.value_and_grad(l2_penalty)(w)
    loss, grad = loss + l2_loss, grad + l2_grad
    grad = grad + hp["wd"] * w
    updates, new_state = tx.update(grad, opt_state, w)
    if spec.train_subsets:  # steps past this model's share of the data leave it unchanged
      active = step < steps_seen
      updates = jnp.where(active, updates, 0.0)
      new_state = jax.tree.map(lambda new, old: jnp.where(active, new, old), new_state, opt_state)
      finite = finite & (jnp.isfinite(loss) | ~active)
    else:
      finite = finite & jnp.isfinite(loss)
    return (w + updates, new_state, finite, epoch), None

  def train_epoch(carry, epoch):
    order = epoch_order(spec, data, k_order, subset_order, n_seen, epoch)
    batches = order.reshape(steps, spec.batch_size)
    carry, _ = jax.lax.scan(train_step, carry + (epoch,), (jnp.arange(steps), batches))
    return carry[:3]

  ck = np.asarray(spec.checkpoint_epochs)
  slot_of_epoch = np.full(spec.epochs + 1, -1, np.int32)
  slot_of_epoch[ck] = np.arange(len(ck))
  n_metrics = len(metric_names(num_classes))
  w_buf = jnp.zeros((len(ck), layout.num_params), jnp.float32)
  m_buf = jnp.zeros((len(ck), n_metrics), jnp.float32)

  def record(bufs, w, slot):
    w_buf, m_buf = bufs
    metrics = _batchable_evaluate(spec, num_classes)(w, data.x_train, data.y_train, data.x_test, data.y_test)
    return (w_buf.at[slot].set(w), m_buf.at[slot].set(metrics))

  bufs = (w_buf, m_buf)
  if slot_of_epoch[0] >= 0:
    bufs = record(bufs, w0, 0)

  def epoch_body(carry, inp):
    state, bufs = carry
    epoch, slot = inp
    w, opt_state, finite = train_epoch(state, epoch)
    # `slot` is the same for every model of a vmapped program, so this stays a real conditional.
    bufs = jax.lax.cond(slot >= 0, lambda b: record(b, w, slot), lambda b: b, bufs)
    return ((w, opt_state, finite), bufs), None

  epochs = np.arange(1, spec.epochs + 1, dtype=np.int32)
  ((w, _, finite), (w_buf, m_buf)), _ = jax.lax.scan(
      epoch_body, ((w0, opt_state, jnp.array(True)), bufs), (epochs, slot_of_epoch[1:]))
  finite = finite & jnp.all(jnp.isfinite(w_buf)) & jnp.all(jnp.isfinite(m_buf[:, :4]))
  return Record(weights=w_buf, metrics=m_buf, diverged=~finite)


@functools.lru_cache(maxsize=64)
def compiled_trainer(spec: TrainSpec, mesh: jax.sharding.Mesh | None = None):
  """`jit(vmap(train_one))` over models for one TrainSpec (cached: one program per bucket).

  With a `mesh` (axis "models"), each device trains its own slice of the model axis under
  `shard_map`: models are independent, so the program has no cross-device communication. (Letting the
  SPMD partitioner shard a plain `jit` inserted collectives; XLA's virtual CPU devices share one thread
  pool, and a collective across them aborted an SSL run on the 2-core machine, see
  `wsl_jax.train.default_device_count`. The zoo hang once blamed on them was the LAPACK QR deadlock
  fixed in `wsl_jax.nets.orthonormalize_columns`.)
  """
  fn = jax.vmap(functools.partial(train_one, spec=spec), in_axes=(0, 0, None))
  if mesh is not None:
    models, replicated = jax.sharding.PartitionSpec("models"), jax.sharding.PartitionSpec()
    # check_vma off: the scan carries start unvarying (constants) and become per-device values.
    fn = jax.shard_map(fn, mesh=mesh, in_specs=(models, models, replicated), out_specs=models,
                       check_vma=False)
  return jax.jit(fn)


def to_device_data(dataset, order_seed: int = 0, dtype=jnp.float32) -> Data:
  """The data set on device, with the zoo-level data-order key derived from `order_seed`."""
  return Data(jnp.asarray(dataset.x_train, dtype), jnp.asarray(dataset.y_train, jnp.int32),
              jnp.asarray(dataset.x_test, dtype), jnp.asarray(dataset.y_test, jnp.int32),
              jax.random.fold_in(jax.random.key(order_seed), 0x0DA7A))


def default_hparams(num_models: int, **overrides: Any) -> dict[str, np.ndarray]:
  """Per-model hyper-parameter arrays with the defaults of `CONTINUOUS_HPARAMS`, init_index 0."""
  hp = {k: np.full(num_models, v, np.float32) for k, v in CONTINUOUS_HPARAMS.items()}
  hp["init_index"] = np.zeros(num_models, np.int32)
  for k, v in overrides.items():
    if k not in hp:
      raise ValueError(f"unknown hyper-parameter {k!r}; known: {sorted(hp)}")
    hp[k] = np.broadcast_to(np.asarray(v, hp[k].dtype), (num_models,)).copy()
  return hp
