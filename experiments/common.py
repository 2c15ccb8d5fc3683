"""Shared plumbing of the experiments: arguments, the zoo cache, output files, stage timing.

The stages themselves (zoo -> split -> encoder -> probes -> report) are `experiments.pipeline`.
"""

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
               extra: Any = None, zoo_option: bool = False, out_name: str | None = None) -> argparse.Namespace:
  """The arguments every experiment takes (and `extra(parser)`'s); `out_name` is the default --out
  folder's name under runs/, formatted with the parsed arguments (default "<name>-<preset>")."""
  parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", choices=PRESETS, default="quick",
                      help="smoke (seconds, for tests), quick (default, ~15 min on 2 CPU cores), paper (GPU)")
  default_out = (out_name or "{name}-{preset}").replace("{name}", name).replace("{", "<").replace("}", ">")
  parser.add_argument("--out", default=None, help=f"output folder (default: runs/{default_out})")
  parser.add_argument("--seed", type=int, default=0, help="seed of the zoo, split and training (default 0)")
  parser.add_argument("--zoo-cache", default=None,
                      help="folder of cached zoos (default: $WSL_JAX_CACHE/zoos or ~/.cache/wsl_jax/zoos)")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                      help="override settings of the preset: dotted keys of its config, values parsed as JSON "
                           "where they parse, else strings, e.g. --set ssl.model.dim=64 zoo.models=200 "
                           "(experiments/pipeline.py; an unknown key names the valid ones)")
  if zoo_option:
    parser.add_argument("--zoo", default=None, metavar="PATH",
                        help="read the zoo from PATH (a wsl_jax zoo or a public zoo: HSG ray folder or .pt dump, "
                             "SANE samples, Unterthiner et al.; docs/public_zoos.md) instead of generating it; "
                             "its own split is used where it has one")
    parser.add_argument("--zoo-format", default=None, help="the format of --zoo (default: detected)")
  if extra is not None:
    extra(parser)
  args = parser.parse_args(argv)
  if args.out is None:
    args.out = os.path.join("runs", (out_name or "{name}-{preset}").format(name=name, **vars(args)))
  if args.zoo_cache is None:
    args.zoo_cache = os.path.join(cache_root(), "zoos")
  return args


def load_zoo(path: str, format: str | None = None):
  """A zoo read from `path` in any supported format, and the split to use: the source's own split
  (HSG dumps, SANE, an NFN split file) or else `zoo.split(seed=42)`, as for generated zoos.

  Raises:
    wsl_jax.zoo.ZooFormatError: `path` is not a readable zoo, or one of its splits would be empty.
  """
  import numpy as np
  from wsl_jax import zoo as zoo_lib
  zoo = zoo_lib.load_any(path, format)
  split, how = zoo_lib.source_split(zoo), "of the source"
  if split is None:
    split, how = zoo.split(seed=42), "by model, 70/15/15"
    usable = int((~np.asarray(zoo.diverged, bool)).sum())
    if (len(split.val) == 0 or len(split.test) == 0) and usable >= 3:
      # Fewer than 7 models: 70/15/15 rounds val or test down to nothing; keep one model in each.
      held_out = max(1, round(0.15 * usable)) / usable
      split, how = zoo.split((1 - 2 * held_out, held_out, held_out), seed=42), "by model, one model each held out"
  log(f"zoo: read {path} ({zoo.num_models} models); split {how}: train {len(split.train)}, "
      f"val {len(split.val)}, test {len(split.test)} models")
  empty = [name for name, part in split.as_dict().items() if len(part) == 0]
  if empty:
    raise zoo_lib.ZooFormatError(f"{path}: the zoo has {zoo.num_models} usable models, too few for a "
                                 f"train / val / test split (empty: {', '.join(empty)})")
  return zoo, split


def zoo_cache_dir(zoo_cache: str | None) -> str:
  """The zoo cache folder: `zoo_cache` (resolved; an empty or unsafe path is refused, never silently
  replaced by the default), or for None `$WSL_JAX_CACHE/zoos` (default ~/.cache/wsl_jax/zoos)."""
  from wsl_jax import outputs
  if zoo_cache is None:
    return os.path.join(cache_root(), "zoos")
  return outputs.resolve_output(zoo_cache, "--zoo-cache")


def cache_folder_name(preset: str, num_models: int, epochs: int, seed: int) -> str:
  """The cache folder of a zoo: the preset's name and a digest of its settings (a preset whose recipe
  changed never reuses a zoo of the old recipe), size, epochs and seed."""
  import hashlib

  from wsl_jax.zoo import presets as zoo_presets
  settings = json.dumps(zoo_presets.get(preset).to_dict(), sort_keys=True, default=str)
  digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
  return f"{preset}-{digest}-m{num_models}-e{epochs}-s{seed}"


def cached_zoo(preset: str, num_models: int, epochs: int, seed: int, cache: str, progress: bool = True):
  """Load the zoo from the cache, or generate it there (resumable) and load it.

  Raises:
    wsl_jax.zoo.ZooFormatError: the cached zoo is damaged (the message names it; delete it to regenerate).
    wsl_jax.outputs.UnsafeOutputError: `cache` is an unsafe path (empty, the working directory, ...).
  """
  from wsl_jax import outputs
  from wsl_jax import zoo as zoo_lib
  folder = os.path.join(outputs.resolve_output(cache, "--zoo-cache"),
                        cache_folder_name(preset, num_models, epochs, seed))
  if os.path.lexists(os.path.join(folder, "zoo.json")):
    log(f"zoo: reusing {folder}")
    try:
      return zoo_lib.load(folder)
    except zoo_lib.ZooFormatError as e:
      raise zoo_lib.ZooFormatError(f"the cached zoo {folder} is damaged ({e}); delete that folder to "
                                   "generate it again, or pass another --zoo-cache") from e
  log(f"zoo: generating {preset} ({num_models} models x {epochs} epochs) into {folder}")
  return zoo_lib.generate(preset, num_models=num_models, epochs=epochs, seed=seed, out=folder,
                          progress=progress)


def start_run(out: str, record: dict[str, Any]) -> str:
  """Check output folder `out` for a run described by `record` and write its config.json; returns the
  resolved folder.

  `record` holds what identifies the run ("experiment", "seed", "config", ...; the environment is added
  here). `out` may be new, empty, or hold an earlier run of the same experiment with the same record (a
  rerun resumes its encoder training from the checkpoints there). Anything else is refused before a
  file is written: an unsafe path (`wsl_jax.outputs.resolve_output`), a folder with files of someone
  else's, or a run with other settings (e.g. another --seed), whose config.json would otherwise be
  overwritten and its checkpoints mixed with this run's.

  Raises:
    wsl_jax.outputs.UnsafeOutputError: the message names the folder and the reason.
  """
  from wsl_jax import outputs
  resolved = outputs.resolve_output(out)
  config_path = os.path.join(resolved, "config.json")
  identity = json.loads(json.dumps(to_jsonable(record)))
  name = identity.get("experiment", "?")
  if os.path.lexists(resolved):
    if os.path.islink(resolved) or not os.path.isdir(resolved):
      raise outputs.UnsafeOutputError(f"--out {resolved} exists and is not a folder; choose another --out")
    if os.path.lexists(config_path):
      try:
        with open(config_path, encoding="utf-8") as f:
          previous = json.load(f)
      except (OSError, ValueError) as e:
        raise outputs.UnsafeOutputError(f"{config_path} is not an experiment record of wsl_jax ({e}); choose "
                                        "another --out") from e
      if not isinstance(previous, dict) or previous.get("experiment") != name:
        found = previous.get("experiment") if isinstance(previous, dict) else None
        raise outputs.UnsafeOutputError(
            f"--out {resolved} holds {'a run of experiments.' + str(found) if found else 'a config.json of someone else'}"
            f", not of experiments.{name}; choose another --out")
      differences = _differences({k: previous.get(k) for k in identity}, identity)
      if differences:
        raise outputs.UnsafeOutputError(
            f"--out {resolved} holds a run of experiments.{name} with other settings ({'; '.join(differences[:4])}"
            f"{'; ...' if len(differences) > 4 else ''}); rerun with those settings to resume it, or choose "
            "another --out")
    elif os.listdir(resolved):
      raise outputs.UnsafeOutputError(f"--out {resolved} is not empty and holds no run of experiments.{name} "
                                      "(no config.json); choose another --out")
  os.makedirs(resolved, exist_ok=True)
  write_json(config_path, {**identity, "environment": environment()})
  return resolved


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
  """Dotted paths where two JSON values differ, with both values ("seed: 0 there, 1 now")."""
  if isinstance(old, dict) and isinstance(new, dict):
    return [d for k in sorted(set(old) | set(new), key=str)
            for d in _differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))]
  if old == new:
    return []
  def short(v):
    text = json.dumps(v)
    return text if len(text) <= 30 else text[:27] + "..."
  return [f"{path or 'record'}: {short(old)} there, {short(new)} now"]


def main_guard(run: Any) -> int:
  """Exit status of an experiment's `main` body `run()`: user errors (bad --out, a damaged cached zoo,
  missing data, a full disk) print one line and give 2, without a traceback (`wsl_jax.outputs`)."""
  from wsl_jax import outputs
  return outputs.user_errors_as_one_line(run)


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
