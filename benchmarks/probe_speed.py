"""Ridge alpha sweep: wsl_jax.evaluation.probe against scikit-learn, on the same data in the same run.

    python benchmarks/probe_speed.py                       # (10k, 50), (50k, 100), (50k, 2464)
    python benchmarks/probe_speed.py --sizes 50000x100 --repeats 5

For each (n, d): float32 features (n training samples, n // 4 validation samples, d features), one
target, the paper's 17-value alpha grid; scikit-learn gets float64 copies (made outside the timing).
Timed, each the minimum over repeats after one warm-up call (which also compiles the JAX path; for the
largest size only the JAX path gets one); results come back as host arrays, so every timing waits for
the device; the repeats go round-robin over the cases, so that load from other processes hits all of
them alike:

* `probe gram64 val`: `fit_ridge_val`, the paper's sweep (fit on train for every alpha, pick the best
  validation R²), float64 Gram eigendecomposition on the host (the default solver);
* `probe svd val`: the same with the float32 JAX SVD solver;
* `probe gram64 loo`: `fit_ridge_loo`, every alpha's exact leave-one-out error (what RidgeCV computes);
* `sklearn RidgeCV`: `RidgeCV(alphas=grid)` (leave-one-out);
* `sklearn Ridge loop`: what the original code did: one `Ridge(alpha)` fit per alpha, best validation R².

Ratios are printed against `probe gram64 val`. The JAX version, device and CPU count are printed.
Timings on a shared machine are noisy; ratios within one run are what count.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np
import sklearn
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score

from wsl_jax.evaluation import probe

DEFAULT_SIZES = ("10000x50", "50000x100", "50000x2464")


def make_data(n: int, d: int, seed: int = 0):
  """Correlated float32 features with uneven scales, a noisy linear target; train and validation."""
  rng = np.random.default_rng(seed)
  n_val = n // 4
  mix = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
  x = (rng.normal(size=(n + n_val, d)) @ mix * rng.uniform(0.1, 2.0, size=d) + 0.5).astype(np.float32)
  y = x.astype(np.float64) @ rng.normal(size=d) + 3.0 * rng.normal(size=n + n_val)
  return x[:n], y[:n], x[n:], y[n:]


def sklearn_loop(x_tr, y_tr, x_va, y_va, alphas):
  """The original code's sweep: one fit per alpha, keep the best validation R²."""
  best = (-np.inf, None)
  for a in alphas:
    model = Ridge(alpha=a).fit(x_tr, y_tr)
    score = r2_score(y_va, model.predict(x_va))
    if score > best[0]:
      best = (score, a)
  return best[1]


JAX_CASES = ("probe svd val",)  # compiled on their first call


def timed_round_robin(cases: dict, repeats: int, warm_up: bool, done=None) -> dict[str, float]:
  """Min time per case; repeats go round-robin over the cases so that they share the machine's load.

  The JAX cases always get an untimed first call (it compiles); the others only when `warm_up`.
  `done(name, seconds, output)` is called as each case finishes its last repeat.
  """
  for name, fn in cases.items():
    if warm_up or name in JAX_CASES:
      fn()
  best = {name: np.inf for name in cases}
  for r in range(repeats):
    for name, fn in cases.items():
      t0 = time.perf_counter()
      out = fn()
      best[name] = min(best[name], time.perf_counter() - t0)
      if done is not None and r == repeats - 1:
        done(name, best[name], out)
  return best


def run_size(n: int, d: int, repeats: int, warm_up: bool, skip: set[str]) -> None:
  x_tr, y_tr, x_va, y_va = make_data(n, d)
  # scikit-learn gets float64 copies made outside the timing: its float32 Ridge solves float32 normal
  # equations (LinAlgWarning, a different alpha), and the original code solved in float64.
  x_tr64, x_va64 = x_tr.astype(np.float64), x_va.astype(np.float64)
  alphas = probe.PAPER_ALPHAS
  cases = {
      "probe gram64 val": lambda: float(probe.fit_ridge_val(x_tr, y_tr, x_va, y_va, alphas).alpha),
      "probe svd val": lambda: float(probe.fit_ridge_val(x_tr, y_tr, x_va, y_va, alphas, solver="svd").alpha),
      "probe gram64 loo": lambda: float(probe.fit_ridge_loo(x_tr, y_tr, alphas).alpha),
      "sklearn RidgeCV": lambda: float(RidgeCV(alphas=alphas).fit(x_tr64, y_tr).alpha_),
      "sklearn Ridge loop": lambda: float(sklearn_loop(x_tr64, y_tr, x_va64, y_va, alphas)),
  }
  def done(name, seconds, alpha):
    print(f"  n={n:6d} d={d:5d}  {name:20s} {seconds * 1e3:10.1f} ms   alpha={alpha:g}", flush=True)

  times = timed_round_robin({k: v for k, v in cases.items() if k not in skip}, repeats, warm_up, done)
  base = times.get("probe gram64 val")
  if base:
    ratios = ", ".join(f"{k} / probe gram64 val = {v / base:.1f}x" for k, v in times.items()
                       if k != "probe gram64 val")
    print(f"  n={n:6d} d={d:5d}  ratios: {ratios}", flush=True)
  svd = times.get("probe svd val")
  if svd and "sklearn RidgeCV" in times:
    ratio = times["sklearn RidgeCV"] / svd
    print(f"  n={n:6d} d={d:5d}  sklearn RidgeCV / probe svd val = {ratio:.1f}x", flush=True)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="n x d pairs, e.g. 50000x100")
  parser.add_argument("--repeats", type=int, default=5, help="timed repeats per case (after a warm-up)")
  parser.add_argument("--repeats-large", type=int, default=1,
                      help="repeats when n * d > 1e7, where only the JAX path gets a warm-up call "
                           "(scikit-learn takes minutes there)")
  parser.add_argument("--skip", nargs="*", default=[], help="case names to skip, e.g. 'probe svd val'")
  args = parser.parse_args(argv)
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores", flush=True)
  print(f"alpha grid: {len(probe.PAPER_ALPHAS)} values {probe.PAPER_ALPHAS[0]:g} .. {probe.PAPER_ALPHAS[-1]:g}; "
        f"times are the min of repeats after a warm-up", flush=True)
  for size in args.sizes:
    n, d = (int(v) for v in size.lower().split("x"))
    small = n * d <= 10_000_000
    run_size(n, d, args.repeats if small else args.repeats_large, small, set(args.skip))


if __name__ == "__main__":
  main()
