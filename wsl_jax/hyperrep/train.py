"""Self-supervised training of hyper-representations (reference.md §5, §6).

    result = train.fit(configs.preset("tetris"), w_train, w_val, w_test, layout=zoo.layout,
                       workdir="runs/tetris", seed=0)
    z = train.embed(result, w_test)            # (S, L) embeddings of un-augmented weights
    r = train.evaluate(result, w_test)         # loss terms and reconstruction R^2

The train step is one plain `jax.jit` function of (state, batch, epoch, step, key): the NNX model is
split into a graph definition and pure state (`nnx.split`), the step merges it inside, and the state
buffers are donated. Each step draws two augmented views per sample (`wsl_jax.hyperrep.augment`), runs both
through the encoder and decoder in one batch, and minimises `gamma * contrast + (1 - gamma) * MSE`
with Adam (coupled L2, as PyTorch's Adam) and a learning-rate schedule that lives in the optimizer state:
reduce-on-plateau on the epoch-mean training loss (the original's), cosine or constant, each with an
optional linear warmup (`TrainConfig.schedule`, `warmup_epochs`).

Reproducibility and resumption: the data order of epoch e is `numpy.random.default_rng([seed, e])`
's permutation, and the augmentation and dropout keys of step s of epoch e are
`fold_in(fold_in(key(seed), e), s)`. Both are pure functions of (seed, epoch, step), so a run killed at
any moment and restarted with the same arguments resumes from its last checkpoint (orbax
`CheckpointManager`: model, optimizer and schedule state, RNG key, epoch, history) and ends with the
same parameters as an uninterrupted run. A damaged checkpoint (checked against the SHA-256 of its files
recorded at save time) is moved aside with a warning and the run resumes from the one before.

Data parallelism: with several devices, a `Mesh` with one "data" axis shards every batch and
replicates the state; XLA inserts the reductions (gradients, BatchNorm statistics, NT-Xent
similarities). Keys are partitionable (threefry), so the result does not depend on the device count
(up to float reassociation).

Several processes (`jax.distributed.initialize()` first, on every host; docs/scale.md): the mesh spans
every process's devices; each process is given the same arrays and places only the rows of its own
devices (`jax.make_array_from_callback`), so the run is the same data-parallel run as one process with
as many devices (same global batch, same losses to float tolerance). Checkpoints go to a `workdir` that
every process sees (orbax writes the replicated state once); process 0 writes the logs, the checksum
records and moves damaged steps aside, between barriers.

Batches have fixed shapes: training drops the last partial batch of an epoch; evaluation and embedding
pad the last batch (masked out of every loss and statistic) and slice the padding off.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from wsl_jax import outputs
from wsl_jax.hyperrep import augment, losses
from wsl_jax.hyperrep.configs import COSINE_FLOOR, AugmentConfig, ModelConfig, TrainConfig
from wsl_jax.hyperrep.models import HyperRepresentation
from wsl_jax.progress import progress_bar
from wsl_jax.weights.layout import Layout, check_weight_rows

CHECKPOINT_FORMAT_VERSION = 1
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
CHECKSUM_FILE = "wsl_jax_sha256.json"  # in each checkpoint step folder: every file's size and SHA-256
DAMAGED_DIR = "damaged_checkpoints"  # damaged checkpoint steps are moved here on resume
# Stream of the evaluation views' keys (fixed for a run, so successive evaluations are comparable).
_EVAL_STREAM = 0x5EED


# ---- optimizer --------------------------------------------------------------------------------------

class PlateauState(NamedTuple):
  """State of `reduce_on_plateau` (part of the optimizer state, hence of every checkpoint)."""

  scale: jax.Array       # multiplies the updates; the learning rate is lr * scale
  best: jax.Array        # best epoch-mean loss so far
  bad_epochs: jax.Array  # epochs since the last improvement
  loss_sum: jax.Array    # sum of this epoch's step losses
  count: jax.Array       # steps taken in this epoch


def reduce_on_plateau(factor: float, patience: int, threshold: float,
                      steps_per_epoch: int) -> optax.GradientTransformationExtraArgs:
  """PyTorch's `ReduceLROnPlateau(mode="min", threshold_mode="rel", cooldown=0, min_lr=0)` per epoch.

  The transformation scales the updates by `scale`, and accumulates the loss passed as `value=` to
  `update`; after every `steps_per_epoch` steps it compares the epoch mean with the best so far
  (improvement: `mean < best - threshold * |best|`, PyTorch's `best * (1 - threshold)` for the positive
  losses it was written for; for a negative best, such as eq. 3's `-cos + log T`, PyTorch's test would
  count slightly worse epochs as improvements and never decay: reference.md B18) and, after more than
  `patience` epochs without one,
  multiplies `scale` by `factor`. The new scale applies from the next epoch on, as with PyTorch's
  `scheduler.step()` after each epoch.
  """
  def init_fn(params):
    del params
    return PlateauState(scale=jnp.ones((), jnp.float32), best=jnp.full((), jnp.inf, jnp.float32),
                        bad_epochs=jnp.zeros((), jnp.int32), loss_sum=jnp.zeros((), jnp.float32),
                        count=jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, *, value, **extra_args):
    del params, extra_args
    updates = jax.tree.map(lambda u: u * state.scale.astype(u.dtype), updates)
    loss_sum = state.loss_sum + jnp.asarray(value, jnp.float32)
    count = state.count + 1
    epoch_end = count == steps_per_epoch
    mean = loss_sum / count.astype(jnp.float32)
    # best * (1 -/+ threshold): bit for bit PyTorch's rule for a positive best, and the same relative
    # margin for a negative one.
    improved = mean < jnp.where(state.best >= 0, state.best * (1.0 - threshold), state.best * (1.0 + threshold))
    bad = jnp.where(improved, 0, state.bad_epochs + 1)
    reduce = bad > patience
    new = PlateauState(scale=jnp.where(reduce, state.scale * factor, state.scale),
                       best=jnp.where(improved, mean, state.best),
                       bad_epochs=jnp.where(reduce, 0, bad),
                       loss_sum=jnp.zeros_like(loss_sum), count=jnp.zeros_like(count))
    mid = state._replace(loss_sum=loss_sum, count=count)
    return updates, jax.tree.map(lambda a, b: jnp.where(epoch_end, a, b), new, mid)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class StepScheduleState(NamedTuple):
  """State of `step_schedule` (part of the optimizer state, hence of every checkpoint)."""

  count: jax.Array  # optimizer steps taken
  scale: jax.Array  # the factor of the next step's update: warmup x cosine at `count`


def schedule_factor(config: TrainConfig, steps_per_epoch: int, count: Any) -> jax.Array:
  """The learning-rate factor of step `count` (0-based) of warmup and cosine (`TrainConfig.schedule`,
  `warmup_epochs`; 1 for a constant schedule after the warmup; the plateau scale is separate)."""
  count = jnp.asarray(count, jnp.float32)
  warm = config.warmup_epochs * steps_per_epoch
  factor = jnp.ones((), jnp.float32)
  if warm:
    factor = jnp.minimum(1.0, (count + 1.0) / warm)
  if config.schedule == "cosine":
    span = max(config.epochs * steps_per_epoch - warm - 1, 1)  # the last step ends at the floor
    t = jnp.clip((count - warm) / span, 0.0, 1.0)
    factor = factor * (COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + jnp.cos(jnp.pi * t)))
  return factor


def step_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformationExtraArgs:
  """Scales the updates by `schedule_factor` of the step count (warmup, cosine); the count lives in the
  optimizer state, so a resumed run continues the schedule where the checkpoint left it."""
  def init_fn(params):
    del params
    return StepScheduleState(count=jnp.zeros((), jnp.int32), scale=schedule_factor(config, steps_per_epoch, 0))

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    updates = jax.tree.map(lambda u: u * state.scale.astype(u.dtype), updates)
    count = state.count + 1
    return updates, StepScheduleState(count=count, scale=schedule_factor(config, steps_per_epoch, count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformationExtraArgs:
  """Adam with coupled L2 (`wd * param` added to the gradient first, as PyTorch's Adam), then the
  schedule: the plateau rule (`schedule="plateau"`) and / or the step schedule (warmup, cosine).
  `update` needs the step's loss: `tx.update(grads, state, params, value=loss)`.

  A transformation that would only multiply by 1 is left out, so a plateau run without warmup has the
  optimizer state (and checkpoints) it always had."""
  parts = [optax.add_decayed_weights(config.weight_decay), optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
           optax.scale(-config.lr)]
  if config.schedule == "plateau":
    parts.append(reduce_on_plateau(config.plateau_factor, config.plateau_patience, config.plateau_threshold,
                                   steps_per_epoch))
  if config.schedule == "cosine" or config.warmup_epochs:
    parts.append(step_schedule(config, steps_per_epoch))
  return optax.chain(*parts)


def learning_rate(config: TrainConfig, opt_state: Any) -> jax.Array:
  """The learning rate of the next step: lr times the plateau and step-schedule scales."""
  scale = jnp.ones((), jnp.float32)
  for part in opt_state:
    if isinstance(part, (PlateauState, StepScheduleState)):
      scale = scale * part.scale
  return config.lr * scale


# ---- model state ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def _structure(model_config: ModelConfig, layout: Layout) -> tuple[nnx.GraphDef, Any, tuple[tuple[int, ...], ...]]:
  """Graph definition, parameter treedef and parameter shapes of a model (built abstractly)."""
  abstract = nnx.eval_shape(lambda: HyperRepresentation(model_config, layout, rngs=nnx.Rngs(0)))
  leaves, treedef = jax.tree.flatten(nnx.as_pure(nnx.state(abstract, nnx.Param)))
  return nnx.graphdef(abstract), treedef, tuple(tuple(x.shape) for x in leaves)


def flatten_params(params: Any) -> jax.Array:
  """All parameters as one float32 vector (the training state keeps them so: one optimizer kernel
  instead of one per parameter array, which on CPU saves most of the compile time and many tiny ops)."""
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(params)])


def unflatten_params(flat: jax.Array, model_config: ModelConfig, layout: Layout) -> Any:
  """Inverse of `flatten_params` for the model of `model_config` and `layout`."""
  _, treedef, shapes = _structure(model_config, layout)
  sizes = [math.prod(s) for s in shapes]
  if flat.shape != (sum(sizes),):
    raise ValueError(f"flat parameters have shape {flat.shape}, the model has {sum(sizes)} parameters")
  offsets = np.cumsum([0] + sizes)
  leaves = [flat[a:b].reshape(s) for a, b, s in zip(offsets[:-1], offsets[1:], shapes)]
  return jax.tree.unflatten(treedef, leaves)


def _split(model: HyperRepresentation) -> tuple[jax.Array, Any]:
  """Flat params and pure BatchNorm statistics of a model."""
  _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  return flatten_params(nnx.as_pure(params)), nnx.as_pure(stats)


def _merge(model_config: ModelConfig, layout: Layout, params: Any, stats: Any) -> HyperRepresentation:
  """The model from flat params (or their unflattened tree) and BatchNorm statistics."""
  if isinstance(params, jax.Array) and params.ndim == 1:
    params = unflatten_params(params, model_config, layout)
  return nnx.merge(_structure(model_config, layout)[0], params, stats)


def init_state(config: TrainConfig, layout: Layout, key: jax.Array, steps_per_epoch: int) -> dict[str, Any]:
  """Fresh training state: `{"params": flat (P,), "batch_stats": pure state, "opt_state"}`."""
  model = HyperRepresentation(config.model, layout, rngs=nnx.Rngs(params=key))
  params, stats = _split(model)
  opt_state = make_optimizer(config, steps_per_epoch).init(params)
  return {"params": params, "batch_stats": stats, "opt_state": opt_state}


# ---- views, losses, steps ---------------------------------------------------------------------------

def make_views(key: jax.Array, w: jax.Array, layout: Layout, aug: AugmentConfig,
               target: str, table: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Two augmented views per sample and their reconstruction targets, both `(B, 2, N)`.

  Views are `augment.augment` with the two halves of `key` (as `augment.two_views`), permuted by rows of
  `table` when given (`permutation_table(aug, layout)`). Targets: the views themselves ("augmented"),
  the views before noise and erasing (same keys, so the same permutation; "denoised"), or `w` itself
  ("original").
  """
  keys = jax.random.split(key)
  if target == "denoised":  # the same permutation draws as the views, without corruption
    keys, target_keys = jax.random.clone(keys), keys
  kwargs = dict(aug.kwargs(), table=table)
  views = _views(keys, w, layout, kwargs)
  if target == "augmented":
    return views, views
  if target == "denoised":
    return views, _views(target_keys, w, layout, dict(kwargs, noise_std=0.0, erase_p=0.0))
  if target == "original":
    return views, jnp.stack([w, w], axis=1)
  raise ValueError(f"unknown reconstruction target {target!r}")


@functools.lru_cache(maxsize=8)
def _cached_table(aug: AugmentConfig, layout: Layout) -> np.ndarray:
  return np.asarray(augment.unit_permutation_table(jax.random.key(aug.table_seed), layout, aug.permutations,
                                                   complete=True))


def permutation_table(aug: AugmentConfig, layout: Layout) -> np.ndarray | None:
  """The fixed permutations of `aug`: int32 `(P, S)` unit permutations (`augment.unit_permutation_table`,
  a pure function of `permutations` and `table_seed`), or None when views draw fresh permutations."""
  return _cached_table(aug, layout) if aug.uses_table else None


def _views(keys: jax.Array, w: jax.Array, layout: Layout, kwargs: dict[str, Any]) -> jax.Array:
  kwargs = dict(kwargs)
  table = kwargs.pop("table", None)

  def view(k):
    if table is None:
      return augment.augment(k, w, layout, **kwargs)
    # A table row for the permutation (its own key), then the rest of the pipeline unpermuted.
    k_perm, k_rest = jax.random.split(k)
    permuted = augment.permute_from_unit_table(k_perm, w, table, layout)
    return augment.augment(k_rest, permuted, layout, **dict(kwargs, permute=False))
  # vmap over the two keys rather than two calls: one copy of the augmentation in the compiled step.
  views = jax.vmap(view)(keys)  # (2, B, N)
  return jnp.swapaxes(views, 0, 1)


def _loss_and_stats(params: Any, stats: Any, views: jax.Array, targets: jax.Array, mask: jax.Array,
                    dropout_key: jax.Array | None, gamma: Any = None, *, config: TrainConfig, layout: Layout,
                    train: bool):
  """Loss of a batch of view pairs `(B, 2, N)`; returns (loss, (metrics, new BatchNorm statistics)).

  `gamma`: the contrastive weight of this step (`LossConfig.gamma_at`; None: `config.loss.gamma`).

  `params` is the unflattened tree: differentiating through the slices of the flat vector would turn
  each parameter's gradient into a full-length padded vector.
  """
  model = _merge(config.model, layout, params, stats)
  b, _, n = views.shape
  rngs = nnx.Rngs(dropout=dropout_key) if train else None
  # (B, 2, N) -> (2B, N) keeps each device's rows together when the batch axis is sharded.
  z, recon = model(views.reshape(2 * b, n), rngs=rngs)
  targets = targets.reshape(2 * b, n)
  mask2 = jnp.repeat(mask, 2)
  mse = losses.reconstruction_mse(recon, targets, mask2)
  if config.loss.gamma > 0:
    z = z.reshape(b, 2, -1)
    p_i = model.project(z[:, 0], train=train, mask=mask)
    p_j = model.project(z[:, 1], train=train, mask=mask)
    contrast = losses.contrast(config.loss.contrast, p_i, p_j, config.loss.temperature, mask,
                               config.loss.code_batch)
  else:
    contrast = jnp.zeros((), jnp.float32)
  loss = losses.combined(contrast, mse, config.loss.gamma if gamma is None else gamma)
  m = mask2.astype(recon.dtype)[:, None]
  metrics = {"loss": loss, "contrast": contrast, "recon": mse,
             "sse": jnp.sum(jnp.square(recon - targets) * m),
             "target_sum": jnp.sum(targets * m, axis=0), "target_sq_sum": jnp.sum(jnp.square(targets) * m, axis=0),
             "count": jnp.sum(mask2.astype(jnp.float32))}
  return loss, (metrics, nnx.as_pure(nnx.state(model, nnx.BatchStat)))


def _step_key(key: jax.Array, epoch: jax.Array, step: jax.Array) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(key, epoch), step)


def _train_step(state: dict[str, Any], batch: jax.Array, epoch: jax.Array, step: jax.Array, key: jax.Array,
                table: jax.Array | None = None, *, config: TrainConfig, layout: Layout, steps_per_epoch: int):
  k_views, k_dropout = jax.random.split(_step_key(key, epoch, step))
  views, targets = make_views(k_views, batch, layout, config.augment, config.target, table)
  mask = jnp.ones(batch.shape[:1], bool)
  grad_fn = jax.value_and_grad(_loss_and_stats, has_aux=True)
  params = unflatten_params(state["params"], config.model, layout)
  (loss, (metrics, stats)), grads = grad_fn(params, state["batch_stats"], views, targets, mask, k_dropout,
                                            config.loss.gamma_at(epoch), config=config, layout=layout, train=True)
  grads = flatten_params(grads)
  tx = make_optimizer(config, steps_per_epoch)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"], value=loss)
  params = optax.apply_updates(state["params"], updates)
  out = {k: metrics[k] for k in ("loss", "contrast", "recon")}
  out["lr"] = learning_rate(config, opt_state)
  return {"params": params, "batch_stats": stats, "opt_state": opt_state}, out


def _eval_step(params: Any, stats: Any, batch: jax.Array, mask: jax.Array, key: jax.Array,
               table: jax.Array | None = None, *, config: TrainConfig, layout: Layout):
  views, targets = make_views(key, batch, layout, config.eval_augment, config.target, table)
  _, (metrics, _) = _loss_and_stats(params, stats, views, targets, mask, None, config=config,
                                    layout=layout, train=False)
  return metrics


def _encode(params: Any, stats: Any, w: jax.Array, *, model_config, layout: Layout) -> jax.Array:
  return _merge(model_config, layout, params, stats).encode(w)


def _reconstruct(params: Any, stats: Any, w: jax.Array, *, model_config, layout: Layout) -> jax.Array:
  return _merge(model_config, layout, params, stats)(w)[1]


# ---- devices ----------------------------------------------------------------------------------------

def _multiprocess() -> bool:
  return jax.process_count() > 1


def _is_main_process() -> bool:
  return jax.process_index() == 0


def _barrier(name: str) -> None:
  """Wait for every process (no-op in one process)."""
  if _multiprocess():
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def _put(tree: Any, sharding: NamedSharding) -> Any:
  """Host arrays -> arrays on `sharding`. In several processes every process holds the same host arrays
  and supplies the rows of its own devices only."""
  if not _multiprocess():
    return jax.device_put(tree, sharding)
  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(put, tree)


def _put_key(key: jax.Array, sharding: NamedSharding) -> jax.Array:
  """A PRNG key as an input of a step on `sharding` (placed like any array in several processes)."""
  if not _multiprocess():
    return key
  return jax.random.wrap_key_data(_put(jax.random.key_data(key), sharding))


def _local(tree: Any) -> Any:
  """Device arrays -> host values; a replicated array of several processes is read from a local copy."""
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
    return x
  return jax.device_get(jax.tree.map(get, tree))


def make_mesh(devices: Sequence[jax.Device] | int | None = None) -> Mesh:
  """A 1-D mesh with axis "data": all devices (None; with several processes, every process's), the first
  `devices` local ones (an int), or a list."""
  available = jax.devices() if _multiprocess() else jax.local_devices()
  if devices is None:
    devices = available
  elif isinstance(devices, int):
    if not 1 <= devices <= len(available):
      raise ValueError(f"asked for {devices} devices, but {len(available)} are available")
    devices = available[:devices]
  devices = list(devices)
  if not devices:
    raise ValueError("need at least one device")
  return Mesh(np.array(devices), ("data",))


def default_device_count(batch_size: int, num_devices: int | None = None, platform: str | None = None) -> int:
  """How many devices `fit` shards a batch over when none are given.

  On accelerators: all local devices, or the most of them that split the batch evenly. On CPU: one.
  XLA's virtual CPU devices share one thread pool, and the all-gather of the contrastive loss can wait
  on a device that gets no thread: on a busy 2-core machine a 2-device run aborted after XLA's 40 s
  rendezvous timeout. Intra-op threading already uses every core on one CPU device; pass `devices=`
  to shard over CPU devices anyway (the tests do).
  """
  if num_devices is None or platform is None:
    local = jax.devices() if _multiprocess() else jax.local_devices()
    num_devices = len(local) if num_devices is None else num_devices
    platform = local[0].platform if platform is None else platform
  if platform == "cpu" and not _multiprocess():
    return 1
  return max(d for d in range(1, num_devices + 1) if batch_size % d == 0)


def _shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
  return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))


def _step_config(config: TrainConfig) -> TrainConfig:
  """`config` with the fields that do not enter a step reset, so that runs differing only in them (e.g.
  the number of epochs) share compiled steps."""
  default = TrainConfig()
  # The cosine spans the run; otherwise any length above the warmup (a valid config) shares the step.
  epochs = (config.epochs if config.schedule == "cosine" else
            max(default.epochs, config.warmup_epochs + 1, config.loss.contrast_delay + config.loss.contrast_ramp + 1))
  return config.replace(epochs=epochs, eval_every=default.eval_every,
                        checkpoint_every=default.checkpoint_every, keep_checkpoints=default.keep_checkpoints,
                        eval_batch_size=default.eval_batch_size)


def _compiled_train_step(config: TrainConfig, layout: Layout, steps_per_epoch: int, mesh: Mesh):
  return _cached_train_step(_step_config(config), layout, steps_per_epoch, mesh)


def _compiled_eval_step(config: TrainConfig, layout: Layout, mesh: Mesh):
  return _cached_eval_step(_step_config(config), layout, mesh)


@functools.lru_cache(maxsize=16)
def _cached_train_step(config: TrainConfig, layout: Layout, steps_per_epoch: int, mesh: Mesh):
  replicated, data = _shardings(mesh)
  fn = functools.partial(_train_step, config=config, layout=layout, steps_per_epoch=steps_per_epoch)
  # A permutation table is one more (replicated) argument: (P, N) is too big to bake into the program.
  tables = (replicated,) if config.augment.uses_table else ()
  return jax.jit(fn, in_shardings=(replicated, data, replicated, replicated, replicated) + tables,
                 out_shardings=(replicated, replicated), donate_argnums=0)


@functools.lru_cache(maxsize=16)
def _cached_eval_step(config: TrainConfig, layout: Layout, mesh: Mesh):
  replicated, data = _shardings(mesh)
  fn = functools.partial(_eval_step, config=config, layout=layout)
  tables = (replicated,) if config.eval_augment.uses_table else ()
  return jax.jit(fn, in_shardings=(replicated, replicated, data, data, replicated) + tables,
                 out_shardings=replicated)


@functools.lru_cache(maxsize=16)
def _compiled_apply(kind: str, model_config, layout: Layout, mesh: Mesh):
  replicated, data = _shardings(mesh)
  fn = functools.partial(_encode if kind == "encode" else _reconstruct, model_config=model_config,
                         layout=layout)
  return jax.jit(fn, in_shardings=(replicated, replicated, data), out_shardings=data)


# ---- results ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainResult:
  """A trained model with its configuration and per-epoch history.

  Attributes:
    config: the run's configuration.
    layout: the layout of the flat weight vectors.
    seed: the run's seed.
    state: `{"params": all parameters as one vector (see `unflatten_params`), "batch_stats",
      "opt_state"}`.
    history: one dict per epoch (the lines of `metrics.jsonl`).
    workdir: where checkpoints and logs live (None for an in-memory run).
    mesh: the devices it ran on.
  """

  config: TrainConfig
  layout: Layout
  seed: int
  state: dict[str, Any]
  history: list[dict[str, Any]]
  workdir: str | None
  mesh: Mesh

  @property
  def model(self) -> HyperRepresentation:
    """The trained model (a fresh NNX module holding the parameters)."""
    return _merge(self.config.model, self.layout, self.state["params"], self.state["batch_stats"])

  @property
  def epochs_done(self) -> int:
    return len(self.history)


def _unpack(model_or_result: TrainResult | HyperRepresentation, config: TrainConfig | None,
            mesh: Mesh | None, seed: int | None):
  """(train config, layout, params, stats, mesh, seed) of a TrainResult or a bare model."""
  if isinstance(model_or_result, TrainResult):
    r = model_or_result
    return (config or r.config, r.layout, r.state["params"], r.state["batch_stats"], mesh or r.mesh,
            r.seed if seed is None else seed)
  if isinstance(model_or_result, HyperRepresentation):
    m = model_or_result
    if config is not None and config.model != m.config:
      raise ValueError("config.model differs from the model's own configuration")
    params, stats = _split(m)
    return (config or TrainConfig(model=m.config), m.layout, params, stats, mesh or make_mesh(1),
            0 if seed is None else seed)
  raise ValueError(f"expected a TrainResult or a HyperRepresentation, got {type(model_or_result).__name__}")


def _check_weights(w: Any, layout: Layout, name: str) -> np.ndarray:
  return check_weight_rows(w, name, layout.num_params, allow_empty=True).astype(np.float32, copy=False)


def _padded_batches(w: np.ndarray, batch_size: int, data_sharding: NamedSharding):
  """Yield (batch, mask, rows) with fixed shape `(batch_size, N)`; the last batch is zero-padded."""
  for start in range(0, w.shape[0], batch_size):
    rows = min(batch_size, w.shape[0] - start)
    batch = np.zeros((batch_size, w.shape[1]), np.float32)
    batch[:rows] = w[start:start + rows]
    mask = np.arange(batch_size) < rows
    yield _put(batch, data_sharding), _put(mask, data_sharding), rows


def _eval_batch_size(batch_size: int | None, default: int, mesh: Mesh) -> int:
  size = default if batch_size is None else batch_size
  if not isinstance(size, int) or size < 1:
    raise ValueError(f"batch_size must be a positive integer, got {size!r}")
  return -(-size // mesh.size) * mesh.size  # a multiple of the device count


def _apply(kind: str, model_or_result, weights, batch_size: int | None, devices) -> np.ndarray:
  config, layout, params, stats, mesh, _ = _unpack(model_or_result, None,
                                                   None if devices is None else make_mesh(devices), None)
  w = _check_weights(weights, layout, "weights")
  replicated, data = _shardings(mesh)
  params, stats = _put(_local((params, stats)), replicated)
  fn = _compiled_apply(kind, config.model, layout, mesh)
  size = _eval_batch_size(batch_size, config.eval_batch_size, mesh)
  out = [_gathered(fn(params, stats, batch))[:rows] for batch, _, rows in _padded_batches(w, size, data)]
  width = config.model.latent_dim if kind == "encode" else layout.num_params
  return np.concatenate(out, axis=0) if out else np.zeros((0, width), np.float32)


def _gathered(x: jax.Array) -> np.ndarray:
  """A batch-sharded result on the host (gathered from every process when they share the mesh)."""
  if x.is_fully_addressable:
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def embed(model_or_result: TrainResult | HyperRepresentation, weights: Any, batch_size: int | None = None,
          devices: Sequence[jax.Device] | int | None = None) -> np.ndarray:
  """Hyper-representations z `(S, L)` of un-augmented weights `(S, N)` (evaluation mode, batched).

  Args:
    model_or_result: a `TrainResult` or a `HyperRepresentation`.
    weights: flat weights `(S, N)`.
    batch_size: rows per compiled call (default: the config's `eval_batch_size`); the last batch is
      padded and the padding dropped.
    devices: devices to shard the batch over (default: the result's, or one device for a bare model).
  """
  return _apply("encode", model_or_result, weights, batch_size, devices)


def reconstruct(model_or_result: TrainResult | HyperRepresentation, weights: Any, batch_size: int | None = None,
                devices: Sequence[jax.Device] | int | None = None) -> np.ndarray:
  """Reconstructions `decode(encode(w))` `(S, N)` of un-augmented weights (evaluation mode, batched)."""
  return _apply("reconstruct", model_or_result, weights, batch_size, devices)


def evaluate(model_or_result: TrainResult | HyperRepresentation, weights: Any, *, config: TrainConfig | None = None,
             seed: int | None = None, batch_size: int | None = None,
             devices: Sequence[jax.Device] | int | None = None) -> dict[str, float]:
  """Loss terms and reconstruction R^2 of a split, in evaluation mode.

  Each sample gets two views augmented with `config.eval_augment` (keys fixed by `seed` and the batch
  index, so repeated evaluations see the same views); the targets follow `config.target`.

  Returns:
    {"loss", "contrast", "recon", "r2"}: the loss terms averaged over samples, and
    `R^2 = 1 - SSE / SST` with SST the per-position variance of the targets summed over positions
    (reference.md §5; this split's own statistics, not the test split's as the original, B8).

  Args:
    model_or_result: a `TrainResult` or a `HyperRepresentation`.
    weights: flat weights `(S, N)`.
    config: the loss and augmentation settings (default: the result's; for a bare model,
      `TrainConfig(model=model.config)`).
    seed: seed of the evaluation views (default: the result's seed, or 0).
    batch_size: rows per compiled call (default: `config.eval_batch_size`).
    devices: devices to shard over (default: the result's, or one device for a bare model).
  """
  config, layout, params, stats, mesh, seed = _unpack(
      model_or_result, config, None if devices is None else make_mesh(devices), seed)
  w = _check_weights(weights, layout, "weights")
  if w.shape[0] == 0:
    raise ValueError("cannot evaluate an empty split")
  return _evaluate(config, layout, params, stats, mesh, seed, w, batch_size)


def _evaluate(config: TrainConfig, layout: Layout, params: Any, stats: Any, mesh: Mesh, seed: int,
              w: np.ndarray, batch_size: int | None) -> dict[str, float]:
  replicated, data = _shardings(mesh)
  params, stats = _put(_local((params, stats)), replicated)
  fn = _compiled_eval_step(config, layout, mesh)
  size = _eval_batch_size(batch_size, config.eval_batch_size, mesh)
  eval_key = jax.random.fold_in(jax.random.key(seed), _EVAL_STREAM)
  table = permutation_table(config.eval_augment, layout)
  tables = () if table is None else (_put(table, replicated),)
  outs = [fn(params, stats, batch, mask, _put_key(jax.random.fold_in(eval_key, i), replicated), *tables)
          for i, (batch, mask, _) in enumerate(_padded_batches(w, size, data))]
  outs = _local(outs)
  count = sum(float(o["count"]) for o in outs)  # 2 x samples (both views)
  pairs = count / 2
  result = {k: sum(float(o[k]) * float(o["count"]) / 2 for o in outs) / pairs for k in ("contrast",)}
  result["recon"] = sum(float(o["sse"]) for o in outs) / (count * layout.num_params)
  result["loss"] = float(losses.combined(result["contrast"], result["recon"], config.loss.gamma))
  sums = [np.sum([np.asarray(o[k], np.float64) for o in outs], axis=0) for k in ("target_sum", "target_sq_sum")]
  result["r2"] = float(losses.r2_from_sums(sum(float(o["sse"]) for o in outs), sums[0], sums[1], count))
  return result


# ---- checkpoints ------------------------------------------------------------------------------------

def _fingerprint(w: np.ndarray) -> str:
  """A cheap identity of a training set: its shape and a hash of up to ~1000 evenly spaced rows."""
  stride = max(1, w.shape[0] // 1000)
  h = hashlib.sha1(repr(w.shape).encode())
  h.update(np.ascontiguousarray(w[::stride]).tobytes())
  return h.hexdigest()


def _checkpoint_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  # Synchronous saves: the next step donates the state buffers, so a save must finish reading them.
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options,
                               item_names=("state", "meta"))


def _step_dir(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(os.fspath(manager.directory), str(step))


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(1 << 24):
      h.update(block)
  return h.hexdigest()


def _write_checksums(step_dir: str) -> None:
  """Record the size and SHA-256 of every file of a finished checkpoint step (orbax checks neither: a
  truncated file fails deep in TensorStore, and a same-size corruption may restore silently)."""
  files = {}
  for root, _, names in os.walk(step_dir):
    for name in sorted(names):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel != CHECKSUM_FILE:
        files[rel] = {"bytes": os.path.getsize(path), "sha256": _sha256(path)}
  _write_json(os.path.join(step_dir, CHECKSUM_FILE), {"files": files})


def _verify_step(step_dir: str) -> tuple[bool, str | None]:
  """(whether the step has a checksum record, the first problem found or None). A step without a record
  (written before checksums were recorded, or by a run killed between the save and the record) is not
  checked here; a failure to restore it counts as damage."""
  record = os.path.join(step_dir, CHECKSUM_FILE)
  if not os.path.isfile(record):
    return False, None
  try:
    with open(record) as f:
      files = json.load(f)["files"]
    entries = [(rel, int(r["bytes"]), str(r["sha256"])) for rel, r in files.items()]
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    return True, f"its checksum record {CHECKSUM_FILE} is unreadable ({_one_line(e)})"
  for rel, size, digest in entries:
    path = os.path.join(step_dir, rel)
    if not os.path.isfile(path):
      return True, f"{rel} is missing"
    if os.path.getsize(path) != size:
      return True, f"{rel} has {os.path.getsize(path)} bytes, {size} were written (truncated or changed)"
    if _sha256(path) != digest:
      return True, f"{rel} does not match the SHA-256 recorded when it was written (corrupt)"
  return True, None


def _one_line(e: BaseException, limit: int = 300) -> str:
  text = " ".join(str(e).split()) or type(e).__name__
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _save(manager: ocp.CheckpointManager, state: dict[str, Any], key: jax.Array, meta: dict[str, Any]) -> None:
  tree = dict(state, rng=jax.random.key_data(key))
  manager.save(meta["epoch"], args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                      meta=ocp.args.JsonSave(meta)))
  manager.wait_until_finished()
  _barrier(f"wsl_jax checkpoint {meta['epoch']} saved")
  if _is_main_process():
    _write_checksums(_step_dir(manager, meta["epoch"]))
  _barrier(f"wsl_jax checkpoint {meta['epoch']} recorded")


def _restore(manager: ocp.CheckpointManager, epoch: int, template: dict[str, Any], key: jax.Array,
             sharding: NamedSharding) -> tuple[dict[str, Any], jax.Array, dict[str, Any]]:
  tree = dict(template, rng=jax.random.key_data(key))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)
  restored = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                            meta=ocp.args.JsonRestore()))
  tree = dict(restored.state)
  rng = jax.random.wrap_key_data(tree.pop("rng"))
  return tree, rng, restored.meta


def _meta(config: TrainConfig, layout: Layout, seed: int, epoch: int, history: list[dict[str, Any]],
          fingerprint: str) -> dict[str, Any]:
  return {"format_version": CHECKPOINT_FORMAT_VERSION, "epoch": epoch, "seed": seed,
          "config": config.to_dict(), "layout": layout.to_dict(), "train_data": fingerprint,
          "data_order": "numpy.random.default_rng([seed, epoch]).permutation(num_samples)",
          "step_keys": "fold_in(fold_in(jax.random.key(seed), epoch), step)",
          "history": history}


def _check_resumable(meta: dict[str, Any], config: TrainConfig, layout: Layout, seed: int, fingerprint: str,
                     workdir: str) -> None:
  problems = []
  if meta.get("format_version") != CHECKPOINT_FORMAT_VERSION:
    problems.append(f"checkpoint format {meta.get('format_version')} (expected {CHECKPOINT_FORMAT_VERSION})")
  if meta.get("seed") != seed:
    problems.append(f"seed {meta.get('seed')} (now {seed})")
  saved = TrainConfig.from_dict(meta["config"])
  if saved.schedule == "cosine" and saved.epochs != config.epochs:
    problems.append(f"a cosine schedule over {saved.epochs} epochs (now {config.epochs}; its length cannot "
                    f"change)")
  # epochs (except a cosine's) and the eval / checkpoint settings may change
  try:
    same = _step_config(dataclasses.replace(saved, warmup_epochs=0, epochs=config.epochs)) == _step_config(
        dataclasses.replace(config, warmup_epochs=0))
  except ValueError:  # the saved config does not fit the new length (e.g. its contrast_delay): not this run
    same = False
  if not same or saved.warmup_epochs != config.warmup_epochs:
    problems.append("a different config")
  if meta["epoch"] > config.epochs:
    problems.append(f"{meta['epoch']} epochs done, more than the {config.epochs} asked for")
  if Layout.from_dict(meta["layout"]) != layout:
    problems.append("a different layout")
  if meta.get("train_data") != fingerprint:
    problems.append("different training weights")
  if problems:
    raise ValueError(f"{workdir} holds a run with {', '.join(problems)}; use another workdir to start a new run")


def _write_json(path: str, obj: Any) -> None:
  outputs.atomic_write_text(path, json.dumps(obj, indent=1))


class _DamagedStep(Exception):
  """A checkpoint step that cannot be restored (internal; becomes a warning or a ValueError)."""


def _read_step(manager: ocp.CheckpointManager, step: int,
               prepare: Callable[[dict[str, Any]], tuple[Any, jax.Array, NamedSharding]]
               ) -> tuple[dict[str, Any], jax.Array, dict[str, Any]]:
  """Restore checkpoint `step` after checking its files against their recorded SHA-256.

  `prepare(meta)` checks the run (a ValueError propagates: a different run is not damage) and returns
  the state template, the key template and the sharding to restore with. Raises `_DamagedStep` for a
  damaged step; a step whose files match their checksums but which does not restore raises a
  ValueError (not damage: a bug or an incompatible version).
  """
  checked, problem = _verify_step(_step_dir(manager, step))
  if problem is not None:
    raise _DamagedStep(problem)
  try:
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    if not isinstance(meta, dict) or not {"epoch", "history", "config", "layout"} <= set(meta):
      raise ValueError("its metadata is not a checkpoint record of wsl_jax.hyperrep.train")
  except Exception as e:  # orbax / json errors of a damaged step
    if checked:
      raise ValueError(f"checkpoint step {step} in {manager.directory} matches its checksums but its "
                       f"metadata cannot be read: {_one_line(e)}") from e
    raise _DamagedStep(f"its metadata cannot be read ({_one_line(e)})") from e
  template, key, sharding = prepare(meta)
  try:
    return _restore(manager, step, template, key, sharding)
  except Exception as e:  # TensorStore errors of a truncated or corrupt array file
    if checked:
      raise ValueError(f"checkpoint step {step} in {manager.directory} matches its checksums but cannot be "
                       f"restored: {_one_line(e)}") from e
    raise _DamagedStep(f"its state cannot be read ({_one_line(e)})") from e


def _move_aside(workdir: str, step_dir: str, step: int) -> str:
  folder = os.path.join(workdir, DAMAGED_DIR)
  os.makedirs(folder, exist_ok=True)
  dest, k = os.path.join(folder, str(step)), 1
  while os.path.lexists(dest):
    dest, k = os.path.join(folder, f"{step}-{k}"), k + 1
  os.rename(step_dir, dest)
  return dest


def _resume(manager: ocp.CheckpointManager, workdir: str, keep: int, template: Any, key: jax.Array,
            sharding: NamedSharding, check: Callable[[dict[str, Any]], None]
            ) -> tuple[ocp.CheckpointManager, tuple[dict[str, Any], jax.Array, dict[str, Any]] | None]:
  """The latest intact checkpoint of `workdir` (None: there is none), and the manager to go on with.

  Damaged steps (a file truncated, missing or not matching its recorded SHA-256, or, for a step without
  a checksum record, one that fails to restore) are moved to `workdir/damaged_checkpoints/` with a
  warning naming each step, so that training resumes from the previous intact step (the same result:
  training is deterministic) or, when none is intact, starts from scratch.
  """
  def prepare(meta):
    check(meta)
    return template, key, sharding

  damaged, restored, good = [], None, None
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = _read_step(manager, step, prepare)
      good = step
      break
    except _DamagedStep as e:
      damaged.append((step, str(e)))
  if not damaged:
    return manager, restored
  then = (f"resuming from step {good}, the latest intact one" if restored is not None
          else "no intact checkpoint is left: training starts from scratch")
  _barrier("wsl_jax checkpoints verified")  # every process has read the steps before any is moved
  for step, problem in damaged:
    if _is_main_process():
      dest = _move_aside(workdir, _step_dir(manager, step), step)
      warnings.warn(f"{workdir}: checkpoint step {step} is damaged: {problem}; moved it to {dest}, {then}",
                    UserWarning, stacklevel=3)
  _barrier("wsl_jax damaged checkpoints moved")
  manager.close()
  return _checkpoint_manager(workdir, keep), restored


def _rewrite_log(path: str, history: list[dict[str, Any]]) -> None:
  """The metrics log holds exactly the checkpointed history (drops epochs a killed run logged later)."""
  outputs.atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in history))


def restore(workdir: str, devices: Sequence[jax.Device] | int | None = None,
            epoch: int | None = None) -> TrainResult:
  """The run in `workdir` as of its latest checkpoint (or `epoch`), without training further.

  A damaged checkpoint (see `fit`) is skipped with a warning naming its step when `epoch` is None (the
  latest intact one is returned; nothing is moved), and raises a ValueError when it is the `epoch` asked
  for.
  """
  manager = _checkpoint_manager(workdir, keep=1_000_000)
  found: dict[str, Any] = {}

  def prepare(meta):
    config, layout = TrainConfig.from_dict(meta["config"]), Layout.from_dict(meta["layout"])
    mesh = make_mesh(default_device_count(config.batch_size) if devices is None else devices)
    found.update(config=config, layout=layout, mesh=mesh)
    template = jax.eval_shape(lambda: init_state(config, layout, jax.random.key(0), 1))
    return template, jax.random.key(meta["seed"]), _shardings(mesh)[0]

  try:
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
      raise ValueError(f"no checkpoint in {workdir}")
    if epoch is not None:
      if epoch not in steps:
        raise ValueError(f"no checkpoint of epoch {epoch} in {workdir} (it has epochs {sorted(steps)})")
      steps = [epoch]
    restored = None
    for step in steps:
      try:
        restored = _read_step(manager, step, prepare)
        break
      except _DamagedStep as e:
        if epoch is not None:
          raise ValueError(f"{workdir}: checkpoint step {step} is damaged: {e}") from e
        warnings.warn(f"{workdir}: checkpoint step {step} is damaged: {e}; skipping it", UserWarning,
                      stacklevel=2)
    if restored is None:
      raise ValueError(f"no intact checkpoint in {workdir}: every step is damaged")
  finally:
    manager.close()
  state, _, meta = restored
  config, layout, mesh = found["config"], found["layout"], found["mesh"]
  return TrainResult(config=config, layout=layout, seed=meta["seed"], state=state, history=meta["history"],
                     workdir=workdir, mesh=mesh)


# ---- the training loop ------------------------------------------------------------------------------

def epoch_order(seed: int, epoch: int, num_samples: int) -> np.ndarray:
  """The sample order of an epoch: a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(num_samples)


def _mean_metrics(step_metrics: list[dict[str, Any]]) -> dict[str, float]:
  host = _local(step_metrics)
  out = {f"train_{k}": float(np.mean([m[k] for m in host])) for k in ("loss", "contrast", "recon")}
  out["lr"] = float(host[-1]["lr"])
  return out


def fit(config: TrainConfig, train_weights: Any, val_weights: Any = None, test_weights: Any = None, *,
        layout: Layout, workdir: str | None = None, seed: int = 0,
        devices: Sequence[jax.Device] | int | None = None, progress: bool = True,
        callback: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
  """Train a hyper-representation model; resume from `workdir`'s last checkpoint if there is one.

  Args:
    config: the run's configuration (`wsl_jax.hyperrep.configs`).
    train_weights: flat weights `(S, N)` to train on (e.g. `zoo.samples(split.train)[0]`).
    val_weights, test_weights: optional `(S', N)` splits, evaluated every `config.eval_every` epochs
      and after the last epoch (loss terms and reconstruction R^2).
    layout: the layout of the flat vectors.
    workdir: folder for checkpoints (`checkpoints/`), the per-epoch log (`metrics.jsonl`) and
      `config.json`. None trains in memory, without checkpoints. Each checkpoint step records its
      files' sizes and SHA-256 (`wsl_jax_sha256.json`); on resume, a damaged step (a file truncated,
      missing or changed, or, for a step without that record, one that fails to restore) is moved to
      `damaged_checkpoints/` with a warning naming the step, and training resumes from the latest
      intact step (the same final result: training is deterministic), or starts from scratch, with a
      warning, when none is intact.
    seed: seeds the parameters, the data order and every augmentation and dropout key.
      Resuming needs the same seed, training weights, layout and config; only `epochs` (to train
      longer) and the evaluation / checkpoint settings may change.
    devices: devices for data parallelism (None: `default_device_count`, i.e. one CPU device, or
      the most accelerators that divide the batch size; an int: the first that many).
      An explicit choice must divide the batch size.
    progress: show a progress bar (rate and ETA).
    callback: called with each epoch's record after it is logged (and checkpointed).

  Returns:
    A `TrainResult` with the final state and the per-epoch history.
  """
  if not isinstance(config, TrainConfig):
    raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
  if not isinstance(layout, Layout):
    raise ValueError(f"layout must be a Layout, got {type(layout).__name__}")
  w_train = _check_weights(train_weights, layout, "train_weights")
  splits = {name: _check_weights(w, layout, f"{name}_weights")
            for name, w in (("val", val_weights), ("test", test_weights)) if w is not None}
  for name, w in splits.items():
    if w.shape[0] == 0:
      raise ValueError(f"{name}_weights is empty")
  batch = config.batch_size
  steps_per_epoch = w_train.shape[0] // batch
  if steps_per_epoch == 0:
    raise ValueError(f"train_weights has {w_train.shape[0]} samples, fewer than one batch of {batch}")
  if devices is None:
    devices = default_device_count(batch)
  mesh = make_mesh(devices)
  if batch % mesh.size:
    raise ValueError(f"batch_size {batch} is not divisible by the {mesh.size} devices; pass devices=")
  replicated, data = _shardings(mesh)

  key = jax.random.key(seed)
  k_init, k_train = jax.random.split(key)
  k_train = _put_key(k_train, replicated)
  state = _put(init_state(config, layout, k_init, steps_per_epoch), replicated)
  history: list[dict[str, Any]] = []
  fingerprint = _fingerprint(w_train)
  manager = None
  log_path = None
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    manager = _checkpoint_manager(workdir, config.keep_checkpoints)
    log_path = os.path.join(workdir, METRICS_FILE)
    manager, restored = _resume(manager, workdir, config.keep_checkpoints, state, k_train, replicated,
                                lambda meta: _check_resumable(meta, config, layout, seed, fingerprint, workdir))
    if restored is not None:
      state, k_train, meta = restored
      history = meta["history"]
    if _is_main_process():
      _write_json(os.path.join(workdir, CONFIG_FILE), {"seed": seed, "config": config.to_dict(),
                                                       "layout": layout.to_dict()})
      _rewrite_log(log_path, history)
    else:
      log_path = None  # process 0 writes the log

  step_fn = _compiled_train_step(config, layout, steps_per_epoch, mesh)
  table = permutation_table(config.augment, layout)
  tables = () if table is None else (_put(table, replicated),)
  start = len(history)
  bar = progress_bar(total=(config.epochs - start) * steps_per_epoch * batch, desc="ssl", unit="sample",
                     enabled=progress, unit_scale=True)
  try:
    for epoch in range(start, config.epochs):
      t0 = time.perf_counter()
      order = epoch_order(seed, epoch, w_train.shape[0])
      step_metrics = []
      for step in range(steps_per_epoch):
        x = _put(w_train[order[step * batch:(step + 1) * batch]], data)
        state, m = step_fn(state, x, np.int32(epoch), np.int32(step), k_train, *tables)
        step_metrics.append(m)
        bar.update(batch)
      record = {"epoch": epoch + 1, **_mean_metrics(step_metrics)}
      if config.loss.curriculum:
        record["gamma"] = float(config.loss.gamma_at(epoch))
      seconds = time.perf_counter() - t0
      record.update(epoch_time_s=seconds, samples_per_s=steps_per_epoch * batch / seconds)
      last = epoch + 1 == config.epochs
      if splits and ((epoch + 1) % config.eval_every == 0 or last):
        for name, w in splits.items():
          ev = _evaluate(config, layout, state["params"], state["batch_stats"], mesh, seed, w, None)
          record.update({f"{name}_{k}": v for k, v in ev.items()})
      history.append(record)
      bar.set_postfix({k: f"{record[k]:.4g}" for k in ("train_loss", "val_r2") if k in record})
      if log_path is not None:
        with open(log_path, "a") as f:
          f.write(json.dumps(record) + "\n")
      if manager is not None and ((epoch + 1) % config.checkpoint_every == 0 or last):
        _save(manager, state, k_train, _meta(config, layout, seed, epoch + 1, history, fingerprint))
      if callback is not None:
        callback(record)
  finally:
    bar.close()
    if manager is not None:
      manager.close()
  return TrainResult(config=config, layout=layout, seed=seed, state=state, history=history, workdir=workdir,
                     mesh=mesh)
