"""Zoo presets: the paper's zoos as data (architecture, data set, training settings, varied grid).

A preset's configurations are the Cartesian product of its `grid` entries, each with its own draw of
the `sample`d hyper-parameters (continuous ranges such as a log-uniform learning rate, or random
discrete choices), times `seeds_per_config` seeds per configuration:

* seed zoos (no `grid`, no `sample`): model m gets seed m + 1, as the paper's seeds 1..1000;
* `seed_mode="fix"`: every configuration uses the same seeds 1..S (Unterthiner et al.'s fixed seed
  when S = 1);
* `seed_mode="rand"`: every model draws its own random seed (from the zoo seed).

`build_hparams(preset, num_models, seed)` lays the zoo out. A zoo smaller than the full grid takes a
seeded random subset of its models (`subset_unit="model"`) or of its configurations, each with all its
seeds (`subset_unit="config"`). A preset with `sample` but no `grid` has as many configurations as the
zoo needs (ceil(M / S)). Sampled values come from their own random streams (zoo seed; one per name),
so adding a sampled hyper-parameter does not change the grid layout or the other draws, and a smaller
sampled zoo is the start of a larger one.

Presets are sized for a 2-core CPU by default; `preset.paper_scale()` gives the paper's zoo (model
count, epochs, data; the CLI's `--paper`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from wsl_jax.weights import nets
from wsl_jax.zoo.train import CONTINUOUS_HPARAMS, OPTIMIZERS

DISCRETE_HPARAMS = ("activation", "init", "optimizer")
SEED_MODES = ("fix", "rand")
SUBSET_UNITS = ("model", "config")
DISTRIBUTIONS = ("log_uniform", "uniform", "choice")


@dataclasses.dataclass(frozen=True)
class Distribution:
  """How a sampled hyper-parameter is drawn: `kind` "log_uniform" / "uniform" with `args` (low, high), or
  "choice" with `args` the values (drawn uniformly)."""

  kind: str
  args: tuple[Any, ...]

  def __post_init__(self):
    object.__setattr__(self, "args", tuple(self.args))
    if self.kind not in DISTRIBUTIONS:
      raise ValueError(f"unknown distribution {self.kind!r}; choose from {DISTRIBUTIONS}")
    if self.kind == "choice":
      if not self.args:
        raise ValueError("a choice needs at least one value")
      return
    if len(self.args) != 2 or not self.args[0] <= self.args[1]:
      raise ValueError(f"{self.kind} needs (low, high) with low <= high, got {self.args}")
    if self.kind == "log_uniform" and self.args[0] <= 0:
      raise ValueError(f"log_uniform needs a positive low bound, got {self.args}")

  def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
    if self.kind == "choice":
      return np.asarray(self.args)[rng.integers(0, len(self.args), n)]
    low, high = self.args
    if self.kind == "uniform":
      return rng.uniform(low, high, n)
    return np.exp(rng.uniform(np.log(low), np.log(high), n))

  def to_dict(self) -> dict[str, Any]:
    return {"kind": self.kind, "args": list(self.args)}


def log_uniform(low: float, high: float) -> Distribution:
  return Distribution("log_uniform", (low, high))


def uniform(low: float, high: float) -> Distribution:
  return Distribution("uniform", (low, high))


def choice(*values: Any) -> Distribution:
  return Distribution("choice", values)


@dataclasses.dataclass(frozen=True)
class ZooPreset:
  """A zoo recipe.

  Attributes:
    name: preset name.
    net: architecture.
    dataset: data set name (`wsl_jax.data.datasets.load`).
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
    sample: hyper-parameters drawn per configuration: (name, `Distribution`) pairs.
    subset_unit: "model" or "config": what a zoo smaller than the full grid is a random subset of.
    bias_value: initial value of every bias (PyTorch zoo code: 0.01; Keras' "zeros": 0).
    train_examples: train on a fixed random subset of this many training examples (0 = all).
    test_examples: evaluate on a fixed random subset of this many test examples (0 = all).
    train_eval_examples: compute training metrics on a fixed subset of this many examples (0 = all).
    dataset_fallbacks: data sets used, in order, when `dataset` is not available (missing files).
    paper: field overrides that give the paper's zoo (`paper_scale()`), besides `paper_models`.
    chunk_size: models per compiled call when the caller does not choose (0 = the generator's default):
      small chunks show progress sooner and bound memory; on CPU, throughput per model stops growing
      at a few dozen CNNs per call.
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
  sample: tuple[tuple[str, Distribution], ...] = ()
  subset_unit: str = "model"
  bias_value: float = 0.01
  train_examples: int = 0
  test_examples: int = 0
  train_eval_examples: int = 0
  dataset_fallbacks: tuple[str, ...] = ()
  paper: tuple[tuple[str, Any], ...] = ()
  chunk_size: int = 0

  def __post_init__(self):
    known = set(CONTINUOUS_HPARAMS) | set(DISCRETE_HPARAMS)
    sources = [("fixed", n) for n, _ in self.fixed] + [("grid", n) for n, _ in self.grid] + [
        ("sample", n) for n, _ in self.sample]
    seen: dict[str, str] = {}
    for where, name in sources:
      if name not in known:
        raise ValueError(f"preset {self.name}: unknown hyper-parameter {name!r}; known: {sorted(known)}")
      if name in seen:
        raise ValueError(f"preset {self.name}: {name!r} is both in {seen[name]} and in {where}")
      seen[name] = where
    for name, dist in self.sample:
      if not isinstance(dist, Distribution):
        raise ValueError(f"preset {self.name}: sample {name!r} needs a Distribution, got {dist!r}")
      if name in DISCRETE_HPARAMS and dist.kind != "choice":
        raise ValueError(f"preset {self.name}: {name!r} is discrete; sample it with choice(...)")
    for d in DISCRETE_HPARAMS:
      if d not in seen:
        raise ValueError(f"preset {self.name}: {d!r} must be fixed or varied")
    if self.seed_mode not in SEED_MODES:
      raise ValueError(f"seed_mode must be 'fix' or 'rand', got {self.seed_mode!r}")
    if self.subset_unit not in SUBSET_UNITS:
      raise ValueError(f"subset_unit must be one of {SUBSET_UNITS}, got {self.subset_unit!r}")
    for name in ("train_examples", "test_examples", "train_eval_examples", "eval_batch_size", "chunk_size"):
      if getattr(self, name) < 0:
        raise ValueError(f"preset {self.name}: {name} must be >= 0, got {getattr(self, name)}")
    fields = {f.name for f in dataclasses.fields(self)} - {"name", "paper"}
    for name, _ in self.paper:
      if name not in fields:
        raise ValueError(f"preset {self.name}: paper override {name!r} is not a preset field")

  def paper_scale(self) -> ZooPreset:
    """This zoo at the paper's scale: `paper_models` models and the `paper` overrides (epochs, data)."""
    return dataclasses.replace(self, num_models=self.paper_models, **dict(self.paper))

  @property
  def varied(self) -> tuple[str, ...]:
    """Names of the hyper-parameters that vary between models (seed included)."""
    return ("seed",) + tuple(n for n, _ in self.grid) + tuple(n for n, _ in self.sample)

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
            "eval_batch_size": self.eval_batch_size, "description": self.description,
            "sample": {k: v.to_dict() for k, v in self.sample}, "subset_unit": self.subset_unit,
            "bias_value": self.bias_value, "train_examples": self.train_examples,
            "test_examples": self.test_examples, "train_eval_examples": self.train_eval_examples,
            "dataset_fallbacks": list(self.dataset_fallbacks), "paper": dict(self.paper),
            "chunk_size": self.chunk_size}


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
  s_per = preset.seeds_per_config
  if not preset.grid and not preset.sample:
    seeds = np.arange(1, m + 1, dtype=np.int64)
    configs: list[dict[str, Any]] = [{}] * m
  else:
    names = [n for n, _ in preset.grid]
    if preset.grid:
      if m > preset.full_size:
        raise ValueError(f"preset {preset.name} has {preset.full_size} models "
                         f"({preset.num_configs} configurations x {s_per} seeds); asked for {m}")
      combos = list(itertools.product(*[v for _, v in preset.grid]))
    else:  # sampled configurations only: as many as the zoo needs
      combos = [()] * -(-m // s_per)
    rows = [(c, s) for c in range(len(combos)) for s in range(s_per)]
    if m < len(rows):
      if not preset.grid:
        rows = rows[:m]
      elif preset.subset_unit == "model":
        pick = np.sort(rng.choice(len(rows), size=m, replace=False))
        rows = [rows[i] for i in pick]
      else:  # whole configurations, each with all its seeds
        chosen = np.sort(rng.choice(len(combos), size=-(-m // s_per), replace=False))
        rows = [(int(c), s) for c in chosen for s in range(s_per)][:m]
    # One stream per sampled name: a smaller zoo gets the first draws of a larger one.
    draws = {name: dist.draw(np.random.default_rng(np.random.SeedSequence([seed, 0x5A3F1E, k])), len(combos))
             for k, (name, dist) in enumerate(preset.sample)}
    configs = [{**dict(zip(names, combos[c])), **{n: v[c] for n, v in draws.items()}} for c, _ in rows]
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

# TETRIS-SEED recipe (issue 15). Chosen on the VALIDATION models only (`zoo.split()`, seed 42): ridge
# probes fitted on 85 % of the training models, alpha chosen on the other 15 %, R² % on the validation
# models; the test models were not looked at. Every candidate: 1000 models, 75 epochs, the paper's
# 16-5-4 MLP without biases, tanh, PyTorch `uniform` init = U(0, 1), Adam, tetris (200 images drawn,
# `train_examples` of them used). Measured with
#   python <search script: generate(preset) -> evaluate.evaluate_zoo(zoo, {W, PCAr, s(W)},
#          split=Split(train=85 % of split.train, val=15 % of split.train, test=split.val))>
# on the shared 2-core machine (train acc / gap are the epoch-75 means; val R² epoch, acc, ggap):
#
#   images batch lr    train  gap(e25->e75)  W             PCAr          s(W)
#   200    20    5e-3  0.82   0.09 -> 0.09   57.1 52.6 40.5  95.7 90.6 45.6  97.9 90.3 42.7  (old recipe)
#   200    10    5e-3  0.87   0.10 -> 0.08   55.3 46.4 28.7  92.7 91.1 39.4  97.7 91.2 34.5
#   100    10    5e-3  0.84   0.13 -> 0.16   69.4 68.6 62.2  96.2 88.9 72.8  97.7 89.1 73.1
#   100    10    3e-3  0.75   0.10 -> 0.16   75.9 67.2 66.7  95.4 81.9 72.5  96.4 82.7 73.8
#   100    10    1e-2  0.92   0.16 -> 0.15   63.2 61.4 47.1  92.2 91.1 66.6  98.0 90.9 62.3
#   100     5    5e-3  0.89   0.15 -> 0.16   65.2 63.8 51.8  94.6 90.8 69.3  97.9 90.6 68.2
#   100     4    1e-2  0.95   0.16 -> 0.14   53.8 50.1 30.4  85.8 90.6 58.1  97.5 90.3 49.2
#    70     7    1e-2  0.93   0.21 -> 0.21   72.6 72.1 61.2  93.5 92.0 74.8  98.5 91.8 70.8
#    50     5    5e-3  0.84   0.20 -> 0.27   83.4 77.2 74.7  96.4 87.4 81.7  98.0 87.1 80.5
#    50     2    5e-3  0.91   0.25 -> 0.27   80.6 75.3 70.2  95.0 88.8 80.9  98.5 89.1 78.5
#    50     5    1e-2  0.93   0.26 -> 0.27   79.1 74.8 68.3  93.9 89.5 79.8  98.6 89.4 77.1  <- this one
#    50     5    2e-2  0.97   0.27 -> 0.27   67.9 67.5 50.6  87.3 89.1 72.0  98.4 89.2 63.5
#
# The gap is predictable (ggap R²) exactly while it grows: it grows as long as the models are still
# fitting their training images faster than the test set, and once a recipe fits early (higher lr,
# smaller batches) the gap stops growing and its R² falls. 50 images, batch 5, lr 1e-2 is the recipe
# that fits its training data (0.93 mean train accuracy at epoch 75, 0.97 at lr 2e-2 gives up 14
# points of ggap R²) with s(W) still predicting the gap at 77 (paper 81.0) and the gap at 0.27 +- 0.03.
# Its cost: W is MORE predictive than in the paper (epoch / accuracy 79 / 75 vs 55.4 / 49.1); every
# recipe above with s(W) ggap R² >= 70 had W >= 65 on both, and every one with W within 10 points of
# the paper had ggap R² <= 45.
#
# A second search varied what the first kept fixed, the activation and the initializer (50 images,
# batch 5, Adam; the same search script and protocol as above, `dataclasses.replace(TETRIS_SEED,
# fixed=...)`, but probes on every 2nd checkpoint except for the kept row; 2026-12-06, on 2 cores shared
# with four other jobs). Val R² % epoch / acc / ggap; data = training images / batch size; tr. = mean
# train accuracy and gap = mean +- std over models, both at epoch 75; the first row is the kept recipe:
#
#  act  init            data   lr     tr.  gap        W               PCAl            PCAr            s(W)
#  tanh uniform         50/5   1e-2   0.93 0.27+-0.03 79.1 74.8 68.3  76.9 73.9 67.2  93.9 89.5 79.8  98.6 89.4 77.1
#  tanh kaiming_uniform 50/5   1e-2   0.95 0.31+-0.04 -1.2 -2.3 -1.7  -0.8 -1.5 -1.0  97.0 76.7 49.0  97.0 77.5 56.2
#  relu uniform         50/5   1e-2   0.82 0.28+-0.03 32.3 31.6 22.8  24.2 25.6 19.2  95.8 75.5 54.0  95.1 80.4 61.8
#  relu uniform         50/5   5e-3   0.73 0.25+-0.02 14.0 11.7 10.9  12.5  9.3  8.2  94.3 71.1 51.1  95.0 75.7 61.8
#  relu xavier_normal   50/5   1e-2   0.84 0.22+-0.06 55.3 46.5 47.4  54.7 36.1 36.7  92.9 73.4 48.1  94.4 77.9 50.0
#  relu kaiming_uniform 50/5   1e-2   0.83 0.22+-0.06 52.6 50.9 40.8  48.0 33.5 25.2  93.0 73.2 43.2  95.5 77.3 48.8
#  relu kaiming_uniform 50/5   2e-2   0.85 0.22+-0.06 52.0 55.6 37.2  48.7 27.3 26.3  85.7 67.8 41.7  94.1 77.4 40.7
#  relu kaiming_uniform 50/5   5e-3   0.76 0.21+-0.06 41.0 40.0 36.6  33.4 23.7 20.4  91.8 68.0 45.4  94.4 71.7 52.3
#  relu kaiming_uniform 50/5   2.5e-3 0.66 0.19+-0.06 22.0 21.9 28.2  17.8 13.5 14.9  77.4 52.1 41.5  89.2 58.0 47.6
#  relu kaiming_uniform 30/3   5e-3   0.76 0.25+-0.07 34.6 30.3 41.3  33.9 26.6 30.0  88.3 57.6 48.3  92.4 62.8 58.2
#  relu kaiming_uniform 100/5  1e-2   0.85 0.11+-0.04 53.1 51.2  7.9  47.5 22.5 -0.6  87.9 68.8 15.7  94.8 79.5 24.4
#  relu kaiming_uniform 100/10 1e-2   0.83 0.12+-0.04 46.3 44.3 18.6  40.9 15.6  4.0  91.3 71.3 20.0  95.1 80.8 27.4
#  the paper (Table 5, test)                          55.4 49.1 43.9  46.9 23.9 28.3  93.5 74.9 75.7  96.4 86.9 81.0
#
# What sets W's R² is symmetry. With tanh (odd) and a sign-symmetric init, flipping the signs of one
# hidden unit's in- and out-weights leaves the function, and (Adam being sign-equivariant) the whole
# training run, unchanged, so no weight correlates with any property: W and PCAl are at 0 (tanh +
# kaiming_uniform). PyTorch's `uniform` U(0, 1) is all positive: every model starts in the same corner
# and moves the same way, so with tanh W is far ABOVE the paper. ReLU breaks the sign symmetry only in
# part, and relu + kaiming_uniform at lr 1e-2 lands on the paper's W, PCAl and PCAr for epoch and
# accuracy (all six within 10 points, s(W) too: 95.5 / 77.3). But relu models differ in how many units
# they keep alive: their gap spreads over models by ~0.06 at every epoch (tanh + U(0, 1): 0.03) and
# stops growing after ~25 epochs, and s(W) predicts it with 41-58, below the target of 70. No recipe
# tried (24) meets both "W, PCAr within 10 points of the paper on epoch and accuracy" and "s(W) ggap
# >= 70". This preset keeps tanh + U(0, 1), whose gap signal meets the target: its W / PCAl / PCAr
# above the paper describe a more uniform zoo (one init corner, every model moving the same way), not
# a stronger method. Its PCAr accuracy above the paper (89.5 vs 74.9) is this zoo too, not our kernel
# PCA: the relu zoos give 52-76. Test R² % of the kept recipe (`evaluate_zoo` defaults: alpha on val,
# every checkpoint), epoch / acc / ggap: W 78.0 75.1 65.8, PCAl 75.1 73.9 65.4, PCAc 74.2 83.7 78.2,
# PCAr 94.0 89.5 78.7, s(W) 98.6 88.9 76.7.
TETRIS_SEED = ZooPreset(
    name="tetris_seed", net=nets.TETRIS_MLP, dataset="tetris", epochs=75, batch_size=5,
    num_models=1000, paper_models=1000,
    fixed=(("activation", "tanh"), ("init", "uniform"), ("optimizer", "adam"), ("lr", 1e-2)),
    train_examples=50,
    description=(
        "TETRIS-SEED: 1000 MLPs 16-5-4 without biases (100 parameters, the paper's architecture), only the "
        "seed varies (1..1000); 75 epochs, every epoch recorded. The paper's fixed settings are in its "
        "unavailable appendix; these (tanh, PyTorch `uniform` init = U(0, 1) as the authors' later zoos, "
        "Adam lr 1e-2, batch 5, a fixed subset of 50 of the 200 tetris training images, 2000 test "
        "images) were chosen on the validation models among 12 candidates (see the comment above "
        "TETRIS_SEED in wsl_jax/zoo/presets.py): the models fit their training images (mean train "
        "accuracy 0.93 at epoch 75, test 0.66), the generalisation gap grows from 0 to 0.27 over the "
        "first ~40 epochs, and s(W) predicts it with validation R² 77 (paper 81.0). Deviation: with so "
        "few images the raw weights W are more predictive than in the paper (epoch / accuracy R² 79 / 75 "
        "vs 55 / 49). Previous recipe (issue 15 replaced it): all 200 images, batch 20, lr 5e-3: train "
        "accuracy 0.82, gap flat at 0.09 from epoch 25 on, s(W) ggap R² 43."))

# TETRIS-HYP recipe (issue 15). Chosen on the VALIDATION models only (same protocol as TETRIS-SEED
# above; rows marked * probe every 2nd checkpoint, as the quick experiment), quick size (720 models of
# the paper's grid activation x 6 initializers x lr {1e-3, 1e-4, 1e-5}, Adam, tetris images drawn as
# for TETRIS-SEED); final test accuracy by lr, mean final gap, val R² % of W / PCAl / PCAr / s(W):
#
#   images, batch, epochs     acc lr 1e-3/1e-4/1e-5  gap   test_acc R²            ggap R²
#   2000, 10,   75            0.87 / 0.50 / 0.29     0.01  5.6 18.5 63.8 75.4     -11.0 -3.1 0.3 3.0   (old)
#    200,  1,   75            0.70 / 0.37 / 0.26     0.05  -3.2 8.0 35.8 49.9     -9.7 -4.5 7.1 22.4
#    100,  1,   75            0.59 / 0.33 / 0.25     0.07  -11.8 0.8 9.9 31.5     -13.6 -3.3 5.1 25.6
#     50,  1,   75 *          0.47 / 0.28 / 0.25     0.09  -6.1 -3.6 0.5 16.7     -2.9 -1.2 -2.0 14.6
#    100,  1,  150 *          0.69 / 0.39 / 0.26     0.08  -1.7 4.9 36.3 52.9     -9.0 -2.1 17.9 35.1
#     50,  1,  300 *          0.63 / 0.38 / 0.26     0.15  4.0 9.1 42.5 59.7      -6.0 1.8 27.4 40.6
#     50,  1,  600 *          0.68 / 0.45 / 0.27     0.18  12.7 14.4 59.8 71.9    1.2 5.5 35.9 46.3
#     50,  1, 1200 *          0.69 / 0.52 / 0.30     0.20  11.6 16.4 66.0 75.5    4.9 6.4 39.7 47.6
#     25,  1,  600 *          0.59 / 0.37 / 0.26     0.18  5.1 1.6 48.4 63.7      -1.1 -3.0 40.9 53.6  <- this one
#
# The gap grows only where models overfit, which needs few images, and the learning rates of the grid
# need many steps to get anywhere (Adam moves a weight by about lr per step): so few images, batch 1,
# and longer training (the issue allows it; 76 checkpoints kept, every 8th epoch, as the paper's
# 0..75). 25 images x 600 epochs is the only recipe with a baseline at >= 50 on the gap (s(W) 53.6):
# lr 1e-3 models fit their images (mean train accuracy 0.94 at the end) and their gap grows to 0.35,
# lr 1e-4 models get to 0.16, lr 1e-5 ones stay near chance. It costs the same 15,000 steps per model
# as the old recipe, in fewer evaluations: generation 78 s cold (the old recipe 129 s, same load, 2
# cores shared with four other jobs). Its price: s(W) predicts accuracy with 64 instead of 75 (paper
# 73.8). No run diverged in any recipe (Adam keeps even the U(0, 1) and N(0, 1) inits finite; the paper
# lost 700 of 3600 runs, i.e. seven whole configurations, for reasons its appendix does not give).
#
# W does NOT predict accuracy (target >= 50) in any of them, and cannot: five of the six initializers
# are sign-symmetric, and with tanh (odd) flipping the signs of a hidden unit's in- and out-weights
# leaves the function and the whole Adam run unchanged (tests/test_zoo_signal.py), so for those models
# (5/12 of the grid) no weight correlates with accuracy and a linear probe on W can at best predict
# their mean. That caps W's R² at 1 - share x variance(their accuracy) / variance(all accuracies) even
# if W predicted every relu and U(0, 1) model perfectly: 52.6 % in the old zoo, 53.8 % in this one,
# because the learning rate, not the initializer, spreads accuracy and does so in every group alike.
# Fitted on one group at a time (100-image zoo, 75 epochs), W reaches only 15 (relu, symmetric inits)
# and 20 (U(0, 1)). The paper's 80.2 needs the spread of its tanh models with symmetric inits around
# their own mean to make up < 20 % of the zoo's accuracy variance, i.e. a zoo whose accuracy hardly
# depends on the learning rate. The gap is harder than in TETRIS-SEED for s(W) because the weights'
# statistics start from a different point for each initializer (per-layer variance 1 for N(0, 1),
# 0.08-0.4 for the others, mean 0.5 for U(0, 1)): in the 100-image zoo, s(W) fitted on the U(0, 1)
# models alone predicts the gap with 73, on the lr 1e-3 models of all six initializers with 12.
# Command: generate(dataclasses.replace(TETRIS_HYP, dataset=..., batch_size=..., train_examples=...,
# epochs=..., checkpoint_epochs=...), num_models=720) -> evaluate.evaluate_zoo(zoo, {W, PCAl, PCAr,
# s(W)}, split=Split(85 % train, 15 % train, val)). Test R² % of this recipe: see
# experiments/tetris_hyp.py.
TETRIS_HYP = ZooPreset(
    name="tetris_hyp", net=nets.TETRIS_MLP, dataset="tetris", epochs=600, batch_size=1,
    num_models=3600, paper_models=3600,
    fixed=(("optimizer", "adam"),),
    grid=(("activation", ("tanh", "relu")),
          ("init", ("uniform", "normal", "kaiming_normal", "kaiming_uniform", "xavier_normal",
                    "xavier_uniform")),
          ("lr", (1e-3, 1e-4, 1e-5))),
    seeds_per_config=100, seed_mode="fix",
    checkpoint_epochs=tuple(range(0, 601, 8)),
    train_examples=25,
    description=(
        "TETRIS-HYP: activation {tanh, relu} x 6 initializers (PyTorch semantics: uniform = U(0,1), "
        "normal = N(0,1)) x lr {1e-3, 1e-4, 1e-5} x seeds 1..100 = 3600 MLPs 16-5-4 without biases, "
        "Adam, batch 1 on a fixed subset of 25 of the 200 tetris training images, 600 epochs (15,000 "
        "steps) recorded every 8th epoch (76 checkpoints, as the paper's 0..75 epochs). Runs whose "
        "loss or weights become non-finite are flagged in `diverged` (the paper dropped 700 of 3600). "
        "Chosen on the validation models among 9 recipes (the comment above TETRIS_HYP in "
        "wsl_jax/zoo/presets.py): the lr 1e-3 models fit their images (train accuracy 0.94) and their "
        "gap grows to 0.35, and s(W) predicts the gap with validation R² 54 (paper 76.0). Deviations "
        "from the paper (75 epochs; data, batch unknown): 600 epochs and batch 1, because the grid's "
        "learning rates need many steps and the gap only grows on few images. W does not predict "
        "accuracy (paper 80.2): the sign symmetry of tanh with symmetric inits caps it at 54 %."))

PRESETS: dict[str, ZooPreset] = {p.name: p for p in (TETRIS_SEED, TETRIS_HYP)}


def register(preset: ZooPreset) -> None:
  """Add a preset (other modules register their zoos here)."""
  PRESETS[preset.name] = preset


def get(name: str) -> ZooPreset:
  if name not in PRESETS:
    raise ValueError(f"unknown zoo preset {name!r}; available: {', '.join(sorted(PRESETS))}")
  return PRESETS[name]
