"""Ridge probes against scikit-learn, the metrics against scikit-learn / SciPy, and the classifier."""

import itertools

import numpy as np
import pytest
import scipy.stats
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score as sk_r2

from wsl_jax.evaluation import probe


def _regression_data(n, d, t, seed=0, noise=1.0):
  rng = np.random.default_rng(seed)
  # Uneven feature scales and a non-zero mean, so the intercept conventions differ visibly.
  x = rng.normal(size=(n, d)) * rng.uniform(0.2, 3.0, size=d) + rng.normal(size=d)
  w = rng.normal(size=(d, t))
  y = x @ w + 2.0 + noise * rng.normal(size=(n, t))
  return x.astype(np.float32), y


def _sklearn_ridge(x, y, alpha, intercept):
  x = x.astype(np.float64)
  if intercept == "center":
    r = Ridge(alpha=alpha).fit(x, y)
    return r.coef_.T, r.intercept_
  r = Ridge(alpha=alpha, fit_intercept=False).fit(np.c_[x, np.ones(len(x))], y)
  return r.coef_.T[:-1], r.coef_.T[-1]


@pytest.mark.parametrize("solver,intercept", list(itertools.product(probe.SOLVERS, probe.INTERCEPT_MODES)))
@pytest.mark.parametrize("n,d", [(400, 12), (15, 40)])  # primal (n > d) and dual (n < d) forms
def test_ridge_matches_sklearn(solver, intercept, n, d):
  x, y = _regression_data(n, d, 3)
  for alpha in (1e-5, 1.0, 1e3):
    fit = probe.fit_ridge(x, y, alpha, intercept=intercept, solver=solver)
    coef, b = _sklearn_ridge(x, y, alpha, intercept)
    np.testing.assert_allclose(fit.coef, coef, rtol=1e-4, atol=1e-4 * np.abs(coef).max())
    np.testing.assert_allclose(fit.intercept, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    ours, theirs = fit.predict(x), x.astype(np.float64) @ coef + b
    np.testing.assert_allclose(probe.r2_score(y, ours), sk_r2(y, theirs, multioutput="raw_values"), rtol=1e-4)


def test_intercept_conventions_differ_and_path_is_consistent():
  x, y = _regression_data(300, 5, 1)
  centered = probe.fit_ridge(x, y[:, 0], 30.0, intercept="center")
  penalized = probe.fit_ridge(x, y[:, 0], 30.0, intercept="penalized")
  assert centered.coef.shape == (5,) and centered.intercept.shape == ()
  assert abs(float(centered.intercept) - float(penalized.intercept)) > 1e-3  # the penalty shrinks it
  coefs, intercepts = probe.ridge_path(x, y, (30.0, 1.0))
  np.testing.assert_allclose(coefs[0, :, 0], centered.coef, rtol=1e-10)
  np.testing.assert_allclose(intercepts[0, 0], centered.intercept, rtol=1e-10)


@pytest.mark.parametrize("solver", probe.SOLVERS)
@pytest.mark.parametrize("intercept", probe.INTERCEPT_MODES)
def test_val_selection_matches_brute_force(solver, intercept):
  # Few samples and many noisy features, so the best validation alpha lies inside the grid.
  rng = np.random.default_rng(1)
  x, y = _regression_data(260, 40, 3, seed=1, noise=4.0)
  y[:, 1] = x[:, :3].astype(np.float64) @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=260)
  tr, va, te = slice(0, 60), slice(60, 160), slice(160, 260)
  fit = probe.fit_ridge_val(x[tr], y[tr], x[va], y[va], intercept=intercept, solver=solver)
  assert fit.scores.shape == (len(probe.PAPER_ALPHAS), 3)
  for j in range(3):
    val_r2 = []
    for alpha in probe.PAPER_ALPHAS:
      coef, b = _sklearn_ridge(x[tr], y[tr, j], alpha, intercept)
      val_r2.append(sk_r2(y[va, j], x[va].astype(np.float64) @ coef + b))
    best = int(np.argmax(val_r2))
    assert fit.alpha[j] == probe.PAPER_ALPHAS[best]
    np.testing.assert_allclose(fit.scores[:, j], val_r2, rtol=1e-4, atol=1e-5)
    coef, b = _sklearn_ridge(x[tr], y[tr, j], probe.PAPER_ALPHAS[best], intercept)
    np.testing.assert_allclose(sk_r2(y[te, j], fit.predict(x[te])[:, j]),
                               sk_r2(y[te, j], x[te].astype(np.float64) @ coef + b), rtol=1e-4)
  assert len(set(fit.alpha.tolist())) > 1  # targets choose their own alphas


@pytest.mark.parametrize("solver", probe.SOLVERS)
@pytest.mark.parametrize("n,d", [(300, 25), (20, 60)])
def test_loo_selection_matches_ridgecv(solver, n, d):
  x, y = _regression_data(n, d, 3, seed=2, noise=3.0)
  fit = probe.fit_ridge_loo(x, y, solver=solver)
  ref = RidgeCV(alphas=probe.PAPER_ALPHAS, alpha_per_target=True).fit(x.astype(np.float64), y)
  np.testing.assert_array_equal(fit.alpha, ref.alpha_)
  np.testing.assert_allclose(fit.coef, ref.coef_.T, rtol=1e-4, atol=1e-4 * np.abs(ref.coef_).max())


def test_ridge_rejects_bad_input():
  x, y = _regression_data(50, 4, 1)
  with pytest.raises(ValueError, match="non-finite"):
    probe.fit_ridge(np.where(np.arange(4) == 2, np.nan, x), y, 1.0)
  with pytest.raises(ValueError, match="non-finite"):
    probe.fit_ridge(x, np.where(np.arange(50)[:, None] == 3, np.nan, y), 1.0)
  with pytest.raises(ValueError, match="positive"):
    probe.fit_ridge_val(x, y, x, y, alphas=(1.0, 0.0))
  with pytest.raises(ValueError, match="samples"):
    probe.fit_ridge(x, y[:40], 1.0)
  with pytest.raises(ValueError, match="intercept"):
    probe.fit_ridge(x, y, 1.0, intercept="bias")
  with pytest.raises(ValueError, match="solver"):
    probe.fit_ridge(x, y, 1.0, solver="cholesky")
  with pytest.raises(ValueError, match="features"):
    probe.fit_ridge(x, y, 1.0).predict(x[:, :3])


def test_r2_matches_sklearn():
  rng = np.random.default_rng(3)
  y = rng.normal(size=(100, 3))
  p = y + rng.normal(size=(100, 3))
  np.testing.assert_allclose(probe.r2_score(y, p), sk_r2(y, p, multioutput="raw_values"), rtol=1e-12)
  assert float(probe.r2_score(y[:, 0], p[:, 0])) == pytest.approx(sk_r2(y[:, 0], p[:, 0]), rel=1e-12)
  const = np.ones(10)
  assert float(probe.r2_score(const, const)) == sk_r2(const, const) == 1.0
  assert float(probe.r2_score(const, const + 1)) == sk_r2(const, const + 1) == 0.0


def test_accuracy():
  assert probe.accuracy(np.array(["a", "b", "c", "a"]), np.array(["a", "b", "a", "a"])) == 0.75
  with pytest.raises(ValueError):
    probe.accuracy(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("kind", ["continuous", "ties", "heavy_ties", "strings"])
def test_kendall_tau_matches_scipy(kind):
  rng = np.random.default_rng(5)
  for n in (2, 3, 10, 257, 5000):
    if kind == "continuous":
      x = rng.normal(size=n)
      y = x + rng.normal(size=n)
    elif kind == "ties":
      x = rng.integers(0, 10, size=n)
      y = x + rng.integers(0, 5, size=n)
    elif kind == "heavy_ties":
      x = rng.integers(0, 2, size=n).astype(float)
      y = rng.integers(0, 3, size=n).astype(float)
    else:
      x = rng.choice(np.array(["a", "b", "c"]), size=n)
      y = rng.integers(0, 4, size=n)
    # SciPy >= 1.18 takes numbers only: compare string labels through their sorted ranks.
    ref = scipy.stats.kendalltau(np.unique(x, return_inverse=True)[1] if x.dtype.kind == "U" else x, y).statistic
    ours = probe.kendall_tau(x, y)
    if np.isnan(ref):
      assert np.isnan(ours)
    else:
      assert ours == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_kendall_tau_edge_cases():
  assert probe.kendall_tau(np.arange(5), np.arange(5)) == pytest.approx(1.0, abs=1e-12)
  assert probe.kendall_tau(np.arange(5), -np.arange(5)) == pytest.approx(-1.0, abs=1e-12)
  assert np.isnan(probe.kendall_tau(np.ones(5), np.arange(5)))  # undefined for a constant input
  assert np.isnan(probe.kendall_tau(np.ones(1), np.ones(1)))
  with pytest.raises(ValueError, match="NaN"):
    probe.kendall_tau(np.array([1.0, np.nan, 2.0]), np.arange(3.0))


def _blobs(seed, per_class=60):
  rng = np.random.default_rng(seed)
  centers = {"relu": (6.0, 0.0, 0.0), "tanh": (0.0, 6.0, 0.0), "gelu": (0.0, 0.0, 6.0),
             "sigmoid": (-6.0, -6.0, 0.0)}
  x = np.concatenate([rng.normal(size=(per_class, 3)) + c for c in centers.values()])
  y = np.repeat(np.array(list(centers)), per_class)
  return x.astype(np.float32), y


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_classifier_separable_reaches_100_percent(optimizer):
  x, y = _blobs(6)
  x_test, y_test = _blobs(7)
  clf = probe.fit_linear_classifier(x, y, optimizer=optimizer)
  assert clf.classes.tolist() == sorted(set(y.tolist()))
  assert clf.score(x, y) == 1.0
  assert clf.score(x_test, y_test) == 1.0
  assert clf.predict(x_test).dtype.kind == "U"
  np.testing.assert_allclose(clf.predict_proba(x_test).sum(axis=1), 1.0, rtol=1e-6)
  again = probe.fit_linear_classifier(x, y, optimizer=optimizer)
  np.testing.assert_array_equal(again.weight, clf.weight)  # deterministic


def test_classifier_errors():
  x, y = _blobs(8)
  clf = probe.fit_linear_classifier(x, y)
  y_bad = y.copy()
  y_bad[0] = "swish"
  with pytest.raises(ValueError, match=r"test contains classes that are not in the training split: \['swish'\]"):
    clf.score(x, y_bad, split="test")
  with pytest.raises(ValueError, match="at least 2 classes"):
    probe.fit_linear_classifier(x[:60], y[:60])
  with pytest.raises(ValueError, match="optimizer"):
    probe.fit_linear_classifier(x, y, optimizer="sgd")
  with pytest.raises(ValueError, match="labels"):
    probe.fit_linear_classifier(x, y[:10])
