"""The HSG model zoos (Schürholt et al.: the NeurIPS 2021 zoos and "Model Zoos" 2022), read and written
without PyTorch.

Two formats (`zoo_formats.md`):

* ray folders, `load_ray_folder(folder)`: `<zoo>/<trial>/` with `params.json` or `config.json`,
  `result.json` (JSON lines, one per epoch), `progress.csv`, and `checkpoint_<e>/checkpoints` or
  `checkpoint_<e:06d>/checkpoints` (a torch state_dict with keys `module_list.<i>.weight/bias`).
* `.pt` dataset dumps, `load_dump(path)`: `torch.save({"trainset", "valset", "testset"})` of the authors'
  dataset objects (`ModelDatasetBase` / `SimCLRDataset` from `checkpoints_to_datasets`), read as
  `torchfile.Record`s: `data_in` (flat weight vectors, or state_dicts), `properties` (dict of per-sample
  lists), `paths` (one trial folder per sample), `epochs`. The three sets give `zoo.meta["split"]`.

Weights: the layers are the `module_list` indices that hold a weight, in increasing order, derived from
the keys of each file (dropout modules shift them: the CNN's conv / linear modules are 0, 3, 6, 9, 11
without dropout and 0, 4, 8, 11, 14 with it in the publishers' `def_net.CNN`; nothing is hard-coded).
A conv weight is (out, in, kh, kw) and a linear weight (out, in) in PyTorch, which is the canonical
`Layout` order, and PyTorch's `Flatten` of NCHW is the channel-major flatten that `nets.apply` uses:
the flat vector is every layer's weight then bias, unchanged.

The architecture (`nets.NetSpec`) is inferred from the first checkpoint's shapes (`infer_net`): an MLP
from its linear layers; a CNN from its convs (stride 1, square kernels), trying input sizes 28, 32, 64, 96
and max-pool patterns "every conv but the last" (`def_net.CNN`, CNN-s) and "every conv" (`CNN3`, CNN-l;
`model::type` picks one when the config names it) until the first linear layer's input width matches.
Pass `net=` to override. A dump of flat vectors has no shapes: its net is matched by parameter count
(TETRIS MLP 100, the paper's CNN 2464, or 2430 without biases), or passed as `net=`.

Properties (M, E): every numeric metric of `result.json` (test_acc, train_acc, test_loss, train_loss,
val_*, training_iteration, ...), ggap = train_acc - test_acc where both exist, and epoch. Checkpoint e
takes line e - 1 of result.json, or line e when a `checkpoint_0` exists (the publishers' rule); a
missing line gives NaN. Hyper-parameters (M,): the config, renamed per `CONFIG_HPARAMS` (activations
mapped by `ACTIVATIONS`), other scalar keys under their own names. Models whose checkpoints differ
from the most common set are dropped (`zoo.meta["dropped_models"]`); non-finite weights or metrics mark
a model diverged. Ray folders have no split of their own (the publishers shuffled folder listings with
`random.seed(42)`, which depends on the file system's order), so `meta["split"]` is set for dumps only.

`export_hsg(zoo, folder)` writes a `Zoo` as a ray folder the publishers' loaders read (state_dicts that
`torch.load(..., weights_only=True)` accepts, `result.json` lines with the config, `params.json`,
`progress.csv`), with the module indices of their `def_net.MLP` / `def_net.CNN` for each model's
dropout. The `optimizer` files are not written (no loader reads them).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from typing import Any, Iterable

import numpy as np

from wsl_jax import outputs
from wsl_jax.weights import nets
from wsl_jax.zoo import io as zoo_io
from wsl_jax.zoo import torchfile
from wsl_jax.zoo.core import Zoo
from wsl_jax.zoo.io import ZooFormatError
from wsl_jax.zoo.train import CONTINUOUS_HPARAMS

# HSG `model::nlin` -> wsl_jax activation (silu, elu, celu have no wsl_jax forward pass; kept as names).
ACTIVATIONS = {"leakyrelu": "leaky_relu", "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu",
               "silu": "silu", "elu": "elu", "celu": "celu"}
CONFIG_HPARAMS = {"model::nlin": "activation", "model::init_type": "init", "model::dropout": "dropout",
                  "optim::optimizer": "optimizer", "optim::lr": "lr", "optim::wd": "wd",
                  "optim::momentum": "momentum", "seed": "seed"}
ARCHITECTURE_KEYS = ("model::type", "model::channels_in", "model::i_dim", "model::h_dim", "model::o_dim",
                     "model::use_bias")  # describe the net: in meta["config"], not hparams
# ray's bookkeeping columns of result.json: not properties of a model
RAY_COLUMNS = {"time_this_iter_s", "time_total_s", "timestamp", "pid", "time_since_restore",
               "timesteps_since_restore", "iterations_since_restore", "timesteps_total", "episodes_total",
               "done", "episode_reward_mean", "date", "hostname", "node_ip", "experiment_id", "trial_id",
               "warmup_time", "experiment_tag", "should_checkpoint", "checkpoint_dir_name"}
INPUT_SIZES = (28, 32, 64, 96)
POOL_PATTERNS = {"all_but_last": ("CNN", "CNN2"), "all": ("CNN3",)}
DATASET_NAMES = ("fashion", "f-mnist", "mnist", "cifar100", "cifar10", "svhn", "usps", "stl", "tetris",
                 "tiny-imagenet")
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
_STATE_KEY = re.compile(r"^module_list\.(\d+)\.(weight|bias)$")


# ---- state_dicts <-> flat vectors ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModuleLayer:
  """One weight-carrying module of an HSG `module_list`."""

  index: int
  weight: np.ndarray
  bias: np.ndarray | None


def state_dict_layers(state: Any, source: str) -> list[ModuleLayer]:
  """The weight-carrying modules of an HSG state_dict, by increasing module index."""
  if not isinstance(state, dict):
    raise ZooFormatError(f"{source}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
  modules: dict[int, dict[str, np.ndarray]] = {}
  for key, value in state.items():
    match = _STATE_KEY.match(str(key))
    if match is None:
      raise ZooFormatError(f"{source}: unexpected key {key!r}; HSG state_dicts hold module_list.<i>.weight "
                           "and .bias only (batch-norm and other modules are not supported)")
    if not isinstance(value, np.ndarray):
      raise ZooFormatError(f"{source}: {key} is not a tensor")
    modules.setdefault(int(match[1]), {})[match[2]] = value
  layers = []
  for index in sorted(modules):
    weight, bias = modules[index].get("weight"), modules[index].get("bias")
    if weight is None or weight.ndim not in (2, 4):
      raise ZooFormatError(f"{source}: module_list.{index} needs a 2-d (linear) or 4-d (conv) weight")
    if bias is not None and bias.shape != (weight.shape[0],):
      raise ZooFormatError(f"{source}: module_list.{index}.bias has shape {bias.shape}, expected "
                           f"({weight.shape[0]},)")
    layers.append(ModuleLayer(index, weight, bias))
  if not layers:
    raise ZooFormatError(f"{source}: the state_dict holds no module_list weights")
  return layers


def flatten_layers(layers: list[ModuleLayer], net: nets.NetSpec, source: str) -> np.ndarray:
  """The canonical flat vector (float32 (N,)) of `layers`, checked against `net`'s layout."""
  layout = net.layout()
  if len(layers) != layout.num_layers:
    raise ZooFormatError(f"{source}: {len(layers)} weight modules (module_list {[l.index for l in layers]}), "
                         f"the architecture has {layout.num_layers} layers")
  parts = []
  for l, (layer, spec) in enumerate(zip(layers, layout.layers)):
    if layer.weight.shape != spec.weight_shape or (layer.bias is not None) != spec.bias:
      raise ZooFormatError(f"{source}: module_list.{layer.index} has weight {layer.weight.shape} and "
                           f"{'a' if layer.bias is not None else 'no'} bias; layer {l} of the architecture "
                           f"expects {spec.weight_shape} and {'a' if spec.bias else 'no'} bias")
    parts.append(layer.weight.reshape(-1))
    if layer.bias is not None:
      parts.append(layer.bias)
  return np.concatenate(parts).astype(np.float32)


def infer_net(layers: list[ModuleLayer], config: dict[str, Any] | None = None,
              source: str = "state_dict") -> nets.NetSpec:
  """The `NetSpec` whose layout matches the layers' shapes (see the module docstring)."""
  config = config or {}
  kinds = ["conv" if l.weight.ndim == 4 else "dense" for l in layers]
  if "conv" in kinds[kinds.index("dense") if "dense" in kinds else len(kinds):]:
    raise ZooFormatError(f"{source}: a conv layer after a linear layer is not supported")
  biases = {l.bias is not None for l in layers}
  if len(biases) != 1:
    raise ZooFormatError(f"{source}: some layers have a bias and some do not; not supported")
  bias = biases.pop()
  convs = [l.weight for l in layers if l.weight.ndim == 4]
  dense = [l.weight for l in layers if l.weight.ndim == 2]
  if not dense:
    raise ZooFormatError(f"{source}: no linear output layer")
  hidden = tuple(w.shape[0] for w in dense[:-1])
  num_classes = dense[-1].shape[0]
  if not convs:
    return _checked(nets.NetSpec((dense[0].shape[1],), num_classes, hidden=hidden, bias=bias), layers, source)
  if any(w.shape[2] != w.shape[3] for w in convs):
    raise ZooFormatError(f"{source}: non-square conv kernels are not supported")
  model_type = str(config.get("model::type", ""))
  patterns = [p for p, types in POOL_PATTERNS.items() if model_type in types] or list(POOL_PATTERNS)
  for size in INPUT_SIZES:
    for pattern in patterns:
      blocks = tuple(nets.ConvBlock(int(w.shape[0]), int(w.shape[2]),
                                    pool=2 if pattern == "all" or k < len(convs) - 1 else 1)
                     for k, w in enumerate(convs))
      try:
        spec = nets.NetSpec((size, size, int(convs[0].shape[1])), num_classes, convs=blocks, hidden=hidden,
                            bias=bias)
      except ValueError:
        continue
      if _matches(spec, layers):
        return spec
  raise ZooFormatError(f"{source}: no CNN with input size in {INPUT_SIZES} and max-pooling after "
                       f"{' or '.join(patterns)} convs matches the layer shapes "
                       f"{[tuple(l.weight.shape) for l in layers]}; pass net=")


def _matches(spec: nets.NetSpec, layers: list[ModuleLayer]) -> bool:
  layout = spec.layout()
  return (layout.num_layers == len(layers)
          and all(l.weight.shape == s.weight_shape for l, s in zip(layers, layout.layers)))


def _checked(spec: nets.NetSpec, layers: list[ModuleLayer], source: str) -> nets.NetSpec:
  if not _matches(spec, layers):
    raise ZooFormatError(f"{source}: the layer shapes do not form an MLP")
  return spec


def vector_net(num_params: int, layer_lst: Any = None) -> nets.NetSpec:
  """The architecture of a dump's flat vectors, matched by parameter count (see the module docstring)."""
  candidates = {nets.TETRIS_MLP.layout().num_params: nets.TETRIS_MLP,
                nets.PAPER_CNN.layout().num_params: nets.PAPER_CNN}
  no_bias = dataclasses.replace(nets.PAPER_CNN, bias=False)
  candidates[no_bias.layout().num_params] = no_bias
  if num_params in candidates:
    return candidates[num_params]
  raise ZooFormatError(f"flat vectors of {num_params} parameters (layer_lst {layer_lst}) match no known HSG "
                       f"architecture ({sorted(candidates)}); pass net=")


def module_indices(net: nets.NetSpec, dropout: bool) -> list[int]:
  """`module_list` index of each layer in the publishers' `def_net.MLP` / `def_net.CNN` (CNN-s) layout.

  MLP: Linear, activation, [Dropout] per hidden layer, then the output Linear. CNN: Conv, [MaxPool],
  activation, [Dropout] per conv but the last, which is followed by activation and Flatten; then the MLP.
  """
  if net.global_pool:
    raise ValueError("HSG module lists have no global pooling: this architecture cannot be exported")
  index, out = 0, []
  for k, block in enumerate(net.convs):
    out.append(index)
    last = k == len(net.convs) - 1
    index += 1 + (block.pool > 1) + 1 + (1 if last else int(dropout))  # conv, pool, act, flatten | dropout
  for _ in net.hidden:
    out.append(index)
    index += 2 + int(dropout)
  out.append(index)
  return out


# ---- ray folders -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Trial:
  """One trial folder of a ray zoo: its config, result lines and checkpoint files by epoch."""

  name: str
  path: str
  config: dict[str, Any]
  results: tuple[dict[str, Any], ...]
  checkpoints: dict[int, str]


def checkpoint_files(trial_path: str) -> dict[int, str]:
  """epoch -> `checkpoint_<e>/checkpoints` path (`checkpoint_<e>` wins over `checkpoint_<e:06d>`, as the
  publishers' loader tries it first)."""
  found: dict[int, str] = {}
  for entry in sorted(os.listdir(trial_path), key=len):
    match = _CHECKPOINT_DIR.match(entry)
    path = os.path.join(trial_path, entry, "checkpoints")
    if match and os.path.isfile(path):
      found.setdefault(int(match[1]), path)
  return dict(sorted(found.items()))


def read_result_lines(path: str) -> tuple[dict[str, Any], ...]:
  """The JSON lines of a ray `result.json` (empty lines skipped)."""
  lines = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        try:
          lines.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise ZooFormatError(f"{path} line {number} is not JSON: {e}") from e
  return tuple(lines)


def read_trial(path: str) -> Trial:
  """A trial folder's config (params.json, else config.json, else result.json's first `config`)."""
  config: dict[str, Any] = {}
  for name in ("params.json", "config.json"):
    file = os.path.join(path, name)
    if os.path.isfile(file):
      try:
        with open(file) as f:
          config = json.load(f)
      except json.JSONDecodeError as e:
        raise ZooFormatError(f"{file} is not valid JSON: {e}") from e
      break
  result = os.path.join(path, "result.json")
  results = read_result_lines(result) if os.path.isfile(result) else ()
  if not config and results and isinstance(results[0].get("config"), dict):
    config = results[0]["config"]
  return Trial(os.path.basename(path), path, dict(config), results, checkpoint_files(path))


def is_trial(path: str) -> bool:
  if not os.path.isdir(path):
    return False
  names = os.listdir(path)
  has_meta = any(n in names for n in ("params.json", "config.json", "result.json"))
  return has_meta and any(_CHECKPOINT_DIR.match(n) for n in names)


def find_trials(folder: str) -> list[str]:
  """The trial folders of a ray zoo folder, sorted by name."""
  if not os.path.isdir(folder):
    raise ZooFormatError(f"no HSG zoo at {folder}: the folder does not exist")
  return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if is_trial(os.path.join(folder, n))]


def result_line(trial: Trial, epoch: int) -> dict[str, Any] | None:
  """The result.json line of checkpoint `epoch`: line e - 1, or line e when checkpoint_0 exists."""
  index = epoch if 0 in trial.checkpoints else epoch - 1
  return trial.results[index] if 0 <= index < len(trial.results) else None


def _number(value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return math.nan
  return float(value)


def _property_names(lines: Iterable[dict[str, Any]]) -> list[str]:
  names = set()
  for line in lines:
    names.update(k for k, v in line.items() if k not in RAY_COLUMNS and _is_number(v))
  return sorted(names)


def properties_from_lines(lines: list[list[dict[str, Any] | None]], epochs: list[int]) -> dict[str, np.ndarray]:
  """(M, E) float32 properties from per-model, per-checkpoint result lines (None: missing -> NaN)."""
  names = _property_names(line for row in lines for line in row if line)
  props = {name: np.asarray([[_number((line or {}).get(name)) for line in row] for row in lines],
                            np.float64).astype(np.float32) for name in names}
  if "train_acc" in props and "test_acc" in props:
    props["ggap"] = (props["train_acc"] - props["test_acc"]).astype(np.float32)
  props["epoch"] = np.broadcast_to(np.asarray(epochs, np.int32), (len(lines), len(epochs))).copy()
  return props


def hparam_array(name: str, values: list[Any]) -> np.ndarray:
  """Typed (M,) array: continuous hparams float32, seeds int64, else int / float / str as the values allow."""
  if name in CONTINUOUS_HPARAMS and all(_is_number(v) for v in values):
    return np.asarray(values, np.float64).astype(np.float32)
  if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
    return np.asarray(values, np.int64)
  if all(_is_number(v) for v in values):
    return np.asarray(values, np.float64)
  return np.asarray(["" if v is None else str(v) for v in values], dtype=str)


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def hparams_from_configs(configs: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(hparams (M,), architecture config) from per-model configs; scalar keys only."""
  keys = sorted({k for c in configs for k, v in c.items() if v is None or isinstance(v, (bool, int, float, str))})
  hparams, architecture = {}, {}
  for key in keys:
    values = [c.get(key) for c in configs]
    if key in ARCHITECTURE_KEYS:
      architecture[key] = [json.loads(v) for v in sorted({json.dumps(v) for v in values})]
      continue
    name = CONFIG_HPARAMS.get(key, key)
    if name == "activation":
      values = [ACTIVATIONS.get(str(v).lower(), str(v)) for v in values]
    hparams[name] = hparam_array(name, values)
  return hparams, architecture


def guess_dataset(*texts: str) -> str:
  """The data set a path or config names (mnist, fashion, cifar10, ...), else "unknown"."""
  for text in texts:
    low = str(text).lower()
    for name in DATASET_NAMES:
      if name in low:
        return {"f-mnist": "fashion", "fashion": "fashion"}.get(name, name)
  return "unknown"


def _common_epochs(epoch_sets: list[tuple[int, ...]], epochs: Iterable[int] | None) -> tuple[int, ...]:
  if epochs is not None:
    return tuple(sorted(int(e) for e in epochs))
  return Counter(epoch_sets).most_common(1)[0][0]


def _diverged(weights: np.ndarray, props: dict[str, np.ndarray]) -> np.ndarray:
  finite = np.isfinite(weights).all(axis=(1, 2))
  for name in ("test_acc", "train_acc"):
    values = props.get(name)
    if values is not None and not np.isnan(values).all():
      finite &= np.isfinite(values).all(axis=1)
  return ~finite


def load_ray_folder(folder: str, net: nets.NetSpec | None = None, dataset: str | None = None,
                    epochs: Iterable[int] | None = None) -> Zoo:
  """Read an HSG ray zoo folder into a `Zoo` (see the module docstring).

  Args:
    folder: the zoo folder, holding one folder per trial.
    net: the architecture (default: inferred from the first checkpoint, `infer_net`).
    dataset: data set name (default: guessed from the folder name and config, `guess_dataset`).
    epochs: the checkpoints to read (default: the most common set among the trials); trials that lack one
      are dropped.
  """
  paths = find_trials(folder)
  if not paths:
    raise ZooFormatError(f"{folder} holds no HSG trial folders (a folder with params.json, config.json or "
                         "result.json and checkpoint_<e>/checkpoints)")
  trials = [read_trial(p) for p in paths]
  chosen = _common_epochs([tuple(t.checkpoints) for t in trials], epochs)
  kept = [t for t in trials if set(chosen) <= set(t.checkpoints)]
  dropped = [t.name for t in trials if not set(chosen) <= set(t.checkpoints)]
  if not kept:
    raise ZooFormatError(f"{folder}: no trial has checkpoints for epochs {list(chosen)}")
  weights, index_sets = [], set()
  for t in kept:
    rows = []
    for e in chosen:
      source = t.checkpoints[e]
      layers = state_dict_layers(torchfile.load(source), source)
      if net is None:
        net = infer_net(layers, t.config, source)
      index_sets.add(tuple(l.index for l in layers))
      rows.append(flatten_layers(layers, net, source))
    weights.append(rows)
  weights = np.asarray(weights, np.float32)
  props = properties_from_lines([[result_line(t, e) for e in chosen] for t in kept], list(chosen))
  hparams, architecture = hparams_from_configs([t.config for t in kept])
  meta = {"source": "hsg", "folder": os.path.abspath(folder), "trials": [t.name for t in kept],
          "dropped_models": dropped, "module_indices": sorted(list(s) for s in index_sets),
          "config": architecture}
  dataset = dataset or guess_dataset(os.path.basename(os.path.abspath(folder)), json.dumps(kept[0].config))
  return Zoo(weights=weights, epochs=np.asarray(chosen, np.int32), properties=props, hparams=hparams, net=net,
             dataset=dataset, diverged=_diverged(weights, props), meta=json.loads(json.dumps(meta)))


# ---- .pt dataset dumps ----------------------------------------------------------------------------

SPLIT_SETS = {"train": "trainset", "val": "valset", "test": "testset"}


def _attr(obj: Any, name: str, source: str) -> Any:
  if isinstance(obj, torchfile.Record):
    if name in obj.attrs:
      return obj.attrs[name]
  elif isinstance(obj, dict) and name in obj:
    return obj[name]
  raise ZooFormatError(f"{source}: the dataset object has no attribute {name!r} (has "
                       f"{sorted(obj.attrs if isinstance(obj, torchfile.Record) else obj)})")


def _sample_vector(sample: Any, net: nets.NetSpec | None, source: str) -> tuple[np.ndarray, nets.NetSpec | None]:
  if isinstance(sample, dict):
    layers = state_dict_layers(sample, source)
    net = net or infer_net(layers, source=source)
    return flatten_layers(layers, net, source), net
  if isinstance(sample, np.ndarray) and sample.ndim in (1, 2) and (sample.ndim == 1 or 1 in sample.shape):
    return sample.reshape(-1).astype(np.float32), net
  raise ZooFormatError(f"{source}: a data_in entry is a {type(sample).__name__} "
                       f"{getattr(sample, 'shape', '')}; expected a flat weight vector or a state_dict")


@dataclasses.dataclass(frozen=True)
class DumpSet:
  """One of a dump's datasets, per sample: weights, model path, epoch, properties."""

  weights: np.ndarray  # (S, N)
  paths: list[str]
  epochs: list[int]
  properties: dict[str, list[Any]]
  layer_lst: Any


def read_dump_set(obj: Any, source: str, net: nets.NetSpec | None) -> tuple[DumpSet, nets.NetSpec | None]:
  data_in = list(_attr(obj, "data_in", source))
  paths = [str(p) for p in _attr(obj, "paths", source)]
  epochs = [int(e) for e in _attr(obj, "epochs", source)]
  properties = _attr(obj, "properties", source) or {}
  if not (len(data_in) == len(paths) == len(epochs)):
    raise ZooFormatError(f"{source}: data_in ({len(data_in)}), paths ({len(paths)}) and epochs ({len(epochs)}) "
                         "differ in length")
  for key, values in properties.items():
    if len(values) != len(data_in):
      raise ZooFormatError(f"{source}: property {key!r} has {len(values)} values for {len(data_in)} samples")
  rows = []
  for sample in data_in:
    row, net = _sample_vector(sample, net, source)
    rows.append(row)
  if len({len(r) for r in rows}) > 1:
    raise ZooFormatError(f"{source}: the samples have different lengths {sorted({len(r) for r in rows})}")
  weights = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
  layer_lst = obj.get("layer_lst") if isinstance(obj, (torchfile.Record, dict)) else None
  return DumpSet(weights, paths, epochs, {str(k): list(v) for k, v in properties.items()}, layer_lst), net


def _scalar(value: Any) -> Any:
  if isinstance(value, np.ndarray) and value.size == 1:
    return value.reshape(()).item()
  if isinstance(value, np.generic):
    return value.item()
  return value


def load_dump(path: str, net: nets.NetSpec | None = None, dataset: str | None = None,
              epochs: Iterable[int] | None = None) -> Zoo:
  """Read an HSG `.pt` dataset dump into a `Zoo`, with the dump's split in `zoo.meta["split"]`.

  Samples are grouped into models by `paths` (models in order of first appearance, train then val then
  test), each model's checkpoints ordered by epoch; models lacking one of the common epochs are dropped.
  Properties whose values are constant per model and non-numeric, or named like a config key (`a::b`,
  `seed`), become hparams.
  """
  source = os.fspath(path)
  top = torchfile.load(source)
  if not isinstance(top, dict) or not any(v in top for v in SPLIT_SETS.values()):
    raise ZooFormatError(f"{source}: an HSG dataset dump is a dict with trainset / valset / testset, got "
                         f"{type(top).__name__} {sorted(top) if isinstance(top, dict) else ''}")
  sets = {}
  for split, key in SPLIT_SETS.items():
    if key in top and top[key] is not None:
      sets[split], net = read_dump_set(top[key], f"{source}[{key!r}]", net)
  if net is None:
    n = next(s.weights.shape[1] for s in sets.values() if s.weights.size)
    net = vector_net(n, next(iter(sets.values())).layer_lst)
  order: list[tuple[str, str]] = []  # (split, model path)
  samples: dict[tuple[str, str], dict[int, tuple[str, int]]] = {}
  for split, ds in sets.items():
    for k, (p, e) in enumerate(zip(ds.paths, ds.epochs)):
      if (split, p) not in samples:
        order.append((split, p))
        samples[(split, p)] = {}
      samples[(split, p)][e] = (split, k)
  chosen = _common_epochs([tuple(sorted(samples[m])) for m in order], epochs)
  kept = [m for m in order if set(chosen) <= set(samples[m])]
  dropped = [m[1] for m in order if not set(chosen) <= set(samples[m])]
  if not kept:
    raise ZooFormatError(f"{source}: no model has samples for epochs {list(chosen)}")
  weights = np.asarray([[sets[samples[m][e][0]].weights[samples[m][e][1]] for e in chosen] for m in kept],
                       np.float32)
  if weights.shape[2] != net.layout().num_params:
    raise ZooFormatError(f"{source}: samples have {weights.shape[2]} parameters, the architecture "
                         f"{net.layout().num_params}")
  def value(model: tuple[str, str], epoch: int, name: str) -> Any:
    split, k = samples[model][epoch]
    values = sets[split].properties.get(name)
    return None if values is None else _scalar(values[k])

  names = sorted({k for ds in sets.values() for k in ds.properties})
  props, per_model = {}, {}
  for name in names:
    values = [[value(m, e, name) for e in chosen] for m in kept]
    constant = all(len({json.dumps(v, default=str) for v in row}) == 1 for row in values)
    numeric = all(_is_number(v) for row in values for v in row)
    if constant and ("::" in name or name in CONFIG_HPARAMS or not numeric):
      per_model[name] = [row[0] for row in values]
    elif numeric:
      props[name] = np.asarray(values, np.float64).astype(np.float32)
  if "ggap" not in props and "train_acc" in props and "test_acc" in props:
    props["ggap"] = (props["train_acc"] - props["test_acc"]).astype(np.float32)
  props["epoch"] = np.broadcast_to(np.asarray(chosen, np.int32), weights.shape[:2]).copy()
  hparams, architecture = hparams_from_configs([{k: v[i] for k, v in per_model.items()} for i in range(len(kept))])
  split = {s: [i for i, m in enumerate(kept) if m[0] == s] for s in SPLIT_SETS}
  meta = {"source": "hsg_dump", "file": os.path.abspath(source), "models": [m[1] for m in kept],
          "dropped_models": dropped, "split": split, "config": architecture}
  dataset = dataset or guess_dataset(os.path.basename(source), kept[0][1])
  return Zoo(weights=weights, epochs=np.asarray(chosen, np.int32), properties=props, hparams=hparams, net=net,
             dataset=dataset, diverged=_diverged(weights, props), meta=json.loads(json.dumps(meta)))


# ---- export -----------------------------------------------------------------------------------------

def hsg_config(zoo: Zoo, model: int) -> dict[str, Any]:
  """The HSG config (`params.json`, result.json's `config`) of one model of `zoo`."""
  net = zoo.net
  reverse = {v: k for k, v in CONFIG_HPARAMS.items()}
  activations = {v: k for k, v in ACTIVATIONS.items()}
  config: dict[str, Any] = {}
  if net.is_cnn:
    config.update({"model::type": "CNN", "model::channels_in": net.input_shape[-1]})
  else:
    config.update({"model::type": "MLP", "model::i_dim": net.input_shape[0], "model::h_dim": list(net.hidden),
                   "model::o_dim": net.num_classes, "model::use_bias": net.bias})
  for name, values in sorted(zoo.hparams.items()):
    value = np.asarray(values)[model].item()
    if name == "activation":
      value = activations.get(value, value)
    config[reverse.get(name, name)] = value
  config.setdefault("model::dropout", 0.0)
  return config


def _state_dict(zoo: Zoo, row: np.ndarray, indices: list[int]) -> dict[str, np.ndarray]:
  state = collections.OrderedDict()
  for index, p in zip(indices, zoo.layout.unflatten(np.asarray(row, np.float32))):
    state[f"module_list.{index}.weight"] = p["w"]
    if "b" in p:
      state[f"module_list.{index}.bias"] = p["b"]
  return state


def result_lines(zoo: Zoo, model: int, config: dict[str, Any]) -> list[dict[str, Any]]:
  """One result.json line per epoch (0..max with a checkpoint 0, else 1..max); NaN where the zoo has no
  checkpoint of that epoch. `training_iteration` is the epoch, which the publishers' loader checks."""
  epochs = [int(e) for e in zoo.epochs]
  column = {e: j for j, e in enumerate(epochs)}
  names = [k for k in sorted(zoo.properties) if k != "epoch"]
  lines = []
  for epoch in range(0 if 0 in column else 1, max(epochs) + 1):
    j = column.get(epoch)
    line = {k: float(zoo.properties[k][model, j]) if j is not None else math.nan for k in names}
    line.update({"training_iteration": epoch, "config": config})
    lines.append(line)
  return lines


def trial_name(model: int) -> str:
  """A ray-style trial folder name (the publishers' label parser splits on "_trainable_")."""
  return f"NN_tune_trainable_{model:05d}_{model}"


# An export also writes this marker, so that `overwrite` replaces only folders wsl_jax exported (a
# downloaded HSG zoo has the same layout and must never be replaced).
EXPORT_MARKER = "wsl_jax_export.json"
EXPORT_ENTRIES = ("NN_tune_trainable_*", EXPORT_MARKER, ".*.tmp")


def _is_our_export(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, EXPORT_MARKER))


def export_hsg(zoo: Zoo, folder: str, overwrite: bool = False) -> str:
  """Write `zoo` as an HSG ray folder (one trial per model, `checkpoint_<e:06d>/checkpoints` per epoch).

  Module indices follow the publishers' `def_net` for each model's dropout (`module_indices`); a model's
  dropout is its `dropout` hparam (0 when absent). Written to a temporary sibling and renamed into place;
  `overwrite` replaces only a folder an earlier export wrote (it holds `wsl_jax_export.json`) with nothing
  else in it.
  """
  folder = zoo_io.check_output(folder, overwrite, entries=EXPORT_ENTRIES, is_ours=_is_our_export)
  dropout = np.asarray(zoo.hparams.get("dropout", np.zeros(zoo.num_models)), np.float64)
  indices = {d: module_indices(zoo.net, d) for d in (False, True)}
  parent = os.path.dirname(folder)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(folder)}.writing-")
  try:
    outputs.apply_umask(tmp, directory=True)
    for m in range(zoo.num_models):
      trial = os.path.join(tmp, trial_name(m))
      config = hsg_config(zoo, m)
      lines = result_lines(zoo, m, config)
      os.makedirs(trial)
      with open(os.path.join(trial, "params.json"), "w") as f:
        json.dump(config, f, indent=1)
      with open(os.path.join(trial, "result.json"), "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
      _write_progress(os.path.join(trial, "progress.csv"), lines)
      for j, epoch in enumerate(zoo.epochs):
        checkpoint = os.path.join(trial, f"checkpoint_{int(epoch):06d}")
        os.makedirs(checkpoint)
        torchfile.save_state_dict(os.path.join(checkpoint, "checkpoints"),
                                  _state_dict(zoo, zoo.weights[m, j], indices[bool(dropout[m] > 0)]))
    zoo_io.atomic_write_text(os.path.join(tmp, EXPORT_MARKER), json.dumps(
        {"writer": zoo_io.WRITER, "format": "hsg", "models": zoo.num_models, "checkpoints": zoo.num_checkpoints}))
    zoo_io.finalize_folder(tmp, folder, overwrite=overwrite, entries=EXPORT_ENTRIES, is_ours=_is_our_export)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return folder


def _write_progress(path: str, lines: list[dict[str, Any]]) -> None:
  columns = [k for k in lines[0] if k != "config"] if lines else []
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    writer.writerows([[line[c] for c in columns] for line in lines])
