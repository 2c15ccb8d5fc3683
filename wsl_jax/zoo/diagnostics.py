"""What a zoo contains: how far its models trained, how much they differ, how much a linear code can hold.

`diagnose(zoo)` returns a JSON-able dict; `format_diagnostics(d)` renders it as a text table (printed by
`python -m wsl_jax.zoo info DIR` after the summary). Everything is plain NumPy on the zoo's arrays.

Per checkpoint (over the models that did not diverge, `Zoo.diverged` False):

* mean and std (ddof 0) of `test_acc`, `train_acc` and the generalisation gap `ggap`;
* the across-model weight variance: the variance over models of each parameter (ddof 0), averaged over
  the parameters (so each layer counts by its parameter count); also per layer.

Beside it, the **analytic variance at initialisation** of the same quantity: for every model its
initializer (`hparams["init"]`, else the preset's fixed one) gives each layer's weights a mean and a
variance (`init_moments`: PyTorch / Keras semantics of `wsl_jax.weights.nets`, fans from the `Layout`; biases are
constants and add no variance); the zoo is a mixture of its models' initializers, so per parameter the
across-model variance is E[second moment] - E[mean]^2 over the models, then averaged over parameters as
above. At epoch 0 the measured value should match it up to sampling noise; a trained zoo moves away
from it (an "untrained" zoo stays there).

The held-out **variance explained by k-component PCA**: PCA is fitted on every checkpoint of the
training models of `zoo.split()` (centred with their mean), and the held-out models' checkpoints (the
validation models by default) are projected on the top k components and reconstructed:
`1 - sum ||x - x_hat||^2 / sum ||x - mean_heldout||^2`. It is the ceiling of what a k-dimensional
linear code could reconstruct of new models (k = 8, 16, 32, 64, capped by the parameter count and the
number of training rows). Rows with non-finite weights are dropped; at most `max_rows` rows per side
are used (a seeded random subset).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from wsl_jax.weights import nets
from wsl_jax.zoo.core import Split, Zoo

DEFAULT_KS = (8, 16, 32, 64)


def init_moments(init: str, fan_in: int, fan_out: int, out_units: int,
                 init_std: float = nets.DEFAULT_INIT_STD) -> tuple[float, float] | None:
  """(mean, variance) of one weight drawn by `init` (`wsl_jax.weights.nets.init_layer_weight`); None if unknown."""
  if init == "uniform":
    return 0.5, 1.0 / 12.0
  if init == "normal":
    return 0.0, 1.0
  if init in ("kaiming_uniform", "he_uniform", "kaiming_normal", "he_normal"):
    return 0.0, 2.0 / fan_in
  if init in ("xavier_uniform", "glorot_uniform", "xavier_normal", "glorot_normal"):
    return 0.0, 2.0 / (fan_in + fan_out)
  if init == "RandomNormal":
    return 0.0, float(init_std) ** 2
  if init == "TruncatedNormal":
    return 0.0, (float(init_std) * nets._TRUNCATED_STD) ** 2
  if init == "orthogonal":  # a Haar-random matrix with orthonormal rows or columns: E[x^2] = 1 / max dim
    return 0.0, 1.0 / max(out_units, fan_in)
  if init == "constant":
    return 0.0, 0.0
  return None


def _model_inits(zoo: Zoo) -> np.ndarray | None:
  if "init" in zoo.hparams:
    return np.asarray(zoo.hparams["init"]).astype(str)
  fixed = (zoo.meta.get("preset_config") or {}).get("fixed") or {}
  if "init" in fixed:
    return np.full(zoo.num_models, str(fixed["init"]))
  return None


def analytic_init_variance(zoo: Zoo, models: np.ndarray | None = None) -> dict[str, Any] | None:
  """Across-model variance at initialisation implied by the models' initializers: {"total", "per_layer"}.

  None when an initializer is unknown (e.g. an imported zoo without an `init` hyper-parameter).
  """
  models = np.arange(zoo.num_models) if models is None else np.asarray(models)
  inits = _model_inits(zoo)
  if inits is None or models.size == 0:
    return None
  inits = inits[models]
  stds = np.asarray(zoo.hparams.get("init_std", np.full(zoo.num_models, nets.DEFAULT_INIT_STD)),
                    np.float64)[models]
  layout = zoo.layout
  per_layer, total = [], 0.0
  for layer in layout.layers:
    mean = np.empty(len(models))
    second = np.empty(len(models))
    for i, (name, s) in enumerate(zip(inits, stds)):
      mom = init_moments(name, layer.fan_in, layer.fan_out, layer.out_units, s)
      if mom is None:
        return None
      mean[i], second[i] = mom[0], mom[1] + mom[0] ** 2
    weight_var = float(second.mean() - mean.mean() ** 2)
    per_layer.append(weight_var * layer.num_weights / layer.num_params)  # biases: constant, variance 0
    total += weight_var * layer.num_weights
  return {"total": total / layout.num_params, "per_layer": per_layer}


def _across_model_variance(w: np.ndarray, layout) -> tuple[float, list[float]]:
  """w (models, N): per-parameter variance over models (ddof 0), averaged over all and per layer."""
  v = w.astype(np.float64).var(axis=0)
  return float(v.mean()), [float(v[layout.layer_slice(l)].mean()) for l in range(layout.num_layers)]


def _rows(zoo: Zoo, models: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
  x = zoo.weights[models].reshape(-1, zoo.num_params).astype(np.float64)
  x = x[np.all(np.isfinite(x), axis=1)]
  if len(x) > max_rows:
    x = x[np.sort(rng.choice(len(x), max_rows, replace=False))]
  return x


def _principal_axes(xc: np.ndarray, k: int) -> np.ndarray:
  """Top-k principal directions (N, k) of centred rows `xc`, from the smaller of the two Gram matrices."""
  n, d = xc.shape
  if d <= n:
    vals, vecs = np.linalg.eigh(xc.T @ xc)
    return vecs[:, np.argsort(vals)[::-1][:k]]
  vals, u = np.linalg.eigh(xc @ xc.T)
  order = np.argsort(vals)[::-1][:k]
  v = xc.T @ u[:, order]
  return v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-300)


def pca_heldout_explained(zoo: Zoo, train_models: np.ndarray, heldout_models: np.ndarray,
                          ks: Sequence[int] = DEFAULT_KS, max_rows: int = 20000, seed: int = 0
                          ) -> dict[str, float]:
  """{str(k): held-out variance explained by the top-k PCA of the training models' checkpoints}."""
  rng = np.random.default_rng(seed)
  x_tr = _rows(zoo, np.asarray(train_models), max_rows, rng)
  x_ho = _rows(zoo, np.asarray(heldout_models), max_rows, rng)
  if len(x_tr) < 2 or len(x_ho) < 1:
    return {}
  cap = min(zoo.num_params, len(x_tr) - 1)
  ks = sorted({min(int(k), cap) for k in ks if int(k) >= 1})
  mu = x_tr.mean(axis=0)
  axes = _principal_axes(x_tr - mu, max(ks))
  centred = x_ho - mu
  sst = float(((x_ho - x_ho.mean(axis=0)) ** 2).sum())
  out = {}
  for k in ks:
    v = axes[:, :k]
    resid = centred - (centred @ v) @ v.T
    out[str(k)] = float(1.0 - (resid ** 2).sum() / sst) if sst > 0 else float("nan")
  return out


def _stats(a: np.ndarray) -> tuple[list[float], list[float]]:
  a = np.asarray(a, np.float64)
  with np.errstate(invalid="ignore"):
    return np.nanmean(a, axis=0).tolist(), np.nanstd(a, axis=0).tolist()


def diagnose(zoo: Zoo, split: Split | None = None, held_out: str = "val", ks: Sequence[int] = DEFAULT_KS,
             max_rows: int = 20000, seed: int = 0) -> dict[str, Any]:
  """The zoo's diagnostic (see the module docstring) as a JSON-able dict.

  Args:
    zoo: the zoo.
    split: model split (default `zoo.split()`, diverged models excluded): PCA is fitted on `split.train`
      and scored on `split[held_out]`.
    held_out: "val" (default: choosing a recipe on it leaves the test models untouched) or "test".
    ks: PCA sizes (capped by the parameter count and the training rows).
    max_rows: at most this many rows (checkpoints) on each side of the PCA.
    seed: seed of the row subsets.
  """
  ok = ~np.asarray(zoo.diverged, bool)
  models = np.flatnonzero(ok)
  layout = zoo.layout
  props = zoo.properties
  out: dict[str, Any] = {
      "num_models": int(zoo.num_models), "num_checkpoints": int(zoo.num_checkpoints),
      "num_params": int(zoo.num_params), "diverged": int((~ok).sum()),
      "epochs": [int(e) for e in zoo.epochs],
  }
  per_ck: dict[str, list[float]] = {}
  for name in ("test_acc", "train_acc", "ggap"):
    if name in props:
      per_ck[f"{name}_mean"], per_ck[f"{name}_std"] = _stats(props[name][models])
  variances, per_layer = [], []
  for e in range(zoo.num_checkpoints):
    w = zoo.weights[models, e]
    w = w[np.all(np.isfinite(w), axis=1)]
    if len(w) == 0:
      variances.append(float("nan"))
      per_layer.append([float("nan")] * layout.num_layers)
      continue
    t, pl = _across_model_variance(w, layout)
    variances.append(t)
    per_layer.append(pl)
  per_ck["weight_var"] = variances
  out["per_checkpoint"] = per_ck
  out["weight_var_per_layer"] = per_layer
  analytic = analytic_init_variance(zoo, models)
  out["init_var_analytic"] = None if analytic is None else analytic["total"]
  out["init_var_analytic_per_layer"] = None if analytic is None else analytic["per_layer"]
  split = zoo.split() if split is None else split
  out["pca_heldout"] = held_out
  out["pca_explained"] = pca_heldout_explained(zoo, split.train, split[held_out], ks, max_rows, seed)
  return _jsonable(out)


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def _fmt(v: Any, spec: str = ".3f") -> str:
  return "-" if v is None else format(v, spec)


def format_diagnostics(d: dict[str, Any], max_rows: int = 16) -> str:
  """A readable table of `diagnose`'s dict: at most `max_rows` checkpoints (evenly spaced, last included)."""
  pc = d["per_checkpoint"]
  e = len(d["epochs"])
  rows = sorted(set(np.linspace(0, e - 1, min(e, max_rows)).round().astype(int).tolist()))
  has_acc = "test_acc_mean" in pc
  lines = [f"Diagnostics: {d['num_models']} models ({d['diverged']} diverged), {d['num_checkpoints']} "
           f"checkpoints, {d['num_params']} params",
           f"  across-model weight variance at init, analytic: {_fmt(d['init_var_analytic'], '.4g')}"
           f" (measured at checkpoint 0: {_fmt(pc['weight_var'][0], '.4g')})"]
  head = f"  {'epoch':>5}  {'test_acc':>13}  {'train_acc':>13}  {'ggap':>13}  {'weight_var':>10}"
  lines.append(head)
  for i in rows:
    cells = [f"  {d['epochs'][i]:>5}"]
    for name in ("test_acc", "train_acc", "ggap"):
      if f"{name}_mean" in pc:
        cells.append(f"{_fmt(pc[name + '_mean'][i])} ± {_fmt(pc[name + '_std'][i])}".rjust(13))
      else:
        cells.append("-".rjust(13))
    cells.append(_fmt(pc["weight_var"][i], ".4g").rjust(10))
    lines.append("  ".join(cells))
  if not has_acc:
    lines.append("  (no accuracy properties)")
  pca = d.get("pca_explained") or {}
  if pca:
    lines.append(f"  held-out ({d['pca_heldout']}) variance explained by k-component PCA: "
                 + ", ".join(f"k={k} {_fmt(v)}" for k, v in pca.items()))
  return "\n".join(lines)
