"""Hyper-representation models in Flax NNX (reference.md §4).

`HyperRepresentation(config, layout, rngs=...)` bundles an encoder (flat weights -> z), a decoder
(z -> flat weights) and the projection head of the contrastive loss. What it is made of follows the
`ModelConfig`:

* arch "attention": tokens (neuron or weight, `wsl_jax.hyperrep.tokenize`) -> per-group `Linear(k -> d)` ->
  optional compression token prepended -> learned positional embeddings -> pre-norm self-attention
  blocks -> the compression token's output (or the flattened sequence without one) -> `Linear(-> L)`
  -> tanh. The decoder mirrors it: `Linear(L -> T d)` -> its own positions -> blocks -> per-group
  `Linear(d -> k)` -> the exact inverse of the tokenizer.
* arch "ff": the feed-forward baseline, `Linear` layers of widths `linspace(N, L, hidden + 2)` with
  LeakyReLU and dropout, tanh at the bottleneck; the decoder mirrors the widths.

The paper's ablations AttW, AttW+t, AttN, AttN+t and FF are these configurations
(`wsl_jax.hyperrep.configs.with_architecture`).

Randomness is explicit: pass `rngs=nnx.Rngs(dropout=key)` at call time to train with dropout; without
`rngs` the model is deterministic (evaluation). The projection head's BatchNorms take `train=` instead;
see `BatchNorm` for their evaluation behaviour (reference.md B6).

Initialisation follows the original: PyTorch's default `Linear` init (U(+-1/sqrt(fan_in)) for weights
and biases) in the transformer, N(0, 1) for the compression token and the positional embeddings,
kaiming-normal weights and 0.01 biases in the projection head and the FF baseline.

Implementation choices that do not change the function (all for CPU speed, see `docs/ssl.md`): the
query, key and value maps are one fused `Linear(d -> 3d)` (initialised as three); each norm's scale and
shift are folded into the weights of the `Linear` that follows it (`normed_linear`); dropout masks come
from a keyed integer hash (`hash_bits`) instead of threefry.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wsl_jax.hyperrep.configs import ModelConfig
from wsl_jax.hyperrep.tokenize import Tokenizer
from wsl_jax.weights.layout import Layout

Rngs = nnx.Rngs | None


# ---- building blocks --------------------------------------------------------------------------------

def _uniform_init(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def torch_linear(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
  """`Linear` with PyTorch's default init: weight and bias U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(in_features)
  return nnx.Linear(in_features, out_features, kernel_init=_uniform_init(bound),
                    bias_init=_uniform_init(bound), rngs=rngs)


def kaiming_linear(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
  """`Linear` with kaiming-normal weights (fan_in, gain sqrt(2)) and 0.01 biases, as the original head."""
  return nnx.Linear(in_features, out_features,
                    kernel_init=jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
                    bias_init=jax.nn.initializers.constant(0.01), rngs=rngs)


def _trailing(v: jax.Array, ndim: int) -> jax.Array:
  """A per-feature vector `(D,)` shaped to broadcast against `(..., D)` of rank `ndim` (explicit ranks)."""
  return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def _mix32(h: jax.Array) -> jax.Array:
  """A bijective 32-bit integer hash with full avalanche ("lowbias32", C. Wellons)."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x7FEB352D)
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def hash_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """uint32 pseudo-random bits of `shape`: a keyed hash of each element's flat index.

  A counter-based generator like threefry, with far fewer operations per element: two rounds of a
  32-bit mixing hash keyed by the 64 bits of `key`. Enough for dropout masks, where it replaces
  `jax.random.bits`, whose threefry rounds cost more CPU time than the matmuls they mask and about
  half the XLA compile time of a training step. Like threefry it is a pure function of (key, index), so the
  bits do not depend on how an array is sharded.
  """
  seed = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
  index = jnp.zeros(shape, jnp.uint32)
  for axis in range(len(shape)):  # the row-major flat index, from iotas (which shard like the array)
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(math.prod(shape[axis + 1:]))
  return _mix32(_mix32(index ^ seed[0]) + seed[-1])


def dropout(x: jax.Array, rate: float, rngs: Rngs) -> jax.Array:
  """Inverted dropout keyed by `rngs.dropout()`; the identity when `rngs` is None (evaluation) or rate is 0.

  The mask comes from `hash_bits` (see there why not `jax.random.bits`); the drop probability is
  `rate` rounded to a multiple of 2^-32.
  """
  if rngs is None or rate == 0.0:
    return x
  threshold = jnp.uint32(min(round(rate * 2.0 ** 32), 2 ** 32 - 1))
  keep = hash_bits(rngs.dropout(), x.shape) >= threshold
  return jnp.where(keep, x * (1.0 / (1.0 - rate)), jnp.zeros((), x.dtype))


class Norm(nnx.Module):
  """Normalisation over the last axis with a learned scale and shift.

  kind "layernorm": `(x - mean) / sqrt(var + 1e-5)` (PyTorch's LayerNorm).
  kind "original": `(x - mean) / (std_unbiased + 1e-6)`, the original code's norm (reference.md B15).
  """

  def __init__(self, dim: int, kind: str = "layernorm"):
    if kind not in ("layernorm", "original"):
      raise ValueError(f"norm kind must be 'layernorm' or 'original', got {kind!r}")
    self.kind = kind
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))

  def normalize(self, x: jax.Array) -> jax.Array:
    """The normalisation without the learned scale and shift."""
    centred = x - x.mean(axis=-1, keepdims=True)
    sq = jnp.square(centred)
    if self.kind == "layernorm":
      return centred * jax.lax.rsqrt(sq.mean(axis=-1, keepdims=True) + 1e-5)
    std = jnp.sqrt(sq.sum(axis=-1, keepdims=True) / (x.shape[-1] - 1))
    return centred * (1.0 / (std + 1e-6))

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.normalize(x)
    return y * _trailing(self.scale[...], y.ndim) + _trailing(self.bias[...], y.ndim)


def normed_linear(norm: Norm, linear: nnx.Linear, x: jax.Array) -> jax.Array:
  """`linear(norm(x))`, with the norm's scale and shift folded into the linear map.

  `(x_hat * s + b) W + c = x_hat (s W) + (b W + c)`: the same function and parameters, but the
  per-token scale and shift are applied to the (d, k) weights instead of every token, which on CPU
  also keeps XLA from materialising the broadcast scale as a full activation-sized operand of the
  matmul.
  """
  kernel = norm.scale[...][:, None] * linear.kernel[...]
  bias = norm.bias[...] @ linear.kernel[...] + linear.bias[...]
  y = jax.lax.dot_general(norm.normalize(x), kernel, (((x.ndim - 1,), (0,)), ((), ())))
  return y + _trailing(bias, y.ndim)


class SelfAttention(nnx.Module):
  """Multi-head self-attention without mask; dropout on the attention probabilities."""

  def __init__(self, dim: int, heads: int, attention_dropout: float, *, rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"dim={dim} is not divisible by heads={heads}")
    self.heads = heads
    self.attention_dropout = attention_dropout
    self.qkv = torch_linear(dim, 3 * dim, rngs=rngs)
    self.out = torch_linear(dim, dim, rngs=rngs)

  def __call__(self, x: jax.Array, *, rngs: Rngs = None, norm: Norm | None = None) -> jax.Array:
    """Self-attention of `x` (..., T, d); with `norm`, of `norm(x)` (see `normed_linear`)."""
    *lead, t, d = x.shape
    hd = d // self.heads
    qkv = self.qkv(x) if norm is None else normed_linear(norm, self.qkv, x)
    qkv = qkv.reshape(*lead, t, 3, self.heads, hd)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    scores = jnp.einsum("...qhc,...khc->...hqk", q * (1.0 / math.sqrt(hd)), k)
    probs = dropout(jax.nn.softmax(scores, axis=-1), self.attention_dropout, rngs)
    out = jnp.einsum("...hqk,...khc->...qhc", probs, v).reshape(*lead, t, d)
    return self.out(out)


class Block(nnx.Module):
  """Pre-norm transformer block: `x + Drop(MHA(Norm(x)))`, then `x + Drop(FF(Norm(x)))`.

  FF = `Linear(d -> ff) -> ReLU -> Dropout -> Linear(ff -> d)`.
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    d = config.dim
    self.rate = config.dropout
    self.norm1 = Norm(d, config.norm)
    self.attention = SelfAttention(d, config.heads, config.attention_dropout, rngs=rngs)
    self.norm2 = Norm(d, config.norm)
    self.ff_in = torch_linear(d, config.ff_dim, rngs=rngs)
    self.ff_out = torch_linear(config.ff_dim, d, rngs=rngs)

  def __call__(self, x: jax.Array, *, rngs: Rngs = None) -> jax.Array:
    x = x + dropout(self.attention(x, rngs=rngs, norm=self.norm1), self.rate, rngs)
    h = dropout(jax.nn.relu(normed_linear(self.norm2, self.ff_in, x)), self.rate, rngs)
    return x + dropout(self.ff_out(h), self.rate, rngs)


class TokenEmbedding(nnx.Module):
  """Flat weights `(..., N)` -> tokens `(..., T, d)`: each token group by its own `Linear(k -> d)`."""

  def __init__(self, tokenizer: Tokenizer, dim: int, *, rngs: nnx.Rngs):
    self.tokenizer = tokenizer
    self.maps = nnx.List([torch_linear(g.size, dim, rngs=rngs) for g in tokenizer.groups])

  def __call__(self, w: jax.Array) -> jax.Array:
    groups = self.tokenizer.tokenize(w)
    return jnp.concatenate([m(t) for m, t in zip(self.maps, groups)], axis=-2)


class TokenProjection(nnx.Module):
  """Tokens `(..., T, d)` -> flat weights `(..., N)`: each group by its own `Linear(d -> k)`, then the
  tokenizer's exact inverse."""

  def __init__(self, tokenizer: Tokenizer, dim: int, *, rngs: nnx.Rngs):
    self.tokenizer = tokenizer
    self.maps = nnx.List([torch_linear(dim, g.size, rngs=rngs) for g in tokenizer.groups])

  def __call__(self, h: jax.Array) -> jax.Array:
    groups = [m(h[..., g.start:g.start + g.count, :]) for m, g in zip(self.maps, self.tokenizer.groups)]
    return self.tokenizer.detokenize(groups)


# ---- attention encoder / decoder --------------------------------------------------------------------

class AttentionEncoder(nnx.Module):
  """Flat weights `(..., N)` -> z `(..., L)` in (-1, 1)."""

  def __init__(self, config: ModelConfig, tokenizer: Tokenizer, *, rngs: nnx.Rngs):
    d = config.dim
    self.embed = TokenEmbedding(tokenizer, d, rngs=rngs)
    self.compression = (nnx.Param(jax.random.normal(rngs.params(), (d,), jnp.float32))
                        if config.compression_token else None)
    num_positions = tokenizer.num_tokens + (1 if config.compression_token else 0)
    self.positions = nnx.Param(jax.random.normal(rngs.params(), (num_positions, d), jnp.float32))
    self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.blocks)])
    bottleneck_in = d if config.compression_token else tokenizer.num_tokens * d
    self.bottleneck = torch_linear(bottleneck_in, config.latent_dim, rngs=rngs)

  def __call__(self, w: jax.Array, *, rngs: Rngs = None) -> jax.Array:
    h = self.embed(w)
    *lead, t, d = h.shape
    if self.compression is not None:
      token = jnp.broadcast_to(self.compression[...], (*lead, 1, d))
      h = jnp.concatenate([token, h], axis=-2)
    h = h + _trailing(self.positions[...], h.ndim)
    for block in self.blocks:
      h = block(h, rngs=rngs)
    h = h[..., 0, :] if self.compression is not None else h.reshape(*lead, t * d)
    return jnp.tanh(self.bottleneck(h))


class AttentionDecoder(nnx.Module):
  """z `(..., L)` -> flat weights `(..., N)`; no output activation."""

  def __init__(self, config: ModelConfig, tokenizer: Tokenizer, *, rngs: nnx.Rngs):
    d, t = config.dim, tokenizer.num_tokens
    self.num_tokens = t
    self.expand = torch_linear(config.latent_dim, t * d, rngs=rngs)
    self.positions = nnx.Param(jax.random.normal(rngs.params(), (t, d), jnp.float32))
    self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.blocks)])
    self.project = TokenProjection(tokenizer, d, rngs=rngs)

  def __call__(self, z: jax.Array, *, rngs: Rngs = None) -> jax.Array:
    *lead, _ = z.shape
    h = self.expand(z).reshape(*lead, self.num_tokens, -1)
    h = h + _trailing(self.positions[...], h.ndim)
    for block in self.blocks:
      h = block(h, rngs=rngs)
    return self.project(h)


# ---- feed-forward baseline --------------------------------------------------------------------------

def ff_widths(num_params: int, latent_dim: int, hidden_layers: int) -> tuple[int, ...]:
  """Encoder widths of the FF baseline: `linspace(N, L, hidden + 2)` cast to int (reference.md §4)."""
  return tuple(int(x) for x in np.linspace(num_params, latent_dim, hidden_layers + 2))


class FFStack(nnx.Module):
  """Linear layers through `widths`; LeakyReLU + dropout after every layer but the last."""

  def __init__(self, widths: tuple[int, ...], rate: float, final: str, *, rngs: nnx.Rngs):
    self.rate = rate
    self.final = final
    self.layers = nnx.List([kaiming_linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])

  def __call__(self, x: jax.Array, *, rngs: Rngs = None) -> jax.Array:
    for layer in self.layers[:-1]:
      x = dropout(jax.nn.leaky_relu(layer(x), 0.01), self.rate, rngs)
    x = self.layers[-1](x)
    return jnp.tanh(x) if self.final == "tanh" else x


# ---- projection head --------------------------------------------------------------------------------

class BatchNorm(nnx.Module):
  """BatchNorm1d over the batch axis (eps 1e-5, momentum 0.1, affine), with an optional row mask.

  Training normalises with the batch statistics and updates the running averages (unbiased variance,
  as PyTorch). Evaluation (`train=False`) normalises with the running averages when `eval_mode` is
  "running" (standard), or with the statistics of the evaluated batch when it is "batch" (what the
  original did, whose loss module never left train mode; reference.md B6) without updating them.
  """

  def __init__(self, dim: int, eval_mode: str = "running", momentum: float = 0.1, eps: float = 1e-5):
    if eval_mode not in ("running", "batch"):
      raise ValueError(f"eval_mode must be 'running' or 'batch', got {eval_mode!r}")
    self.eval_mode = eval_mode
    self.momentum = momentum
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((dim,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((dim,), jnp.float32))

  def __call__(self, x: jax.Array, *, train: bool, mask: Any = None) -> jax.Array:
    if train or self.eval_mode == "batch":
      w = jnp.ones(x.shape[:1], x.dtype) if mask is None else jnp.asarray(mask, x.dtype)
      n = jnp.maximum(w.sum(), 1.0)
      mean = (x * w[:, None]).sum(axis=0) / n
      var = (jnp.square(x - mean[None]) * w[:, None]).sum(axis=0) / n
      if train:
        m = self.momentum
        unbiased = jax.lax.stop_gradient(var * n / jnp.maximum(n - 1.0, 1.0))
        self.mean[...] = (1.0 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
        self.var[...] = (1.0 - m) * self.var[...] + m * unbiased
    else:
      mean, var = self.mean[...], self.var[...]
    scale = jax.lax.rsqrt(var + self.eps) * self.scale[...]
    return (x - mean[None]) * scale[None] + self.bias[...][None]


class ProjectionHead(nnx.Module):
  """`[Linear(L -> h), BN, ReLU]`, `(layers - 1) x [Linear(h -> h), BN, ReLU]`, `Linear(-> out)`, `BN`.

  With `layers = 0`: `Linear(L -> out)`, `BN`. Used only by the contrastive loss, on each view
  separately (each view gets its own batch statistics, as the original).
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    widths = [config.latent_dim] + [config.head_hidden] * config.head_layers + [config.head_out]
    self.linears = nnx.List([kaiming_linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.norms = nnx.List([BatchNorm(b, config.head_bn_eval) for b in widths[1:]])

  def __call__(self, z: jax.Array, *, train: bool, mask: Any = None) -> jax.Array:
    if z.ndim != 2:
      raise ValueError(f"the projection head takes (B, L) inputs, got shape {z.shape}")
    h = z
    last = len(self.linears) - 1
    for i, (linear, norm) in enumerate(zip(self.linears, self.norms)):
      h = norm(linear(h), train=train, mask=mask)
      if i < last:
        h = jax.nn.relu(h)
    return h


# ---- the whole model --------------------------------------------------------------------------------

class HyperRepresentation(nnx.Module):
  """Encoder, decoder and projection head for the flat vectors of one `Layout`.

  Example:
    >>> import jax
    >>> from flax import nnx
    >>> from wsl_jax.hyperrep import configs
    >>> from wsl_jax.weights import nets
    >>> cfg = configs.preset("small").model
    >>> model = HyperRepresentation(cfg, nets.TETRIS_MLP.layout(), rngs=nnx.Rngs(0))
    >>> z, w_hat = model(jax.numpy.zeros((3, 100)))
    >>> z.shape, w_hat.shape
    ((3, 16), (3, 100))
  """

  def __init__(self, config: ModelConfig, layout: Layout, *, rngs: nnx.Rngs):
    if not isinstance(config, ModelConfig):
      raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
    if not isinstance(layout, Layout):
      raise ValueError(f"layout must be a Layout, got {type(layout).__name__}")
    self.config = config
    self.layout = layout
    if config.arch == "attention":
      tokenizer = Tokenizer(layout, config.tokens)
      self.encoder = AttentionEncoder(config, tokenizer, rngs=rngs)
      self.decoder = AttentionDecoder(config, tokenizer, rngs=rngs)
    else:
      widths = ff_widths(layout.num_params, config.latent_dim, config.ff_hidden_layers)
      self.encoder = FFStack(widths, config.dropout, "tanh", rngs=rngs)
      self.decoder = FFStack(widths[::-1], config.dropout, "linear", rngs=rngs)
    self.head = ProjectionHead(config, rngs=rngs)

  @property
  def latent_dim(self) -> int:
    return self.config.latent_dim

  def encode(self, w: jax.Array, *, rngs: Rngs = None) -> jax.Array:
    """Flat weights `(..., N)` -> hyper-representations z `(..., L)`; dropout iff `rngs` is given."""
    self.layout.check_vector(w)
    return self.encoder(w, rngs=rngs)

  def decode(self, z: jax.Array, *, rngs: Rngs = None) -> jax.Array:
    """z `(..., L)` -> reconstructed flat weights `(..., N)`; dropout iff `rngs` is given."""
    if z.shape[-1] != self.config.latent_dim:
      raise ValueError(f"z has shape {z.shape}, expected (..., {self.config.latent_dim})")
    return self.decoder(z, rngs=rngs)

  def __call__(self, w: jax.Array, *, rngs: Rngs = None) -> tuple[jax.Array, jax.Array]:
    """`(z, reconstruction)` of flat weights `(..., N)`."""
    z = self.encode(w, rngs=rngs)
    return z, self.decode(z, rngs=rngs)

  def project(self, z: jax.Array, *, train: bool, mask: Any = None) -> jax.Array:
    """The projection head on z `(B, L)` (BatchNorm statistics of this batch when `train`)."""
    return self.head(z, train=train, mask=mask)
