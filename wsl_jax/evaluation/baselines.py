"""Baseline features of flat weight vectors: W, s(W), kernel PCA, UMAP; one feature-extractor interface.

Every extractor is a frozen dataclass with a `name` (the column label in result tables) and
`fit(train_weights) -> fitted`, where `fitted.transform(weights) -> (S, d)` float32 features. Stateless
extractors return themselves from `fit`. A trained encoder, or any callable mapping weights (S, N) to
features (S, d), becomes an extractor with `as_extractor(fn, name)`.

* `Identity` ("W"): the raw flat vector (`reference.md` §7).
* `LayerStats.paper(layout)` ("s(W)"): per layer, weights only (biases excluded), the original code's
  `LayerQuintiles`: [mean, variance (ddof 0), percentiles 1, 25, 50, 75, 99] with NumPy's linear
  interpolation: 7 features per layer.
* `LayerStats.unterthiner(layout)` ("sU(W)"): Unterthiner et al.'s: per layer, the kernel and (when the
  layer has one) the bias separately: [percentiles 0, 25, 50, 75, 100, std (ddof 0), mean].
* `KernelPCA(kernel)` ("PCAl", "PCAc", "PCAr"): scikit-learn's `KernelPCA` with default kernel
  parameters (rbf: gamma = 1 / n_features), fitted on every `fit_every`-th training sample (the paper:
  every 2nd) in float64 on the host. Linear and cosine kernels use the equivalent primal form (SVD of
  the centered, for cosine row-normalised, features) when there are fewer features than fit samples.
  `max_fit_samples` caps the kernel matrix (the paper's 26k-sample rbf kernel alone would take 5.4 GB).
* `Umap` ("UMAP"): `umap-learn`, an optional extra: `pip install wsl_jax[umap]`.

Example:
  >>> import numpy as np
  >>> from wsl_jax.evaluation import baselines
  >>> from wsl_jax.weights import nets
  >>> layout = nets.TETRIS_MLP.layout()
  >>> w = np.random.default_rng(0).normal(size=(10, layout.num_params)).astype(np.float32)
  >>> baselines.LayerStats.paper(layout).fit(w).transform(w).shape
  (10, 14)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from wsl_jax.weights.layout import Layout, check_weight_rows

_CHUNK_ROWS = 8192


class FittedExtractor(Protocol):
  name: str

  def transform(self, weights: np.ndarray) -> np.ndarray:
    ...


class FeatureExtractor(Protocol):
  name: str

  def fit(self, weights: np.ndarray) -> FittedExtractor:
    ...


def _as_weights(weights: Any, name: str = "weights", num_params: int | None = None) -> np.ndarray:
  return check_weight_rows(weights, name, num_params)


def _rows(n: int):
  for start in range(0, n, _CHUNK_ROWS):
    yield slice(start, min(n, start + _CHUNK_ROWS))


# ---- W --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Identity:
  """The raw flat weights as features."""

  name: str = "W"

  def fit(self, weights: Any) -> Identity:
    _as_weights(weights)
    return self

  def transform(self, weights: Any) -> np.ndarray:
    return np.asarray(_as_weights(weights), np.float32)  # no copy for float32 input (zoos are large)


# ---- s(W) -----------------------------------------------------------------------------------------

PAPER_STATS = ("mean", "var", "p1", "p25", "p50", "p75", "p99")
UNTERTHINER_STATS = ("p0", "p25", "p50", "p75", "p100", "std", "mean")


def _stat_block(values: np.ndarray, stats: tuple[str, ...]) -> np.ndarray:
  """(S, len(stats)) statistics of each row of `values` (S, k), in float64."""
  q = [float(s[1:]) for s in stats if s.startswith("p")]
  pct = np.percentile(values, q, axis=1) if q else np.zeros((0, values.shape[0]))  # linear interpolation
  out, qi = [], 0
  for s in stats:
    if s == "mean":
      out.append(values.mean(axis=1))
    elif s == "var":
      out.append(values.var(axis=1))
    elif s == "std":
      out.append(values.std(axis=1))
    else:
      out.append(pct[qi])
      qi += 1
  return np.stack(out, axis=1)


@dataclasses.dataclass(frozen=True)
class LayerStats:
  """Per-layer statistics of the weights (and optionally the biases), driven by a `Layout`.

  Attributes:
    layout: the flat vector's layout.
    stats: statistic names, in feature order: "mean", "var" (ddof 0), "std" (ddof 0), or "p<q>" for
      the q-th percentile (NumPy linear interpolation).
    bias: also compute the statistics of each layer's bias, as a separate block after its kernel's.
    name: the table label.
  """

  layout: Layout
  stats: tuple[str, ...] = PAPER_STATS
  bias: bool = False
  name: str = "s(W)"

  def __post_init__(self):
    object.__setattr__(self, "stats", tuple(self.stats))
    for s in self.stats:
      if s not in ("mean", "var", "std") and not _is_percentile(s):
        raise ValueError(f"unknown statistic {s!r}: use mean, var, std or p<q> with 0 <= q <= 100")

  @classmethod
  def paper(cls, layout: Layout) -> LayerStats:
    """The original code's s(W): weights only; mean, var, percentiles 1/25/50/75/99 per layer."""
    return cls(layout, PAPER_STATS, bias=False, name="s(W)")

  @classmethod
  def unterthiner(cls, layout: Layout) -> LayerStats:
    """Unterthiner et al.'s: kernel and bias separately; percentiles 0/25/50/75/100, std, mean."""
    return cls(layout, UNTERTHINER_STATS, bias=True, name="sU(W)")

  def blocks(self) -> list[tuple[str, slice]]:
    """(label, flat slice) of each block the statistics are computed over, in feature order."""
    out = []
    for l in range(self.layout.num_layers):
      out.append((f"layer{l}.w", self.layout.weight_slice(l)))
      b = self.layout.bias_slice(l)
      if self.bias and b is not None:
        out.append((f"layer{l}.b", b))
    return out

  def feature_names(self) -> list[str]:
    return [f"{label}.{s}" for label, _ in self.blocks() for s in self.stats]

  def fit(self, weights: Any) -> LayerStats:
    _as_weights(weights, num_params=self.layout.num_params)
    return self

  def transform(self, weights: Any) -> np.ndarray:
    w = _as_weights(weights, num_params=self.layout.num_params)
    blocks = self.blocks()
    out = np.empty((w.shape[0], len(blocks) * len(self.stats)), np.float32)
    for rows in _rows(w.shape[0]):
      chunk = w[rows].astype(np.float64)
      out[rows] = np.concatenate([_stat_block(chunk[:, s], self.stats) for _, s in blocks], axis=1)
    return out


def _is_percentile(s: str) -> bool:
  if not s.startswith("p"):
    return False
  try:
    q = float(s[1:])
  except ValueError:
    return False
  return 0.0 <= q <= 100.0


# ---- kernel PCA -----------------------------------------------------------------------------------

KERNELS = {"linear": "PCAl", "cosine": "PCAc", "rbf": "PCAr"}


def _normalize_rows(x: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norms > 0, norms, 1.0)  # zero rows stay zero, as sklearn's normalize


def _kernel(kind: str, a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
  if kind == "linear":
    return a @ b.T
  if kind == "cosine":
    return _normalize_rows(a) @ _normalize_rows(b).T
  k = a @ b.T  # in place from here: these blocks are (8192, 4000) float64
  k *= -2.0
  k += (a ** 2).sum(axis=1)[:, None]
  k += (b ** 2).sum(axis=1)[None, :]
  np.maximum(k, 0.0, out=k)
  k *= -gamma
  return np.exp(k, out=k)


def _orient(vectors: np.ndarray) -> np.ndarray:
  """Flip each column so its largest-magnitude entry is positive (a deterministic sign)."""
  idx = np.argmax(np.abs(vectors), axis=0)
  signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
  return vectors * np.where(signs == 0, 1.0, signs)


def _top_eigenpairs(sym: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """The k largest eigenpairs of a symmetric matrix, ascending (as `scipy.linalg.eigh`).

  Few components of a large kernel: Lanczos (ARPACK) to machine precision from a fixed start vector,
  ~10x faster than the dense solver at n = 4000 and just as accurate; the dense solver otherwise.
  """
  n = sym.shape[0]
  if n > 500 and k < n // 4:
    try:
      lam, vec = scipy.sparse.linalg.eigsh(sym, k=k, which="LA", v0=np.full(n, 1.0 / np.sqrt(n)), tol=0.0)
      order = np.argsort(lam)
      return lam[order], vec[:, order]
    except scipy.sparse.linalg.ArpackNoConvergence:
      pass
  return scipy.linalg.eigh(sym, subset_by_index=(n - k, n - 1))


@dataclasses.dataclass(frozen=True)
class KernelPCA:
  """Kernel PCA as scikit-learn's `KernelPCA(n_components, kernel)` with default parameters.

  Attributes:
    kernel: "linear", "cosine" or "rbf".
    n_components: output dimension (the paper: 50 or 33); at most the number of fit samples.
    fit_every: fit on every k-th training sample.
    max_fit_samples: if more samples remain, thin them further with an even stride (None: no cap).
    gamma: rbf width; None = 1 / n_features (scikit-learn's default).
    name: the table label; default PCAl / PCAc / PCAr.
  """

  kernel: str = "linear"
  n_components: int = 50
  fit_every: int = 2
  max_fit_samples: int | None = 4000
  gamma: float | None = None
  name: str = ""

  def __post_init__(self):
    if self.kernel not in KERNELS:
      raise ValueError(f"kernel must be one of {tuple(KERNELS)}, got {self.kernel!r}")
    if self.n_components < 1 or self.fit_every < 1:
      raise ValueError(f"n_components and fit_every must be >= 1, got {self.n_components}, {self.fit_every}")
    if self.max_fit_samples is not None and self.max_fit_samples < 2:
      raise ValueError(f"max_fit_samples must be >= 2 or None, got {self.max_fit_samples}")
    if not self.name:
      object.__setattr__(self, "name", KERNELS[self.kernel])

  def fit_samples(self, num_samples: int) -> np.ndarray:
    """Indices of the training samples the kernel is fitted on."""
    idx = np.arange(0, num_samples, self.fit_every)
    if self.max_fit_samples is not None and idx.size > self.max_fit_samples:
      idx = idx[np.linspace(0, idx.size - 1, self.max_fit_samples).round().astype(np.int64)]
    return idx

  def fit(self, weights: Any) -> FittedKernelPCA:
    w = _as_weights(weights)
    x = w[self.fit_samples(w.shape[0])].astype(np.float64)
    n, d = x.shape
    if n < 2:
      raise ValueError(f"kernel PCA needs at least 2 fit samples, got {n}")
    k = min(self.n_components, n)
    gamma = 1.0 / d if self.gamma is None else float(self.gamma)
    if self.kernel in ("linear", "cosine") and d < n:
      # Primal form: the centered kernel's eigenvectors are the left singular vectors of the
      # centered features, so an (n, d) SVD replaces the (n, n) eigenproblem.
      z = _normalize_rows(x) if self.kernel == "cosine" else x
      mean = z.mean(axis=0)
      _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
      lam = s[:k] ** 2
      axes = np.zeros((d, k))
      axes[:, :min(k, vt.shape[0])] = _orient(vt[:k].T)
      # Components of zero variance (k > rank) map to 0, as sklearn does for zero eigenvalues.
      axes[:, lam.size:] = 0.0
      axes[:, :lam.size][:, lam <= lam.max() * 1e-12] = 0.0
      return FittedKernelPCA(self.name, self.kernel, gamma, axes=axes, mean=mean)
    kern = _kernel(self.kernel, x, x, gamma)
    col_mean = kern.mean(axis=0)
    total_mean = col_mean.mean()
    centered = kern - col_mean[None, :] - col_mean[:, None] + total_mean
    lam, vec = _top_eigenpairs(centered, k)
    lam, vec = lam[::-1], _orient(vec[:, ::-1])
    lam = np.where(lam > lam.max() * 1e-12, lam, 0.0)  # null space and round-off: no component
    scaled = np.where(lam > 0, vec / np.sqrt(np.where(lam > 0, lam, 1.0)), 0.0)
    return FittedKernelPCA(self.name, self.kernel, gamma, fit_x=x, col_mean=col_mean,
                           total_mean=total_mean, dual=scaled)


@dataclasses.dataclass(frozen=True, eq=False)
class FittedKernelPCA:
  """A fitted kernel PCA: primal (`axes`, `mean`) or dual (`fit_x`, kernel centering, `dual`)."""

  name: str
  kernel: str
  gamma: float
  axes: np.ndarray | None = None
  mean: np.ndarray | None = None
  fit_x: np.ndarray | None = None
  col_mean: np.ndarray | None = None
  total_mean: float = 0.0
  dual: np.ndarray | None = None

  @property
  def n_components(self) -> int:
    return (self.axes if self.axes is not None else self.dual).shape[1]

  def transform(self, weights: Any) -> np.ndarray:
    d = self.axes.shape[0] if self.axes is not None else self.fit_x.shape[1]
    w = _as_weights(weights, num_params=d)
    out = np.empty((w.shape[0], self.n_components), np.float32)
    for rows in _rows(w.shape[0]):
      x = w[rows].astype(np.float64)
      if self.axes is not None:
        z = _normalize_rows(x) if self.kernel == "cosine" else x
        out[rows] = (z - self.mean) @ self.axes
      else:
        kern = _kernel(self.kernel, x, self.fit_x, self.gamma)
        row_mean = kern.mean(axis=1, keepdims=True)
        kern -= self.col_mean[None, :]
        kern -= row_mean - self.total_mean
        out[rows] = kern @ self.dual
    return out


# ---- UMAP (optional extra) ------------------------------------------------------------------------

def _import_umap():
  try:
    import umap  # noqa: PLC0415  (optional dependency)
  except ImportError as e:
    raise ImportError("the UMAP baseline needs umap-learn, an optional extra: "
                      "pip install wsl_jax[umap]  (or: pip install umap-learn)") from e
  return umap


@dataclasses.dataclass(frozen=True)
class Umap:
  """UMAP embedding with the paper's settings (n_neighbors 25, min_dist 0.001, every 3rd sample)."""

  n_components: int = 50
  n_neighbors: int = 25
  min_dist: float = 0.001
  metric: str = "euclidean"
  fit_every: int = 3
  seed: int = 42
  name: str = "UMAP"

  def fit(self, weights: Any) -> FittedUmap:
    umap = _import_umap()
    w = _as_weights(weights)
    x = w[::self.fit_every].astype(np.float32)
    if x.shape[0] <= self.n_components + 1:
      raise ValueError(f"UMAP with {self.n_components} components needs more than {self.n_components + 1} "
                       f"fit samples, got {x.shape[0]}")
    reducer = umap.UMAP(n_components=self.n_components, n_neighbors=min(self.n_neighbors, x.shape[0] - 1),
                        min_dist=self.min_dist, metric=self.metric, random_state=self.seed,
                        transform_seed=self.seed)
    reducer.fit(x)
    return FittedUmap(self.name, reducer, w.shape[1])


@dataclasses.dataclass(frozen=True, eq=False)
class FittedUmap:
  name: str
  reducer: Any
  num_params: int

  def transform(self, weights: Any) -> np.ndarray:
    w = _as_weights(weights, num_params=self.num_params)
    return np.asarray(self.reducer.transform(w.astype(np.float32)), np.float32)


# ---- encoders and other callables -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class FunctionExtractor:
  """Features from a fixed function (a trained encoder): weights (S, N) -> (S, d), in row batches."""

  fn: Callable[[np.ndarray], Any]
  name: str
  batch_size: int | None = 4096

  def fit(self, weights: Any) -> FunctionExtractor:
    _as_weights(weights)
    return self

  def transform(self, weights: Any) -> np.ndarray:
    w = _as_weights(weights)
    step = w.shape[0] if self.batch_size is None else self.batch_size
    parts = [np.asarray(self.fn(w[i:i + step])) for i in range(0, w.shape[0], step)]
    for p in parts:
      if p.ndim != 2:
        raise ValueError(f"extractor {self.name!r} returned shape {p.shape}; expected (samples, features)")
    out = np.concatenate(parts, axis=0)
    if out.shape[0] != w.shape[0]:
      raise ValueError(f"extractor {self.name!r} returned {out.shape[0]} rows for {w.shape[0]} samples")
    return out.astype(np.float32)


def as_extractor(obj: Any, name: str | None = None) -> FeatureExtractor:
  """An extractor from an extractor (has `fit`), an object with `transform`, or a callable."""
  if hasattr(obj, "fit") and callable(obj.fit):
    return obj
  label = name or getattr(obj, "name", None)
  if not label:
    raise ValueError(f"give a name for the extractor {obj!r}")
  if hasattr(obj, "transform") and callable(obj.transform):
    return FunctionExtractor(obj.transform, label)
  if callable(obj):
    return FunctionExtractor(obj, label)
  raise ValueError(f"{obj!r} is neither a feature extractor (fit/transform) nor a callable")


def paper_extractors(layout: Layout, n_components: int = 50, pca: bool = True, umap: bool = False,
                     max_fit_samples: int | None = 4000) -> dict[str, FeatureExtractor]:
  """The paper's baseline columns: W, PCAl, PCAc, PCAr, (UMAP), s(W), keyed by name."""
  out: list[Any] = [Identity()]
  if pca:
    out += [KernelPCA(k, n_components=n_components, max_fit_samples=max_fit_samples) for k in KERNELS]
  if umap:
    out.append(Umap(n_components=n_components))
  out.append(LayerStats.paper(layout))
  return {e.name: e for e in out}
