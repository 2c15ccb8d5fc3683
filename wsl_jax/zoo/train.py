"""Training one zoo member as a pure function, and many of them as one `jit(vmap(...))` program.

`train_one(key, hparams, data, spec)` initialises a network, trains it with an optax optimizer
(`lax.scan` over epochs, and over mini-batches inside each epoch, data on device), and records the flat
weights and the evaluation metrics at every checkpoint epoch. Everything that differs between models
of one compiled program is a traced array of `HParams` (learning rate, weight decay, momentum, dropout,
train fraction, initializer index, initializer std) or the key; discrete choices that change the
program are static fields of `TrainSpec` (`wsl_jax.zoo.spec`).

The parts: `wsl_jax.zoo.spec` (TrainSpec, HParams, Data, Record), `wsl_jax.zoo.metrics` (evaluation of
one model), `wsl_jax.zoo.batched` (the batched rules for dense networks, switched off with
`TrainSpec(batched_rules=False)`), and this module (optimizer, data order, the training loop, the
compiled program).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wsl_jax.weights import nets
from wsl_jax.zoo.batched import batchable_ce_value_and_grad, batchable_evaluate, evaluate_models  # noqa: F401
from wsl_jax.zoo.metrics import cross_entropy, evaluate, kernel_mask, net_logits, train_eval_indices  # noqa: F401
from wsl_jax.zoo.spec import (CONTINUOUS_HPARAMS, OPTIMIZERS, Data, HParams, Record, TrainSpec,  # noqa: F401
                              default_hparams, metric_names, to_device_data)

def make_optimizer(name: str, hp: HParams) -> optax.GradientTransformation:
  """The optimizer with PyTorch's defaults; `hp.lr` (and momentum) may be traced per-model values."""
  if name == "adam":
    return optax.adam(hp.lr, b1=0.9, b2=0.999, eps=1e-8)
  if name == "sgd":
    return optax.chain(optax.trace(decay=hp.momentum, nesterov=False), optax.scale(-hp.lr))
  if name == "rmsprop":
    return optax.rmsprop(hp.lr, decay=0.99, eps=1e-8)
  raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")



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


def train_one(key: jax.Array, hp: HParams, data: Data, spec: TrainSpec) -> Record:
  """Train one model; record weights and metrics at every checkpoint epoch.

  Args:
    key: the model's PRNG key (initialisation, data order, dropout).
    hp: per-model hyper-parameters (`HParams`): scalars here; arrays of shape (M,) under `jax.vmap`.
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
  kernels = jnp.asarray(kernel_mask(spec), jnp.float32)

  k_init, k_subset, k_order, k_drop = jax.random.split(key, 4)
  w0 = nets.init_weights_choice(k_init, layout, spec.inits, hp.init_index, spec.bias_value,
                                hp.init_std)
  if spec.train_subsets:
    # This model sees the first `n_seen` examples of its own fixed shuffle.
    n_seen = jnp.clip(jnp.floor(hp.train_fraction * n_train), spec.batch_size, n_train).astype(jnp.int32)
    subset_order = jax.random.permutation(k_subset, n_train)
  else:
    n_seen, subset_order = jnp.int32(n_train), None
  steps_seen = n_seen // spec.batch_size
  tx = make_optimizer(spec.optimizer, hp)
  opt_state = tx.init(w0)

  def dropout_ce(w, xb, yb, k_step):
    return cross_entropy(net_logits(spec, w, xb, hp.dropout, k_step), yb).mean()

  def l2_penalty(w):
    return hp.l2 * jnp.sum(kernels * w * w)

  def train_step(carry, inp):
    w, opt_state, finite, epoch = carry
    step, idx = inp
    k_step = jax.random.fold_in(jax.random.fold_in(k_drop, epoch), step) if spec.dropout else None
    xb, yb = data.x_train[idx], data.y_train[idx]
    if spec.dropout:
      loss, grad = jax.value_and_grad(dropout_ce)(w, xb, yb, k_step)
    elif spec.batched_rules:  # no randomness in the loss: the batched rule of the gradient applies
      loss, grad = batchable_ce_value_and_grad(spec)(w, xb, yb)
    else:
      loss, grad = jax.value_and_grad(lambda v: cross_entropy(net_logits(spec, v, xb), yb).mean())(w)
    l2_loss, l2_grad = jax.value_and_grad(l2_penalty)(w)
    loss, grad = loss + l2_loss, grad + l2_grad
    grad = grad + hp.wd * w
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
    if spec.batched_rules:
      metrics = batchable_evaluate(spec, num_classes)(w, data.x_train, data.y_train, data.x_test, data.y_test)
    else:
      metrics = evaluate(spec, w, data, num_classes)
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
  `wsl_jax.hyperrep.train.default_device_count`. The zoo hang once blamed on them was the LAPACK QR deadlock
  fixed in `wsl_jax.weights.nets.orthonormalize_columns`.)
  """
  fn = jax.vmap(functools.partial(train_one, spec=spec), in_axes=(0, 0, None))
  if mesh is not None:
    models, replicated = jax.sharding.PartitionSpec("models"), jax.sharding.PartitionSpec()
    # check_vma off: the scan carries start unvarying (constants) and become per-device values.
    fn = jax.shard_map(fn, mesh=mesh, in_specs=(models, models, replicated), out_specs=models,
                       check_vma=False)
  return jax.jit(fn)
