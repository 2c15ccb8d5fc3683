"""Zoo presets: the paper's zoos as data (architecture, data set, training settings, varied grid).

A preset's hyper-parameter grid is the Cartesian product of its `grid` entries, times
`seeds_per_config` seeds per configuration:

* seed zoos (`grid` empty): model m gets seed m + 1, as the paper's seeds 1..1000;
* `seed_mode="fix"`: every configuration uses the same seeds 1..S (Unterthiner et al.'s fixed seed
  when S = 1);
* `seed_mode="rand"`: every model draws its own random seed (from the zoo seed).

`build_hparams(preset, num_models, seed)` lays the zoo out. A zoo smaller than the full grid takes a
seeded random subset of the configurations (so every value stays represented when it can).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from wsl_jax import nets
from wsl_jax.zoo.train import CONTINUOUS_HPARAMS, OPTIMIZERS

DISCRETE_HPARAMS = ("activation", "init", "optimizer")


@dataclasses.dataclass(frozen=True)
class ZooPreset:
  """A zoo recipe.

  Attributes:
    name: preset name.
    net: architecture.
    dataset: data set name (`wsl_jax.datasets.load`).
    epochs: training epochs.
    batch_size: mini-batch size.
    num_models: default zoo size (sized for 2 CPU cores where the paper's is larger).
    paper_models: the paper's zoo size (`--paper` / `--models`).
    fixed: hyper-parameters every model shares (activation, init, optimizer, lr, ...).
    grid: varied hyper-parameters: (name, values) pairs, crossed.
    seeds_per_config: seeds per configuration.
    seed_mode: "fix" or "rand" (see the module docstring).
    checkpoint_epochs: epochs at which weights and metrics are recorded; None = every epoch 0..epochs.
    eval_batch_size: evaluate splits in chunks of this size (0 = whole split at once).
    description: one paragraph: what this zoo is and why these settings.
  """

  name: str
  net: nets.NetSpec
  dataset: str
  epochs: int
  batch_size: int
  num_models: int
  paper_models: int
  fixed: tuple[tuple[str, Any], ...]
  grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
  seeds_per_config: int = 1
  seed_mode: str = "fix"
  checkpoint_epochs: tuple[int, ...] | None = None
  eval_batch_size: int = 0
  description: str = ""

  def __post_init__(self):
    known = set(CONTINUOUS_HPARAMS) | set(DISCRETE_HPARAMS)
    for name, _ in self.fixed + self.grid:
      if name not in known:
        raise ValueError(f"preset {self.name}: unknown hyper-parameter {name!r}; known: {sorted(known)}")
    fixed_names = {n for n, _ in self.fixed}
    for d in DISCRETE_HPARAMS:
      if d not in fixed_names and d not in dict(self.grid):
        raise ValueError(f"preset {self.name}: {d!r} must be fixed or varied")
    if self.seed_mode not in ("fix", "rand"):
      raise ValueError(f"seed_mode must be 'fix' or 'rand', got {self.seed_mode!r}")

  @property
  def varied(self) -> tuple[str, ...]:
    """Names of the hyper-parameters that vary between models (seed included)."""
    return ("seed",) + tuple(n for n, _ in self.grid)

  @property
  def num_configs(self) -> int:
    return int(np.prod([len(v) for _, v in self.grid])) if self.grid else 1

  @property
  def full_size(self) -> int:
    """Models in the full grid (configurations x seeds); seed zoos have no limit."""
    return self.num_configs * self.seeds_per_config if self.grid else 0

  def checkpoints(self, epochs: int | None = None) -> tuple[int, ...]:
    epochs = self.epochs if epochs is None else epochs
    if self.checkpoint_epochs is None:
      return tuple(range(epochs + 1))
    ck = tuple(e for e in self.checkpoint_epochs if e <= epochs)
    return ck if ck[-1] == epochs else ck + (epochs,)

  def to_dict(self) -> dict[str, Any]:
    return {"name": self.name, "net": self.net.to_dict(), "dataset": self.dataset, "epochs": self.epochs,
            "batch_size": self.batch_size, "num_models": self.num_models, "paper_models": self.paper_models,
            "fixed": dict(self.fixed), "grid": {k: list(v) for k, v in self.grid},
            "seeds_per_config": self.seeds_per_config, "seed_mode": self.seed_mode,
            "checkpoint_epochs": None if self.checkpoint_epochs is None else list(self.checkpoint_epochs),
            "eval_batch_size": self.eval_batch_size, "description": self.description}


def build_hparams(preset: ZooPreset, num_models: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
  """Per-model hyper-parameters (M,) for every name the trainer needs, plus "seed".

  Discrete hyper-parameters are strings; continuous ones float32; seeds int64.
  """
  m = preset.num_models if num_models is None else int(num_models)
  if m < 1:
    raise ValueError(f"a zoo needs at least one model, got {m}")
  fixed = dict(preset.fixed)
  hp: dict[str, np.ndarray] = {}
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
  if not preset.grid:
    seeds = np.arange(1, m + 1, dtype=np.int64)
    configs: list[dict[str, Any]] = [{}] * m
  else:
    if m > preset.full_size:
      raise ValueError(f"preset {preset.name} has {preset.full_size} models "
                       f"({preset.num_configs} configurations x {preset.seeds_per_config} seeds); "
                       f"asked for {m}")
    names = [n for n, _ in preset.grid]
    combos = list(itertools.product(*[v for _, v in preset.grid]))
    rows = [(c, s) for c in range(len(combos)) for s in range(preset.seeds_per_config)]
    if m < len(rows):
      pick = np.sort(rng.choice(len(rows), size=m, replace=False))
      rows = [rows[i] for i in pick]
    configs = [dict(zip(names, combos[c])) for c, _ in rows]
    if preset.seed_mode == "fix":
      seeds = np.asarray([s + 1 for _, s in rows], np.int64)
    else:
      seeds = rng.integers(1, 2**31 - 1, size=m, dtype=np.int64)
  hp["seed"] = seeds
  for name in DISCRETE_HPARAMS:
    hp[name] = np.asarray([c.get(name, fixed.get(name)) for c in configs], dtype=str)
  for name, default in CONTINUOUS_HPARAMS.items():
    hp[name] = np.asarray([c.get(name, fixed.get(name, default)) for c in configs], np.float32)
  for o in np.unique(hp["optimizer"]):
    if o not in OPTIMIZERS:
      raise ValueError(f"preset {preset.name}: unknown optimizer {o!r}")
  return hp


# ---- the presets ------------------------------------------------------------------------------------

TETRIS_SEED = ZooPreset(
    name="tetris_seed", net=nets.TETRIS_MLP, dataset="tetris", epochs=75, batch_size=32,
    num_models=1000, paper_models=1000,
    fixed=(("activation", "tanh"), ("init", "kaiming_uniform"), ("optimizer", "adam"), ("lr", 2e-3)),
    description=(
        "TETRIS-SEED: 1000 MLPs 16-5-4 without biases (100 parameters), only the seed varies (1..1000); "
        "75 epochs, every epoch recorded. The paper's fixed settings are in its unavailable appendix; these "
        "(tanh, kaiming_uniform, Adam lr 2e-3, batch 32, 1000 tetris training images) were chosen so "
        "that test accuracy rises from chance to a mean of ~0.84 with a final spread of ~25 points."))

TETRIS_HYP = ZooPreset(
    name="tetris_hyp", net=nets.TETRIS_MLP, dataset="tetris", epochs=75, batch_size=32,
    num_models=3600, paper_models=3600,
    fixed=(("optimizer", "adam"),),
    grid=(("activation", ("tanh", "relu")),
          ("init", ("uniform", "normal", "kaiming_normal", "kaiming_uniform", "xavier_normal",
                    "xavier_uniform")),
          ("lr", (1e-3, 1e-4, 1e-5))),
    seeds_per_config=100, seed_mode="fix",
    description=(
        "TETRIS-HYP: activation {tanh, relu} x 6 initializers (PyTorch semantics: uniform = U(0,1), "
        "normal = N(0,1)) x lr {1e-3, 1e-4, 1e-5} x seeds 1..100 = 3600 MLPs 16-5-4 without biases, "
        "75 epochs, Adam, batch 32. Runs whose loss or weights become non-finite are flagged in "
        "`diverged` (the paper dropped 700 of 3600)."))

PRESETS: dict[str, ZooPreset] = {p.name: p for p in (TETRIS_SEED, TETRIS_HYP)}


def register(preset: ZooPreset) -> None:
  """Add a preset (other modules register their zoos here)."""
  PRESETS[preset.name] = preset


def get(name: str) -> ZooPreset:
  if name not in PRESETS:
    raise ValueError(f"unknown zoo preset {name!r}; available: {', '.join(sorted(PRESETS))}")
  return PRESETS[name]
