"""`Layout`: the description of a flat weight vector.

Every part of wsl_jax that reads or writes a flat weight vector (zoo networks, permutations, tokenizers,
weight statistics, converters from other formats) derives its offsets from a `Layout`; nothing else
hard-codes them.

Canonical order, layer after layer, as the original PyTorch code vectorised its checkpoints:

* dense layer: weight `(out, in)` row-major, so each unit's incoming weights are contiguous, then the
  bias `(out,)` if the layer has one;
* conv layer: weight `(out, in, kh, kw)` row-major (PyTorch OIHW), so each output channel's kernel is
  contiguous, then the bias.

A dense layer that consumes a flattened conv output (channel-major flatten, as PyTorch's `Flatten`
on NCHW) has `in_block = h * w`: its input features come in contiguous blocks of `in_block`, one block
per channel of the previous layer. Permuting that channel moves the whole block.

Example:
  >>> import numpy as np
  >>> from wsl_jax.weights.layout import Layout
  >>> layout = Layout.mlp([16, 5, 4], bias=False)
  >>> layout.num_params
  100
  >>> [p.shape for p in layout.unflatten(np.arange(100.0))[0].values()]
  [(5, 16)]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

LAYOUT_FORMAT_VERSION = 1
LAYER_KINDS = ("dense", "conv")


def positive_int(value: Any, name: str = "value") -> int:
  """`value` as an int, if it is a positive integer: a Python or NumPy int, or a float with an integral
  value (16.0). Bools, fractional numbers (5.5), zero, negative numbers and non-numbers raise a
  ValueError naming `name`; nothing is truncated."""
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be a positive integer, got the bool {value!r}")
  if isinstance(value, (int, np.integer)):
    out = int(value)
  elif isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
    out = int(value)
  else:
    raise ValueError(f"{name} must be a positive integer, got {value!r}")
  if out < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}")
  return out


@dataclasses.dataclass(frozen=True)
class Layer:
  """One dense or conv layer of a flat weight vector.

  Attributes:
    kind: "dense" or "conv".
    out_units: output units (dense) or output channels (conv).
    in_units: input features (dense) or input channels (conv).
    kernel_size: (kh, kw) for conv layers; (1, 1) for dense layers.
    bias: whether the layer has a bias vector.
    in_block: dense only: how many consecutive input features belong to one unit of the previous layer
      (h * w when the previous layer is a conv whose output is flattened channel-major, else 1).
  """

  kind: str
  out_units: int
  in_units: int
  kernel_size: tuple[int, int] = (1, 1)
  bias: bool = True
  in_block: int = 1

  def __post_init__(self):
    if not isinstance(self.kind, str) or self.kind not in LAYER_KINDS:
      raise ValueError(f"layer kind must be one of {LAYER_KINDS}, got {self.kind!r}")
    for name in ("out_units", "in_units", "in_block"):
      object.__setattr__(self, name, positive_int(getattr(self, name), f"layer {name}"))
    kernel = self.kernel_size
    if isinstance(kernel, (str, bytes)) or not isinstance(kernel, (Sequence, np.ndarray)) or len(kernel) != 2:
      raise ValueError(f"kernel_size must be two positive integers, got {kernel!r}")
    object.__setattr__(self, "kernel_size", tuple(positive_int(k, "kernel_size entry") for k in kernel))
    if not isinstance(self.bias, (bool, np.bool_)):
      raise ValueError(f"layer bias must be True or False, got {self.bias!r}")
    object.__setattr__(self, "bias", bool(self.bias))
    if self.kind == "dense" and self.kernel_size != (1, 1):
      raise ValueError(f"a dense layer has kernel_size (1, 1), got {self.kernel_size!r}")
    if self.kind == "conv" and self.in_block != 1:
      raise ValueError("in_block applies to dense layers only; a conv layer's input axis is its channels")
    if self.kind == "dense" and self.in_units % self.in_block:
      raise ValueError(f"dense in_units={self.in_units} is not a multiple of in_block={self.in_block}")

  @property
  def weight_shape(self) -> tuple[int, ...]:
    if self.kind == "dense":
      return (self.out_units, self.in_units)
    return (self.out_units, self.in_units, *self.kernel_size)

  @property
  def fan_in(self) -> int:
    """Incoming weights per unit (PyTorch's fan_in)."""
    return self.in_units * self.kernel_size[0] * self.kernel_size[1]

  @property
  def fan_out(self) -> int:
    """PyTorch's fan_out: out_units times the receptive field size."""
    return self.out_units * self.kernel_size[0] * self.kernel_size[1]

  @property
  def num_weights(self) -> int:
    return self.out_units * self.fan_in

  @property
  def num_params(self) -> int:
    return self.num_weights + (self.out_units if self.bias else 0)

  def to_dict(self) -> dict[str, Any]:
    return {"kind": self.kind, "out_units": int(self.out_units), "in_units": int(self.in_units),
            "kernel_size": list(self.kernel_size), "bias": bool(self.bias), "in_block": int(self.in_block)}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Layer:
    if not isinstance(d, dict):
      raise ValueError(f"a layer must be a dict of its fields, got {type(d).__name__}")
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"unknown layer fields {sorted(unknown)}")
    missing = [k for k in ("kind", "out_units", "in_units") if k not in d]
    if missing:
      raise ValueError(f"a layer needs the fields {missing}")
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class PermutationGroup:
  """The hidden units of one layer and every axis that moves with them.

  `moves` lists (layer index, what) pairs: ("rows", 1) for the layer's own weight rows and bias, and
  ("in", block) for the next layer's input axis, which moves in contiguous blocks of `block`.
  """

  layer: int
  size: int
  moves: tuple[tuple[int, str, int], ...]


@dataclasses.dataclass(frozen=True)
class Layout:
  """Ordered layers of a flat weight vector, with offsets and the permutation structure."""

  layers: tuple[Layer, ...]

  def __post_init__(self):
    layers = tuple(self.layers)
    object.__setattr__(self, "layers", layers)
    if not layers:
      raise ValueError("a Layout needs at least one layer")
    for i, layer in enumerate(layers):
      if not isinstance(layer, Layer):
        raise ValueError(f"layers[{i}] is a {type(layer).__name__}, not a Layer")
    for i, (prev, layer) in enumerate(zip(layers[:-1], layers[1:]), start=1):
      if layer.kind == "conv":
        if prev.kind != "conv":
          raise ValueError(f"layer {i} is a conv layer after a dense layer; the Layout supports "
                           "conv layers followed by dense layers only")
        if layer.in_units != prev.out_units:
          raise ValueError(f"layer {i} (conv) has {layer.in_units} input channels but layer {i - 1} "
                           f"has {prev.out_units} output channels")
      else:
        if layer.in_units != prev.out_units * layer.in_block:
          raise ValueError(
              f"layer {i} (dense) has {layer.in_units} inputs, but layer {i - 1} has {prev.out_units} "
              f"units and in_block={layer.in_block} ({prev.out_units} x {layer.in_block} = "
              f"{prev.out_units * layer.in_block})")
    if layers[0].in_block != 1:
      raise ValueError("the first layer reads the network input; its in_block must be 1")

  # ---- construction -------------------------------------------------------------------------------

  @classmethod
  def mlp(cls, sizes: Sequence[int], bias: bool = True) -> Layout:
    """Dense layers sizes[0] -> sizes[1] -> ... -> sizes[-1].

    Every size must be a positive integer (see `positive_int`): 5.5, True or 0 raise a ValueError.
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray)):
      raise ValueError(f"sizes must be a sequence of layer widths, got {type(sizes).__name__}")
    sizes = [positive_int(s, f"sizes[{i}]") for i, s in enumerate(sizes)]
    if len(sizes) < 2:
      raise ValueError(f"an MLP needs at least an input and an output size, got {sizes}")
    return cls(tuple(Layer("dense", o, i, bias=bias) for i, o in zip(sizes[:-1], sizes[1:])))

  # ---- sizes and offsets --------------------------------------------------------------------------

  @property
  def num_layers(self) -> int:
    return len(self.layers)

  @property
  def num_params(self) -> int:
    return sum(layer.num_params for layer in self.layers)

  @property
  def layer_offsets(self) -> tuple[int, ...]:
    """Start of each layer's block (its weights, then its bias)."""
    return tuple(int(x) for x in np.cumsum([0] + [layer.num_params for layer in self.layers])[:-1])

  def weight_slice(self, l: int) -> slice:
    start = self.layer_offsets[l]
    return slice(start, start + self.layers[l].num_weights)

  def bias_slice(self, l: int) -> slice | None:
    """Slice of layer l's bias, or None when it has no bias."""
    layer = self.layers[l]
    if not layer.bias:
      return None
    start = self.layer_offsets[l] + layer.num_weights
    return slice(start, start + layer.out_units)

  def layer_slice(self, l: int) -> slice:
    start = self.layer_offsets[l]
    return slice(start, start + self.layers[l].num_params)

  def param_layer(self) -> np.ndarray:
    """int32 (N,): the layer index of every flat position."""
    return np.repeat(np.arange(self.num_layers, dtype=np.int32), [layer.num_params for layer in self.layers])

  def param_is_bias(self) -> np.ndarray:
    """bool (N,): True where the flat position holds a bias."""
    mask = np.zeros(self.num_params, bool)
    for l in range(self.num_layers):
      s = self.bias_slice(l)
      if s is not None:
        mask[s] = True
    return mask

  def unit_index(self, l: int) -> np.ndarray:
    """int32 (out_units, fan_in + bias): flat positions of each unit's incoming weights, then its bias.

    This is the "neuron token" of layer l: row u holds unit u's weights in canonical order (for conv:
    input channel, kh, kw) followed by its bias when the layer has one.
    """
    layer = self.layers[l]
    w = self.weight_slice(l)
    rows = np.arange(w.start, w.stop, dtype=np.int32).reshape(layer.out_units, layer.fan_in)
    b = self.bias_slice(l)
    if b is None:
      return rows
    return np.concatenate([rows, np.arange(b.start, b.stop, dtype=np.int32)[:, None]], axis=1)

  # ---- validation, flatten / unflatten ------------------------------------------------------------

  def check_vector(self, w: Any, name: str = "w") -> None:
    """Raise ValueError if the last axis of `w` is not this layout's number of parameters."""
    shape = np.shape(w)
    if len(shape) == 0 or shape[-1] != self.num_params:
      raise ValueError(f"{name} has shape {tuple(shape)}, but this layout describes "
                       f"{self.num_params} parameters: expected (..., {self.num_params})")

  def unflatten(self, w: Any) -> list[dict[str, Any]]:
    """Split a flat vector `(..., N)` into per-layer {"w": (..., *weight_shape), "b": (..., out)}.

    Works on NumPy and JAX arrays (traceable: static slices and reshapes only).
    """
    self.check_vector(w)
    batch = tuple(np.shape(w)[:-1])
    params = []
    for l, layer in enumerate(self.layers):
      p = {"w": w[..., self.weight_slice(l)].reshape(batch + layer.weight_shape)}
      b = self.bias_slice(l)
      if b is not None:
        p["b"] = w[..., b]
      params.append(p)
    return params

  def flatten(self, params: Sequence[dict[str, Any]]) -> Any:
    """Inverse of `unflatten`: per-layer {"w", "b"} (leading batch axes allowed) -> `(..., N)`."""
    if len(params) != self.num_layers:
      raise ValueError(f"expected parameters for {self.num_layers} layers, got {len(params)}")
    parts = []
    batch = None
    for l, (layer, p) in enumerate(zip(self.layers, params)):
      w = p["w"]
      shape = tuple(np.shape(w))
      nd = len(layer.weight_shape)
      if shape[len(shape) - nd:] != layer.weight_shape:
        raise ValueError(f"layer {l} weight has shape {shape}, expected (..., {layer.weight_shape})")
      lead = shape[:len(shape) - nd]
      if batch is None:
        batch = lead
      elif lead != batch:
        raise ValueError(f"layer {l} has batch shape {lead}, layer 0 has {batch}")
      parts.append(w.reshape(batch + (-1,)))
      if layer.bias:
        if "b" not in p:
          raise ValueError(f"layer {l} has a bias in the layout but no 'b' entry")
        if tuple(np.shape(p["b"])) != batch + (layer.out_units,):
          raise ValueError(f"layer {l} bias has shape {np.shape(p['b'])}, expected {batch + (layer.out_units,)}")
        parts.append(p["b"])
      elif "b" in p:
        raise ValueError(f"layer {l} has no bias in the layout but a 'b' entry was given")
    if all(isinstance(x, np.ndarray) for x in parts):
      return np.concatenate(parts, axis=-1)
    import jax.numpy as jnp  # only when the inputs are JAX arrays
    return jnp.concatenate(parts, axis=-1)

  # ---- permutation structure ----------------------------------------------------------------------

  @property
  def permutable_layers(self) -> tuple[int, ...]:
    """Layers whose units may be permuted: every layer but the last (its units are the outputs)."""
    return tuple(range(self.num_layers - 1))

  @property
  def permutable_sizes(self) -> tuple[int, ...]:
    return tuple(self.layers[l].out_units for l in self.permutable_layers)

  def permutation_groups(self) -> tuple[PermutationGroup, ...]:
    """For each hidden layer: its size and the axes that move with its units."""
    groups = []
    for l in self.permutable_layers:
      nxt = self.layers[l + 1]
      groups.append(PermutationGroup(layer=l, size=self.layers[l].out_units,
                                     moves=((l, "rows", 1), (l + 1, "in", nxt.in_block))))
    return tuple(groups)

  def permutation_index(self, perms: Sequence[Any]) -> Any:
    """Flat gather map for one permutation of every hidden layer: `w_permuted = w[index]`.

    Args:
      perms: one integer array per permutable layer (`permutable_layers` order), `perms[k][i]` = the old
        unit that new unit i takes. NumPy or JAX (traced) arrays.

    Returns:
      int32 `(N,)` index map (a JAX array if any perm is one, else NumPy). Layer l's rows and bias move
      by `perms[l]`; layer l+1's input axis moves by the same permutation, in blocks of `in_block`.
    """
    if len(perms) != len(self.permutable_layers):
      raise ValueError(f"expected {len(self.permutable_layers)} permutations (one per hidden layer), "
                       f"got {len(perms)}")
    use_np = all(isinstance(p, np.ndarray) for p in perms)
    if use_np:
      xp = np
    else:
      import jax.numpy as jnp
      xp = jnp
    for k, (p, size) in enumerate(zip(perms, self.permutable_sizes)):
      if tuple(np.shape(p)) != (size,):
        raise ValueError(f"permutation {k} has shape {np.shape(p)}, expected ({size},)")
    parts = []
    for l, layer in enumerate(self.layers):
      w = self.weight_slice(l)
      idx = xp.asarray(np.arange(w.start, w.stop, dtype=np.int32).reshape(layer.weight_shape))
      row_perm = perms[l] if l < len(perms) else None
      if row_perm is not None:
        idx = idx[row_perm]
      if l > 0:
        p = perms[l - 1]
        block = layer.in_block
        col = (p[:, None] * block + xp.arange(block)[None, :]).reshape(-1) if block > 1 else p
        idx = idx[:, col]
      parts.append(idx.reshape(-1))
      b = self.bias_slice(l)
      if b is not None:
        bidx = xp.arange(b.start, b.stop, dtype=np.int32)
        parts.append(bidx[row_perm] if row_perm is not None else bidx)
    return xp.concatenate(parts).astype(np.int32)

  # ---- serialisation ------------------------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    return {"format_version": LAYOUT_FORMAT_VERSION, "num_params": self.num_params,
            "layers": [layer.to_dict() for layer in self.layers]}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Layout:
    if not isinstance(d, dict) or not isinstance(d.get("layers"), list):
      raise ValueError("a layout dict needs a 'layers' list")
    unknown = set(d) - {"format_version", "num_params", "layers"}
    if unknown:
      raise ValueError(f"unknown layout fields {sorted(unknown)}")
    version = d.get("format_version", LAYOUT_FORMAT_VERSION)
    if version != LAYOUT_FORMAT_VERSION or isinstance(version, bool):
      raise ValueError(f"layout format_version {version!r} is not supported (this code reads "
                       f"{LAYOUT_FORMAT_VERSION})")
    layers = []
    for i, x in enumerate(d["layers"]):
      try:
        layers.append(Layer.from_dict(x))
      except ValueError as e:
        raise ValueError(f"layers[{i}]: {e}") from e
    layout = cls(tuple(layers))
    if "num_params" in d and (isinstance(d["num_params"], bool) or d["num_params"] != layout.num_params):
      raise ValueError(f"layout dict says num_params={d['num_params']}, but its layers add up to "
                       f"{layout.num_params}")
    return layout

  def to_json(self) -> str:
    return json.dumps(self.to_dict())

  @classmethod
  def from_json(cls, text: str) -> Layout:
    return cls.from_dict(json.loads(text))

  def describe(self) -> str:
    """A readable table of the layers and offsets."""
    lines = [f"Layout: {self.num_layers} layers, {self.num_params} parameters"]
    for l, layer in enumerate(self.layers):
      w, b = self.weight_slice(l), self.bias_slice(l)
      extra = f", in_block={layer.in_block}" if layer.in_block > 1 else ""
      lines.append(f"  {l}: {layer.kind:5s} weight {layer.weight_shape} at {w.start}:{w.stop}"
                   + (f", bias at {b.start}:{b.stop}" if b else ", no bias") + extra)
    return "\n".join(lines)


def check_weight_rows(w: Any, name: str = "weights", num_params: int | None = None,
                      allow_empty: bool = False) -> np.ndarray:
  """`w` as a NumPy `(samples, params)` array of finite floats, or a ValueError naming `name` and the
  problem: the one check of flat-weight inputs (SSL training, baselines).

  >>> check_weight_rows(np.zeros((2, 3)), num_params=3).shape
  (2, 3)
  """
  w = np.asarray(w)
  if w.ndim != 2 or (w.shape[0] == 0 and not allow_empty):
    raise ValueError(f"{name} must be a {'' if allow_empty else 'non-empty '}(samples, params) array, "
                     f"got shape {w.shape}")
  if num_params is not None and w.shape[1] != num_params:
    raise ValueError(f"{name} has {w.shape[1]} parameters per row, expected {num_params} parameters")
  if not np.issubdtype(w.dtype, np.floating):
    raise ValueError(f"{name} must be floating point, got dtype {w.dtype}")
  if not np.isfinite(w).all():
    raise ValueError(f"{name} contains {int((~np.isfinite(w)).sum())} non-finite values (NaN or inf; diverged "
                     "models?); drop those rows first")
  return w
