"""Linear probes on features of weights: closed-form ridge, a softmax classifier, and the metrics.

Ridge regression (`reference.md` §7) is solved for every alpha of a grid at once from one spectral
decomposition of the training design matrix, for several targets at once, each target choosing its own
alpha. Two ways to choose alpha:

* `fit_ridge_val`: the paper's protocol: fit on the training split, pick the alpha with the best
  validation R² (grid `PAPER_ALPHAS`, 1e3 ... 1e-5), report test R² at that alpha.
* `fit_ridge_loo`: exact leave-one-out error from the hat-matrix diagonal (what scikit-learn's
  `RidgeCV` does), no validation split needed (`jax_notes.md` §3.5).

Two solvers, both numerically safe:

* `"gram64"` (default): eigendecomposition of the smaller Gram matrix (`X^T X` or `X X^T`) accumulated
  in float64 on the host in row chunks. Inputs are float32 at best, so float64 Gram arithmetic loses
  less than the inputs' own rounding for any condition number below ~1e8; it is the original code's
  float64 precision, and on CPU several times faster than an SVD of the tall design matrix.
* `"svd"`: thin SVD of the design matrix in float32 with JAX (jit; runs on an accelerator when there is
  one), never forming normal equations.

Two intercept conventions (`intercept=`):

* `"center"` (default): an unpenalised intercept, by centering features and targets on the training
  means (as scikit-learn's `Ridge(fit_intercept=True)`).
* `"penalized"`: the original code's: a constant-1 column appended to the features and penalised with
  the rest (`reference.md` §9 B9); the same as `Ridge(fit_intercept=False)` on `[X, 1]`.

The classifier (`fit_linear_classifier`) is multinomial logistic regression on standardised features
with a small L2 penalty, trained full batch with optax (L-BFGS by default, or Adam) from a zero start:
deterministic, and the problem is strictly convex, so the optimum does not depend on a seed. Labels may
be strings; they are indexed by the sorted unique training labels, and a label that does not occur in
the training split raises a ValueError.

Metrics: `r2_score` (as scikit-learn's), `accuracy`, and `kendall_tau` (tau-b with ties, as
`scipy.stats.kendalltau`, in O(n log n)).

Non-finite inputs never turn into numbers: NaN or inf in features or regression targets (`x`, `y`,
`y_true`) raise a ValueError naming the argument, as do NaN labels (`fit_linear_classifier`,
`accuracy`, `LinearClassifier.score`) and NaN in `kendall_tau`'s inputs. The one NaN *result* is
`r2_score` of a prediction that holds NaN or inf (the target's score is NaN), and `kendall_tau` of a
constant sample (undefined).

Example:
  >>> import numpy as np
  >>> from wsl_jax.evaluation import probe
  >>> rng = np.random.default_rng(0)
  >>> x, w = rng.normal(size=(300, 5)), rng.normal(size=5)
  >>> y = x @ w + 0.1 * rng.normal(size=300)
  >>> fit = probe.fit_ridge_val(x[:200], y[:200], x[200:250], y[200:250])
  >>> bool(probe.r2_score(y[250:], fit.predict(x[250:])) > 0.99)
  True
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

# The original code's grid, largest first (reference.md §7).
PAPER_ALPHAS = (1e3, 3e2, 1e2, 3e1, 1e1, 3.0, 1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
INTERCEPT_MODES = ("center", "penalized")
SOLVERS = ("gram64", "svd")
_CHUNK_ROWS = 8192  # rows per float64 chunk: bounds host memory for (50k, 2464) designs


# ---- input checks ---------------------------------------------------------------------------------

def _as_design(x: Any, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"{name} must be a 2-D array (samples, features), got shape {x.shape}")
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"{name} is empty: shape {x.shape}")
  if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
    raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}")
  if not np.isfinite(x).all():
    raise ValueError(f"{name} contains {int((~np.isfinite(x)).sum())} non-finite values (NaN or inf)")
  return x


def _as_targets(y: Any, n: int, name: str) -> tuple[np.ndarray, bool]:
  """y as (n, t) float64 and whether it was given as a single target (1-D)."""
  y = np.asarray(y)
  single = y.ndim == 1
  if y.ndim not in (1, 2):
    raise ValueError(f"{name} must be (samples,) or (samples, targets), got shape {y.shape}")
  if y.shape[0] != n:
    raise ValueError(f"{name} has {y.shape[0]} samples, the features have {n}")
  if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
    raise ValueError(f"{name} must be real numbers, got dtype {y.dtype}")
  y = y.reshape(n, -1).astype(np.float64)
  if y.shape[1] == 0:
    raise ValueError(f"{name} has no targets")
  if not np.isfinite(y).all():
    raise ValueError(f"{name} contains {int((~np.isfinite(y)).sum())} non-finite values; drop them first")
  return y, single


def _as_alphas(alphas: Any) -> np.ndarray:
  alphas = np.asarray(alphas, np.float64).reshape(-1)
  if alphas.size == 0:
    raise ValueError("alphas is empty")
  if not (np.isfinite(alphas).all() and (alphas > 0).all()):
    raise ValueError(f"every alpha must be a positive finite number, got {alphas.tolist()}")
  return alphas


def _check_choice(value: str, choices: Sequence[str], name: str) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


# ---- results --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class RidgeFit:
  """A fitted ridge probe for t targets.

  Attributes:
    coef: (d,) for a single target, else (d, t): coefficients of the original (uncentered) features.
    intercept: scalar array for a single target, else (t,).
    alpha: the alpha of each target (scalar array for a single target, else (t,)).
    alphas: (a,) the grid searched (the single alpha for `fit_ridge`).
    scores: (a, t) the selection criterion per alpha and target: validation R² ("val"), leave-one-out
      mean squared error ("loo"), or empty ("fixed").
    selection: "val", "loo" or "fixed".
    intercept_mode: "center" or "penalized".
    solver: "gram64" or "svd".
  """

  coef: np.ndarray
  intercept: np.ndarray
  alpha: np.ndarray
  alphas: np.ndarray
  scores: np.ndarray
  selection: str
  intercept_mode: str
  solver: str

  @property
  def single_target(self) -> bool:
    return self.coef.ndim == 1

  def predict(self, x: Any) -> np.ndarray:
    """Predictions (S,) or (S, t) in float64."""
    x = _as_design(x, "x")
    if x.shape[1] != self.coef.shape[0]:
      raise ValueError(f"x has {x.shape[1]} features, the probe was fit on {self.coef.shape[0]}")
    return _chunked_matmul(x, self.coef) + self.intercept


def _chunked_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
  out = np.empty((x.shape[0],) + w.shape[1:], np.float64)
  for start in range(0, x.shape[0], _CHUNK_ROWS):
    out[start:start + _CHUNK_ROWS] = x[start:start + _CHUNK_ROWS].astype(np.float64) @ w
  return out


# ---- the float64 Gram solver ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class _Path:
  """Coefficients of every alpha, plus leave-one-out residuals when asked for. Internal; float64.

  coefs (a, d, t) and intercepts (a, t) are for the original features; loo_resid (a, n, t) holds the
  leave-one-out residuals (y_i - yhat_i) / (1 - h_i).
  """

  coefs: np.ndarray
  intercepts: np.ndarray
  loo_resid: np.ndarray | None


def _design_rows(x: np.ndarray, start: int, stop: int, mean: np.ndarray, penalized: bool) -> np.ndarray:
  """Rows start:stop of the float64 design: centered features, or features plus a ones column."""
  rows = x[start:stop].astype(np.float64)
  if penalized:
    return np.concatenate([rows, np.ones((rows.shape[0], 1))], axis=1)
  return rows - mean


def _per_alpha(inv: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(k, a * t): b (k, t) scaled by inv (a, k) for every alpha, laid out for one matmul."""
  return (inv.T[:, :, None] * b[:, None, :]).reshape(b.shape[0], -1)


def _unflatten_alphas(m: np.ndarray, num_alphas: int) -> np.ndarray:
  """(rows, a * t) -> (a, rows, t)."""
  return m.reshape(m.shape[0], num_alphas, -1).transpose(1, 0, 2)


def _dual_loo(u, inv, uty, center: bool, xp):
  """LOO residuals from a full eigenbasis u (n, n) of the n x n kernel, without cancellation.

  I - H = alpha P (K + alpha I)^-1 P, with P the centering projector for an unpenalised intercept
  (identity otherwise), so residual_i = (P u inv u^T y)_i / (P u inv u^T P)_ii: both sums of the
  same sign, alpha cancels, and near-interpolating alphas (1 - h ~ 1e-8) stay accurate.
  """
  pu = u - u.mean(axis=0, keepdims=True) if center else u
  num = (pu @ (inv.T[:, :, None] * uty[:, None, :]).reshape(uty.shape[0], -1))  # (n, a * t)
  num = num.reshape(u.shape[0], inv.shape[0], -1).transpose(1, 0, 2)
  den = (pu ** 2) @ inv.T  # (n, a)
  return num / den.T[:, :, None]


def _gram_path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray, penalized: bool, loo: bool) -> _Path:
  n, d = x.shape
  dd = d + 1 if penalized else d  # columns of the design
  x_mean = np.zeros(d) if penalized else x.mean(axis=0, dtype=np.float64)
  y_mean = np.zeros(y.shape[1]) if penalized else y.mean(axis=0)
  yc = y - y_mean
  loo_resid = None
  if n > dd:
    # Primal: G = A^T A (dd x dd) = V diag(lam) V^T; coef(alpha) = V diag(1/(lam+alpha)) V^T A^T y.
    gram = np.zeros((dd, dd))
    aty = np.zeros((dd, y.shape[1]))
    for start in range(0, n, _CHUNK_ROWS):
      rows = _design_rows(x, start, start + _CHUNK_ROWS, x_mean, penalized)
      gram += rows.T @ rows
      aty += rows.T @ yc[start:start + _CHUNK_ROWS]
    lam, v = np.linalg.eigh(gram)
    lam = np.maximum(lam, 0.0)  # round-off can make null directions slightly negative
    inv = 1.0 / (lam[None, :] + alphas[:, None])  # (a, k)
    spectral = _per_alpha(inv, v.T @ aty)  # (k, a * t): V^T A^T y / (lam + alpha) for every alpha
    coefs = _unflatten_alphas(v @ spectral, alphas.size)
    if loo:
      # h_i = sum_k z_ik^2 / (lam_k + alpha) (+ 1/n for the intercept), z = A V = U diag(s).
      loo_resid = np.zeros((alphas.size, n, y.shape[1]))
      for start in range(0, n, _CHUNK_ROWS):
        z = _design_rows(x, start, start + _CHUNK_ROWS, x_mean, penalized) @ v
        hat = (z ** 2) @ inv.T + (0.0 if penalized else 1.0 / n)
        fitted = _unflatten_alphas(z @ spectral, alphas.size)
        resid = yc[None, start:start + _CHUNK_ROWS] - fitted
        loo_resid[:, start:start + _CHUNK_ROWS] = resid / (1.0 - hat.T)[:, :, None]
  else:
    # Dual (no more samples than columns): K = A A^T = U diag(lam) U^T; coef = A^T U diag(1/(lam+alpha)) U^T y.
    design = _design_rows(x, 0, n, x_mean, penalized)
    lam, u = np.linalg.eigh(design @ design.T)
    lam = np.maximum(lam, 0.0)
    inv = 1.0 / (lam[None, :] + alphas[:, None])
    uty = u.T @ yc  # (k, t)
    coefs = _unflatten_alphas(design.T @ (u @ _per_alpha(inv, uty)), alphas.size)
    if loo:
      loo_resid = _dual_loo(u, inv, uty, not penalized, np)
  if penalized:
    intercepts = coefs[:, d, :]
    coefs = coefs[:, :d, :]
  else:
    intercepts = y_mean[None, :] - np.einsum("d,adt->at", x_mean, coefs)
  return _Path(coefs, intercepts, loo_resid)


# ---- the float32 JAX SVD solver -------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("penalized", "loo"))
def _svd_path_jax(x: jax.Array, y: jax.Array, alphas: jax.Array, penalized: bool, loo: bool):
  n, d = x.shape
  if penalized:
    design = jnp.concatenate([x, jnp.ones((n, 1), x.dtype)], axis=1)
    x_mean = jnp.zeros((d,), x.dtype)
    y_mean = jnp.zeros((y.shape[1],), y.dtype)
  else:
    x_mean = x.mean(axis=0)
    y_mean = y.mean(axis=0)
    design = x - x_mean[None, :]
  yc = y - y_mean[None, :]
  u, s, vt = jnp.linalg.svd(design, full_matrices=False)
  uty = u.T @ yc  # (k, t)
  lam = s ** 2
  inv = 1.0 / (lam[None, :] + alphas[:, None])  # (a, k)
  coefs = jnp.einsum("kd,ak,kt->adt", vt, s[None, :] * inv, uty)
  if penalized:
    intercepts = coefs[:, d, :]
    coefs = coefs[:, :d, :]
  else:
    intercepts = y_mean[None, :] - jnp.einsum("d,adt->at", x_mean, coefs)
  if not loo:
    return coefs, intercepts, None
  if n <= design.shape[1]:
    return coefs, intercepts, _dual_loo(u, inv, uty, not penalized, jnp)  # u is a full basis of R^n
  shrink = lam[None, :] * inv  # (a, k)
  hat = (u ** 2) @ shrink.T + (0.0 if penalized else 1.0 / n)
  fitted = jnp.einsum("nk,ak,kt->ant", u, shrink, uty)
  return coefs, intercepts, (yc[None] - fitted) / (1.0 - hat.T)[:, :, None]


def _svd_path(x: np.ndarray, y: np.ndarray, alphas: np.ndarray, penalized: bool, loo: bool) -> _Path:
  out = _svd_path_jax(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                      jnp.asarray(alphas, jnp.float32), penalized=penalized, loo=loo)
  coefs, intercepts, loo_resid = (None if a is None else np.asarray(a, np.float64) for a in out)
  return _Path(coefs, intercepts, loo_resid)


def _path(x, y, alphas, intercept: str, solver: str, loo: bool) -> _Path:
  _check_choice(intercept, INTERCEPT_MODES, "intercept")
  _check_choice(solver, SOLVERS, "solver")
  fn = _gram_path if solver == "gram64" else _svd_path
  return fn(x, y, alphas, intercept == "penalized", loo)


# ---- public ridge API -----------------------------------------------------------------------------

def ridge_path(x: Any, y: Any, alphas: Sequence[float] = PAPER_ALPHAS, *, intercept: str = "center",
               solver: str = "gram64") -> tuple[np.ndarray, np.ndarray]:
  """Ridge coefficients for every alpha from one decomposition.

  Args:
    x: (n, d) features.
    y: (n,) or (n, t) targets.
    alphas: positive penalties.
    intercept: "center" (unpenalised intercept) or "penalized" (constant column, penalised).
    solver: "gram64" (float64 host) or "svd" (float32 JAX).

  Returns:
    coefs (a, d, t) and intercepts (a, t), float64 (t = 1 for a 1-D y).
  """
  x = _as_design(x, "x")
  y, _ = _as_targets(y, x.shape[0], "y")
  p = _path(x, y, _as_alphas(alphas), intercept, solver, loo=False)
  return p.coefs, p.intercepts


def _finish(path_coefs, path_intercepts, best, alphas, scores, single, selection, intercept, solver):
  t = np.arange(best.size)
  coef, b, alpha = path_coefs[best, :, t].T, path_intercepts[best, t], alphas[best]
  if single:
    coef, b, alpha = coef[:, 0], b[0], alpha[0]
  return RidgeFit(coef=coef, intercept=np.asarray(b), alpha=np.asarray(alpha), alphas=alphas,
                  scores=scores, selection=selection, intercept_mode=intercept, solver=solver)


def fit_ridge(x: Any, y: Any, alpha: float, *, intercept: str = "center", solver: str = "gram64") -> RidgeFit:
  """Ridge regression at one alpha."""
  x = _as_design(x, "x")
  y, single = _as_targets(y, x.shape[0], "y")
  alphas = _as_alphas([alpha])
  p = _path(x, y, alphas, intercept, solver, loo=False)
  best = np.zeros(y.shape[1], np.int64)
  return _finish(p.coefs, p.intercepts, best, alphas, np.zeros((0, y.shape[1])), single, "fixed",
                 intercept, solver)


def fit_ridge_val(x_train: Any, y_train: Any, x_val: Any, y_val: Any,
                  alphas: Sequence[float] = PAPER_ALPHAS, *, intercept: str = "center",
                  solver: str = "gram64") -> RidgeFit:
  """The paper's probe: fit on train for every alpha, keep each target's best alpha on validation R².

  Ties go to the alpha listed first (the largest, for `PAPER_ALPHAS`).

  Args:
    x_train, y_train: (n, d) features and (n,) or (n, t) targets of the training split.
    x_val, y_val: the validation split, same feature and target count.
    alphas: the grid; the paper's 17 values by default.
    intercept: "center" or "penalized" (the original code's; reference.md §9 B9).
    solver: "gram64" or "svd".
  """
  x_train = _as_design(x_train, "x_train")
  x_val = _as_design(x_val, "x_val")
  if x_val.shape[1] != x_train.shape[1]:
    raise ValueError(f"x_val has {x_val.shape[1]} features, x_train has {x_train.shape[1]}")
  y_train, single = _as_targets(y_train, x_train.shape[0], "y_train")
  y_val, _ = _as_targets(y_val, x_val.shape[0], "y_val")
  if y_val.shape[1] != y_train.shape[1]:
    raise ValueError(f"y_val has {y_val.shape[1]} targets, y_train has {y_train.shape[1]}")
  alphas = _as_alphas(alphas)
  p = _path(x_train, y_train, alphas, intercept, solver, loo=False)
  a, d, t = p.coefs.shape
  val_pred = _chunked_matmul(x_val, p.coefs.transpose(1, 0, 2).reshape(d, a * t)).reshape(-1, a, t)
  val_pred = val_pred.transpose(1, 0, 2) + p.intercepts[:, None, :]  # (a, n_val, t)
  scores = np.stack([r2_score(y_val, val_pred[i]) for i in range(a)]).reshape(a, t)
  best = np.argmax(np.where(np.isnan(scores), -np.inf, scores), axis=0)
  return _finish(p.coefs, p.intercepts, best, alphas, scores, single, "val", intercept, solver)


def fit_ridge_loo(x: Any, y: Any, alphas: Sequence[float] = PAPER_ALPHAS, *, intercept: str = "center",
                  solver: str = "gram64") -> RidgeFit:
  """Ridge with each target's alpha chosen by exact leave-one-out mean squared error.

  LOO residual of sample i: (y_i - yhat_i) / (1 - h_i) with h the hat-matrix diagonal, for every
  alpha from the same decomposition (as `sklearn.linear_model.RidgeCV(alpha_per_target=True)`).
  """
  x = _as_design(x, "x")
  y, single = _as_targets(y, x.shape[0], "y")
  if x.shape[0] < 2:
    raise ValueError("leave-one-out needs at least 2 samples")
  alphas = _as_alphas(alphas)
  p = _path(x, y, alphas, intercept, solver, loo=True)
  scores = (p.loo_resid ** 2).mean(axis=1)  # (a, t)
  best = np.argmin(np.where(np.isnan(scores), np.inf, scores), axis=0)
  return _finish(p.coefs, p.intercepts, best, alphas, scores, single, "loo", intercept, solver)


# ---- metrics --------------------------------------------------------------------------------------

def r2_score(y_true: Any, y_pred: Any) -> np.ndarray:
  """Coefficient of determination 1 - SS_res / SS_tot per target (mean of y_true as the baseline).

  As scikit-learn's `r2_score` (per output): a constant `y_true` gives 1.0 for a perfect prediction
  and 0.0 otherwise. Returns a scalar array for 1-D inputs, else (t,).

  Non-finite values: a NaN or inf in `y_true` raises a ValueError (as every probe entry point does for
  its targets: drop those samples first); a NaN or inf in `y_pred` makes that target's R² NaN (a
  diverged prediction has no score; `fit_ridge_val` skips such alphas), never a finite number.
  """
  y_true = np.asarray(y_true, np.float64)
  y_pred = np.asarray(y_pred, np.float64)
  if y_true.shape != y_pred.shape:
    raise ValueError(f"y_true has shape {y_true.shape}, y_pred has shape {y_pred.shape}")
  if y_true.ndim not in (1, 2) or y_true.shape[0] < 2:
    raise ValueError(f"R² needs (samples,) or (samples, targets) with at least 2 samples, got {y_true.shape}")
  if not np.isfinite(y_true).all():
    raise ValueError(f"y_true contains {int((~np.isfinite(y_true)).sum())} non-finite values (NaN or inf); "
                     "drop those samples first")
  ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
  ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
  with np.errstate(divide="ignore", invalid="ignore"):
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                  np.where(ss_res == 0, 1.0, 0.0))
  r2 = np.where(np.isfinite(y_pred).all(axis=0), r2, np.nan)
  return np.asarray(r2)


def accuracy(y_true: Any, y_pred: Any) -> float:
  """Fraction of equal labels (any comparable dtype, strings included). A NaN label raises a ValueError
  (NaN equals nothing, so it would count as a silent miss)."""
  y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
  if y_true.shape != y_pred.shape or y_true.ndim != 1:
    raise ValueError(f"accuracy needs two 1-D arrays of one length, got {y_true.shape} and {y_pred.shape}")
  if y_true.size == 0:
    raise ValueError("accuracy of zero samples is undefined")
  for name, v in (("y_true", y_true), ("y_pred", y_pred)):
    if v.dtype.kind in "fc" and np.isnan(v).any():
      raise ValueError(f"{name} contains {int(np.isnan(v).sum())} NaN labels; drop those samples first")
  return float((y_true == y_pred).mean())


def _dense_ranks(v: np.ndarray) -> np.ndarray:
  """Ranks 0..k-1 with equal values sharing a rank."""
  _, inverse = np.unique(v, return_inverse=True)
  return inverse.reshape(-1).astype(np.int64)


def kendall_tau(x: Any, y: Any) -> float:
  """Kendall's tau-b between two 1-D samples: `scipy.stats.kendalltau` on their dense ranks (so labels
  of any sortable kind work), with the inputs checked.

  tau_b = (P - Q) / sqrt((n0 - n1) (n0 - n2)), with P / Q the concordant / discordant pairs, n0 all
  pairs, n1 / n2 the pairs tied in x / y. NaN when x or y is constant (tau is undefined then); NaN or inf
  in a numeric x or y raises a ValueError. (An own O(n log² n) merge-sort count gave the same values and
  took 42-56 ms at n = 50,000 where scipy takes 11 ms: it was replaced.)
  """
  x, y = np.asarray(x), np.asarray(y)
  if x.ndim != 1 or x.shape != y.shape:
    raise ValueError(f"kendall_tau needs two 1-D arrays of one length, got {x.shape} and {y.shape}")
  for name, v in (("x", x), ("y", y)):
    if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
      raise ValueError(f"{name} contains {int((~np.isfinite(v)).sum())} non-finite values (NaN or inf); "
                       "drop those samples first")
  n = x.size
  if n < 2:
    return float("nan")
  rx, ry = _dense_ranks(x), _dense_ranks(y)
  if rx.max() == 0 or ry.max() == 0:  # constant: undefined (scipy would warn)
    return float("nan")
  from scipy.stats import kendalltau
  return float(kendalltau(rx, ry).statistic)


# ---- linear classifier ----------------------------------------------------------------------------

def encode_labels(labels: Any, classes: np.ndarray, split: str = "labels") -> np.ndarray:
  """Indices of `labels` in the sorted `classes`; a label not among them raises a ValueError."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{split} must be 1-D, got shape {labels.shape}")
  idx = np.searchsorted(classes, labels)
  idx = np.clip(idx, 0, len(classes) - 1)
  unseen = classes[idx] != labels
  if unseen.any():
    missing = sorted({str(v) for v in labels[unseen]})
    raise ValueError(f"{split} contains classes that are not in the training split: {missing} "
                     f"(training classes: {[str(c) for c in classes]})")
  return idx.astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class LinearClassifier:
  """Multinomial logistic regression on standardised features.

  Attributes:
    classes: (c,) sorted training labels (strings or numbers).
    weight: (d, c) and bias (c,) for the standardised features (x - mean) / scale.
    mean, scale: (d,) training feature statistics.
    loss: final training objective (mean cross-entropy + penalty).
    iterations: optimizer steps taken.
  """

  classes: np.ndarray
  weight: np.ndarray
  bias: np.ndarray
  mean: np.ndarray
  scale: np.ndarray
  loss: float
  iterations: int

  def decision_function(self, x: Any) -> np.ndarray:
    x = _as_design(x, "x")
    if x.shape[1] != self.weight.shape[0]:
      raise ValueError(f"x has {x.shape[1]} features, the classifier was fit on {self.weight.shape[0]}")
    return ((x - self.mean) / self.scale) @ self.weight + self.bias

  def predict(self, x: Any) -> np.ndarray:
    return self.classes[np.argmax(self.decision_function(x), axis=1)]

  def predict_proba(self, x: Any) -> np.ndarray:
    z = self.decision_function(x)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)

  def score(self, x: Any, y: Any, split: str = "y") -> float:
    """Accuracy on (x, y); NaN labels and labels unseen in training raise a ValueError."""
    y = np.asarray(y)
    if y.dtype.kind in "fc" and np.isnan(y).any():
      raise ValueError(f"{split} contains {int(np.isnan(y).sum())} NaN labels; drop those samples first")
    encode_labels(y, self.classes, split)
    return accuracy(np.asarray(y), self.predict(x))


def _xent_objective(params, x, y, sample_weight, class_mask, l2):
  logits = x @ params["w"] + params["b"][None, :]
  logits = jnp.where(class_mask[None, :], logits, -1e9)  # padded classes get no probability
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  return jnp.sum(sample_weight * nll) + 0.5 * l2 * jnp.sum(params["w"] ** 2)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _train_lbfgs(x, y, sample_weight, class_mask, l2, max_iter, tol):
  objective = functools.partial(_xent_objective, x=x, y=y, sample_weight=sample_weight,
                                class_mask=class_mask, l2=l2)
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    params, state, _, it = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(params, updates), state, optax.tree_utils.tree_norm(grad), it + 1

  def running(carry):
    _, _, grad_norm, it = carry
    return (it < max_iter) & (grad_norm > tol)

  params = {"w": jnp.zeros((x.shape[1], class_mask.shape[0]), x.dtype),
            "b": jnp.zeros(class_mask.shape, x.dtype)}
  init = (params, opt.init(params), jnp.asarray(jnp.inf, x.dtype), jnp.asarray(0, jnp.int32))
  params, _, _, it = jax.lax.while_loop(running, step, init)
  return params, objective(params), it


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _train_adam(x, y, sample_weight, class_mask, l2, max_iter, learning_rate):
  objective = functools.partial(_xent_objective, x=x, y=y, sample_weight=sample_weight,
                                class_mask=class_mask, l2=l2)
  opt = optax.adam(learning_rate)

  def step(carry, _):
    params, state = carry
    updates, state = opt.update(jax.grad(objective)(params), state, params)
    return (optax.apply_updates(params, updates), state), None

  params = {"w": jnp.zeros((x.shape[1], class_mask.shape[0]), x.dtype),
            "b": jnp.zeros(class_mask.shape, x.dtype)}
  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=max_iter)
  return params, objective(params), jnp.asarray(max_iter, jnp.int32)


def _bucket(size: int, minimum: int) -> int:
  """The next power of two >= size (and >= minimum): padded shapes share one compiled program."""
  return max(minimum, 1 << (int(size) - 1).bit_length())


def fit_linear_classifier(x: Any, y: Any, *, l2: float = 1e-4, optimizer: str = "lbfgs",
                          max_iter: int = 500, tol: float = 1e-5, learning_rate: float = 0.05
                          ) -> LinearClassifier:
  """Softmax regression on features standardised with the training mean and std.

  Args:
    x: (n, d) training features.
    y: (n,) labels: strings or numbers; at least two classes.
    l2: penalty 0.5 * l2 * ||W||² on the weights (not the bias); keeps separable problems bounded.
    optimizer: "lbfgs" (full batch, stops when the gradient norm is below `tol`) or "adam" (full
      batch, `max_iter` steps of `learning_rate`).
    max_iter: maximum optimizer steps.
    tol: gradient-norm tolerance for L-BFGS.
    learning_rate: Adam's step size.
  """
  _check_choice(optimizer, ("lbfgs", "adam"), "optimizer")
  x = _as_design(x, "x")
  labels = np.asarray(y)
  if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
    raise ValueError(f"y must be 1-D with {x.shape[0]} labels, got shape {labels.shape}")
  if labels.dtype.kind == "f" and np.isnan(labels).any():
    raise ValueError("y contains NaN labels; drop them first")
  classes = np.unique(labels)
  if classes.size < 2:
    raise ValueError(f"a classifier needs at least 2 classes in the training split, got {classes.tolist()}")
  if l2 < 0 or max_iter < 1:
    raise ValueError(f"need l2 >= 0 and max_iter >= 1, got l2={l2}, max_iter={max_iter}")
  n, d = x.shape
  c = classes.size
  mean = x.astype(np.float64).mean(axis=0)
  scale = x.astype(np.float64).std(axis=0)
  scale = np.where(scale > 0, scale, 1.0)  # constant features stay at 0 after centering
  # Zero padding to power-of-two shapes: padded samples weigh 0, padded features are 0 (their weights
  # get no gradient and stay 0), padded classes are masked out. Same optimum, and one compiled program
  # (L-BFGS with a zoom line search takes ~5 s to compile on CPU) serves most probes.
  n_pad, d_pad, c_pad = _bucket(n, 4096), _bucket(d, 128), _bucket(c, 8)
  xs = np.zeros((n_pad, d_pad), np.float32)
  xs[:n, :d] = (x - mean) / scale
  yi = np.zeros(n_pad, np.int32)
  yi[:n] = encode_labels(labels, classes, "y")
  sample_weight = np.zeros(n_pad, np.float32)
  sample_weight[:n] = 1.0 / n
  class_mask = np.arange(c_pad) < c
  args = (jnp.asarray(xs), jnp.asarray(yi), jnp.asarray(sample_weight), jnp.asarray(class_mask),
          jnp.float32(l2), max_iter)
  if optimizer == "lbfgs":
    params, loss, it = _train_lbfgs(*args, jnp.float32(tol))
  else:
    params, loss, it = _train_adam(*args, jnp.float32(learning_rate))
  return LinearClassifier(classes=classes, weight=np.asarray(params["w"], np.float64)[:d, :c],
                          bias=np.asarray(params["b"], np.float64)[:c], mean=mean, scale=scale,
                          loss=float(loss), iterations=int(it))
