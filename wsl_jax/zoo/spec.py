"""The static and per-model parts of a zoo member's training: `TrainSpec` (one compiled program each),
`HParams` (traced per-model values), the device data, the per-model record and the metric names.

Discrete choices that change the program (activation, optimizer, initializer set, batched rules) are
fields of `TrainSpec`; the generator buckets models by them (`jax_notes.md` §3.3). Everything that
differs between the models of one program is an `HParams` array.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wsl_jax.weights import nets

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
  # The hand-written batched rules of dense networks (`wsl_jax.zoo.batched`); False: plain vmap of the
  # generic code (the reference they are tested against, and an off switch).
  batched_rules: bool = True

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


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HParams:
  """The per-model hyper-parameters of a compiled program: scalars for one model, `(M,)` arrays for M
  (a pytree: `jax.vmap`, `device_put` and sharding see its arrays). Fields: every name of
  `CONTINUOUS_HPARAMS` and `init_index` (an index into `TrainSpec.inits`)."""

  lr: Any
  wd: Any
  l2: Any
  momentum: Any
  dropout: Any
  train_fraction: Any
  init_std: Any
  init_index: Any

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> HParams:
    """From a mapping with every field (missing ones and unknown names raise, naming them)."""
    names = {f.name for f in dataclasses.fields(cls)}
    missing, unknown = names - set(values), set(values) - names
    if missing or unknown:
      raise ValueError(f"hyper-parameters: missing {sorted(missing)}, unknown {sorted(unknown)}; "
                       f"expected {sorted(names)}")
    return cls(**values)

  def to_dict(self) -> dict[str, Any]:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def default_hparams(num_models: int, **overrides: Any) -> HParams:
  """Per-model hyper-parameter arrays with the defaults of `CONTINUOUS_HPARAMS`, init_index 0."""
  hp = {k: np.full(num_models, v, np.float32) for k, v in CONTINUOUS_HPARAMS.items()}
  hp["init_index"] = np.zeros(num_models, np.int32)
  for k, v in overrides.items():
    if k not in hp:
      raise ValueError(f"unknown hyper-parameter {k!r}; known: {sorted(hp)}")
    hp[k] = np.broadcast_to(np.asarray(v, hp[k].dtype), (num_models,)).copy()
  return HParams.from_dict(hp)


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


def to_device_data(dataset, order_seed: int = 0, dtype=jnp.float32) -> Data:
  """The data set on device, with the zoo-level data-order key derived from `order_seed`."""
  return Data(jnp.asarray(dataset.x_train, dtype), jnp.asarray(dataset.y_train, jnp.int32),
              jnp.asarray(dataset.x_test, dtype), jnp.asarray(dataset.y_test, jnp.int32),
              jax.random.fold_in(jax.random.key(order_seed), 0x0DA7A))
