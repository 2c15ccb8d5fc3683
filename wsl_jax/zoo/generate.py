"""Zoo generation: many models trained as one compiled program per bucket, chunked, resumable.

    zoo = generate("tetris_seed")                         # in memory
    zoo = generate("tetris_seed", out="zoos/tetris_seed")  # written to disk (resumable)

Models are grouped into buckets by the discrete choices that change the program (activation,
optimizer); initializers are selected per model inside a program. Each bucket runs in equal
chunks of at most `chunk_size` models (one compilation per bucket; the last chunk is padded to the
others' size, by less than one model per chunk: `balanced_chunk_size`), so memory stays
bounded whatever the zoo size. With several devices the model axis of a chunk is sharded over a
`jax.sharding.Mesh` ("models" axis); the result is the same zoo as on one device to float tolerance.
The chunks depend on `chunk_size` only; each is padded to a multiple of the device count, which changes
the compiled program, so a resume on another number of devices is refused rather than mixed.

With `out`, every finished chunk is written to `<out>.partial/` (weights into a memory-mapped, fully
allocated `weights.npy`; metrics, the chunk's model indices and a SHA-256 of its weights into one small
file per chunk) before the next starts. A killed generation, rerun with the same arguments, skips the
finished chunks whose weights still match their checksum and recomputes the others; a staging weights
file of the wrong size is rebuilt. The folder becomes the zoo (one atomic rename to `out`, which never
replaces a folder that appeared meanwhile) only when every chunk is done, without the resume files. A
lock keeps a second run away from the same `out`; the free disk space is checked before anything is
written. docs/reliability.md lists the faults tried and what each guarantees.

Data: the preset's data set, or the first of its `dataset_fallbacks` that is available when its files
are missing (a warning says so, and `zoo.dataset` names the one used); then the preset's fixed
training / test subsets (`train_examples`, `test_examples`). `dataset_for(zoo)` rebuilds exactly the
arrays a zoo was trained and evaluated on.

Keys: model m's PRNG key is `fold_in(key(seed), hparams["seed"][m])`, so models that share a seed share
their initialisation and data order (the paper's fixed-seed zoos). The data set itself is always built
with data seed 0, and the zoo-level data-shuffle key is derived from `seed`.

Several processes (docs/scale.md): `worker=(i, n)` (CLI `--worker i/n`) trains only the chunks
`k` with `k % n == i` of the deterministic chunk list, on its local devices, into the shared staging
folder `<out>.partial` (each chunk's weights go to their own rows of the memory-mapped weights file: no
weights cross processes). Whichever worker finds every chunk present and verified puts the zoo in place
(the others return None); a killed worker's chunks are done by any rerun, with or without `--worker`,
on any number of processes, and the zoo is bit-identical to a one-process run of the same plan. After
`jax.distributed.initialize()`, `generate(..., out=...)` does the same with `i, n = process_index,
process_count` (no collectives: the processes coordinate through the staging folder only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from wsl_jax import outputs
from wsl_jax.data import datasets, image_data
from wsl_jax.progress import progress_bar
from wsl_jax.weights import nets
from wsl_jax.zoo import io as zoo_io
from wsl_jax.zoo import presets as zoo_presets
from wsl_jax.zoo.core import Zoo
from wsl_jax.zoo.spec import CONTINUOUS_HPARAMS, HParams, TrainSpec, metric_names, to_device_data
from wsl_jax.zoo.train import compiled_trainer

DATA_SEED = 0
DEFAULT_CHUNK_SIZE = 512


@dataclasses.dataclass(frozen=True)
class Bucket:
  """Models that share one compiled program."""

  spec: TrainSpec
  models: np.ndarray  # zoo indices of the models in this bucket


def plan_buckets(preset: zoo_presets.ZooPreset, hp: dict[str, np.ndarray], epochs: int,
                 checkpoints: tuple[int, ...]) -> list[Bucket]:
  """Group models by (activation, optimizer); record which initializers each bucket needs."""
  buckets = []
  keys = sorted(set(zip(hp["activation"].tolist(), hp["optimizer"].tolist())))
  for activation, optimizer in keys:
    models = np.flatnonzero((hp["activation"] == activation) & (hp["optimizer"] == optimizer))
    inits = tuple(i for i in nets.ALL_INITIALIZERS if i in set(hp["init"][models].tolist()))
    unknown = set(hp["init"][models].tolist()) - set(nets.ALL_INITIALIZERS)
    if unknown:
      raise ValueError(f"unknown initializers {sorted(unknown)}; choose from {nets.ALL_INITIALIZERS}")
    spec = TrainSpec(net=preset.net, epochs=epochs, batch_size=preset.batch_size,
                     checkpoint_epochs=checkpoints, activation=activation, optimizer=optimizer,
                     inits=inits, bias_value=preset.bias_value, eval_batch_size=preset.eval_batch_size,
                     dropout=bool((hp["dropout"][models] > 0).any()),
                     train_subsets=bool((hp["train_fraction"][models] < 1).any()),
                     train_eval_size=preset.train_eval_examples)
    buckets.append(Bucket(spec, models))
  return buckets


def model_keys(seed: int, model_seeds: np.ndarray) -> jax.Array:
  base = jax.random.key(seed)
  return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.asarray(model_seeds, jnp.uint32))


def trainer_inputs(bucket: Bucket, hp: dict[str, np.ndarray], models: np.ndarray) -> HParams:
  """The per-model arrays a compiled program takes, for `models` (zoo indices of the zoo's hparams)."""
  arrays = {k: np.asarray(hp[k][models], np.float32) for k in CONTINUOUS_HPARAMS}
  arrays["init_index"] = np.asarray([bucket.spec.inits.index(i) for i in hp["init"][models]], np.int32)
  return HParams.from_dict(arrays)


def _chunks(models: np.ndarray, chunk: int) -> list[np.ndarray]:
  return [models[i:i + chunk] for i in range(0, len(models), chunk)]


def balanced_chunk_size(models: int, chunk_size: int) -> int:
  """The chunk size that splits `models` into as many chunks as `chunk_size` does, as evenly as possible.

  Every chunk of a bucket runs the same compiled program, so the last one is padded to the chunk size;
  equal chunks keep that padding below one model per chunk (64 models in chunks of 50: 2 x 32 instead of
  50 + 14 padded to 50, which trained 100 models for 64).
  """
  chunks = -(-models // chunk_size)
  return -(-models // chunks)


def _pad(models: np.ndarray, size: int) -> np.ndarray:
  return np.concatenate([models, np.repeat(models[-1:], size - len(models))]) if len(models) < size else models


def run_chunk(bucket: Bucket, models: np.ndarray, chunk_size: int, hp: dict[str, np.ndarray], seed: int,
              data, mesh: Mesh | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Train `models` (≤ chunk_size, padded to it); returns weights (m,C,N), metrics (m,C,K), diverged (m,)."""
  padded = _pad(models, chunk_size)
  keys = model_keys(seed, hp["seed"][padded])
  inputs = trainer_inputs(bucket, hp, padded)
  if mesh is not None:
    shard = NamedSharding(mesh, PartitionSpec("models"))
    keys = jax.device_put(keys, shard)
    inputs = jax.device_put(inputs, shard)
    data = jax.device_put(data, NamedSharding(mesh, PartitionSpec()))
  record = compiled_trainer(bucket.spec, mesh)(keys, inputs, data)
  weights, metrics, diverged = jax.device_get((record.weights, record.metrics, record.diverged))
  n = len(models)
  return np.asarray(weights[:n]), np.asarray(metrics[:n]), np.asarray(diverged[:n])


def assemble_properties(metrics: np.ndarray, checkpoints: tuple[int, ...], num_classes: int
                        ) -> dict[str, np.ndarray]:
  names = metric_names(num_classes)
  props = {name: metrics[..., i].astype(np.float32) for i, name in enumerate(names)}
  props["ggap"] = (props["train_acc"] - props["test_acc"]).astype(np.float32)
  props["epoch"] = np.broadcast_to(np.asarray(checkpoints, np.int32), metrics.shape[:2]).copy()
  return props


def _plan_digest(plan: dict[str, Any]) -> str:
  return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def resolve_dataset(preset: zoo_presets.ZooPreset) -> str:
  """The data set a zoo of `preset` uses: its own, or the first available of its fallbacks.

  Raises:
    image_data.DataNotFoundError: none is available; the message says what to download (or install).
  """
  failures = []
  for name in (preset.dataset,) + tuple(preset.dataset_fallbacks):
    try:
      datasets.load(name, seed=DATA_SEED)
    except image_data.DataNotFoundError as e:
      failures.append(str(e))
      continue
    if name != preset.dataset:
      warnings.warn(f"preset {preset.name}: data set {preset.dataset!r} is not available, using {name!r} "
                    f"instead ({failures[0].splitlines()[0]})", stacklevel=2)
    return name
  raise image_data.DataNotFoundError("\n\n".join(failures))


def preset_dataset(preset: zoo_presets.ZooPreset, name: str | None = None) -> datasets.Dataset:
  """The arrays a zoo of `preset` trains and evaluates on: data set `name` (default: `resolve_dataset`),
  restricted to the preset's fixed training / test subsets."""
  name = resolve_dataset(preset) if name is None else name
  return image_data.subset(datasets.load(name, seed=DATA_SEED), preset.train_examples, preset.test_examples)


def dataset_for(zoo: Zoo) -> datasets.Dataset:
  """The exact training / test arrays `zoo` was generated with (its data set and subsets, from its meta)."""
  info = zoo.meta.get("data", {})
  return image_data.subset(datasets.load(zoo.dataset, seed=zoo.meta.get("data_seed", DATA_SEED)),
                           info.get("train_examples", 0), info.get("test_examples", 0))


def generate(preset: zoo_presets.ZooPreset | str, num_models: int | None = None, epochs: int | None = None,
             seed: int = 0, out: str | None = None, chunk_size: int | None = None,
             devices: list[Any] | None = None, progress: bool = True, overwrite: bool = False,
             worker: tuple[int, int] | str | None = None) -> Zoo | None:
  """Generate a zoo from a preset.

  Args:
    preset: a `ZooPreset` or the name of one (`wsl_jax.zoo.presets.PRESETS`).
    num_models: zoo size (default: the preset's).
    epochs: training epochs (default: the preset's); checkpoints beyond it are dropped and the last
      epoch is always recorded.
    seed: zoo seed (model keys and data order).
    out: folder to write the zoo to (atomic; resumable through `<out>.partial/`). None: memory only.
      Refused (`wsl_jax.outputs.UnsafeOutputError`) when empty, the working directory or a parent of
      it, the home directory or a filesystem root.
    chunk_size: models per compiled call (each call padded to a multiple of the device count); None:
      the preset's `chunk_size`, else `DEFAULT_CHUNK_SIZE`.
    devices: devices to shard the model axis over (default: all local devices; devices of other
      processes are refused: processes split the chunks instead, see `worker`).
    progress: show a progress bar (models/s and ETA).
    overwrite: replace an existing zoo at `out`; only a zoo written by wsl_jax with nothing else in its
      folder is ever replaced.
    worker: (i, n) or "i/n": train only the chunks k with k % n == i into `out`'s staging folder (needs
      `out`). Default: (process_index, process_count) after `jax.distributed.initialize()` with more
      than one process, else all chunks.

  Returns:
    The `Zoo` (with `out`: read back from it, its weights memory-mapped, so that a process never holds
    the whole zoo in memory); None for a worker that finished its chunks while others were still missing (the last
    worker to finish, or any later run of the same call, puts the zoo in place).

  Raises:
    FileExistsError: `out` exists (without `overwrite`), or `<out>.partial` holds an unfinished
      generation with other settings (the message says which differ).
    wsl_jax.outputs.UnsafeOutputError: an unsafe `out`, a folder wsl_jax did not write, or another
      generation running into the same `out`.
    wsl_jax.outputs.OutOfSpaceError: the zoo does not fit on the disk (checked before writing), or the
      disk filled up meanwhile (rerun the same call to resume).
  """
  preset = zoo_presets.get(preset) if isinstance(preset, str) else preset
  epochs = preset.epochs if epochs is None else int(epochs)
  if epochs < 1:
    raise ValueError(f"epochs must be at least 1, got {epochs}")
  if chunk_size is None:
    chunk_size = preset.chunk_size or DEFAULT_CHUNK_SIZE
  if int(chunk_size) != chunk_size or int(chunk_size) < 1:
    raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
  chunk_size = int(chunk_size)
  out_path = None if out is None else zoo_io.check_output(out, overwrite)
  worker_index, workers = _parse_worker(worker)
  if workers > 1 and out_path is None:
    raise ValueError("workers share their chunks through the output folder: pass out (CLI: --out)")
  hp = zoo_presets.build_hparams(preset, num_models, seed)
  m = len(hp["seed"])
  checkpoints = preset.checkpoints(epochs)
  buckets = plan_buckets(preset, hp, epochs, checkpoints)
  devices = list(jax.local_devices()) if devices is None else list(devices)
  remote = [d for d in devices if d.process_index != jax.process_index()]
  if remote:
    raise ValueError(f"devices of other processes ({remote[0]}, ...) cannot train this process's chunks; "
                     "pass local devices: processes split the chunks between them (worker=)")
  n_dev = len(devices)
  mesh = Mesh(np.asarray(devices), ("models",)) if n_dev > 1 else None
  dataset_name = resolve_dataset(preset)
  dataset = preset_dataset(preset, dataset_name)
  if dataset.input_shape != preset.net.input_shape:
    raise ValueError(f"preset {preset.name}: data set {dataset_name!r} has inputs {dataset.input_shape}, "
                     f"the network takes {preset.net.input_shape}")
  data = to_device_data(dataset, order_seed=seed)
  layout = preset.net.layout()
  num_classes = preset.net.num_classes
  shape = (m, len(checkpoints), layout.num_params)

  # Everything that determines the numbers: a staging folder resumes only under the same plan (the
  # device count sets the padded program size, so a resume on other devices is refused, not mixed).
  plan = {"preset": preset.to_dict(), "num_models": m, "epochs": epochs, "seed": seed,
          "dataset": dataset_name, "checkpoints": list(checkpoints), "chunk_size": chunk_size,
          "devices": n_dev, "platform": devices[0].platform, "jax_version": jax.__version__,
          "buckets": [[b.spec.activation, b.spec.optimizer, list(b.spec.inits), b.models.tolist()]
                      for b in buckets]}
  work = []
  for b, bucket in enumerate(buckets):
    size = balanced_chunk_size(len(bucket.models), chunk_size)  # depends on chunk_size and the bucket only
    padded = -(-size // n_dev) * n_dev  # each chunk is padded to a multiple of the device count
    for c, models in enumerate(_chunks(bucket.models, size)):
      work.append((f"b{b}c{c}", bucket, models, padded))

  metrics = np.zeros((m, len(checkpoints), len(metric_names(num_classes))), np.float32)
  diverged = np.zeros(m, bool)
  started = time.time()

  def chunk_file(staging: str | None, name: str) -> str | None:
    return os.path.join(staging, f"chunk_{name}.npz") if staging else None

  def train(weights: np.ndarray, staging: str | None) -> list[int]:
    """Train this worker's unfinished chunks; the indices of other workers' chunks not finished yet."""
    missing = []
    mine = sum(len(w[2]) for k, w in enumerate(work) if k % workers == worker_index)
    bar = progress_bar(total=m if workers == 1 else mine, desc=f"zoo {preset.name}", unit="model",
                       enabled=progress)
    for k, (name, bucket, models, size) in enumerate(work):
      done_file = chunk_file(staging, name)
      if done_file and _load_finished_chunk(done_file, models, weights, metrics, diverged):
        bar.update(len(models) if k % workers == worker_index else 0)
        continue
      if k % workers != worker_index:
        missing.append(k)
        continue
      w, met, div = run_chunk(bucket, models, size, hp, seed, data, mesh)
      weights[models] = w
      metrics[models], diverged[models] = met, div
      if done_file:
        with _resumable(staging):
          weights.flush()
          _atomic_npz(done_file, metrics=met, diverged=div, models=models, weights_sha256=np.asarray(_digest(w)))
      bar.update(len(models))
    bar.close()
    return missing

  def still_missing(weights: np.ndarray, staging: str, missing: list[int]) -> list[int]:
    return [k for k in missing if not _load_finished_chunk(chunk_file(staging, work[k][0]), work[k][2], weights,
                                                            metrics, diverged)]

  def assemble(weights: np.ndarray) -> Zoo:
    return Zoo(weights=weights, epochs=np.asarray(checkpoints, np.int32),
               properties=assemble_properties(metrics, checkpoints, num_classes), hparams=hp,
               net=preset.net, dataset=dataset_name, diverged=diverged,
               meta={"preset": preset.name, "preset_config": preset.to_dict(), "seed": seed,
                     "data_seed": DATA_SEED, "varied": list(preset.varied), "jax_version": jax.__version__,
                     "data": {"requested": preset.dataset, "train_examples": preset.train_examples,
                              "test_examples": preset.test_examples, "num_train": len(dataset.y_train),
                              "num_test": len(dataset.y_test),
                              "train_eval_examples": preset.train_eval_examples},
                     "devices": [str(d) for d in devices], "generation_seconds": round(time.time() - started, 3),
                     "plan_digest": _plan_digest(plan)})

  if out_path is None:
    weights = np.zeros(shape, np.float32)
    train(weights, None)
    return assemble(weights)
  staging = out_path + ".partial"
  what = f"the zoo {out_path}"
  _check_staging_folder(staging)
  _check_space(staging, shape, num_classes)
  os.makedirs(staging, exist_ok=True)
  outputs.apply_umask(staging, directory=True)
  # `.lock` (held briefly) serializes setting up and finishing the staging folder between workers; a
  # worker's own lock keeps a second copy of the same worker away while it trains.
  setup = outputs.OutputLock(os.path.join(staging, LOCK_FILE), what)
  mine = outputs.OutputLock(os.path.join(staging, f"{LOCK_FILE}-{worker_index}-of-{workers}"),
                            f"{what} (worker {worker_index}/{workers})")
  try:
    setup.acquire(blocking=True)
    zoo = _finished_staging(staging, plan)
    if zoo is None:
      weights = _open_staging(staging, plan, shape)
      setup.release()
      mine.acquire()
      missing = train(weights, staging)
      mine.release(remove=True)
      setup.acquire(blocking=True)
      if not os.path.isdir(staging):  # another worker finished the zoo meanwhile
        return _finished_by_another(out_path, plan)
      missing = still_missing(weights, staging, missing)
      if missing:
        _log(f"worker {worker_index}/{workers}: its chunks are done; {len(missing)} of {len(work)} chunks of other "
             f"workers are not finished yet. The last worker to finish puts the zoo in place; a killed "
             f"worker's chunks are done by running the same command again (with or without --worker)")
        return None
      zoo = assemble(weights)
      _write_zoo_files(staging, zoo)
    _remove_bookkeeping(staging)
    setup.release(remove=True)
    try:
      zoo_io.finalize_folder(staging, out_path, overwrite=overwrite)
    except FileExistsError as e:
      raise FileExistsError(f"{out_path} appeared while the zoo was generated and was left as it is; the "
                            f"finished zoo is kept in {staging}: move {out_path} away and run the same "
                            "command again to put it in place") from e
  finally:
    mine.release()
    setup.release()
  return zoo_io.load(out_path, verify=False, mmap=True)


def _parse_worker(worker: tuple[int, int] | str | None) -> tuple[int, int]:
  """(i, n) from `worker` ("i/n" or a pair), defaulting to the jax.distributed process index / count."""
  if worker is None:
    return jax.process_index(), jax.process_count()
  if isinstance(worker, str):
    parts = worker.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
      raise ValueError(f"worker must be 'i/n' (e.g. 0/2), got {worker!r}")
    worker = (int(parts[0]), int(parts[1]))
  i, n = worker
  if int(i) != i or int(n) != n or not 0 <= i < n:
    raise ValueError(f"worker must be i/n with 0 <= i < n, got {i}/{n}")
  return int(i), int(n)


def _finished_by_another(out_path: str, plan: dict[str, Any]) -> Zoo:
  zoo = zoo_io.load(out_path, verify=False, mmap=True)
  if zoo.meta.get("plan_digest") != _plan_digest(plan):
    raise FileExistsError(f"{out_path} was written meanwhile by a run with other settings")
  return zoo


def _log(message: str) -> None:
  import sys
  print(message, file=sys.stderr, flush=True)


LOCK_FILE = ".lock"
PLAN_FILE = "plan.json"
# What a staging folder may hold: the zoo's files, the resume bookkeeping, the lock and interrupted
# atomic writes. Anything else there is a user's file: the folder is then neither used nor deleted.
STAGING_ENTRIES = zoo_io.ZOO_ENTRIES + (PLAN_FILE, "chunk_*.npz", "chunk_*.npz.tmp", LOCK_FILE, LOCK_FILE + "-*")


def _resumable(staging: str):
  return outputs.disk_full_is_resumable(
      staging, f"free space, then run the same command again: it resumes from {staging} (finished chunks "
               "are kept)")


def _digest(weights: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(weights, np.float32).tobytes()).hexdigest()


def _load_finished_chunk(path: str, models: np.ndarray, weights: np.ndarray, metrics: np.ndarray,
                         diverged: np.ndarray) -> bool:
  """Fill in a finished chunk's metrics from its file; False (recompute it) when the file is unreadable,
  belongs to other models, or the staged weights of its models do not match the checksum it recorded."""
  try:
    with np.load(path) as f:
      if "models" not in f.files or not np.array_equal(f["models"], models):
        return False
      if "weights_sha256" not in f.files or str(f["weights_sha256"]) != _digest(weights[models]):
        warnings.warn(f"{path}: the staged weights of its models do not match the checksum it recorded; "
                      "recomputing the chunk", stacklevel=3)
        return False
      metrics[models], diverged[models] = f["metrics"], f["diverged"]
  except (OSError, ValueError, EOFError, KeyError):
    return False
  return True


def _atomic_npz(path: str, **arrays: np.ndarray) -> None:
  outputs.atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)


def _check_staging_folder(staging: str) -> None:
  """Refuse a `<out>.partial` that is not a folder or holds files wsl_jax did not write."""
  if not os.path.lexists(staging):
    return
  if os.path.islink(staging) or not os.path.isdir(staging):
    raise outputs.UnsafeOutputError(f"{staging} exists and is not a staging folder of wsl_jax; move it away "
                                    "or choose another --out")
  foreign = outputs.foreign_entries(staging, STAGING_ENTRIES)
  if foreign:
    raise outputs.UnsafeOutputError(f"{staging} holds files wsl_jax did not write ({', '.join(foreign[:5])}); "
                                    "move them away or choose another --out")


def _plan_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
  def short(v):
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."
  keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  return ", ".join(f"{k}: started with {short(old.get(k))}, now {short(new.get(k))}" for k in keys)


def _staged_weights_ok(path: str, shape: tuple[int, int, int]) -> bool:
  """Whether `path` is a float32 C-order .npy of `shape` with exactly the bytes that shape needs (a
  shorter file would be silently zero-filled by a writable memory map)."""
  try:
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      header = read_header(f)  # (shape, fortran_order, dtype)
      offset = f.tell()
  except (OSError, ValueError, EOFError):
    return False
  file_shape, fortran, dtype = header
  expected = offset + int(np.prod(shape)) * 4
  return (tuple(file_shape) == tuple(shape) and not fortran and dtype == np.dtype(np.float32)
          and os.path.getsize(path) == expected)


def _clear_chunks(staging: str) -> None:
  for f in os.listdir(staging):
    if f.startswith("chunk_"):
      os.remove(os.path.join(staging, f))


def _needed_bytes(shape: tuple[int, int, int], num_classes: int) -> int:
  """Disk bytes of a zoo of `shape`: the weights, its properties twice (chunk files and
  properties.npz) and a margin for headers and hparams."""
  m, e, n = shape
  per_metric = m * e * 4
  return m * e * n * 4 + 2 * per_metric * (len(metric_names(num_classes)) + 2) + (1 << 20)


def _check_space(staging: str, shape: tuple[int, int, int], num_classes: int) -> None:
  """Refuse (`OutOfSpaceError`, with the numbers) a zoo that does not fit on the disk, before writing; a
  staging weights file of the right size already holds its share."""
  needed = _needed_bytes(shape, num_classes)
  weights_file = os.path.join(staging, "weights.npy")
  if _staged_weights_ok(weights_file, shape):
    needed -= os.path.getsize(weights_file)
  outputs.check_free_space(os.path.dirname(staging), needed,
                           f"a zoo of {shape[0]} x {shape[1]} x {shape[2]} float32 weights")


def _open_staging(staging: str, plan: dict[str, Any], shape: tuple[int, int, int]) -> np.memmap:
  """The memory-mapped weights of staging folder `staging`: reopened when its plan matches, else created
  (and the plan recorded). A weights file of the wrong size or shape is rebuilt (its chunks recomputed),
  never zero-filled; disk blocks are reserved up front."""
  digest = _plan_digest(plan)
  plan_file = os.path.join(staging, PLAN_FILE)
  weights_file = os.path.join(staging, "weights.npy")
  resuming = False
  if os.path.exists(plan_file):
    try:
      with open(plan_file, encoding="utf-8") as f:
        previous = json.load(f)
      previous_digest, previous_plan = previous.get("digest"), previous.get("plan", {})
    except (OSError, ValueError, AttributeError):
      previous_digest, previous_plan = None, {}
    if previous_digest is None:
      warnings.warn(f"{plan_file} is damaged; starting the generation in {staging} over", stacklevel=3)
      os.remove(plan_file)
    elif previous_digest != digest:
      raise FileExistsError(f"{staging} holds an unfinished generation with other settings "
                            f"({_plan_difference(previous_plan, plan)}); rerun with the settings it was "
                            "started with to resume it, or delete that folder to start over")
    else:
      resuming = True
  if resuming and _staged_weights_ok(weights_file, shape):
    weights = np.load(weights_file, mmap_mode="r+")
    with _resumable(staging), open(weights_file, "r+b") as f:
      outputs.preallocate(f.fileno(), os.path.getsize(weights_file), weights_file)
    return weights
  if resuming:
    warnings.warn(f"{weights_file} is missing or has the wrong size; rebuilding it (its finished chunks are "
                  "recomputed)", stacklevel=3)
  _clear_chunks(staging)
  with _resumable(staging):
    weights = np.lib.format.open_memmap(weights_file, mode="w+", dtype=np.float32, shape=shape)
    with open(weights_file, "r+b") as f:
      outputs.preallocate(f.fileno(), os.path.getsize(weights_file), weights_file)
    if not resuming:
      zoo_io.atomic_write_text(plan_file, json.dumps({"digest": digest, "plan": plan}))
  return weights


def _finished_staging(staging: str, plan: dict[str, Any]) -> Zoo | None:
  """The zoo in `staging` if an earlier run of this plan wrote it completely (and it verifies), else None.
  That run stopped before putting it in place (killed, or the output folder had appeared)."""
  if not os.path.isfile(os.path.join(staging, zoo_io.META_FILE)):
    return None
  try:
    zoo = zoo_io.load(staging, verify=True)
  except zoo_io.ZooFormatError as e:
    warnings.warn(f"{staging} holds an incomplete zoo ({e}); regenerating", stacklevel=3)
    os.remove(os.path.join(staging, zoo_io.META_FILE))
    return None
  if zoo.meta.get("plan_digest") != _plan_digest(plan):
    raise FileExistsError(f"{staging} holds a finished zoo generated with other settings; run the command "
                          "that generated it again to put it in place, or delete that folder to start over")
  return zoo


def _write_zoo_files(staging: str, zoo: Zoo) -> None:
  """Write the remaining files of the zoo into the staging folder (zoo.json last)."""
  with _resumable(staging):
    zoo.weights.flush()
    files = zoo_io.write_arrays(staging, zoo, weights_written=True)
    zoo_io.atomic_write_text(os.path.join(staging, zoo_io.META_FILE),
                             json.dumps(zoo_io.zoo_meta(zoo, files), indent=1))


def _remove_bookkeeping(staging: str) -> None:
  """Delete the resume files and workers' locks, so that the finished zoo holds only its own files."""
  for f in os.listdir(staging):
    if f.startswith("chunk_") or f == PLAN_FILE or f.startswith(LOCK_FILE + "-"):
      os.remove(os.path.join(staging, f))
