"""Shared plumbing of the experiments: arguments, the zoo cache, output files, stage timing."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

PRESETS = ("smoke", "quick", "paper")


def cache_root() -> str:
  from wsl_jax import runtime
  return runtime.cache_root()


def setup_jax() -> None:
  """Compilation cache and, on CPU, one XLA device per core (see `wsl_jax.runtime`)."""
  from wsl_jax import runtime
  runtime.configure()


def parse_args(name: str, doc: str, argv: Sequence[str] | None,
               extra: Any = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", choices=PRESETS, default="quick",
                      help="smoke (seconds, for tests), quick (default, ~15 min on 2 CPU cores), paper (GPU)")
  parser.add_argument("--out", default=None, help=f"output folder (default: runs/{name}-<preset>)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the zoo, split and training (default 0)")
  parser.add_argument("--zoo-cache", default=None,
                      help="folder of cached zoos (default: $WSL_JAX_CACHE/zoos or ~/.cache/wsl_jax/zoos)")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  if extra is not None:
    extra(parser)
  args = parser.parse_args(argv)
  if args.out is None:
    args.out = os.path.join("runs", f"{name}-{args.preset}")
  if args.zoo_cache is None:
    args.zoo_cache = os.path.join(cache_root(), "zoos")
  return args


def cached_zoo(preset: str, num_models: int, epochs: int, seed: int, cache: str, progress: bool = True):
  """Load the zoo from the cache, or generate it there (resumable) and load it."""
  from wsl_jax import zoo as zoo_lib
  folder = os.path.join(cache, f"{preset}-m{num_models}-e{epochs}-s{seed}")
  if os.path.exists(os.path.join(folder, "zoo.json")):
    log(f"zoo: reusing {folder}")
    return zoo_lib.load(folder)
  log(f"zoo: generating {preset} ({num_models} models x {epochs} epochs) into {folder}")
  return zoo_lib.generate(preset, num_models=num_models, epochs=epochs, seed=seed, out=folder,
                          progress=progress)


def umap_available() -> bool:
  """Whether `umap-learn` is installed (experiments add the UMAP column only then)."""
  try:
    import umap  # noqa: F401
  except ImportError:
    return False
  return True


def log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
  """Log a stage's start and end, and record its wall time in `timings`."""
  log(f"== {name}")
  t0 = time.perf_counter()
  yield
  timings[name] = round(time.perf_counter() - t0, 2)
  log(f"== {name}: {timings[name]:.1f} s")


def to_jsonable(obj: Any) -> Any:
  import numpy as np
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return to_jsonable(dataclasses.asdict(obj))
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, float) and not np.isfinite(obj):
    return None
  return obj


def write_json(path: str, obj: Any) -> None:
  from wsl_jax.zoo.io import atomic_write_text
  atomic_write_text(path, json.dumps(to_jsonable(obj), indent=1))


def write_text(path: str, text: str) -> None:
  from wsl_jax.zoo.io import atomic_write_text
  atomic_write_text(path, text)


def environment() -> dict[str, Any]:
  import jax
  return {"python": platform.python_version(), "jax": jax.__version__, "platform": platform.platform(),
          "devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
          "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def plot_training_curves(history: list[dict[str, Any]], path: str, title: str = "") -> str:
  """PNG of the self-supervised run: losses per epoch and the validation / test reconstruction R²."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  def series(key):
    pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
    return ([p[0] for p in pts], [p[1] for p in pts]) if pts else None

  fig, (ax_loss, ax_r2) = plt.subplots(1, 2, figsize=(10, 4))
  for key in ("train_loss", "val_loss", "test_loss", "train_recon", "train_contrast"):
    s = series(key)
    if s:
      ax_loss.plot(*s, label=key)
  ax_loss.set_xlabel("epoch")
  ax_loss.set_ylabel("loss")
  ax_loss.set_yscale("log")
  ax_loss.legend(fontsize=8)
  for key in ("val_r2", "test_r2"):
    s = series(key)
    if s:
      ax_r2.plot(*s, marker="o", label=key)
  ax_r2.set_xlabel("epoch")
  ax_r2.set_ylabel("reconstruction R²")
  ax_r2.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
  return path
