"""Zoo networks as pure functions of a flat weight vector.

A `NetSpec` describes an architecture (input shape, conv blocks, dense widths, classes) and derives its
`Layout`; `apply(spec, w, x, activation)` runs the network on a batch from the flat vector `w`. Conv
layers are written as patches (im2col) + einsum: under `jax.vmap` over models the per-model kernels then
become one batched matmul instead of a grouped convolution, which on CPU is several times faster
(`jax_notes.md` §3.2).

Inputs: MLPs take `(B, features)`; CNNs take images `(B, H, W, C)`. Conv outputs are flattened channel-
major (as PyTorch flattens NCHW), so the dense layer after them has `in_block = h * w`.

Initialisers follow PyTorch's semantics, as the paper's zoo code used them (`reference.md` §1.2):
`uniform` is U(0, 1) and `normal` is N(0, 1), not scaled; biases are filled with a constant (0.01).

Example:
  >>> import jax
  >>> from wsl_jax import nets
  >>> spec = nets.TETRIS_MLP
  >>> w = nets.init_weights(jax.random.key(0), spec.layout(), "kaiming_uniform")
  >>> nets.apply(spec, w, jax.numpy.ones((3, 16)), "tanh").shape
  (3, 4)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wsl_jax.layout import Layer, Layout

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),  # PyTorch's default slope
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # PyTorch's default (erf) form
}

INITIALIZERS = ("uniform", "normal", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal")


@dataclasses.dataclass(frozen=True)
class ConvBlock:
  """One conv layer: `conv(kernel, stride, VALID)`, then an optional max-pool, then the activation."""

  out_channels: int
  kernel: int
  stride: int = 1
  pool: int = 1  # max-pool window and stride after the conv (1 = no pooling), before the activation

  def to_dict(self) -> dict[str, int]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NetSpec:
  """An architecture of a zoo: convs (optional), then dense layers, then `num_classes` logits.

  Attributes:
    input_shape: `(features,)` for an MLP, `(H, W, C)` for a CNN.
    num_classes: output logits.
    convs: conv blocks, applied first (CNN only).
    hidden: widths of the hidden dense layers.
    global_pool: after the convs, average over space (Unterthiner et al.) instead of flattening.
    bias: whether every layer has a bias.
  """

  input_shape: tuple[int, ...]
  num_classes: int
  convs: tuple[ConvBlock, ...] = ()
  hidden: tuple[int, ...] = ()
  global_pool: bool = False
  bias: bool = True

  def __post_init__(self):
    object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
    object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
    object.__setattr__(self, "convs", tuple(c if isinstance(c, ConvBlock) else ConvBlock(**c)
                                            for c in self.convs))
    if self.convs and len(self.input_shape) != 3:
      raise ValueError(f"a CNN takes (H, W, C) inputs, got input_shape={self.input_shape}")
    if not self.convs and len(self.input_shape) != 1:
      raise ValueError(f"an MLP takes (features,) inputs, got input_shape={self.input_shape}")
    if self.global_pool and not self.convs:
      raise ValueError("global_pool needs conv layers")
    self.conv_output_shapes()  # validates the spatial sizes

  @property
  def is_cnn(self) -> bool:
    return bool(self.convs)

  def conv_output_shapes(self) -> tuple[tuple[int, int, int], ...]:
    """(h, w, c) after each conv block (after its pooling)."""
    shapes = []
    if not self.convs:
      return ()
    h, w, _ = self.input_shape
    for i, c in enumerate(self.convs):
      h, w = (h - c.kernel) // c.stride + 1, (w - c.kernel) // c.stride + 1
      if h < 1 or w < 1:
        raise ValueError(f"conv block {i} (kernel {c.kernel}, stride {c.stride}) does not fit its input")
      if c.pool > 1:
        h, w = h // c.pool, w // c.pool
        if h < 1 or w < 1:
          raise ValueError(f"conv block {i}: pooling {c.pool} leaves an empty feature map")
      shapes.append((h, w, c.out_channels))
    return tuple(shapes)

  def layout(self) -> Layout:
    layers = []
    in_ch = self.input_shape[-1]
    for c in self.convs:
      layers.append(Layer("conv", c.out_channels, in_ch, (c.kernel, c.kernel), bias=self.bias))
      in_ch = c.out_channels
    if self.convs:
      h, w, ch = self.conv_output_shapes()[-1]
      block = 1 if self.global_pool else h * w
      features = ch * block
    else:
      block, features = 1, self.input_shape[0]
    for width in self.hidden + (self.num_classes,):
      layers.append(Layer("dense", width, features, bias=self.bias, in_block=block))
      block, features = 1, width
    return Layout(tuple(layers))

  def to_dict(self) -> dict[str, Any]:
    return {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "convs": [c.to_dict() for c in self.convs], "hidden": list(self.hidden),
            "global_pool": self.global_pool, "bias": self.bias}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> NetSpec:
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"unknown NetSpec fields {sorted(unknown)}")
    return cls(**{**d, "input_shape": tuple(d["input_shape"]),
                  "convs": tuple(ConvBlock(**c) for c in d.get("convs", ())),
                  "hidden": tuple(d.get("hidden", ()))})


# The paper's architectures (reference.md §1.2-1.4).
TETRIS_MLP = NetSpec(input_shape=(16,), num_classes=4, hidden=(5,), bias=False)  # 100 parameters
PAPER_CNN = NetSpec(input_shape=(28, 28, 1), num_classes=10,
                    convs=(ConvBlock(8, 5, pool=2), ConvBlock(6, 5, pool=2), ConvBlock(4, 2)),
                    hidden=(20,))  # 2464 parameters
UNTERTHINER_CNN = NetSpec(input_shape=(28, 28, 1), num_classes=10,
                          convs=(ConvBlock(16, 3, stride=2),) * 3, global_pool=True)  # 4970 parameters


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


# ---- forward pass -----------------------------------------------------------------------------------

def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, stride: int) -> jax.Array:
  """VALID conv of NHWC `x` with an OIHW `kernel`, as patches + einsum (batched matmul under vmap)."""
  out_ch, in_ch, kh, kw = kernel.shape
  patches = jax.lax.conv_general_dilated_patches(
      x, filter_shape=(kh, kw), window_strides=(stride, stride), padding="VALID",
      dimension_numbers=("NHWC", "OIHW", "NHWC"))  # (B, H', W', C*kh*kw), feature order (C, kh, kw)
  y = jnp.einsum("bhwk,ok->bhwo", patches, kernel.reshape(out_ch, in_ch * kh * kw))
  return y if bias is None else y + bias


def max_pool(x: jax.Array, size: int) -> jax.Array:
  """Non-overlapping max-pool of NHWC `x` (floor mode, as PyTorch's MaxPool2d)."""
  b, h, w, c = x.shape
  h2, w2 = h // size, w // size
  x = x[:, :h2 * size, :w2 * size, :].reshape(b, h2, size, w2, size, c)
  return x.max(axis=(2, 4))


def _dropout(x: jax.Array, rate: Any, key: jax.Array | None) -> jax.Array:
  if key is None:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(key, keep, x.shape)
  return jnp.where(mask, x / jnp.maximum(keep, 1e-12), 0.0)


def apply(spec: NetSpec, w: jax.Array, x: jax.Array, activation: str, *,
          dropout_rate: Any = 0.0, dropout_key: jax.Array | None = None,
          layout: Layout | None = None) -> jax.Array:
  """Logits of the network `spec` with flat weights `w` (N,) on inputs `x`.

  Args:
    spec: the architecture.
    w: flat weights `(N,)` in the order of `spec.layout()`.
    x: `(B, features)` for an MLP, `(B, H, W, C)` for a CNN.
    activation: name in `ACTIVATIONS` (static).
    dropout_rate: dropout after every activation (may be a traced per-model value); used only when
      `dropout_key` is given (training).
    dropout_key: PRNG key for dropout, or None for evaluation.
    layout: `spec.layout()`, passed in to save rebuilding it.
  """
  layout = spec.layout() if layout is None else layout
  act = get_activation(activation)
  params = layout.unflatten(w)
  n_drop = len(spec.convs) + len(spec.hidden)
  keys = list(jax.random.split(dropout_key, n_drop)) if dropout_key is not None else [None] * n_drop
  expected = (x.ndim - 1, x.shape[1:])
  if expected[1] != spec.input_shape:
    raise ValueError(f"inputs have shape {x.shape}, the network expects (B, {', '.join(map(str, spec.input_shape))})")
  h = x
  for i, c in enumerate(spec.convs):
    p = params[i]
    h = conv2d(h, p["w"], p.get("b"), c.stride)
    if c.pool > 1:
      h = max_pool(h, c.pool)
    h = _dropout(act(h), dropout_rate, keys[i])
  if spec.convs:
    if spec.global_pool:
      h = h.mean(axis=(1, 2))
    else:
      h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)  # channel-major, as PyTorch
  first_dense = len(spec.convs)
  for j in range(len(spec.hidden) + 1):
    p = params[first_dense + j]
    h = h @ p["w"].T
    if "b" in p:
      h = h + p["b"]
    if j < len(spec.hidden):
      h = _dropout(act(h), dropout_rate, keys[len(spec.convs) + j])
  return h


# ---- initialisation ---------------------------------------------------------------------------------

def init_layer_weight(key: jax.Array, layer: Layer, init: str) -> jax.Array:
  """One layer's weight with PyTorch's semantics for `init` (fan_in/fan_out include the kernel)."""
  shape = layer.weight_shape
  fan_in, fan_out = layer.fan_in, layer.fan_out
  if init == "uniform":
    return jax.random.uniform(key, shape)
  if init == "normal":
    return jax.random.normal(key, shape)
  if init == "kaiming_uniform":
    bound = math.sqrt(6.0 / fan_in)
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
  if init == "kaiming_normal":
    return jax.random.normal(key, shape) * math.sqrt(2.0 / fan_in)
  if init == "xavier_uniform":
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
  if init == "xavier_normal":
    return jax.random.normal(key, shape) * math.sqrt(2.0 / (fan_in + fan_out))
  raise ValueError(f"unknown initializer {init!r}; choose from {INITIALIZERS}")


def init_weights(key: jax.Array, layout: Layout, init: str, bias_value: float = 0.01) -> jax.Array:
  """Flat initial weights `(N,)`: every layer's weight from `init`, biases filled with `bias_value`.

  The key is split into one stream per initializer name, so a model's initial weights depend on its
  key and initializer only (not on which other initializers a zoo uses).
  """
  if init not in INITIALIZERS:
    raise ValueError(f"unknown initializer {init!r}; choose from {INITIALIZERS}")
  return _init_from_stream(jax.random.split(key, len(INITIALIZERS))[INITIALIZERS.index(init)],
                           layout, init, bias_value)


def _init_from_stream(key: jax.Array, layout: Layout, init: str, bias_value: float) -> jax.Array:
  keys = jax.random.split(key, layout.num_layers)
  params = []
  for k, layer in zip(keys, layout.layers):
    p = {"w": init_layer_weight(k, layer, init)}
    if layer.bias:
      p["b"] = jnp.full((layer.out_units,), bias_value, jnp.float32)
    params.append(p)
  return layout.flatten(params)


def init_weights_choice(key: jax.Array, layout: Layout, inits: tuple[str, ...], index: jax.Array,
                        bias_value: float = 0.01) -> jax.Array:
  """Initial weights with the initializer `inits[index]`, where `index` may be traced (per model).

  Every candidate is computed and one is selected: initialisation runs once per model, so this costs
  little and saves one compiled program per initializer. Equals `init_weights(key, layout,
  inits[index])` exactly.
  """
  for name in inits:
    if name not in INITIALIZERS:
      raise ValueError(f"unknown initializer {name!r}; choose from {INITIALIZERS}")
  streams = jax.random.split(key, len(INITIALIZERS))
  candidates = [_init_from_stream(streams[INITIALIZERS.index(name)], layout, name, bias_value)
                for name in inits]
  if len(candidates) == 1:
    return candidates[0]
  return jnp.stack(candidates)[index]


def param_count(spec: NetSpec) -> int:
  return spec.layout().num_params


def numpy_forward(spec: NetSpec, w: np.ndarray, x: np.ndarray, activation: str) -> np.ndarray:
  """Plain NumPy forward pass in float64 (direct loops over the conv window): a reference for tests."""
  act_fns = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
             "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v)}
  if activation not in act_fns:
    raise ValueError(f"numpy_forward supports {sorted(act_fns)}")
  act = act_fns[activation]
  params = spec.layout().unflatten(np.asarray(w, np.float64))
  h = np.asarray(x, np.float64)
  for i, c in enumerate(spec.convs):
    k, b = params[i]["w"], params[i].get("b")
    o, _, kh, kw = k.shape
    hh, ww = (h.shape[1] - kh) // c.stride + 1, (h.shape[2] - kw) // c.stride + 1
    out = np.zeros((h.shape[0], hh, ww, o))
    for r in range(hh):
      for s in range(ww):
        win = h[:, r * c.stride:r * c.stride + kh, s * c.stride:s * c.stride + kw, :]  # (B, kh, kw, C)
        out[:, r, s, :] = np.einsum("bijc,ocij->bo", win, k)
    if b is not None:
      out = out + b
    if c.pool > 1:
      p = c.pool
      h2, w2 = out.shape[1] // p, out.shape[2] // p
      out = out[:, :h2 * p, :w2 * p].reshape(out.shape[0], h2, p, w2, p, o).max(axis=(2, 4))
    h = act(out)
  if spec.convs:
    h = h.mean(axis=(1, 2)) if spec.global_pool else h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1)
  first = len(spec.convs)
  for j in range(len(spec.hidden) + 1):
    p = params[first + j]
    h = h @ p["w"].T + (p["b"] if "b" in p else 0.0)
    if j < len(spec.hidden):
      h = act(h)
  return h
