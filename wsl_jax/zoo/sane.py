"""SANE's preprocessed samples (Schürholt et al., ICML 2024), read without PyTorch.

A SANE dataset folder holds, per split, `dataset_torch.<split>/sample_<i>.pt` (each `{"w": tokens (T, D),
"m": mask (T, D), "p": positions (T, 3) = (sequence index, layer, unit), "props": (K,)}`),
`dataset_info_<split>.json` (`properties` names the K props, `epoch_list`, `num_samples`, `supersample`,
`windowsize`, `standardize`, ...) and `dataset_normalization_<split>.json` (per weight key `{"mean", "std"}`
and `"mode"`).

What a sample is (from the publishers' preprocessing): one checkpoint (model x epoch, model-major:
sample i is checkpoint `i mod num_samples`, model `c // len(epoch_list)`, epoch `epoch_list[c % E]`),
*tokenized*: per weight module, each unit's row (its incoming weights in PyTorch order, then its bias) is
cut into tokens of D values and zero-padded; the weights were normalized per layer within the split
("standardize": (w - mean) / std of the layer; "l2_ind" / "minmax": per checkpoint or with statistics that
are not stored), possibly cast to float16, and, when `windowsize` is smaller than the sequence, only a
random window of tokens was written (`supersample` windows per checkpoint).

So `load_samples(folder)` returns exactly what is stored (`SaneSplit`: tokens, mask, positions, props,
info, normalization), and `load_sane(folder)` returns a `Zoo` only where that is faithful:

* every sample holds the whole token sequence (no windows), so the network can be rebuilt: the tokens of
  layer l, in sequence order, are the rows of `Layout.unit_index(l)` (weights in canonical order, then
  the bias) -- the inverse of SANE's tokenization;
* the normalization is invertible: "standardize" with its stored per-layer mean / std, or none. A folder
  normalized with "l2_ind" or "minmax" raises, unless `keep_normalized=True`, which returns the normalized
  weights (flagged in `zoo.meta["weights_normalized"]`);
* float16 tokens give float16-rounded weights (`meta["token_dtype"]`), permuted or canonicalized samples
  (`permutation_number`, `map_to_canonical`) give the permuted networks SANE stored: same functions,
  other weights.

The samples carry no hyper-parameters and no architecture: `net` is matched from the token structure
(units and row length per layer) against the paper's CNN (CNN-s) on 28x28 or 32x32 inputs with 1 or 3
channels and the TETRIS MLP, or passed as `net=`; `activation` is needed to run the networks and is
only set when passed. The splits are SANE's own (`zoo.meta["split"]`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import numpy as np

from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layout
from wsl_jax.zoo import torchfile
from wsl_jax.zoo.core import Zoo
from wsl_jax.zoo.hsg import guess_dataset
from wsl_jax.zoo.io import ZooFormatError

SPLIT_ORDER = ("train", "val", "test")
_SPLIT_DIR = re.compile(r"^dataset_torch\.(\w+)$")
_SAMPLE = re.compile(r"^sample_(\d+)\.pt$")


class SaneFormatError(ZooFormatError):
  """A SANE folder cannot be read, or cannot be turned into a faithful `Zoo`."""


@dataclasses.dataclass(frozen=True)
class SaneSplit:
  """The stored samples of one split: tokens (S, T, D), mask (S, T, D) bool, positions (S, T, 3),
  properties name -> (S,), and the split's info and normalization JSON."""

  name: str
  tokens: np.ndarray
  mask: np.ndarray
  positions: np.ndarray
  properties: dict[str, np.ndarray]
  info: dict[str, Any]
  normalization: dict[str, Any]


def split_names(folder: str) -> list[str]:
  """The splits of a SANE folder (train, val, test first)."""
  if not os.path.isdir(folder):
    raise SaneFormatError(f"no SANE dataset at {folder}: the folder does not exist")
  names = [m[1] for n in os.listdir(folder) if (m := _SPLIT_DIR.match(n)) and os.path.isdir(os.path.join(folder, n))]
  return sorted(names, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))


def _read_json(path: str) -> dict[str, Any]:
  if not os.path.isfile(path):
    raise SaneFormatError(f"{path} is missing: a SANE split has dataset_info_<split>.json and "
                          "dataset_normalization_<split>.json beside dataset_torch.<split>")
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise SaneFormatError(f"{path} is not valid JSON: {e}") from e


def _sample_arrays(sample: Any, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  if not isinstance(sample, dict) or not {"w", "m", "p", "props"} <= set(sample):
    raise SaneFormatError(f"{path}: a SANE sample is a dict with w, m, p, props; got "
                          f"{sorted(sample) if isinstance(sample, dict) else type(sample).__name__}")
  arrays = [np.asarray(sample[k]) for k in ("w", "m", "p", "props")]
  w, m, p, props = arrays
  if w.ndim != 2 or m.shape != w.shape or p.shape != (w.shape[0], 3) or props.ndim != 1:
    raise SaneFormatError(f"{path}: shapes w {w.shape}, m {m.shape}, p {p.shape}, props {props.shape}; "
                          "expected (T, D), (T, D), (T, 3), (K,)")
  return w, m.astype(bool), p.astype(np.int64), props


def read_split(folder: str, split: str) -> SaneSplit:
  """All samples of one split, stacked, with its info and normalization."""
  directory = os.path.join(folder, f"dataset_torch.{split}")
  files = sorted(((int(m[1]), n) for n in os.listdir(directory) if (m := _SAMPLE.match(n))))
  if not files:
    raise SaneFormatError(f"{directory} holds no sample_<i>.pt files")
  if [i for i, _ in files] != list(range(len(files))):
    raise SaneFormatError(f"{directory}: sample indices are not 0..{len(files) - 1}")
  info = _read_json(os.path.join(folder, f"dataset_info_{split}.json"))
  normalization = _read_json(os.path.join(folder, f"dataset_normalization_{split}.json"))
  samples = [_sample_arrays(torchfile.load(os.path.join(directory, n)), os.path.join(directory, n)) for _, n in files]
  shapes = {tuple(s[0].shape) for s in samples}
  if len(shapes) > 1:
    raise SaneFormatError(f"{directory}: samples have different token shapes {sorted(shapes)}")
  names = list(info.get("properties") or [])
  props = np.stack([s[3] for s in samples]).astype(np.float64)
  if names and props.shape[1] != len(names):
    raise SaneFormatError(f"{directory}: samples hold {props.shape[1]} props, dataset_info lists {names}")
  names = names or [f"prop_{k}" for k in range(props.shape[1])]
  return SaneSplit(split, np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples]),
                   np.stack([s[2] for s in samples]), {n: props[:, k] for k, n in enumerate(names)}, info,
                   normalization)


def load_samples(folder: str) -> dict[str, SaneSplit]:
  """Every split of a SANE folder as stored (tokens, mask, positions, properties, info, normalization)."""
  names = split_names(folder)
  if not names:
    raise SaneFormatError(f"{folder} holds no dataset_torch.<split> folders")
  return {s: read_split(folder, s) for s in names}


# ---- tokens -> networks ------------------------------------------------------------------------------

def token_structure(split: SaneSplit) -> list[tuple[int, int]]:
  """(units, row length = weights + bias) of every layer, from the first sample's positions and mask."""
  pos, mask = split.positions[0], split.mask[0]
  out = []
  for layer in np.unique(pos[:, 1]):
    sel = pos[:, 1] == layer
    units = np.unique(pos[sel, 2])
    out.append((len(units), int(mask[sel].sum()) // len(units)))
  return out


def full_sequences(split: SaneSplit) -> bool:
  """Whether every sample holds the whole token sequence (no WindowCutter windows)."""
  total = split.info.get("max_positions", [split.positions.shape[1] - 1])[0] + 1
  return split.positions.shape[1] == total and bool(
      (split.positions[:, :, 0] == np.arange(split.positions.shape[1])).all())


def candidate_nets() -> list[nets.NetSpec]:
  """The architectures a SANE folder is matched against (`net=` for others)."""
  out = [nets.TETRIS_MLP]
  for size in (28, 32):
    for channels in (1, 3):
      out.append(dataclasses.replace(nets.PAPER_CNN, input_shape=(size, size, channels)))
  return out


def layout_structure(layout: Layout) -> list[tuple[int, int]]:
  return [(l.out_units, l.fan_in + int(l.bias)) for l in layout.layers]


def match_net(structure: list[tuple[int, int]], net: nets.NetSpec | None, source: str) -> nets.NetSpec:
  """`net` if its layout has this token structure, else the first matching candidate."""
  for spec in ([net] if net is not None else candidate_nets()):
    if layout_structure(spec.layout()) == structure:
      return spec
  raise SaneFormatError(f"{source}: the tokens describe layers (units, weights + bias) {structure}, which "
                        f"{'the given net does not have' if net is not None else 'match no known architecture'}"
                        "; pass net=")


def detokenize(tokens: np.ndarray, positions: np.ndarray, layout: Layout) -> np.ndarray:
  """The flat canonical vector (N,) of one full token sequence: the inverse of SANE's tokenization."""
  flat = np.zeros(layout.num_params, np.float32)
  for l in range(layout.num_layers):
    sel = np.flatnonzero(positions[:, 1] == l)
    sel = sel[np.argsort(positions[sel, 0], kind="stable")]
    index = layout.unit_index(l)
    rows = tokens[sel].reshape(index.shape[0], -1)  # a unit's tokens are consecutive
    if not (positions[sel, 2].reshape(index.shape[0], -1) == np.arange(index.shape[0])[:, None]).all():
      raise SaneFormatError(f"layer {l}: token positions do not list units in order")
    flat[index] = rows[:, :index.shape[1]]
  return flat


def normalization_mode(split: SaneSplit) -> str | None:
  """"standardize", "minmax", "l2_ind", ... or None (raw weights)."""
  mode = split.normalization.get("mode")
  standardize = split.info.get("standardize", mode is not None)
  if mode is None and standardize not in (False, None):
    return "standardize" if standardize is True else str(standardize)
  return mode


def denormalize(flat: np.ndarray, layout: Layout, split: SaneSplit) -> np.ndarray:
  """Undo "standardize": layer l's weights and bias times its std plus its mean (stored per weight key,
  in layer order)."""
  stats = [v for k, v in split.normalization.items() if k != "mode" and "weight" in k and isinstance(v, dict)]
  if len(stats) != layout.num_layers:
    raise SaneFormatError(f"dataset_normalization_{split.name}.json has statistics for {len(stats)} layers, "
                          f"the network has {layout.num_layers}")
  out = flat.astype(np.float64)
  for l, s in enumerate(stats):
    part = layout.layer_slice(l)
    out[part] = out[part] * float(s["std"]) + float(s["mean"])
  return out.astype(np.float32)


def _checkpoints(split: SaneSplit, source: str) -> tuple[int, list[int]]:
  """(checkpoints in the split, epoch list), checked against the samples and the epoch property."""
  epochs = [int(e) for e in split.info.get("epoch_list") or [0]]
  count = int(split.info.get("num_samples", split.tokens.shape[0]))
  if count > split.tokens.shape[0] or count % len(epochs):
    raise SaneFormatError(f"{source}: num_samples {count} with {split.tokens.shape[0]} samples and "
                          f"{len(epochs)} epochs does not lay out models x epochs")
  iteration = split.properties.get("training_iteration")
  if iteration is not None and not np.array_equal(iteration[:count], np.tile(epochs, count // len(epochs))):
    raise SaneFormatError(f"{source}: the samples' training_iteration is not epoch_list repeated per model, so "
                          "the model of each sample is unknown (models with missing epochs?)")
  return count, epochs


def load_sane(folder: str, net: nets.NetSpec | None = None, dataset: str | None = None,
              activation: str | None = None, keep_normalized: bool = False) -> Zoo:
  """A `Zoo` of the networks a SANE folder stores, where that is faithful (see the module docstring)."""
  splits = load_samples(folder)
  weights, properties, epochs, ranges, meta_splits = [], {}, None, {}, {}
  modes = set()
  for name, split in splits.items():
    source = os.path.join(folder, f"dataset_torch.{name}")
    if not full_sequences(split):
      raise SaneFormatError(f"{source}: samples hold windows of {split.tokens.shape[1]} tokens (windowsize "
                            f"{split.info.get('windowsize')}), not whole networks; the networks cannot be rebuilt. "
                            "Use wsl_jax.zoo.sane.load_samples for the tokens as stored")
    net = match_net(token_structure(split), net, source)
    layout = net.layout()
    count, split_epochs = _checkpoints(split, source)
    if epochs is not None and split_epochs != epochs:
      raise SaneFormatError(f"{source}: epoch_list {split_epochs} differs from the other splits' {epochs}")
    epochs = split_epochs
    mode = normalization_mode(split)
    modes.add(mode)
    flat = np.stack([detokenize(split.tokens[i].astype(np.float32), split.positions[i], layout)
                     for i in range(count)])
    if mode == "standardize":
      flat = np.stack([denormalize(f, layout, split) for f in flat])
    elif mode is not None and not keep_normalized:
      raise SaneFormatError(f"{source}: weights normalized with {mode!r}, whose statistics SANE does not store; "
                            "pass keep_normalized=True for the normalized weights")
    models = count // len(epochs)
    weights.append(flat.reshape(models, len(epochs), -1))
    for key, values in split.properties.items():
      properties.setdefault(key, []).append(values[:count].reshape(models, len(epochs)))
    start = sum(w.shape[0] for w in weights[:-1])
    ranges[name] = list(range(start, start + models))
    meta_splits[name] = {k: split.info.get(k) for k in ("num_samples", "supersample", "windowsize", "standardize",
                                                        "map_to_canonical", "permutation_number", "zoo_path")}
  if {len(p) for p in properties.values()} != {len(splits)}:
    raise SaneFormatError(f"{folder}: the splits hold different property names")
  zoo_weights = np.concatenate(weights).astype(np.float32)
  props = {k: np.concatenate(v).astype(np.float32) for k, v in properties.items()}
  props["epoch"] = np.broadcast_to(np.asarray(epochs, np.int32), zoo_weights.shape[:2]).copy()
  hparams = {} if activation is None else {"activation": np.full(zoo_weights.shape[0], activation)}
  first = next(iter(splits.values()))
  normalized = sorted(str(m) for m in modes if m not in (None, "standardize"))
  meta = {"source": "sane", "folder": os.path.abspath(folder), "split": ranges, "sane": meta_splits,
          "weights_normalized": normalized or None, "token_dtype": str(first.tokens.dtype),
          "tokensize": int(first.tokens.shape[2])}
  finite = np.isfinite(zoo_weights).all(axis=(1, 2))
  return Zoo(weights=zoo_weights, epochs=np.asarray(epochs, np.int32), properties=props, hparams=hparams, net=net,
             dataset=dataset or guess_dataset(str(first.info.get("zoo_path", "")), os.path.basename(folder)),
             diverged=~finite, meta=json.loads(json.dumps(meta)))
