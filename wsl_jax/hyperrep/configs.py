"""Configurations of hyper-representation learning: frozen dataclasses and named presets.

A `TrainConfig` holds everything a self-supervised run needs except the data and the seed: the model
(`ModelConfig`), the loss (`LossConfig`), the training and evaluation augmentations (`AugmentConfig`) and
the optimisation settings. Configs are hashable (they are static arguments of jitted functions) and
round-trip through JSON (`to_dict` / `from_dict`).

Presets (`preset(name)`) carry the values of the original code's experiment configs (reference.md §4,
§6), which differ from the paper text in places (B5: e.g. tetris uses 4 heads and d = 256, not 1 head
and d = 128). Their views draw permutations from the original's fixed tables (`PAPER_PERMUTATIONS`:
all 120 for tetris, 25,000 for the CNN zoos, a separate 100 for test views); `small`, a CPU preset for
quick runs and tests, draws a fresh permutation per view (the whole group).

The ablations of the paper are variants of a config, not separate models:
  >>> from wsl_jax.hyperrep import configs
  >>> cfg = configs.with_architecture(configs.preset("tetris"), "AttW")
  >>> cfg.model.tokens, cfg.model.compression_token
  ('weight', False)
  >>> configs.with_loss(cfg, "ED").loss.gamma
  0.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# Choices declared where they are implemented (one place each), checked here.
from wsl_jax.hyperrep.augment import ERASE_MODES
from wsl_jax.hyperrep.losses import CONTRASTS
from wsl_jax.hyperrep.tokenize import TOKEN_KINDS

ARCHS = ("attention", "ff")
NORMS = ("layernorm", "original")
HEAD_BN_EVAL = ("running", "batch")
TARGETS = ("augmented", "denoised", "original")
# Learning-rate schedules of `TrainConfig.schedule` (implemented in `wsl_jax.hyperrep.train.make_optimizer`).
SCHEDULES = ("plateau", "cosine", "constant")
# "cosine" decays the learning rate to this fraction of `lr` at the run's last step.
COSINE_FLOOR = 0.01


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_positive_int(name: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_rate(name: str, value: Any, upper_open: bool = True) -> None:
  ok = 0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0
  if not ok:
    raise ValueError(f"{name} must be in [0, 1{')' if upper_open else ']'}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The auto-encoder and its projection head (reference.md §4).

  Attributes:
    arch: "attention" (transformer encoder/decoder) or "ff" (the feed-forward baseline).
    tokens: "neuron" (one token per neuron / kernel) or "weight" (one token per scalar).
    compression_token: prepend a learned token whose output is the representation; without it the
      whole output sequence is flattened into the bottleneck.
    dim: token dimension d.
    heads: attention heads (dim must be divisible by heads).
    ff_dim: hidden width of each block's feed-forward part.
    blocks: transformer blocks in the encoder and again in the decoder.
    latent_dim: size L of the hyper-representation z (tanh-bounded).
    dropout: dropout rate after attention and in / after the feed-forward parts (FF baseline: after
      every hidden layer).
    attention_dropout: dropout rate on the attention probabilities (the original hard-codes 0.1).
    norm: "layernorm" (standard LayerNorm, eps 1e-5 inside the sqrt) or "original" (the original's
      norm: unbiased std, eps 1e-6 added to the std; reference.md B15).
    ff_hidden_layers: FF baseline only: hidden layers of its encoder (and of its decoder).
    head_layers: projection head: number of Linear-BN-ReLU groups before the last Linear-BN.
    head_hidden: projection head hidden width.
    head_out: projection head output width.
    head_bn_eval: how the head's BatchNorms normalise in evaluation: "running" (running averages,
      standard) or "batch" (batch statistics, as the original, whose loss module never left train mode;
      reference.md B6). Training always uses batch statistics and updates the running averages.
  """

  arch: str = "attention"
  tokens: str = "neuron"
  compression_token: bool = True
  dim: int = 256
  heads: int = 4
  ff_dim: int = 512
  blocks: int = 2
  latent_dim: int = 50
  dropout: float = 0.1
  attention_dropout: float = 0.1
  norm: str = "layernorm"
  ff_hidden_layers: int = 10
  head_layers: int = 3
  head_hidden: int = 50
  head_out: int = 20
  head_bn_eval: str = "running"

  def __post_init__(self):
    _check_choice("model.arch", self.arch, ARCHS)
    _check_choice("model.tokens", self.tokens, TOKEN_KINDS)
    _check_choice("model.norm", self.norm, NORMS)
    _check_choice("model.head_bn_eval", self.head_bn_eval, HEAD_BN_EVAL)
    for name in ("dim", "heads", "ff_dim", "blocks", "latent_dim", "ff_hidden_layers", "head_hidden",
                 "head_out"):
      _check_positive_int(f"model.{name}", getattr(self, name))
    if not isinstance(self.head_layers, int) or self.head_layers < 0:
      raise ValueError(f"model.head_layers must be a non-negative integer, got {self.head_layers!r}")
    if self.dim % self.heads:
      raise ValueError(f"model.dim={self.dim} is not divisible by model.heads={self.heads}")
    _check_rate("model.dropout", self.dropout)
    _check_rate("model.attention_dropout", self.attention_dropout)


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """`gamma * contrast + (1 - gamma) * MSE` (reference.md §5).

  Attributes:
    contrast: "ntxent" (SimCLR NT-Xent; EcD), "positive" (positive pairs only, as the paper's eq. 3:
      -cos + log T; Ec+D as written), or "positive_code" (what the original code computes for Ec+D,
      mean((cos / T)^2) / (2B); reference.md B1).
    gamma: weight of the contrastive term; 0 = reconstruction only (ED), 1 = contrast only (Ec).
    temperature: temperature T of the contrastive terms.
    code_batch: "positive_code" only: the B of its extra division by 2B. The original divided by its own
      batch size, always 500 in its configs; dividing by a fixed 2 x 500 keeps the term's weight what the
      paper's runs had, whatever batch size a run here uses (0: divide by this run's 2B, as the code).
    contrast_delay: epochs of reconstruction only (weight 0) before the contrastive term enters: a
      reconstruction-first curriculum (0: from the start, as the paper).
    contrast_ramp: epochs over which the contrastive weight then rises linearly to `gamma` (epoch
      `contrast_delay + i` trains with `gamma * (i + 1) / (contrast_ramp + 1)`; 0: at once). Both need a
      `schedule` other than "plateau", whose rule would read the changing loss as a plateau or a gain.
  """

  contrast: str = "ntxent"
  gamma: float = 0.5
  temperature: float = 0.1
  code_batch: int = 500
  contrast_delay: int = 0
  contrast_ramp: int = 0

  def __post_init__(self):
    _check_choice("loss.contrast", self.contrast, CONTRASTS)
    _check_rate("loss.gamma", self.gamma, upper_open=False)
    if not self.temperature > 0:
      raise ValueError(f"loss.temperature must be positive, got {self.temperature!r}")
    if isinstance(self.code_batch, bool) or not isinstance(self.code_batch, int) or self.code_batch < 0:
      raise ValueError(f"loss.code_batch must be a non-negative integer, got {self.code_batch!r}")
    for name in ("contrast_delay", "contrast_ramp"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"loss.{name} must be a non-negative integer, got {v!r}")

  @property
  def curriculum(self) -> bool:
    """Whether the contrastive weight changes over the epochs (`contrast_delay` / `contrast_ramp`)."""
    return self.gamma > 0 and bool(self.contrast_delay or self.contrast_ramp)

  def gamma_at(self, epoch: Any) -> Any:
    """The contrastive weight of 0-based epoch `epoch` (a Python int or a traced integer array)."""
    if not self.curriculum:
      return self.gamma
    frac = (epoch - self.contrast_delay + 1) / (self.contrast_ramp + 1)
    return self.gamma * (frac.clip(0.0, 1.0) if hasattr(frac, "clip") else min(max(frac, 0.0), 1.0))


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Augmentation of each view: permutation -> additive noise -> block erasing (reference.md §3).

  The keyword arguments of `wsl_jax.hyperrep.augment.augment` / `two_views` (`kwargs()`), and where the
  permutations come from. `erase_mode` "original" is the original code's placement rule (up to 10
  tries, else no erasing), "uniform" always places a block.

  Permutations: `permutations = 0` draws a fresh random permutation for every view (the whole group).
  `permutations = P > 0` draws every view's permutation from a fixed table of P permutations made once
  from `table_seed` (`wsl_jax.hyperrep.augment.permutation_table(key(table_seed), layout, P, complete=True)`),
  as the original data loader did: 120 for tetris, which is every one of the 5! hidden-unit orders (a
  layout with at most P permutations gets each exactly once), 25,000 random ones for the CNN zoos, and a
  separate table of 100 (another seed) for the validation / test views.
  """

  permute: bool = True
  noise_std: float = 0.0
  erase_p: float = 0.5
  erase_scale: tuple[float, float] = (0.02, 0.33)
  erase_value: float = 0.0
  erase_mode: str = "original"
  permutations: int = 0
  table_seed: int = 0

  def __post_init__(self):
    object.__setattr__(self, "erase_scale", tuple(float(s) for s in self.erase_scale))
    _check_choice("augment.erase_mode", self.erase_mode, ERASE_MODES)
    if self.noise_std < 0:
      raise ValueError(f"augment.noise_std must be non-negative, got {self.noise_std!r}")
    _check_rate("augment.erase_p", self.erase_p, upper_open=False)
    lo, hi = self.erase_scale if len(self.erase_scale) == 2 else (None, None)
    if lo is None or not 0.0 <= lo <= hi <= 1.0:
      raise ValueError(f"augment.erase_scale must be (low, high) with 0 <= low <= high <= 1, "
                       f"got {self.erase_scale!r}")
    for name in ("permutations", "table_seed"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"augment.{name} must be a non-negative integer, got {value!r}")

  @property
  def uses_table(self) -> bool:
    """Whether views draw their permutation from a fixed table (`permutations` > 0)."""
    return self.permute and self.permutations > 0

  def kwargs(self) -> dict[str, Any]:
    """The keyword arguments of `augment.augment` (the table, if any, is passed separately)."""
    return {"permute": self.permute, "noise_std": self.noise_std, "erase_p": self.erase_p,
            "erase_scale": self.erase_scale, "erase_value": self.erase_value, "erase_mode": self.erase_mode}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """A self-supervised training run (reference.md §6).

  Attributes:
    model, loss: see `ModelConfig`, `LossConfig`.
    augment: augmentation of the training views.
    eval_augment: augmentation of the validation / test views (the original permutes test views but
      neither erases nor adds noise).
    target: reconstruction target: "augmented" (the augmented view itself, as the original code;
      reference.md B2), "denoised" (the view before noise and erasing: the permuted weights, i.e. the
      same network), or "original" (the un-augmented input weights; only meaningful without
      permutation, since the model cannot know which permutation was applied).
    batch_size: training batch size (the last partial batch of an epoch is dropped).
    epochs: training epochs.
    lr: Adam learning rate.
    weight_decay: coupled L2 (added to the gradient before Adam, as PyTorch's Adam).
    schedule: the learning-rate schedule: "plateau" (the original's reduce-on-plateau, below; the
      default and every paper preset's), "cosine" (half a cosine from `lr` at the end of the warmup down
      to `lr * COSINE_FLOOR` (1 %) at the run's last step, per step; the run length `epochs` is then part
      of the schedule, so a finished cosine run cannot be extended) or "constant".
    warmup_epochs: linear warmup over this many epochs, per step: step s (0-based) of the warmup uses
      `lr * (s + 1) / (warmup_epochs * steps_per_epoch)`, multiplying whatever the schedule gives (with
      "plateau" the plateau rule runs from the first epoch on). 0: none. Must be below `epochs`.
    plateau_factor, plateau_patience, plateau_threshold: reduce-on-plateau of the epoch-mean training
      loss, as PyTorch's ReduceLROnPlateau(mode="min", threshold_mode="rel", cooldown=0).
    eval_every: evaluate on val/test every this many epochs (and after the last epoch).
    checkpoint_every: checkpoint every this many epochs (and after the last epoch).
    keep_checkpoints: how many checkpoints to keep.
    eval_batch_size: batch size of evaluation and embedding (the last batch is padded).
  """

  model: ModelConfig = ModelConfig()
  loss: LossConfig = LossConfig()
  augment: AugmentConfig = AugmentConfig()
  eval_augment: AugmentConfig = AugmentConfig(erase_p=0.0)
  target: str = "augmented"
  batch_size: int = 500
  epochs: int = 1000
  lr: float = 1e-4
  weight_decay: float = 1e-9
  schedule: str = "plateau"
  warmup_epochs: int = 0
  plateau_factor: float = 0.3
  plateau_patience: int = 10
  plateau_threshold: float = 1e-4
  eval_every: int = 10
  checkpoint_every: int = 10
  keep_checkpoints: int = 2
  eval_batch_size: int = 500

  def __post_init__(self):
    for name, cls in (("model", ModelConfig), ("loss", LossConfig), ("augment", AugmentConfig),
                      ("eval_augment", AugmentConfig)):
      if not isinstance(getattr(self, name), cls):
        raise ValueError(f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
    _check_choice("target", self.target, TARGETS)
    for name in ("batch_size", "epochs", "eval_every", "checkpoint_every", "keep_checkpoints",
                 "eval_batch_size", "plateau_patience"):
      _check_positive_int(name, getattr(self, name))
    if not self.lr > 0:
      raise ValueError(f"lr must be positive, got {self.lr!r}")
    if self.weight_decay < 0:
      raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay!r}")
    _check_choice("schedule", self.schedule, SCHEDULES)
    if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
      raise ValueError(f"warmup_epochs must be a non-negative integer, got {self.warmup_epochs!r}")
    if self.warmup_epochs and self.warmup_epochs >= self.epochs:
      raise ValueError(f"warmup_epochs={self.warmup_epochs} must be smaller than epochs={self.epochs} (the "
                       f"run would end before reaching the full learning rate)")
    if not 0.0 < self.plateau_factor < 1.0:
      raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
    if not 0.0 <= self.plateau_threshold < 1.0:
      raise ValueError(f"plateau_threshold must be in [0, 1), got {self.plateau_threshold!r}")
    if self.loss.curriculum and self.schedule == "plateau":
      raise ValueError("loss.contrast_delay / loss.contrast_ramp change the loss's weights between epochs, which "
                       "the plateau rule would read as a plateau or a gain: use schedule 'cosine' or 'constant'")
    if self.loss.curriculum and self.loss.contrast_delay >= self.epochs:
      raise ValueError(f"loss.contrast_delay={self.loss.contrast_delay} must be smaller than epochs={self.epochs} "
                       "(the contrastive term would never enter: use loss.gamma=0 for reconstruction only)")
    if self.loss.curriculum and self.loss.contrast_delay + self.loss.contrast_ramp >= self.epochs:
      raise ValueError(f"loss.contrast_delay + loss.contrast_ramp = "
                       f"{self.loss.contrast_delay + self.loss.contrast_ramp} must be smaller than epochs={self.epochs} "
                       f"(the contrastive weight would never reach loss.gamma={self.loss.gamma})")
    if self.loss.contrast == "ntxent" and self.loss.gamma > 0 and self.batch_size < 2:
      raise ValueError("NT-Xent needs at least 2 samples per batch (the negatives)")

  # ---- serialisation ------------------------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
    sub = {"model": ModelConfig, "loss": LossConfig, "augment": AugmentConfig, "eval_augment": AugmentConfig}
    _check_fields(cls, d, "TrainConfig")
    kwargs = {}
    for k, v in d.items():
      if k in sub:
        _check_fields(sub[k], v, k)
        kwargs[k] = sub[k](**v)
      else:
        kwargs[k] = v
    return cls(**kwargs)

  def replace(self, **overrides: Any) -> TrainConfig:
    """A copy with fields replaced; dotted names reach into sub-configs: `replace(**{"model.dim": 64})`."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
      head, _, rest = key.partition(".")
      if not hasattr(self, head):
        raise ValueError(f"TrainConfig has no field {head!r}")
      if rest:
        if not dataclasses.is_dataclass(getattr(self, head)):
          raise ValueError(f"{head} is not a sub-config; cannot set {key!r}")
        nested.setdefault(head, {})[rest] = value
      else:
        top[key] = value
    for head, values in nested.items():
      sub = top.get(head, getattr(self, head))
      unknown = set(values) - {f.name for f in dataclasses.fields(sub)}
      if unknown:
        raise ValueError(f"{head} has no field(s) {sorted(unknown)}")
      top[head] = dataclasses.replace(sub, **values)
    return dataclasses.replace(self, **top)


def _check_fields(cls: type, d: Any, what: str) -> None:
  if not isinstance(d, Mapping):
    raise ValueError(f"{what} must be a mapping, got {type(d).__name__}")
  unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
  if unknown:
    raise ValueError(f"unknown {what} fields {sorted(unknown)}")


# ---- presets ----------------------------------------------------------------------------------------

# The original data loader's permutation tables (reference.md §3): every one of the 5! = 120 tetris
# hidden-unit orders, 25,000 random permutations for the CNN zoos, 100 others for the test views.
PAPER_PERMUTATIONS = {"tetris": 120, "cnn": 25_000, "test": 100}


def _paper(dim: int, heads: int, ff_dim: int, blocks: int, latent: int, head: tuple[int, int, int],
           gamma: float, epochs: int, contrast: str = "ntxent", permutations: int = PAPER_PERMUTATIONS["cnn"]
           ) -> TrainConfig:
  """The common settings of the original experiment configs (reference.md §4, §6)."""
  layers, hidden, out = head
  return TrainConfig(
      augment=AugmentConfig(permutations=permutations, table_seed=0),
      eval_augment=AugmentConfig(erase_p=0.0, permutations=PAPER_PERMUTATIONS["test"], table_seed=1),
      model=ModelConfig(dim=dim, heads=heads, ff_dim=ff_dim, blocks=blocks, latent_dim=latent,
                        head_layers=layers, head_hidden=hidden, head_out=out, dropout=0.1,
                        attention_dropout=0.1, norm="original"),
      loss=LossConfig(contrast=contrast, gamma=gamma, temperature=0.1),
      batch_size=500, epochs=epochs, lr=1e-4, weight_decay=1e-9)


_PRESETS: dict[str, TrainConfig] = {
    # Own zoos (reference.md §4 table; epochs = ray iterations x 10).
    "tetris": _paper(256, 4, 512, 2, 50, (3, 50, 20), 0.5, 1000, permutations=PAPER_PERMUTATIONS["tetris"]),
    "tetris_hyp": _paper(256, 4, 900, 2, 50, (3, 50, 20), 0.5, 1000, permutations=PAPER_PERMUTATIONS["tetris"]),
    "mnist_seed": _paper(800, 4, 900, 2, 700, (4, 400, 50), 0.1, 500),
    "mnist_hyp_1_fix": _paper(800, 2, 1000, 4, 700, (4, 400, 50), 0.5, 500),
    "mnist_hyp_1_rand": _paper(800, 2, 900, 4, 700, (4, 400, 20), 0.15, 500),
    "mnist_hyp_5_fix": _paper(800, 4, 900, 2, 700, (4, 400, 20), 0.5, 500),
    "mnist_hyp_5_rand": _paper(800, 2, 900, 4, 500, (2, 400, 50), 0.5, 500),
    "fmnist_seed": _paper(800, 4, 900, 2, 700, (4, 400, 50), 0.1, 500),
    # Unterthiner et al. zoos.
    "unterthiner_mnist": _paper(512, 4, 1000, 4, 1200, (4, 400, 50), 0.1, 200),
    "unterthiner_fmnist": _paper(512, 4, 1000, 4, 1200, (4, 400, 50), 0.85, 200),
    "unterthiner_svhn": _paper(512, 4, 1000, 4, 1200, (4, 400, 50), 0.85, 250),
    "unterthiner_cifar10": _paper(512, 4, 1000, 4, 1200, (4, 400, 50), 0.5, 250, contrast="positive_code"),
    # Quick CPU runs and tests: same structure, a fraction of the width.
    "small": TrainConfig(
        model=ModelConfig(dim=64, heads=2, ff_dim=128, blocks=2, latent_dim=16, head_layers=2,
                          head_hidden=32, head_out=16),
        loss=LossConfig(contrast="ntxent", gamma=0.5, temperature=0.1),
        batch_size=100, epochs=50, lr=3e-3, eval_every=5, checkpoint_every=5, eval_batch_size=500),
}


def preset_names() -> tuple[str, ...]:
  return tuple(_PRESETS)


def preset(name: str) -> TrainConfig:
  """The named preset; see `preset_names()`."""
  if name not in _PRESETS:
    raise ValueError(f"unknown preset {name!r}; choose from {preset_names()}")
  return _PRESETS[name]


# ---- ablation variants (reference.md §8) ------------------------------------------------------------

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "FF": {"arch": "ff"},
    "AttW": {"arch": "attention", "tokens": "weight", "compression_token": False},
    "AttW+t": {"arch": "attention", "tokens": "weight", "compression_token": True},
    "AttN": {"arch": "attention", "tokens": "neuron", "compression_token": False},
    "AttN+t": {"arch": "attention", "tokens": "neuron", "compression_token": True},
}

# The original multiplies the learning rate of the FF baseline by 3 (`vanilla_lr_factor`).
FF_LR_FACTOR = 3.0

LOSSES: dict[str, dict[str, Any]] = {
    "Ec": {"contrast": "ntxent", "gamma": 1.0},
    "ED": {"gamma": 0.0},
    "EcD": {"contrast": "ntxent", "gamma": 0.5},
    "Ec+D": {"contrast": "positive", "gamma": 0.5},          # the paper's eq. 3
    "Ec+D(code)": {"contrast": "positive_code", "gamma": 0.5},  # the original code (reference.md B1)
}


def with_architecture(config: TrainConfig, name: str) -> TrainConfig:
  """`config` with the architecture of ablation `name` (FF, AttW, AttW+t, AttN, AttN+t).

  FF also multiplies the learning rate by `FF_LR_FACTOR`, as the original.
  """
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {name!r}; choose from {tuple(ARCHITECTURES)}")
  out = dataclasses.replace(config, model=dataclasses.replace(config.model, **ARCHITECTURES[name]))
  if name == "FF":
    out = dataclasses.replace(out, lr=config.lr * FF_LR_FACTOR)
  return out


def with_loss(config: TrainConfig, name: str) -> TrainConfig:
  """`config` with the loss of ablation `name` (Ec, ED, EcD, Ec+D, Ec+D(code))."""
  if name not in LOSSES:
    raise ValueError(f"unknown loss variant {name!r}; choose from {tuple(LOSSES)}")
  return dataclasses.replace(config, loss=dataclasses.replace(config.loss, **LOSSES[name]))
