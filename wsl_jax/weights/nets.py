"""Zoo networks as pure functions of a flat weight vector.

A `NetSpec` describes an architecture (input shape, conv blocks, dense widths, classes) and derives its
`Layout`; `apply(spec, w, x, activation)` runs the network on a batch from the flat vector `w`. Conv
layers are written as matmuls (einsum), so that under `jax.vmap` over models the per-model kernels become
batched matmuls instead of a grouped convolution (`jax_notes.md` §3.2). Three implementations, all VALID
convolutions of NHWC inputs with OIHW kernels (`CONV_IMPLS`):

* "taps" (default): im2col's matmul split by kernel tap, y = sum over (i, j) of
  `einsum(x[:, i::s, j::s, :], kernel[:, :, i, j])`; no patch tensor is built. Fastest on CPU: a training
  step of the paper's CNN (32 models, batch 32) took 8.4 ms of CPU time per model against 11 ms for
  "im2col", 9 ms for "lax" and 33 ms for `lax.conv_general_dilated_patches` + einsum (whose patch
  extraction is itself a convolution with a one-hot kernel); Unterthiner's CNN: 2.7 / 4.2 / 5.2 / 23 ms.
* "im2col": the patch tensor `(B, H', W', C, kh*kw)` from strided slices, then one einsum.
* "lax": `jax.lax.conv_general_dilated` (a grouped convolution under vmap; the reference for tests and
  benchmarks, and possibly the fastest choice on a GPU).

Inputs: MLPs take `(B, features)`; CNNs take images `(B, H, W, C)`. Conv outputs are flattened channel-
major (as PyTorch flattens NCHW), so the dense layer after them has `in_block = h * w`.

Initialisers (`INITIALIZERS`) follow PyTorch's semantics, as the paper's zoo code used them (`reference.md`
§1.2): `uniform` is U(0, 1) and `normal` is N(0, 1), not scaled; biases are filled with a constant (0.01).
`KERAS_INITIALIZERS` are the Keras initializers of Unterthiner et al.'s zoos, under the names their
`config.w_init` column uses (`reference.md` §1.4); `RandomNormal` and `TruncatedNormal` take a per-model
standard deviation `init_std`, and `constant` is Keras' `Constant()`, whose default value is 0.

Example:
  >>> import jax
  >>> from wsl_jax.weights import nets
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

from wsl_jax.weights.layout import Layer, Layout

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),  # PyTorch's default slope
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # PyTorch's default (erf) form
}

INITIALIZERS = ("uniform", "normal", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal")
# Keras semantics (fans include the kernel window, as in PyTorch):
#   glorot_uniform U(+-sqrt(6 / (fan_in + fan_out)))   glorot_normal  truncated normal, std sqrt(2 / (fan_in + fan_out))
#   he_uniform     U(+-sqrt(6 / fan_in))                he_normal      truncated normal, std sqrt(2 / fan_in)
#   RandomNormal   N(0, init_std)                       TruncatedNormal N(0, init_std) cut at +-2 init_std
#   orthogonal     (out, fan_in) matrix with orthonormal rows or columns, gain 1
#   constant       0 (Keras' Constant() default)
# "Truncated normal, std s" is Keras' VarianceScaling: N(0, s / 0.8796) cut at two of its standard deviations,
# so that the truncated distribution has standard deviation s.
KERAS_INITIALIZERS = ("constant", "RandomNormal", "TruncatedNormal", "glorot_normal", "glorot_uniform",
                      "he_normal", "he_uniform", "orthogonal")
ALL_INITIALIZERS = INITIALIZERS + KERAS_INITIALIZERS
DEFAULT_INIT_STD = 0.05  # Keras' RandomNormal / TruncatedNormal default, and Unterthiner et al.'s flag default
_TRUNCATED_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]
_KERAS_STREAM = 0x4B45  # Keras initializers draw from fold_in(key, _KERAS_STREAM + index)
CONV_IMPLS = ("taps", "im2col", "lax")


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
# The CPU-scale stand-in for PAPER_CNN on scikit-learn's native 8x8 digits (`digits_8`): the same structure
# (conv, max-pool, activation; conv, activation; channel-major flatten; dense, activation; dense), the same
# widths (8 and 6 channels, 20 hidden units, 10 classes), kernels shrunk to fit 8x8 inputs and the paper's
# third conv (4@2x2 on 4x4) dropped, as an 8x8 input leaves only a 2x2 map after the second conv:
# 8x8x1 -> conv 8@3x3 (6x6x8) -> maxpool 2 (3x3x8) -> act -> conv 6@2x2 (2x2x6) -> act -> flatten 24
# (in_block = 4) -> dense 24->20 -> act -> dense 20->10. 988 parameters (80 + 198 + 500 + 210).
# A training step costs ~1/50 of the paper CNN's multiply-adds (4.1k vs ~200k per image).
DIGITS_CNN = NetSpec(input_shape=(8, 8, 1), num_classes=10,
                     convs=(ConvBlock(8, 3, pool=2), ConvBlock(6, 2)), hidden=(20,))  # 988 parameters


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


# ---- forward pass -----------------------------------------------------------------------------------

def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, stride: int,
           impl: str = "taps") -> jax.Array:
  """VALID conv of NHWC `x` with an OIHW `kernel` (and bias), by implementation `impl` (`CONV_IMPLS`)."""
  out_ch, in_ch, kh, kw = kernel.shape
  if x.shape[-1] != in_ch:
    raise ValueError(f"conv input has {x.shape[-1]} channels, the kernel expects {in_ch}")
  if impl == "lax":
    y = jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                     dimension_numbers=("NHWC", "OIHW", "NHWC"))
  elif impl == "taps":
    y = None
    for i in range(kh):
      for j in range(kw):
        term = jnp.einsum("bhwc,oc->bhwo", _tap(x, i, j, kh, kw, stride), kernel[:, :, i, j])
        y = term if y is None else y + term
  elif impl == "im2col":
    patches = jnp.stack([_tap(x, i, j, kh, kw, stride) for i in range(kh) for j in range(kw)], axis=-1)
    y = jnp.einsum("bhwck,ock->bhwo", patches, kernel.reshape(out_ch, in_ch, kh * kw))
  else:
    raise ValueError(f"unknown conv implementation {impl!r}; choose from {CONV_IMPLS}")
  return y if bias is None else y + bias[None, None, None, :]


def _tap(x: jax.Array, i: int, j: int, kh: int, kw: int, stride: int) -> jax.Array:
  """The inputs that kernel tap (i, j) sees at every output position: `(B, H', W', C)`."""
  b, h, w, c = x.shape
  ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
  return jax.lax.slice(x, (0, i, j, 0), (b, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c),
                       (1, stride, stride, 1))


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
          layout: Layout | None = None, conv_impl: str = "taps") -> jax.Array:
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
    conv_impl: how conv layers are computed (`CONV_IMPLS`); all give the same function.
  """
  if x.shape[1:] != spec.input_shape:
    raise ValueError(f"inputs have shape {x.shape}, the network expects (B, {', '.join(map(str, spec.input_shape))})")
  return _forward(spec, w, x, activation, dropout_rate, dropout_key, layout, conv_impl, first_conv_done=False)


def apply_after_first_conv(spec: NetSpec, w: jax.Array, y: jax.Array, activation: str, *,
                           layout: Layout | None = None, conv_impl: str = "taps") -> jax.Array:
  """Logits of the CNN `spec` from its first conv layer's output `y` (bias added, before pooling).

  With `y = conv2d(x, first kernel, first bias)` this is `apply(spec, w, x, activation)` (no dropout):
  the evaluation of many models on shared inputs computes every model's first conv as one GEMM and
  continues here per model (`wsl_jax.zoo.batched.evaluate_cnn_models`).
  """
  if not spec.convs:
    raise ValueError("apply_after_first_conv needs a CNN")
  return _forward(spec, w, y, activation, 0.0, None, layout, conv_impl, first_conv_done=True)


def _forward(spec: NetSpec, w: jax.Array, h: jax.Array, activation: str, dropout_rate: Any,
             dropout_key: jax.Array | None, layout: Layout | None, conv_impl: str, first_conv_done: bool
             ) -> jax.Array:
  layout = spec.layout() if layout is None else layout
  act = get_activation(activation)
  params = layout.unflatten(w)
  n_drop = len(spec.convs) + len(spec.hidden)
  keys = list(jax.random.split(dropout_key, n_drop)) if dropout_key is not None else [None] * n_drop
  for i, c in enumerate(spec.convs):
    p = params[i]
    if not (i == 0 and first_conv_done):
      h = conv2d(h, p["w"], p.get("b"), c.stride, conv_impl)
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
      h = h + p["b"][None, :]
    if j < len(spec.hidden):
      h = _dropout(act(h), dropout_rate, keys[len(spec.convs) + j])
  return h


# ---- initialisation ---------------------------------------------------------------------------------

def init_layer_weight(key: jax.Array, layer: Layer, init: str, init_std: Any = DEFAULT_INIT_STD) -> jax.Array:
  """One layer's weight drawn from `init` (fan_in/fan_out include the kernel window).

  `init_std` (may be traced per model) is used by "RandomNormal" and "TruncatedNormal" only.
  """
  shape = layer.weight_shape
  fan_in, fan_out = layer.fan_in, layer.fan_out
  if init == "uniform":
    return jax.random.uniform(key, shape)
  if init == "normal":
    return jax.random.normal(key, shape)
  if init in ("kaiming_uniform", "he_uniform"):
    bound = math.sqrt(6.0 / fan_in)
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
  if init == "kaiming_normal":
    return jax.random.normal(key, shape) * math.sqrt(2.0 / fan_in)
  if init in ("xavier_uniform", "glorot_uniform"):
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
  if init == "xavier_normal":
    return jax.random.normal(key, shape) * math.sqrt(2.0 / (fan_in + fan_out))
  if init == "glorot_normal":
    return _truncated_normal(key, shape) * (math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD)
  if init == "he_normal":
    return _truncated_normal(key, shape) * (math.sqrt(2.0 / fan_in) / _TRUNCATED_STD)
  if init == "RandomNormal":
    return jax.random.normal(key, shape) * init_std
  if init == "TruncatedNormal":
    return _truncated_normal(key, shape) * init_std
  if init == "orthogonal":
    return _orthogonal(key, layer.out_units, fan_in).reshape(shape)
  if init == "constant":
    return jnp.zeros(shape, jnp.float32)
  raise ValueError(f"unknown initializer {init!r}; choose from {ALL_INITIALIZERS}")


def _truncated_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  return jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)


def _orthogonal(key: jax.Array, out_units: int, fan_in: int) -> jax.Array:
  """(out_units, fan_in) with orthonormal rows (out_units <= fan_in) or columns, as Keras' Orthogonal.

  Keras draws the (fan_in, out_units) kernel matrix; its transpose is this one, and the order of the
  fan_in axis (HWI there, IHW here) does not change the distribution.
  """
  big, small = max(out_units, fan_in), min(out_units, fan_in)
  q = orthonormalize_columns(jax.random.normal(key, (big, small)))
  return q.T if out_units <= fan_in else q


def orthonormalize_columns(a: jax.Array) -> jax.Array:
  """Q of the QR decomposition of a full-rank `(n, k)` matrix (n >= k) with R's diagonal positive.

  This is `q * sign(diag(r))` of `jnp.linalg.qr(a)` (Keras' Orthogonal: the sign fix makes the draw
  uniform over orthogonal matrices), computed by Gram-Schmidt with one reorthogonalisation pass (as
  accurate as Householder for such small, well-conditioned matrices) in plain XLA ops. Not LAPACK:
  jaxlib 0.10's batched CPU QR kernel splits its batch over the intra-op thread pool and waits for
  it; two such kernels running at once in a vmapped zoo program occupied both pool threads of a
  2-core machine and deadlocked (zoo generation hung with the CPU idle).
  """
  n, k = a.shape
  if n < k:
    raise ValueError(f"orthonormalize_columns needs at least as many rows as columns, got {a.shape}")

  def add_column(j, q):
    v = a[:, j]
    for _ in range(2):  # columns >= j of q are still zero, so only the finished ones are projected out
      v = v - q @ (q.T @ v)
    return q.at[:, j].set(v / jnp.linalg.norm(v))

  return jax.lax.fori_loop(0, k, add_column, jnp.zeros_like(a))


def _check_inits(inits: tuple[str, ...]) -> None:
  for name in inits:
    if name not in ALL_INITIALIZERS:
      raise ValueError(f"unknown initializer {name!r}; choose from {ALL_INITIALIZERS}")


def init_weights(key: jax.Array, layout: Layout, init: str, bias_value: float = 0.01,
                 init_std: Any = DEFAULT_INIT_STD) -> jax.Array:
  """Flat initial weights `(N,)`: every layer's weight from `init`, biases filled with `bias_value`.

  The key gives one stream per initializer name, so a model's initial weights depend on its key and
  initializer only (not on which other initializers a zoo uses). Compiled once per (layout, init), so
  eager calls are fast and equal the values computed inside a zoo's compiled trainer.
  """
  _check_inits((init,))
  return _init_weights_compiled(key, layout, (init,), jnp.int32(0), bias_value, init_std)


def _init_streams(key: jax.Array, inits: tuple[str, ...]) -> list[jax.Array]:
  """The stream of each initializer in `inits`: PyTorch-style ones from `split(key, 6)` (as before Keras
  initializers existed), Keras ones from `fold_in(key, _KERAS_STREAM + index)`."""
  keras = {name: jax.random.fold_in(key, _KERAS_STREAM + KERAS_INITIALIZERS.index(name))
           for name in inits if name in KERAS_INITIALIZERS}
  torch = jax.random.split(key, len(INITIALIZERS)) if any(n in INITIALIZERS for n in inits) else None
  return [keras[n] if n in keras else torch[INITIALIZERS.index(n)] for n in inits]


def _init_from_stream(key: jax.Array, layout: Layout, init: str, bias_value: float, init_std: Any) -> jax.Array:
  keys = jax.random.split(key, layout.num_layers)
  params = []
  for k, layer in zip(keys, layout.layers):
    p = {"w": init_layer_weight(k, layer, init, init_std)}
    if layer.bias:
      p["b"] = jnp.full((layer.out_units,), bias_value, jnp.float32)
    params.append(p)
  return layout.flatten(params)


def init_weights_choice(key: jax.Array, layout: Layout, inits: tuple[str, ...], index: jax.Array,
                        bias_value: float = 0.01, init_std: Any = DEFAULT_INIT_STD) -> jax.Array:
  """Initial weights with the initializer `inits[index]`, where `index` may be traced (per model).

  Every candidate is computed and one is selected: initialisation runs once per model, so this costs
  little and saves one compiled program per initializer. Equals `init_weights(key, layout,
  inits[index])` exactly. `init_std` (may be traced) scales "RandomNormal" and "TruncatedNormal".
  """
  inits = tuple(inits)
  _check_inits(inits)
  candidates = [_init_from_stream(k, layout, name, bias_value, init_std)
                for k, name in zip(_init_streams(key, inits), inits)]
  if len(candidates) == 1:
    return candidates[0]
  return jnp.stack(candidates)[index]


_init_weights_compiled = jax.jit(init_weights_choice, static_argnames=("layout", "inits", "bias_value"))


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
