"""The `Zoo`: a population of trained networks, every checkpoint's weights and properties.

Shapes (M models, E checkpoints per model, N parameters per network):
  weights     float32 (M, E, N)
  epochs      int32 (E,)          the epoch of each checkpoint; 0 = initialisation
  properties  dict of (M, E)      test_acc, train_acc, test_loss, train_loss, ggap, epoch, f1_class_<k>
  hparams     dict of (M,)        seed and every hyper-parameter (strings for discrete choices)
  diverged    bool (M,)           weights or loss became non-finite during training
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layout


def as_indices(values: Any, size: int, name: str, what: str = "model") -> np.ndarray:
  """`values` as int64 indices into an axis of `size` entries, checked; nothing is truncated or wrapped.

  Accepted: a 1-D array or sequence of integers in 0..size-1 (repeats allowed), or a boolean mask of
  exactly `size` entries (selects the True positions, as NumPy does). Float indices (even 3.0), masks of
  another length, negative or too large indices and arrays of another rank raise a ValueError that
  names `name`.
  """
  a = np.asarray(values)
  if a.dtype == bool:
    if a.shape != (size,):
      raise ValueError(f"{name} is a boolean mask of shape {a.shape}; a mask needs one entry per {what} "
                       f"({size},)")
    return np.flatnonzero(a).astype(np.int64)
  if a.ndim != 1:
    raise ValueError(f"{name} must be a 1-D array of {what} indices, got shape {a.shape}")
  if a.size == 0:
    return np.zeros(0, np.int64)
  if not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"{name} must hold integer {what} indices, got dtype {a.dtype} (e.g. {a[0]!r}); "
                     "float indices are not rounded")
  bad = a[(a < 0) | (a >= size)]
  if bad.size:
    raise ValueError(f"{name} holds {what} indices outside 0..{size - 1}: {bad[:5].tolist()}")
  return a.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Split:
  """Model indices of the train / val / test splits (disjoint, each sorted).

  Each part must be a 1-D array of non-negative integers (a float or boolean array raises a
  ValueError); whether the indices exist in a zoo, and are disjoint, is checked where the split is used
  (`Zoo.samples`, `wsl_jax.evaluation.evaluate`).
  """

  train: np.ndarray
  val: np.ndarray
  test: np.ndarray

  def __post_init__(self):
    for name in ("train", "val", "test"):
      a = np.asarray(getattr(self, name))
      if a.dtype == bool:
        raise ValueError(f"split {name} is a boolean array; a Split holds model indices "
                         "(use np.flatnonzero(mask))")
      if a.ndim != 1:
        raise ValueError(f"split {name} must be a 1-D array of model indices, got shape {a.shape}")
      if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"split {name} must hold integer model indices, got dtype {a.dtype}")
      if a.size and a.min() < 0:
        raise ValueError(f"split {name} holds negative model indices: {a[a < 0][:5].tolist()}")
      object.__setattr__(self, name, a.astype(np.int64))

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in ("train", "val", "test"):
      raise KeyError(f"no split {name!r}; splits are train, val, test")
    return getattr(self, name)

  def as_dict(self) -> dict[str, np.ndarray]:
    return {"train": self.train, "val": self.val, "test": self.test}


def split_models(num_models: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                 seed: int = 42, exclude: np.ndarray | None = None) -> Split:
  """Shuffle the models with `seed`; train = first int(0.7 M), val = next int(0.15 M), test = the rest.

  `exclude` (bool (M,)) removes models (e.g. diverged ones) before shuffling; it must be a boolean mask
  (an integer array raises a ValueError rather than being read as 0 / 1 flags).
  """
  if isinstance(num_models, (bool, np.bool_)) or not isinstance(num_models, (int, np.integer)) or num_models < 0:
    raise ValueError(f"num_models must be a non-negative integer, got {num_models!r}")
  if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
    raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
  ids = np.arange(num_models)
  if exclude is not None:
    exclude = np.asarray(exclude)
    if exclude.dtype != bool:
      raise ValueError(f"exclude must be a boolean mask (one bool per model), got dtype {exclude.dtype}; "
                       "for model indices use a mask: m = np.zeros(num_models, bool); m[indices] = True")
    if exclude.shape != (num_models,):
      raise ValueError(f"exclude has shape {exclude.shape}, expected ({num_models},)")
    ids = ids[~exclude]
  order = np.random.default_rng(seed).permutation(ids)
  n_train = int(fractions[0] * len(order))
  n_val = int(fractions[1] * len(order))
  parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
  return Split(*(np.sort(p).astype(np.int64) for p in parts))


@dataclasses.dataclass(frozen=True, eq=False)
class Zoo:
  """A model zoo. See the module docstring for shapes."""

  weights: np.ndarray
  epochs: np.ndarray
  properties: dict[str, np.ndarray]
  hparams: dict[str, np.ndarray]
  net: nets.NetSpec
  dataset: str
  diverged: np.ndarray
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    m, e, n = self.weights.shape if self.weights.ndim == 3 else (None, None, None)
    if m is None:
      raise ValueError(f"weights must be (models, checkpoints, params), got shape {self.weights.shape}")
    if n != self.layout.num_params:
      raise ValueError(f"weights have {n} parameters, the architecture has {self.layout.num_params}")
    if np.shape(self.epochs) != (e,):
      raise ValueError(f"epochs has shape {np.shape(self.epochs)}, expected ({e},)")
    for k, v in self.properties.items():
      if np.shape(v) != (m, e):
        raise ValueError(f"property {k!r} has shape {np.shape(v)}, expected ({m}, {e})")
    for k, v in self.hparams.items():
      if np.shape(v) != (m,):
        raise ValueError(f"hparam {k!r} has shape {np.shape(v)}, expected ({m},)")
    if np.shape(self.diverged) != (m,):
      raise ValueError(f"diverged has shape {np.shape(self.diverged)}, expected ({m},)")

  @property
  def layout(self) -> Layout:
    return self.net.layout()

  @property
  def num_models(self) -> int:
    return self.weights.shape[0]

  @property
  def num_checkpoints(self) -> int:
    return self.weights.shape[1]

  @property
  def num_params(self) -> int:
    return self.weights.shape[2]

  def activation(self, model: int) -> str:
    return str(self.hparams["activation"][model])

  def forward(self, w: Any, x: Any, model: int) -> jax.Array:
    """Logits of model `model`'s architecture (its own activation) for flat weights `w` on inputs `x`."""
    self.layout.check_vector(w)
    return _forward(self.net, jnp.asarray(w), jnp.asarray(x), self.activation(model))

  def split(self, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 42,
            exclude_diverged: bool = True) -> Split:
    """Split by model (never by checkpoint), 70/15/15 by default, seeded."""
    return split_models(self.num_models, fractions, seed, self.diverged if exclude_diverged else None)

  def samples(self, models: np.ndarray, checkpoints: np.ndarray | None = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Every (model, checkpoint) of `models` as a sample row.

    Args:
      models: model indices (1-D integers in 0..M-1), or a boolean mask of M entries.
      checkpoints: checkpoint indices (positions, not epochs) in 0..E-1, or a boolean mask of E
        entries; None: every checkpoint. Float or out-of-range indices raise a ValueError (see
        `as_indices`).

    Returns:
      weights (S, N), properties dict of (S,), and the model index of each row (S,), with
      S = len(models) * len(checkpoints), model-major.
    """
    models = as_indices(models, self.num_models, "models")
    ck = (np.arange(self.num_checkpoints) if checkpoints is None
          else as_indices(checkpoints, self.num_checkpoints, "checkpoints", "checkpoint"))
    w = self.weights[models][:, ck].reshape(-1, self.num_params)
    props = {k: v[models][:, ck].reshape(-1) for k, v in self.properties.items()}
    hp = {k: np.repeat(v[models], len(ck)) for k, v in self.hparams.items()}
    props.update({k: v for k, v in hp.items() if k not in props})
    return w, props, np.repeat(models, len(ck))

  def subset(self, models: np.ndarray | None = None, checkpoints: np.ndarray | None = None) -> Zoo:
    """A zoo with only the given models and / or checkpoints (copies); indices or boolean masks as for
    `samples`."""
    models = np.arange(self.num_models) if models is None else as_indices(models, self.num_models, "models")
    ck = (np.arange(self.num_checkpoints) if checkpoints is None
          else as_indices(checkpoints, self.num_checkpoints, "checkpoints", "checkpoint"))
    return Zoo(weights=self.weights[models][:, ck], epochs=self.epochs[ck],
               properties={k: v[models][:, ck] for k, v in self.properties.items()},
               hparams={k: v[models] for k, v in self.hparams.items()}, net=self.net,
               dataset=self.dataset, diverged=self.diverged[models], meta=dict(self.meta))

  def summary(self) -> str:
    last = self.properties["test_acc"][:, -1]
    ok = ~self.diverged
    lines = [f"Zoo: {self.num_models} models x {self.num_checkpoints} checkpoints x {self.num_params} params, "
             f"dataset {self.dataset}, epochs {self.epochs.min()}..{self.epochs.max()}",
             f"  diverged: {int(self.diverged.sum())}"]
    if ok.any():
      acc = last[ok]
      lines.append(f"  final test accuracy: mean {acc.mean():.3f}, min {acc.min():.3f}, max {acc.max():.3f}, "
                   f"p5 {np.percentile(acc, 5):.3f}, p95 {np.percentile(acc, 95):.3f}")
    return "\n".join(lines)


def _forward_impl(spec: nets.NetSpec, w: jax.Array, x: jax.Array, activation: str) -> jax.Array:
  return nets.apply(spec, w, x, activation)


_forward = jax.jit(_forward_impl, static_argnums=(0, 3))
