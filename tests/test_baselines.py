"""Baseline features: s(W) against a plain NumPy computation, kernel PCA against scikit-learn, UMAP."""

import importlib.util
import sys

import numpy as np
import pytest
from sklearn.decomposition import KernelPCA as SkKernelPCA

from wsl_jax.evaluation import baselines
from wsl_jax.weights import nets


def _weights(layout, samples, seed=0):
  rng = np.random.default_rng(seed)
  scale = rng.uniform(0.05, 1.0, size=(samples, 1))
  return (rng.normal(size=(samples, layout.num_params)) * scale + 0.1).astype(np.float32)


def _reference_stats(w, blocks, stats):
  """One sample, one block at a time, with plain NumPy calls."""
  out = np.zeros((w.shape[0], len(blocks) * len(stats)))
  for i, row in enumerate(w.astype(np.float64)):
    feats = []
    for sl in blocks:
      v = row[sl]
      for s in stats:
        if s == "mean":
          feats.append(np.mean(v))
        elif s == "var":
          feats.append(np.var(v))
        elif s == "std":
          feats.append(np.std(v))
        else:
          feats.append(np.percentile(v, float(s[1:]), method="linear"))
    out[i] = feats
  return out


def test_paper_stats_match_numpy_and_skip_biases():
  layout = nets.PAPER_CNN.layout()  # 5 layers with biases: 35 features, weights only
  w = _weights(layout, 6)
  ext = baselines.LayerStats.paper(layout)
  feats = ext.fit(w).transform(w)
  assert feats.shape == (6, 35) and feats.dtype == np.float32
  blocks = [layout.weight_slice(l) for l in range(layout.num_layers)]
  np.testing.assert_allclose(feats, _reference_stats(w, blocks, baselines.PAPER_STATS), rtol=1e-6, atol=1e-7)
  # Changing a bias leaves s(W) unchanged; changing a weight does not.
  w2 = w.copy()
  w2[:, layout.bias_slice(0)] += 5.0
  np.testing.assert_array_equal(ext.transform(w2), feats)
  w2[:, layout.weight_slice(0).start] += 5.0
  assert not np.array_equal(ext.transform(w2), feats)
  assert baselines.LayerStats.paper(nets.TETRIS_MLP.layout()).transform(
      _weights(nets.TETRIS_MLP.layout(), 2)).shape == (2, 14)


def test_unterthiner_stats_match_numpy():
  layout = nets.UNTERTHINER_CNN.layout()  # 4 layers x (kernel, bias) x 7 = 56 features
  w = _weights(layout, 5, seed=1)
  ext = baselines.LayerStats.unterthiner(layout)
  feats = ext.transform(w)
  assert feats.shape == (5, 56)
  blocks = []
  for l in range(layout.num_layers):
    blocks += [layout.weight_slice(l), layout.bias_slice(l)]
  np.testing.assert_allclose(feats, _reference_stats(w, blocks, baselines.UNTERTHINER_STATS), rtol=1e-6, atol=1e-7)
  assert ext.feature_names()[:2] == ["layer0.w.p0", "layer0.w.p25"]
  assert ext.feature_names()[7] == "layer0.b.p0"


def test_stats_reject_bad_input():
  layout = nets.TETRIS_MLP.layout()
  with pytest.raises(ValueError, match="unknown statistic"):
    baselines.LayerStats(layout, stats=("mean", "kurtosis"))
  with pytest.raises(ValueError, match="expected 100"):
    baselines.LayerStats.paper(layout).transform(np.zeros((2, 99), np.float32))
  bad = np.zeros((2, 100), np.float32)
  bad[1, 3] = np.nan
  with pytest.raises(ValueError, match="non-finite"):
    baselines.Identity().transform(bad)


def _aligned_error(ours, theirs):
  """Max relative difference after matching each component's sign."""
  signs = np.sign((ours * theirs).sum(axis=0))
  signs[signs == 0] = 1.0
  return np.abs(ours * signs - theirs).max() / np.abs(theirs).max()


@pytest.mark.parametrize("kernel", list(baselines.KERNELS))
@pytest.mark.parametrize("samples,features", [(300, 20), (40, 90)])  # primal and dual (kernel) paths
def test_kernel_pca_matches_sklearn(kernel, samples, features):
  rng = np.random.default_rng(2)
  w = (rng.normal(size=(samples, features)) @ rng.normal(size=(features, features)) * 0.2 + 0.3).astype(np.float32)
  ext = baselines.KernelPCA(kernel, n_components=6)  # fit on every 2nd sample, as the paper
  fitted = ext.fit(w)
  ref = SkKernelPCA(n_components=6, kernel=kernel, eigen_solver="dense").fit(w[::2].astype(np.float64))
  new = (w[:25] + 0.05).astype(np.float32)
  assert _aligned_error(fitted.transform(w), ref.transform(w.astype(np.float64))) < 1e-5
  assert _aligned_error(fitted.transform(new), ref.transform(new.astype(np.float64))) < 1e-5
  assert fitted.name == baselines.KERNELS[kernel]


def test_kernel_pca_fit_samples_and_rank_deficiency():
  ext = baselines.KernelPCA("rbf", fit_every=2, max_fit_samples=10)
  idx = ext.fit_samples(101)
  assert idx.size == 10 and idx[0] == 0 and idx[-1] == 100 and (idx % 2 == 0).all()
  np.testing.assert_array_equal(baselines.KernelPCA(max_fit_samples=None).fit_samples(7), [0, 2, 4, 6])
  # More components than the features have: the extra ones are 0, as sklearn's zero eigenvalues.
  w = np.random.default_rng(3).normal(size=(200, 3)).astype(np.float32)
  feats = baselines.KernelPCA("linear", n_components=5).fit(w).transform(w)
  assert feats.shape == (200, 5) and np.all(feats[:, 3:] == 0) and np.all(feats[:, :3].std(axis=0) > 0)
  with pytest.raises(ValueError, match="kernel"):
    baselines.KernelPCA("poly")


def test_identity_and_function_extractors():
  w = _weights(nets.TETRIS_MLP.layout(), 9)
  np.testing.assert_array_equal(baselines.Identity().fit(w).transform(w), w)
  calls = []

  def encoder(batch):
    calls.append(batch.shape[0])
    return batch[:, :4] * 2.0

  ext = baselines.as_extractor(encoder, "EcD")
  ext = baselines.FunctionExtractor(ext.fn, ext.name, batch_size=4)
  np.testing.assert_allclose(ext.fit(w).transform(w), w[:, :4] * 2.0)
  assert calls == [4, 4, 1]
  with pytest.raises(ValueError, match="give a name"):
    baselines.as_extractor(encoder)
  with pytest.raises(ValueError, match="returned shape"):
    baselines.as_extractor(lambda b: b.sum(axis=1), "bad").transform(w)
  with pytest.raises(ValueError, match="neither"):
    baselines.as_extractor(42, "x")
  names = list(baselines.paper_extractors(nets.TETRIS_MLP.layout()))
  assert names == ["W", "PCAl", "PCAc", "PCAr", "s(W)"]


def test_umap_missing_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError, installed or not
  w = _weights(nets.TETRIS_MLP.layout(), 40)
  with pytest.raises(ImportError, match=r"pip install wsl_jax\[umap\]"):
    baselines.Umap(n_components=2).fit(w)


@pytest.mark.slow  # numba compiles UMAP for ~1 minute on a 2-core machine
@pytest.mark.skipif(importlib.util.find_spec("umap") is None, reason="umap-learn is not installed")
def test_umap_fits_and_transforms():
  w = _weights(nets.TETRIS_MLP.layout(), 150)
  fitted = baselines.Umap(n_components=2, n_neighbors=10).fit(w)
  feats = fitted.transform(w[:20])
  assert feats.shape == (20, 2) and np.isfinite(feats).all()
