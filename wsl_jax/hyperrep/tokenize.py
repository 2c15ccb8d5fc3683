"""Tokenizers: flat weight vectors <-> sequences of tokens, derived from a `Layout`.

Two kinds (reference.md §2.3):

* "neuron": one token per neuron or conv kernel, holding its incoming weights in canonical order
  followed by its bias (exactly `Layout.unit_index(l)`). Token lengths differ between layers, so the
  tokens come in per-layer groups, each of shape `(..., out_units, fan_in + bias)`; the model embeds
  each group with its own `Linear(k_l -> d)`, as the original did (no padding).
* "weight": one token per scalar parameter, a single group of shape `(..., N, 1)`.

Token order: layer by layer, neuron ascending. The groups of a tokenizer cover every flat position
exactly once, so `detokenize` is the exact inverse of `tokenize`: it concatenates the groups and
gathers with the inverse of the token-order permutation (a gather, not a scatter).

Example:
  >>> import numpy as np
  >>> from wsl_jax.hyperrep.tokenize import Tokenizer
  >>> from wsl_jax.weights.layout import Layout
  >>> tok = Tokenizer(Layout.mlp([16, 5, 4], bias=False), "neuron")
  >>> [g.shape for g in tok.tokenize(np.zeros((2, 100)))]
  [(2, 5, 16), (2, 4, 5)]
  >>> tok.num_tokens
  9
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from wsl_jax.weights.layout import Layout

TOKEN_KINDS = ("neuron", "weight")


@dataclasses.dataclass(frozen=True)
class TokenGroup:
  """Tokens of one kind and length: `count` tokens of `size` scalars each.

  Attributes:
    layer: the Layout layer the tokens belong to, or -1 for weight tokens (they span every layer).
    count: number of tokens in the group.
    size: scalars per token.
    start: index of the group's first token in the whole sequence.
  """

  layer: int
  count: int
  size: int
  start: int


@functools.lru_cache(maxsize=64)
def _group_indices(layout: Layout, kind: str) -> tuple[np.ndarray, ...]:
  if kind == "weight":
    return (np.arange(layout.num_params, dtype=np.int32)[:, None],)
  return tuple(layout.unit_index(l).astype(np.int32) for l in range(layout.num_layers))


@functools.lru_cache(maxsize=64)
def _inverse_order(layout: Layout, kind: str) -> np.ndarray | None:
  """Gather map from token order back to flat order, or None when token order is the flat order."""
  order = np.concatenate([idx.reshape(-1) for idx in _group_indices(layout, kind)])
  if order.shape != (layout.num_params,) or not np.array_equal(np.sort(order), np.arange(layout.num_params)):
    raise ValueError(f"{kind} tokens do not cover every parameter exactly once")  # a Layout bug, not user input
  if np.array_equal(order, np.arange(layout.num_params)):
    return None
  return np.argsort(order).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Tokenizer:
  """Tokenization of the flat vectors of one `Layout`.

  Hashable (a static argument of jitted functions and a static attribute of NNX modules).

  Attributes:
    layout: the flat-vector layout.
    kind: "neuron" or "weight".
  """

  layout: Layout
  kind: str = "neuron"

  def __post_init__(self):
    if not isinstance(self.layout, Layout):
      raise ValueError(f"layout must be a Layout, got {type(self.layout).__name__}")
    if self.kind not in TOKEN_KINDS:
      raise ValueError(f"token kind must be one of {TOKEN_KINDS}, got {self.kind!r}")

  @property
  def groups(self) -> tuple[TokenGroup, ...]:
    groups, start = [], 0
    for l, idx in enumerate(_group_indices(self.layout, self.kind)):
      groups.append(TokenGroup(layer=-1 if self.kind == "weight" else l, count=idx.shape[0],
                               size=idx.shape[1], start=start))
      start += idx.shape[0]
    return tuple(groups)

  @property
  def num_tokens(self) -> int:
    return sum(g.count for g in self.groups)

  @property
  def token_sizes(self) -> tuple[int, ...]:
    """Scalars per token, one entry per group."""
    return tuple(g.size for g in self.groups)

  def indices(self) -> tuple[np.ndarray, ...]:
    """Per group, int32 `(count, size)`: the flat position of every scalar of every token."""
    return tuple(idx.copy() for idx in _group_indices(self.layout, self.kind))

  def token_layer(self) -> np.ndarray:
    """int32 `(num_tokens,)`: the Layout layer of each token (the first layer holding it for weight tokens)."""
    if self.kind == "weight":
      return self.layout.param_layer()
    return np.repeat(np.arange(self.layout.num_layers, dtype=np.int32), [g.count for g in self.groups])

  def tokenize(self, w: Any) -> list[Any]:
    """Split flat vectors `(..., N)` into per-group tokens `(..., count_g, size_g)`.

    NumPy in gives NumPy out; JAX in (traced or not) gives JAX out.
    """
    self.layout.check_vector(w)
    if isinstance(w, np.ndarray):
      return [w[..., idx] for idx in _group_indices(self.layout, self.kind)]
    import jax.numpy as jnp  # JAX only when the input is a JAX array
    return [jnp.take(w, idx, axis=-1) for idx in _group_indices(self.layout, self.kind)]

  def detokenize(self, tokens: Sequence[Any]) -> Any:
    """Inverse of `tokenize`: per-group tokens `(..., count_g, size_g)` -> flat vectors `(..., N)`."""
    groups = self.groups
    if len(tokens) != len(groups):
      raise ValueError(f"expected {len(groups)} token groups, got {len(tokens)}")
    batch = None
    flat = []
    for g, t in zip(groups, tokens):
      shape = tuple(np.shape(t))
      if shape[-2:] != (g.count, g.size):
        raise ValueError(f"token group {g.layer} has shape {shape}, expected (..., {g.count}, {g.size})")
      if batch is None:
        batch = shape[:-2]
      elif shape[:-2] != batch:
        raise ValueError(f"token groups have different batch shapes: {batch} and {shape[:-2]}")
      flat.append(t.reshape(batch + (g.count * g.size,)))
    inverse = _inverse_order(self.layout, self.kind)
    if all(isinstance(t, np.ndarray) for t in flat):
      out = np.concatenate(flat, axis=-1)
      return out if inverse is None else out[..., inverse]
    import jax.numpy as jnp
    out = jnp.concatenate(flat, axis=-1)
    return out if inverse is None else jnp.take(out, inverse, axis=-1)


def neuron_tokens(layout: Layout) -> Tokenizer:
  """One token per neuron / conv kernel: its incoming weights, then its bias."""
  return Tokenizer(layout, "neuron")


def weight_tokens(layout: Layout) -> Tokenizer:
  """One token per scalar parameter."""
  return Tokenizer(layout, "weight")
