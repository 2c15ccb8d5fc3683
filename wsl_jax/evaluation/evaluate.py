"""The evaluation harness: every probe, for every property of a zoo, for every feature extractor.

Protocols (`PROTOCOLS`):

* "paper" (Schürholt et al. 2021, `reference.md` §7): every checkpoint of every model is a sample; the
  split is by model (never by checkpoint); numeric targets get a ridge probe with alpha chosen on the
  validation split and are scored by test R² (Kendall's tau is reported too); string targets get a
  linear classifier scored by test accuracy.
* "final" (the equivariant-network literature, e.g. NFN; `peers.md` §4.2): the final checkpoint of
  each model only; the primary score of a numeric target is Kendall's tau between predicted and true
  values on the test models (R² is reported too).

`evaluate_ood` fits extractors and probes on zoo A and scores them on other zoos of the same
architecture (Kendall's tau, as the paper's Table 7).

Targets (`probe_targets`): every numeric property of the zoo, every numeric hyper-parameter that varies
(regression; `seed` excluded by default) and every string or boolean hyper-parameter that varies
(classification). Nothing is dropped silently: diverged models are excluded and counted, samples
with NaN targets are dropped per target and counted per split, samples with non-finite weights are
dropped and counted, and targets that cannot be probed (constant on the training split, too few
samples) are listed with the reason.

Example:
  >>> from wsl_jax import zoo
  >>> from wsl_jax.evaluation import evaluate, report
  >>> z = zoo.generate("tetris_seed", num_models=20, epochs=2, progress=False)
  >>> ev = evaluate.evaluate_zoo(z)               # W, PCAl, PCAc, PCAr, s(W); paper protocol
  >>> table = report.results_table(ev, paper="table5_tetris_seed")
  >>> table.methods, table.rows[:3]
  (('W', 'PCAl', 'PCAc', 'PCAr', 's(W)'), ('epoch', 'test_acc', 'ggap'))
  >>> print(report.to_markdown(table))          # doctest: +ELLIPSIS
  **...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wsl_jax.evaluation import baselines, probe
from wsl_jax.zoo.core import Split, Zoo

PROTOCOLS = ("paper", "final", "nfn")
SPLITS = ("train", "val", "test")
DEFAULT_EXCLUDE = ("seed",)


@dataclasses.dataclass(frozen=True)
class Target:
  """A probe target: a property or hyper-parameter, and whether it is regressed or classified."""

  name: str
  task: str  # "regression" | "classification"
  source: str  # "property" | "hparam"


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeResult:
  """One probe: one target, one feature extractor, one protocol (and, for OOD, one evaluation zoo).

  Attributes:
    target, method, task, protocol: what was probed, with which features, how.
    metric: the primary metric: "r2", "kendall_tau" or "accuracy".
    score: the primary metric on the test samples (OOD: the evaluation zoo's samples).
    r2, kendall_tau: test scores of a regression probe (None for classification).
    accuracy: test accuracy of a classifier (None for regression).
    train_score, val_score: R² (regression) or accuracy (classification) on train and validation.
    alpha: the ridge penalty chosen on validation (None for classification).
    counts: samples used per split ("train", "val", "test").
    dropped: samples dropped per split because the target was missing (NaN / None / "").
    eval_zoo: the zoo scored (OOD only).
    y_true, y_pred: test targets and predictions (for plots; not written to JSON).
  """

  target: str
  method: str
  task: str
  protocol: str
  metric: str
  score: float
  r2: float | None
  kendall_tau: float | None
  accuracy: float | None
  train_score: float
  val_score: float
  alpha: float | None
  counts: dict[str, int]
  dropped: dict[str, int]
  eval_zoo: str | None = None
  y_true: np.ndarray | None = None
  y_pred: np.ndarray | None = None

  @property
  def row(self) -> str:
    """The table row label: the target, or target@zoo for OOD results."""
    return self.target if self.eval_zoo is None else f"{self.target}@{self.eval_zoo}"

  def to_dict(self) -> dict[str, Any]:
    d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("y_true", "y_pred")}
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in d.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
  """Every probe result of one harness call, and the bookkeeping behind it.

  Attributes:
    zoo: the zoo's name (its data set, or what the caller passed).
    protocol: "paper" or "final".
    results: one `ProbeResult` per (target, method[, eval zoo]).
    methods: extractor names, in column order.
    targets: the targets probed, in row order.
    skipped: target -> why it was not probed.
    excluded_diverged: diverged models excluded (per zoo name for OOD).
    dropped_nonfinite: samples with non-finite weights dropped, per split.
    models: models per split.
    embeddings: method -> test features (S, d) (for projection plots; not written to JSON).
    colors: property -> test values aligned with `embeddings`.
  """

  zoo: str
  protocol: str
  results: tuple[ProbeResult, ...]
  methods: tuple[str, ...]
  targets: tuple[Target, ...]
  skipped: dict[str, str]
  excluded_diverged: dict[str, int]
  dropped_nonfinite: dict[str, int]
  models: dict[str, int]
  embeddings: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  colors: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def result(self, target: str, method: str, eval_zoo: str | None = None) -> ProbeResult:
    for r in self.results:
      if r.target == target and r.method == method and r.eval_zoo == eval_zoo:
        return r
    raise KeyError(f"no result for target {target!r}, method {method!r}"
                   + (f", zoo {eval_zoo!r}" if eval_zoo else ""))

  def to_dict(self) -> dict[str, Any]:
    return {"zoo": self.zoo, "protocol": self.protocol, "methods": list(self.methods),
            "targets": [dataclasses.asdict(t) for t in self.targets], "skipped": dict(self.skipped),
            "excluded_diverged": dict(self.excluded_diverged),
            "dropped_nonfinite": dict(self.dropped_nonfinite), "models": dict(self.models),
            "results": [r.to_dict() for r in self.results]}


# ---- targets ---------------------------------------------------------------------------------------

def _is_text(values: np.ndarray) -> bool:
  if values.dtype.kind in "USb":
    return True
  if values.dtype.kind == "O":
    return any(isinstance(v, (str, bool, np.str_, np.bool_)) for v in values)
  return False


def _missing(values: np.ndarray) -> np.ndarray:
  """True where a target value is missing: NaN for numbers; None, NaN or '' for labels."""
  if values.dtype.kind in "fc":
    return np.isnan(values)
  if values.dtype.kind in "iub":
    return np.zeros(values.shape, bool)
  return np.array([v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and v == "")
                   for v in values], bool)


def probe_targets(zoo: Zoo, models: Any = None, include: Sequence[str] | None = None,
                  exclude: Sequence[str] = DEFAULT_EXCLUDE) -> tuple[Target, ...]:
  """The zoo's probe targets: numeric properties, and hyper-parameters that vary among `models`.

  Args:
    zoo: the zoo.
    models: model indices that count for "varies" (default: the non-diverged models).
    include: only these names (in this order); unknown names raise a ValueError.
    exclude: names never probed (default: the seed).
  """
  models = np.flatnonzero(~np.asarray(zoo.diverged, bool)) if models is None else np.asarray(models)
  found: dict[str, Target] = {}
  for name, values in zoo.properties.items():
    values = np.asarray(values)
    if _is_text(values):
      found[name] = Target(name, "classification", "property")
    elif np.issubdtype(values.dtype, np.number):
      found[name] = Target(name, "regression", "property")
  for name, values in zoo.hparams.items():
    if name in found:
      continue
    values = np.asarray(values)[models]
    present = values[~_missing(values)]
    if np.unique(present).size < 2:
      continue  # fixed in this zoo: nothing to predict
    if _is_text(values):
      found[name] = Target(name, "classification", "hparam")
    elif np.issubdtype(values.dtype, np.number):
      found[name] = Target(name, "regression", "hparam")
  found = {t.name: t for t in sorted(found.values(), key=lambda t: _target_rank(t.name))}
  if include is not None:
    unknown = [n for n in include if n not in found]
    if unknown:
      raise ValueError(f"targets {unknown} are not probe targets of this zoo; it has {sorted(found)} "
                       "(hyper-parameters count only when they vary)")
    return tuple(found[n] for n in include if n not in exclude)
  return tuple(t for n, t in found.items() if n not in exclude)


# The paper's row order first (Eph, Acc, GGap, F1 per class), then the rest in the zoo's order.
_LEADING_TARGETS = ("epoch", "test_acc", "ggap")


def _target_rank(name: str) -> tuple[int, int]:
  if name in _LEADING_TARGETS:
    return (0, _LEADING_TARGETS.index(name))
  if name.startswith("f1_class_") and name[len("f1_class_"):].isdigit():
    return (1, int(name[len("f1_class_"):]))
  return (2, 0)  # stable sort keeps the zoo's order


# ---- samples and features --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class _SplitData:
  weights: np.ndarray
  values: dict[str, np.ndarray]
  model_ids: np.ndarray


def _resolve_split(zoo: Zoo, split: Split | None) -> tuple[Split, int]:
  """The split with diverged models removed, and how many diverged models were excluded."""
  diverged = np.asarray(zoo.diverged, bool)
  if split is None:
    return zoo.split(), int(diverged.sum())
  parts = {}
  for name in SPLITS:
    ids = np.asarray(split[name], np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= zoo.num_models):
      raise ValueError(f"split {name} has model indices outside 0..{zoo.num_models - 1}")
    parts[name] = ids[~diverged[ids]]
  for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
    common = np.intersect1d(parts[a], parts[b])
    if common.size:
      raise ValueError(f"splits {a} and {b} share models {common[:10].tolist()}: the split must be by model")
  return Split(**parts), int(diverged.sum())


def _checkpoints(zoo: Zoo, protocol: str) -> np.ndarray:
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
  return np.arange(zoo.num_checkpoints) if protocol == "paper" else np.array([zoo.num_checkpoints - 1])


def _split_data(zoo: Zoo, models: np.ndarray, checkpoints: np.ndarray, name: str
                ) -> tuple[_SplitData, int]:
  if models.size == 0:
    raise ValueError(f"the {name} split has no (non-diverged) models")
  w, values, ids = zoo.samples(models, checkpoints)
  finite = np.isfinite(w).all(axis=1)
  dropped = int((~finite).sum())
  if not finite.any():
    raise ValueError(f"every {name} sample has non-finite weights")
  return _SplitData(w[finite], {k: np.asarray(v)[finite] for k, v in values.items()}, ids[finite]), dropped


def _named_extractors(extractors: Any, zoo: Zoo) -> dict[str, baselines.FeatureExtractor]:
  if extractors is None:
    return baselines.paper_extractors(zoo.layout)
  if isinstance(extractors, Mapping):
    out = {name: baselines.as_extractor(e, name) for name, e in extractors.items()}
  else:
    out = {}
    for e in extractors:
      ex = baselines.as_extractor(e)
      if ex.name in out:
        raise ValueError(f"two extractors are named {ex.name!r}; names label the table columns")
      out[ex.name] = ex
  if not out:
    raise ValueError("no feature extractors given")
  return out


def _features(fitted: Any, method: str, weights: np.ndarray, split: str) -> np.ndarray:
  f = np.asarray(fitted.transform(weights))
  if f.ndim != 2 or f.shape[0] != weights.shape[0]:
    raise ValueError(f"extractor {method!r} gave shape {f.shape} for {weights.shape[0]} {split} samples")
  if not np.isfinite(f).all():
    raise ValueError(f"extractor {method!r} gave non-finite features on the {split} split")
  return f


# ---- probing one method ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """Probe settings shared by every target.

  Attributes:
    alphas: ridge grid (the paper's 17 values).
    intercept: "center" (unpenalised) or "penalized" (the original code's).
    solver: ridge solver, "gram64" or "svd".
    classifier_l2, classifier_optimizer, classifier_max_iter: `probe.fit_linear_classifier` settings.
  """

  alphas: tuple[float, ...] = probe.PAPER_ALPHAS
  intercept: str = "center"
  solver: str = "gram64"
  classifier_l2: float = 1e-4
  classifier_optimizer: str = "lbfgs"
  classifier_max_iter: int = 500


def _regression_groups(targets: Sequence[Target], data: dict[str, _SplitData]) -> list[tuple[list[str], dict]]:
  """Targets grouped by their valid-sample masks, so that each group shares one decomposition."""
  groups: dict[bytes, tuple[list[str], dict]] = {}
  for t in targets:
    masks = {s: ~_missing(np.asarray(data[s].values[t.name], np.float64)) for s in SPLITS}
    key = b"|".join(np.packbits(masks[s]).tobytes() for s in SPLITS)
    groups.setdefault(key, ([], masks))[0].append(t.name)
  return list(groups.values())


def _probe_regression(method, feats, data, targets, cfg, protocol, skipped) -> list[ProbeResult]:
  results = []
  for names, masks in _regression_groups(targets, data):
    counts = {s: int(masks[s].sum()) for s in SPLITS}
    dropped = {s: int((~masks[s]).sum()) for s in SPLITS}
    y = {s: np.stack([np.asarray(data[s].values[n], np.float64)[masks[s]] for n in names], axis=1)
         for s in SPLITS}
    keep = []
    for j, n in enumerate(names):
      if min(counts.values()) < 2:
        skipped[n] = f"fewer than 2 samples with a value in some split ({counts})"
      elif np.ptp(y["train"][:, j]) == 0:
        skipped[n] = "constant on the training split"
      else:
        keep.append(j)
    if not keep:
      continue
    fit = probe.fit_ridge_val(feats["train"][masks["train"]], y["train"][:, keep],
                              feats["val"][masks["val"]], y["val"][:, keep], cfg.alphas,
                              intercept=cfg.intercept, solver=cfg.solver)
    pred = {s: fit.predict(feats[s][masks[s]]) for s in SPLITS}
    r2 = {s: probe.r2_score(y[s][:, keep], pred[s]) for s in SPLITS}
    for col, j in enumerate(keep):
      y_test, p_test = y["test"][:, j], pred["test"][:, col]
      tau = probe.kendall_tau(y_test, p_test)
      r2_test = float(r2["test"][col])
      results.append(ProbeResult(
          target=names[j], method=method, task="regression", protocol=protocol,
          metric="r2" if protocol == "paper" else "kendall_tau",
          score=r2_test if protocol == "paper" else tau, r2=r2_test, kendall_tau=tau, accuracy=None,
          train_score=float(r2["train"][col]), val_score=float(r2["val"][col]), alpha=float(fit.alpha[col]),
          counts=counts, dropped=dropped, y_true=y_test, y_pred=p_test))
  return results


def _probe_classification(method, feats, data, target, cfg, protocol, skipped) -> ProbeResult | None:
  labels = {s: np.asarray(data[s].values[target.name]) for s in SPLITS}
  masks = {s: ~_missing(labels[s]) for s in SPLITS}
  counts = {s: int(masks[s].sum()) for s in SPLITS}
  dropped = {s: int((~masks[s]).sum()) for s in SPLITS}
  y = {s: np.asarray([str(v) for v in labels[s][masks[s]]]) if labels[s].dtype.kind == "O"
       else labels[s][masks[s]] for s in SPLITS}
  if min(counts.values()) < 1:
    skipped[target.name] = f"no labelled samples in some split ({counts})"
    return None
  classes = np.unique(y["train"])
  if classes.size < 2:
    skipped[target.name] = f"a single class on the training split ({classes.tolist()})"
    return None
  for s in ("val", "test"):
    try:
      probe.encode_labels(y[s], classes, s)
    except ValueError as e:
      raise ValueError(f"target {target.name!r}: {e}") from None
  clf = probe.fit_linear_classifier(feats["train"][masks["train"]], y["train"], l2=cfg.classifier_l2,
                                    optimizer=cfg.classifier_optimizer, max_iter=cfg.classifier_max_iter)
  acc = {s: clf.score(feats[s][masks[s]], y[s], s) for s in SPLITS}
  return ProbeResult(
      target=target.name, method=method, task="classification", protocol=protocol, metric="accuracy",
      score=acc["test"], r2=None, kendall_tau=None, accuracy=acc["test"], train_score=acc["train"],
      val_score=acc["val"], alpha=None, counts=counts, dropped=dropped, y_true=y["test"],
      y_pred=clf.predict(feats["test"][masks["test"]]))


# ---- public harness --------------------------------------------------------------------------------

def _source_split_for_nfn(zoo: Zoo, split: Split | None) -> Split:
  """The zoo's own split (`zoo.meta["split"]`), which the nfn protocol requires."""
  from wsl_jax.zoo.formats import source_split
  own = source_split(zoo)
  if own is None:
    raise ValueError("the nfn protocol needs the zoo's own split (zoo.meta['split']; for Unterthiner et al. "
                     "zoos, read NFN's split file with load_any(..., split_file=...)); use protocol='final' "
                     "for the final checkpoint on another split")
  if split is not None and any(not np.array_equal(np.asarray(split[s]), own[s]) for s in SPLITS):
    raise ValueError("the nfn protocol uses the zoo's own split; the split passed differs from it")
  return own


def evaluate_zoo(zoo: Zoo, extractors: Any = None, *, split: Split | None = None, protocol: str = "paper",
                 targets: Sequence[str] | None = None, exclude: Sequence[str] = DEFAULT_EXCLUDE,
                 config: ProbeConfig = ProbeConfig(), name: str | None = None,
                 keep_embeddings: bool = True, progress: bool = False) -> Evaluation:
  """Fit and score every probe for every target of `zoo` and every feature extractor.

  Args:
    zoo: the zoo.
    extractors: {name: extractor or callable (S, N) -> (S, d)}, a sequence of named extractors, or
      None for the paper's baselines (W, PCAl, PCAc, PCAr, s(W)). Extractors are fit on the training
      samples only.
    split: model indices per split (default `zoo.split()`); diverged models are removed and counted.
    protocol: "paper" (every checkpoint, R²), "final" (final checkpoint, Kendall's tau) or "nfn" (the
      protocol of Zhou et al.'s NFN and its successors: "final" on the zoo's own split, e.g. NFN's split
      file read with `wsl_jax.zoo.formats.load_any(..., split_file=...)`; `split` must be None or that
      split, and a zoo without one is refused).
    targets: only these targets (default: all, see `probe_targets`).
    exclude: targets never probed (default: seed).
    config: probe settings.
    name: the zoo's name in the report (default: its preset name, else its data set).
    keep_embeddings: keep the test features of each method in the result (for projection plots).
    progress: show a progress bar over the methods.
  """
  from wsl_jax.progress import progress_bar
  reported = protocol
  if protocol == "nfn":
    split, protocol = _source_split_for_nfn(zoo, split), "final"
  ck = _checkpoints(zoo, protocol)
  split, n_diverged = _resolve_split(zoo, split)
  named = _named_extractors(extractors, zoo)
  data, nonfinite = {}, {}
  for s in SPLITS:
    data[s], nonfinite[s] = _split_data(zoo, np.asarray(split[s]), ck, s)
  used = np.concatenate([split[s] for s in SPLITS])
  tlist = probe_targets(zoo, used, targets, exclude)
  if not tlist:
    raise ValueError("this zoo has no probe targets (after exclusions)")
  skipped: dict[str, str] = {}
  results: list[ProbeResult] = []
  embeddings = {}
  bar = progress_bar(total=len(named), desc="probes", unit="method", enabled=progress)
  for method, ex in named.items():
    bar.set_postfix_str(method)
    fitted = ex.fit(data["train"].weights)
    feats = {s: _features(fitted, method, data[s].weights, s) for s in SPLITS}
    if keep_embeddings:
      embeddings[method] = feats["test"]
    results += _probe_regression(method, feats, data, [t for t in tlist if t.task == "regression"],
                                 config, protocol, skipped)
    for t in tlist:
      if t.task == "classification":
        r = _probe_classification(method, feats, data, t, config, protocol, skipped)
        if r is not None:
          results.append(r)
    bar.update(1)
  bar.close()
  order = {t.name: i for i, t in enumerate(tlist)}
  results.sort(key=lambda r: (order[r.target], list(named).index(r.method)))
  colors = {t.name: data["test"].values[t.name] for t in tlist} if keep_embeddings else {}
  return Evaluation(zoo=name or _zoo_name(zoo), protocol=reported, results=tuple(results),
                    methods=tuple(named), targets=tuple(t for t in tlist if t.name not in skipped),
                    skipped=skipped, excluded_diverged={"zoo": n_diverged}, dropped_nonfinite=nonfinite,
                    models={s: int(np.asarray(split[s]).size) for s in SPLITS},
                    embeddings=embeddings, colors=colors)


def _zoo_name(zoo: Zoo) -> str:
  return str(zoo.meta.get("preset") or zoo.meta.get("name") or zoo.dataset)


def evaluate_ood(train_zoo: Zoo, eval_zoos: Mapping[str, Zoo], extractors: Any = None, *,
                 targets: Sequence[str] = ("ggap",), protocol: str = "paper", split: Split | None = None,
                 eval_split: str = "test", config: ProbeConfig = ProbeConfig(),
                 name: str | None = None) -> Evaluation:
  """Out-of-distribution probes: fit on `train_zoo`, score on each zoo of `eval_zoos` (Kendall's tau).

  Extractors are fit on the training zoo's training samples, the ridge alpha is chosen on its
  validation split, and the probe is applied unchanged to `eval_split` ("test" or "all") of every
  evaluation zoo (its own split, diverged models excluded). The primary score is Kendall's tau
  between true and predicted values (the paper's Table 7); R² is reported too. Regression targets only.
  """
  if eval_split not in ("test", "all"):
    raise ValueError(f"eval_split must be 'test' or 'all', got {eval_split!r}")
  if not eval_zoos:
    raise ValueError("give at least one evaluation zoo")
  for zname, z in eval_zoos.items():
    if z.layout != train_zoo.layout:
      raise ValueError(f"zoo {zname!r} has a different architecture ({z.layout.num_params} parameters, "
                       f"{z.layout.num_layers} layers) than the training zoo "
                       f"({train_zoo.layout.num_params}, {train_zoo.layout.num_layers}): OOD probes need "
                       "the same Layout")
  ck = _checkpoints(train_zoo, protocol)
  split, n_diverged = _resolve_split(train_zoo, split)
  named = _named_extractors(extractors, train_zoo)
  data, nonfinite = {}, {}
  for s in SPLITS:
    data[s], nonfinite[s] = _split_data(train_zoo, np.asarray(split[s]), ck, s)
  tlist = probe_targets(train_zoo, np.concatenate([split[s] for s in SPLITS]), targets, ())
  for t in tlist:
    if t.task != "regression":
      raise ValueError(f"OOD evaluation scores regression targets; {t.name!r} is categorical")
  excluded = {"train_zoo": n_diverged}
  eval_data = {}
  for zname, z in eval_zoos.items():
    zsplit, nd = _resolve_split(z, None)
    excluded[zname] = nd
    models = zsplit.test if eval_split == "test" else np.concatenate([zsplit[s] for s in SPLITS])
    eval_data[zname], nonfinite[f"{zname}"] = _split_data(z, np.sort(models), _checkpoints(z, protocol), zname)
  skipped: dict[str, str] = {}
  results = []
  for method, ex in named.items():
    fitted = ex.fit(data["train"].weights)
    feats = {s: _features(fitted, method, data[s].weights, s) for s in ("train", "val")}
    eval_feats = {zname: _features(fitted, method, zd.weights, zname) for zname, zd in eval_data.items()}
    for t in tlist:
      y = {s: np.asarray(data[s].values[t.name], np.float64) for s in ("train", "val")}
      m = {s: ~np.isnan(y[s]) for s in y}
      if min(int(v.sum()) for v in m.values()) < 2 or np.ptp(y["train"][m["train"]]) == 0:
        skipped[t.name] = "constant or missing on the training zoo's train/val splits"
        continue
      fit = probe.fit_ridge_val(feats["train"][m["train"]], y["train"][m["train"]], feats["val"][m["val"]],
                                y["val"][m["val"]], config.alphas, intercept=config.intercept,
                                solver=config.solver)
      train_r2 = float(probe.r2_score(y["train"][m["train"]], fit.predict(feats["train"][m["train"]])))
      val_r2 = float(fit.scores[list(fit.alphas).index(float(fit.alpha))].item())
      for zname, zd in eval_data.items():
        if t.name not in zd.values:
          raise ValueError(f"evaluation zoo {zname!r} has no target {t.name!r}")
        yz = np.asarray(zd.values[t.name], np.float64)
        mz = ~np.isnan(yz)
        if mz.sum() < 2:
          skipped[f"{t.name}@{zname}"] = "fewer than 2 samples with a value"
          continue
        pred = fit.predict(eval_feats[zname][mz])
        tau = probe.kendall_tau(yz[mz], pred)
        results.append(ProbeResult(
            target=t.name, method=method, task="regression", protocol=protocol, metric="kendall_tau",
            score=tau, r2=float(probe.r2_score(yz[mz], pred)), kendall_tau=tau, accuracy=None,
            train_score=train_r2, val_score=val_r2, alpha=float(fit.alpha),
            counts={"train": int(m["train"].sum()), "val": int(m["val"].sum()), "test": int(mz.sum())},
            dropped={"train": int((~m["train"]).sum()), "val": int((~m["val"]).sum()),
                     "test": int((~mz).sum())},
            eval_zoo=zname, y_true=yz[mz], y_pred=pred))
  return Evaluation(zoo=name or _zoo_name(train_zoo), protocol=f"ood-{protocol}", results=tuple(results),
                    methods=tuple(named), targets=tlist, skipped=skipped, excluded_diverged=excluded,
                    dropped_nonfinite=nonfinite, models={s: int(np.asarray(split[s]).size) for s in SPLITS})


# ---- reconstruction scores ----------------------------------------------------------------------------

def reconstruction_r2(weights: Any, reconstructions: Any) -> float:
  """R² = 1 - SSE / SST of reconstructions `(S, N)` of weights `(S, N)`, SST the summed per-position
  variance over the samples (the definition of `train.evaluate` and `losses.r2_from_sums`)."""
  w, r = _recon_pair(weights, reconstructions)
  sst = float(((w - w.mean(axis=0)) ** 2).sum())
  if not sst > 0:
    raise ValueError("the weights do not vary over the samples: R² is undefined")
  return 1.0 - float(((r - w) ** 2).sum()) / sst


def _recon_pair(weights: Any, reconstructions: Any) -> tuple[np.ndarray, np.ndarray]:
  w = np.asarray(weights, np.float64)
  r = np.asarray(reconstructions, np.float64)
  if w.ndim != 2 or w.shape != r.shape:
    raise ValueError(f"weights {w.shape} and reconstructions {r.shape} must be the same (samples, parameters)")
  if w.shape[0] < 2:
    raise ValueError(f"need at least 2 samples for a reconstruction R², got {w.shape[0]}")
  if not (np.isfinite(w).all() and np.isfinite(r).all()):
    raise ValueError("weights and reconstructions must be finite (drop the non-finite rows first)")
  return w, r


def _unit_blocks(layout: Any, x: np.ndarray, l: int, perms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Hidden layer l's units in `x` (S, N) permuted by `perms` (one (S, U_k) array per hidden layer, `new
  unit i = old unit perms[k][:, i]`): (incoming: S, U, fan_in + bias; outgoing: S, U, the next layer's
  weights that read the unit)."""
  params = layout.unflatten(x)
  s = x.shape[0]
  layer, nxt = layout.layers[l], layout.layers[l + 1]
  w = params[l]["w"].reshape(s, layer.out_units, -1)
  if l > 0:  # the layer's input axis moves with the previous hidden layer
    prev = layout.layers[l - 1].out_units
    w = w.reshape(s, layer.out_units, prev, -1)
    w = np.take_along_axis(w, perms[l - 1][:, None, :, None], axis=2).reshape(s, layer.out_units, -1)
  incoming = np.concatenate([w, params[l]["b"][:, :, None]], axis=2) if layer.bias else w
  incoming = np.take_along_axis(incoming, perms[l][:, :, None], axis=1)
  # The next layer's weights (S, out', U, block): its input axis grouped by the unit it reads.
  v = params[l + 1]["w"].reshape(s, nxt.out_units, layer.out_units, -1)
  if l + 1 < len(perms):
    v = np.take_along_axis(v, perms[l + 1][:, :, None, None], axis=1)
  outgoing = np.transpose(v, (0, 2, 1, 3)).reshape(s, layer.out_units, -1)
  outgoing = np.take_along_axis(outgoing, perms[l][:, :, None], axis=1)
  return incoming, outgoing


def _assign(cost: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, bool]:
  """The best assignment of one sample's cost matrix, or `current` unless strictly better (so ties keep
  the order and coordinate descent terminates)."""
  from scipy.optimize import linear_sum_assignment
  rows, cols = linear_sum_assignment(cost)
  keep = cost[rows, current].sum()
  if cost[rows, cols].sum() < keep - 1e-12 * max(1.0, abs(keep)):
    return cols, True
  return current, False


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(S, U, U) squared distances between the units of a (S, U, F) and b (S, U, F)."""
  return ((a ** 2).sum(-1)[:, :, None] + (b ** 2).sum(-1)[:, None, :] - 2.0 * np.einsum("sif,sjf->sij", a, b))


def _descend(layout: Any, targets: list[np.ndarray], r: np.ndarray, perms: list[np.ndarray],
             max_sweeps: int) -> list[np.ndarray]:
  """Coordinate descent on the squared error over the hidden layers' permutations (see
  `align_hidden_units`); `perms` is updated in place and returned."""
  sizes = layout.permutable_sizes
  for _ in range(max_sweeps):
    changed = False
    for l, size in enumerate(sizes):
      if size < 2:
        continue
      current = perms[l]
      perms[l] = np.tile(np.arange(size), (r.shape[0], 1))  # the reconstruction's units in their own order
      cost = _sq_dist(targets[l], np.concatenate(_unit_blocks(layout, r, l, perms), axis=2))
      perms[l] = current
      for i in range(r.shape[0]):
        current[i], moved = _assign(cost[i], current[i].copy())
        changed |= moved
    if not changed:
      break
  return perms


def _incoming_start(layout: Any, w: np.ndarray, r: np.ndarray) -> list[np.ndarray]:
  """Layer by layer, the assignment of the incoming weights alone (given the layers before): a start
  that depends on the reconstruction's units, not on their order."""
  sizes = layout.permutable_sizes
  s = r.shape[0]
  perms = [np.tile(np.arange(u), (s, 1)) for u in sizes]
  ident = [p.copy() for p in perms]
  for l, size in enumerate(sizes):
    target = _unit_blocks(layout, w, l, ident)[0]
    cost = _sq_dist(target, _unit_blocks(layout, r, l, perms)[0])
    for i in range(s):
      perms[l][i] = _assign(cost[i], np.arange(size))[0]
  return perms


def _apply_perms(layout: Any, r: np.ndarray, perms: list[np.ndarray]) -> np.ndarray:
  out = np.empty_like(r)
  for i in range(r.shape[0]):
    out[i] = r[i, layout.permutation_index([p[i] for p in perms])]
  return out


def align_hidden_units(weights: Any, reconstructions: Any, layout: Any, max_sweeps: int = 20) -> np.ndarray:
  """The reconstructions with their hidden units permuted to match the weights best (least squares).

  Per sample, by coordinate descent over the hidden layers: the squared error is, as a function of one
  layer's permutation with the others fixed, a sum over its units of the squared distance between a
  weight unit (its incoming weights and bias, and the next layer's weights that read it) and the
  reconstruction unit put in its place, so `scipy.optimize.linear_sum_assignment` on those distances
  finds that layer's best permutation exactly. Two starts, each descended until no layer changes (at
  most `max_sweeps` sweeps), the better kept per sample: the identity (so the error never exceeds the
  unpermuted one) and the layer-by-layer assignment of the incoming weights alone (which does not
  depend on the order of the reconstruction's units, so a permuted reconstruction aligns the same).
  With one hidden layer the result is the global optimum; with more, a local one (exact whenever the
  reconstruction is a permutation of the weights up to small errors). The permutation moves rows, bias
  and the next layer's input axis together (`Layout.permutation_index`): the aligned reconstruction is
  the same network as the reconstruction.
  """
  w, r = _recon_pair(weights, reconstructions)
  layout.check_vector(w, "weights")
  sizes = layout.permutable_sizes
  if not sizes:
    return r.copy()
  ident = [np.tile(np.arange(u), (w.shape[0], 1)) for u in sizes]
  targets = [np.concatenate(_unit_blocks(layout, w, l, ident), axis=2) for l in range(len(sizes))]
  best = None
  for start in (ident, _incoming_start(layout, w, r)):
    aligned = _apply_perms(layout, r, _descend(layout, targets, r, [p.copy() for p in start], max_sweeps))
    if best is None:
      best = aligned
    else:
      better = ((aligned - w) ** 2).sum(axis=1) < ((best - w) ** 2).sum(axis=1)
      best[better] = aligned[better]
  return best


def permutation_invariant_r2(weights: Any, reconstructions: Any, layout: Any) -> float:
  """Reconstruction R² up to the hidden-unit permutation that matches each sample best
  (`align_hidden_units`): at least `reconstruction_r2`, equal for a reconstruction that already has the
  weights' unit order, and unchanged by any function-preserving permutation of the reconstruction."""
  return reconstruction_r2(weights, align_hidden_units(weights, reconstructions, layout))
