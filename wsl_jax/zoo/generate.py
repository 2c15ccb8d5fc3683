"""Zoo generation: many models trained as one compiled program per bucket, chunked, resumable.

    zoo = generate("tetris_seed")                         # in memory
    zoo = generate("tetris_seed", out="zoos/tetris_seed")  # written to disk (resumable)

Models are grouped into buckets by the discrete choices that change the program (activation,
optimizer); initializers are selected per model inside a program. Each bucket runs in fixed-size
chunks of the model axis (one compilation per bucket; the last chunk is padded), so memory stays
bounded whatever the zoo size. With several devices the model axis of a chunk is sharded over a
`jax.sharding.Mesh` ("models" axis); the result is the same zoo as on one device. The chunks depend on
`chunk_size` only (each is padded to a multiple of the device count), so a generation may resume on
another number of devices.

With `out`, every finished chunk is written to `<out>.partial/` (weights into a memory-mapped
`weights.npy`, metrics and the chunk's model indices into one small file per chunk) before the next
starts. A killed generation, rerun with the same arguments, skips the finished chunks; the folder
becomes the zoo (renamed to `out`) only when every chunk is done.

Data: the preset's data set, or the first of its `dataset_fallbacks` that is available when its files
are missing (a warning says so, and `zoo.dataset` names the one used); then the preset's fixed
training / test subsets (`train_examples`, `test_examples`). `dataset_for(zoo)` rebuilds exactly the
arrays a zoo was trained and evaluated on.

Keys: model m's PRNG key is `fold_in(key(seed), hparams["seed"][m])`, so models that share a seed share
their initialisation and data order (the paper's fixed-seed zoos). The data set itself is always built
with data seed 0, and the zoo-level data-shuffle key is derived from `seed`.

Multi-host: call `jax.distributed.initialize()` first on every host; `jax.devices()` then lists the
devices of all hosts and `generate(..., devices=jax.devices())` shards each chunk's model axis over
all of them. Every host runs the same call (the same program on the same data); each chunk's results
are gathered to every host (`process_allgather`), and only process 0 writes `out` (the others return
the zoo in memory).
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

from wsl_jax import datasets, image_data, nets
from wsl_jax.progress import progress_bar
from wsl_jax.zoo import io as zoo_io
from wsl_jax.zoo import presets as zoo_presets
from wsl_jax.zoo.core import Zoo
from wsl_jax.zoo.train import CONTINUOUS_HPARAMS, TrainSpec, compiled_trainer, metric_names, to_device_data

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


def trainer_inputs(bucket: Bucket, hp: dict[str, np.ndarray], models: np.ndarray) -> dict[str, np.ndarray]:
  """The per-model arrays a compiled program takes, for `models` (zoo indices)."""
  arrays = {k: np.asarray(hp[k][models], np.float32) for k in CONTINUOUS_HPARAMS}
  arrays["init_index"] = np.asarray([bucket.spec.inits.index(i) for i in hp["init"][models]], np.int32)
  return arrays


def _chunks(models: np.ndarray, chunk: int) -> list[np.ndarray]:
  return [models[i:i + chunk] for i in range(0, len(models), chunk)]


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
  record = (record.weights, record.metrics, record.diverged)
  if not record[0].is_fully_addressable:  # the model axis spans hosts: every host gets the whole chunk
    from jax.experimental import multihost_utils
    record = multihost_utils.process_allgather(record, tiled=True)
  weights, metrics, diverged = jax.device_get(record)
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
             devices: list[Any] | None = None, progress: bool = True, overwrite: bool = False) -> Zoo:
  """Generate a zoo from a preset.

  Args:
    preset: a `ZooPreset` or the name of one (`wsl_jax.zoo.presets.PRESETS`).
    num_models: zoo size (default: the preset's).
    epochs: training epochs (default: the preset's); checkpoints beyond it are dropped and the last
      epoch is always recorded.
    seed: zoo seed (model keys and data order).
    out: folder to write the zoo to (atomic; resumable through `<out>.partial/`). None: memory only.
    chunk_size: models per compiled call (each call padded to a multiple of the device count); None:
      the preset's `chunk_size`, else `DEFAULT_CHUNK_SIZE`.
    devices: devices to shard the model axis over (default: all local devices).
    progress: show a progress bar (models/s and ETA).
    overwrite: replace an existing zoo at `out`.

  Returns:
    The `Zoo`.
  """
  preset = zoo_presets.get(preset) if isinstance(preset, str) else preset
  epochs = preset.epochs if epochs is None else int(epochs)
  if epochs < 1:
    raise ValueError(f"epochs must be at least 1, got {epochs}")
  if out is not None and os.path.exists(out) and not overwrite:
    raise FileExistsError(f"{out} exists; pass overwrite=True (CLI: --overwrite) to replace it")
  if chunk_size is None:
    chunk_size = preset.chunk_size or DEFAULT_CHUNK_SIZE
  hp = zoo_presets.build_hparams(preset, num_models, seed)
  m = len(hp["seed"])
  checkpoints = preset.checkpoints(epochs)
  buckets = plan_buckets(preset, hp, epochs, checkpoints)
  devices = list(jax.local_devices()) if devices is None else list(devices)
  n_dev = len(devices)
  mesh = Mesh(np.asarray(devices), ("models",)) if n_dev > 1 else None
  dataset_name = resolve_dataset(preset)
  dataset = preset_dataset(preset, dataset_name)
  if dataset.input_shape != preset.net.input_shape:
    raise ValueError(f"preset {preset.name}: data set {dataset_name!r} has inputs {dataset.input_shape}, "
                     f"the network takes {preset.net.input_shape}")
  data = to_device_data(dataset, order_seed=seed)
  if jax.process_index() != 0:
    out = None  # multi-host: process 0 writes the zoo
  layout = preset.net.layout()
  num_classes = preset.net.num_classes
  n_metrics = len(metric_names(num_classes))

  plan = {"preset": preset.to_dict(), "num_models": m, "epochs": epochs, "seed": seed,
          "dataset": dataset_name, "checkpoints": list(checkpoints), "chunk_size": int(chunk_size),
          "buckets": [[b.spec.activation, b.spec.optimizer, list(b.spec.inits), b.models.tolist()]
                      for b in buckets]}
  staging = None
  if out is not None:
    staging = os.path.abspath(out) + ".partial"
    weights = _open_staging(staging, plan, (m, len(checkpoints), layout.num_params))
  else:
    weights = np.zeros((m, len(checkpoints), layout.num_params), np.float32)
  metrics = np.zeros((m, len(checkpoints), n_metrics), np.float32)
  diverged = np.zeros(m, bool)

  if int(chunk_size) < 1:
    raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
  work = []
  for b, bucket in enumerate(buckets):
    size = min(int(chunk_size), len(bucket.models))  # the partition depends on chunk_size only
    padded = -(-size // n_dev) * n_dev  # each chunk is padded to a multiple of the device count
    for c, models in enumerate(_chunks(bucket.models, size)):
      work.append((f"b{b}c{c}", bucket, models, padded))
  started = time.time()
  bar = progress_bar(total=m, desc=f"zoo {preset.name}", unit="model", enabled=progress)
  for name, bucket, models, size in work:
    done_file = os.path.join(staging, f"chunk_{name}.npz") if staging else None
    if done_file and _load_finished_chunk(done_file, models, metrics, diverged):
      bar.update(len(models))
      continue
    w, met, div = run_chunk(bucket, models, size, hp, seed, data, mesh)
    weights[models] = w
    metrics[models], diverged[models] = met, div
    if done_file:
      weights.flush()
      _atomic_npz(done_file, metrics=met, diverged=div, models=models)
    bar.update(len(models))
  bar.close()
  elapsed = time.time() - started

  zoo = Zoo(weights=weights, epochs=np.asarray(checkpoints, np.int32),
            properties=assemble_properties(metrics, checkpoints, num_classes), hparams=hp,
            net=preset.net, dataset=dataset_name, diverged=diverged,
            meta={"preset": preset.name, "preset_config": preset.to_dict(), "seed": seed,
                  "data_seed": DATA_SEED, "varied": list(preset.varied), "jax_version": jax.__version__,
                  "data": {"requested": preset.dataset, "train_examples": preset.train_examples,
                           "test_examples": preset.test_examples, "num_train": len(dataset.y_train),
                           "num_test": len(dataset.y_test), "train_eval_examples": preset.train_eval_examples},
                  "devices": [str(d) for d in devices], "generation_seconds": round(elapsed, 3)})
  if out is None:
    return zoo
  return _finish_staging(staging, out, zoo)


def _load_finished_chunk(path: str, models: np.ndarray, metrics: np.ndarray, diverged: np.ndarray) -> bool:
  """Fill in a finished chunk's metrics from its file; False (recompute it) when the file is unreadable
  or belongs to other models."""
  try:
    with np.load(path) as f:
      if "models" not in f.files or not np.array_equal(f["models"], models):
        return False
      metrics[models], diverged[models] = f["metrics"], f["diverged"]
  except (OSError, ValueError, EOFError, KeyError):
    return False
  return True


def _atomic_npz(path: str, **arrays: np.ndarray) -> None:
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _open_staging(staging: str, plan: dict[str, Any], shape: tuple[int, int, int]) -> np.memmap:
  """Create `staging` (or reopen it when its plan matches) with a memory-mapped weights file."""
  digest = _plan_digest(plan)
  plan_file = os.path.join(staging, "plan.json")
  weights_file = os.path.join(staging, "weights.npy")
  if os.path.exists(plan_file):
    with open(plan_file) as f:
      previous = json.load(f).get("digest")
    if previous == digest and os.path.exists(weights_file):
      return np.load(weights_file, mmap_mode="r+")
    raise FileExistsError(f"{staging} holds an unfinished generation with other settings; delete it "
                          "to start over, or rerun with the settings it was started with")
  os.makedirs(staging, exist_ok=True)
  weights = np.lib.format.open_memmap(weights_file, mode="w+", dtype=np.float32, shape=shape)
  zoo_io.atomic_write_text(plan_file, json.dumps({"digest": digest, "plan": plan}))
  return weights


def _finish_staging(staging: str, out: str, zoo: Zoo) -> Zoo:
  """Write the remaining files into the staging folder, then rename it to `out`."""
  zoo.weights.flush()
  files = zoo_io.write_arrays(staging, zoo, weights_written=True)
  zoo_io.atomic_write_text(os.path.join(staging, zoo_io.META_FILE),
                           json.dumps(zoo_io.zoo_meta(zoo, files), indent=1))
  out = os.path.abspath(out)
  zoo_io.finalize_folder(staging, out)
  for f in os.listdir(out):  # resume bookkeeping, no longer needed
    if f.startswith("chunk_") or f == "plan.json":
      os.remove(os.path.join(out, f))
  return zoo_io.load(out, verify=False)
