"""Function-preserving weight augmentations: permute → noise → erase, jit-compiled and batched.

Every function takes an explicit PRNG key and a flat weight vector `w` of shape `(N,)` or a batch
`(B, N)` (in `Layout` order, see `wsl_jax.weights.layout`); the rows of a batch get independent randomness,
and so do the layers of a network. All functions are jit-compiled, work under `jax.jit` and
`jax.vmap` (e.g. over keys), keep shapes static, and take a `Layout` (hashable) as a static argument.
Strengths (noise std, erase probability and scale, fill value) are traced: changing them does not
recompile.

* `permute`: a random permutation of the hidden units of every permutable layer (never the input
  or output units). Layer l's weight rows (conv: whole kernels) and biases move, and so does the
  matching input axis of layer l+1 (conv: input channels; a dense layer after a flattened conv:
  blocks of `h * w` inputs). The network computes the same function.
* `permutation_index`, `apply_index`, `invert_index`, `compose_index`: the same permutation as a
  flat gather map `w_permuted = w[index]`, to apply, undo or chain elsewhere; `unit_permutations`:
  the per-layer unit permutations behind it; `num_permutations`: the size of the group.
* `permutation_table`, `permute_from_table`: a fixed set of P permutations, as the paper used
  (all 5! = 120 for tetris, 25,000 random ones for the CNN zoos), and a random pick from it per row.
* `add_noise`: additive Gaussian noise.
* `random_erase`: with probability p, one contiguous block of length `int(N * U(scale))` is set to
  `value`. `mode="original"` reproduces the original code's rejection rule (up to 10 placements,
  `start ~ randint[0, N)`, accepted only if `start + len < N`, else no erasing); `mode="uniform"`
  draws the start uniformly among the positions where the block fits, so a block is always placed.
  The paper's text says scale (0.03, 0.3); the code (and the default here) uses (0.02, 0.33).
* `augment`: one view, permute → noise → erase, each step switchable; `two_views`: two independent
  views for contrastive training.
* `canonicalize`, `canonical_index`: a deterministic representative of the permutation orbit (the
  alternative to augmentation that the original code sketched but never used).

Example:
  >>> import jax
  >>> from wsl_jax.hyperrep import augment
  >>> from wsl_jax.weights import nets
  >>> layout = nets.TETRIS_MLP.layout()
  >>> batch = jax.numpy.ones((8, layout.num_params))
  >>> view_i, view_j = augment.two_views(jax.random.key(1), batch, layout, noise_std=0.01)
  >>> view_i.shape, view_j.shape
  ((8, 100), (8, 100))
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wsl_jax.weights.layout import Layout

ERASE_MODES = ("original", "uniform")
ERASE_TRIES = 10  # placement attempts of the original code's block eraser

# ---- input checks -------------------------------------------------------------------------------


def _check_key(key: Any) -> None:
  """Raise ValueError unless `key` is a single PRNG key (typed `()` or raw uint32 `(2,)`)."""
  key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.shape != ():
      raise ValueError(f"expected a single PRNG key, got a key array of shape {key.shape}; pass one key "
                       "for a whole batch (rows get independent randomness) or jax.vmap over keys")
  elif key.shape != (2,) or key.dtype != jnp.uint32:
    raise ValueError(f"expected a PRNG key from jax.random.key, got an array of shape {key.shape} and "
                     f"dtype {key.dtype}")


def _check_rows(w: Any, name: str = "w") -> None:
  """Raise ValueError unless `w` is one flat vector `(N,)` or a batch `(B, N)`."""
  if np.ndim(w) not in (1, 2):
    raise ValueError(f"{name} must be a flat vector (N,) or a batch (B, N), got shape {np.shape(w)}")


def _check_layout(layout: Any) -> None:
  if not isinstance(layout, Layout):
    raise TypeError(f"layout must be a wsl_jax.weights.layout.Layout, got {type(layout).__name__}")


def _check_weights(w: Any, layout: Layout) -> None:
  _check_layout(layout)
  _check_rows(w)
  layout.check_vector(w)


def _is_zero(x: Any) -> bool:
  """True when `x` is a concrete Python/NumPy number equal to 0 (a traced value never is)."""
  return isinstance(x, (int, float, np.number)) and x == 0


def _check_probability(p: Any, name: str) -> None:
  if isinstance(p, (int, float, np.number)) and not 0.0 <= p <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {p}")


def _check_scale(scale: Any) -> tuple[Any, Any]:
  if len(scale) != 2:
    raise ValueError(f"scale must be a pair (low, high), got {scale!r}")
  lo, hi = scale
  if all(isinstance(s, (int, float, np.number)) for s in (lo, hi)) and not 0.0 <= lo <= hi <= 1.0:
    raise ValueError(f"scale must satisfy 0 <= low <= high <= 1, got {tuple(scale)}")
  return lo, hi


def _check_mode(mode: str) -> None:
  if mode not in ERASE_MODES:
    raise ValueError(f"erase mode must be one of {ERASE_MODES}, got {mode!r}")


def _gather(w: jax.Array, index: jax.Array) -> jax.Array:
  """`w[..., index]`, row by row when `index` is `(B, N)`.

  Without bounds masking ("promise_in_bounds"): XLA's gather clamps indices anyway, and the masking
  costs about a fifth of the gather on CPU.
  """
  if index.ndim == 1 or w.ndim == 1:
    return w.at[..., index].get(mode="promise_in_bounds")
  return jnp.take_along_axis(w, index, axis=-1, mode="promise_in_bounds")


def _rowwise(fn: Callable[..., jax.Array], *arrays: jax.Array) -> jax.Array:
  """Apply a one-row function to arrays that are all one row or all `(B, ...)` batches of rows."""
  return fn(*arrays) if arrays[0].ndim == 1 else jax.vmap(fn)(*arrays)


# ---- random numbers from raw bits ----------------------------------------------------------------
# Each call draws its randomness with as few threefry calls as possible: one `jax.random.bits` block
# for the whole batch per step. Every threefry call under jit costs a fraction of a second of XLA
# compile time on CPU, and splitting a key per row and per step would make a handful of them.


def _unit_float(bits: jax.Array) -> jax.Array:
  """float32 in [0, 1) from uint32 bits (23 random mantissa bits, as `jax.random.uniform`)."""
  return jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0


def _uniform_int(bits: jax.Array, n: Any) -> jax.Array:
  """int32 `floor(bits * n / 2**32)`, in [0, n) for uint32 bits and 1 <= n < 2**31.

  The high word of the 64-bit product, from 16-bit halves (no 64-bit integers without x64). Each
  value has probability 1/n up to a relative error of n / 2**32.
  """
  n = jnp.asarray(n).astype(jnp.uint32)
  xh, xl = bits >> 16, bits & 0xFFFF
  nh, nl = n >> 16, n & 0xFFFF
  a, b = xh * nl, xl * nh
  carry = ((a & 0xFFFF) + (b & 0xFFFF) + ((xl * nl) >> 16)) >> 16
  return (xh * nh + (a >> 16) + (b >> 16) + carry).astype(jnp.int32)


# ---- permutations as flat gather maps -----------------------------------------------------------


def num_permutations(layout: Layout) -> int:
  """The number of distinct permutations: the product of `n_l!` over the permutable layers.

  Example:
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> augment.num_permutations(nets.TETRIS_MLP.layout())
    120
  """
  return math.prod(math.factorial(n) for n in layout.permutable_sizes)


def _index_from_perms(perms: Any, layout: Layout) -> Any:
  """Flat gather map `(..., N)` from concatenated unit permutations `(..., S)` (`permutable_sizes` order).

  Layer l's weight, viewed as `(out, n_prev, block)` (block = kh * kw for a conv, `in_block` for a
  dense layer, the whole fan-in for the first layer), takes entry `[rows[i], cols[j], k]` at `[i, j, k]`,
  with `rows` the layer's permutation and `cols` the previous layer's. Broadcast arithmetic only (no
  gathers). NumPy in, NumPy out (batches allowed); JAX arrays are traced (one row; vmap for more).
  """
  xp = np if isinstance(perms, np.ndarray) else jnp
  batch = perms.shape[:-1]
  sizes = layout.permutable_sizes
  per_layer = xp.split(perms.astype(np.int32), np.cumsum(sizes)[:-1].tolist(), axis=-1) if sizes else []
  perm_of = dict(zip(layout.permutable_layers, per_layer))
  parts = []
  for l, layer in enumerate(layout.layers):
    identity = xp.broadcast_to(xp.arange(layer.out_units, dtype=np.int32), batch + (layer.out_units,))
    rows = perm_of.get(l, identity)
    n_prev = layout.layers[l - 1].out_units if l > 0 else 1
    block = layer.fan_in // n_prev
    cols = perm_of[l - 1] if l - 1 in perm_of else xp.zeros(batch + (1,), np.int32)
    within = xp.arange(block, dtype=np.int32).reshape((1,) * (len(batch) + 2) + (block,))
    index = (layout.weight_slice(l).start + rows[..., :, None, None] * layer.fan_in
             + cols[..., None, :, None] * block + within)
    parts.append(index.reshape(batch + (-1,)))
    b = layout.bias_slice(l)
    if b is not None:
      parts.append(b.start + rows)
  return xp.concatenate(parts, axis=-1)


def _perm_words(layout: Layout) -> int:
  """Random uint32 words that one row's permutation draws: one per hidden unit."""
  return sum(layout.permutable_sizes)


PAIRWISE_RANK_MAX_UNITS = 64  # wider layers are shuffled with a sort instead of pairwise ranks


def _perms_from_words(words: jax.Array, layout: Layout) -> jax.Array:
  """One row's concatenated uniformly random unit permutations `(S,)` from `S` random words.

  Each layer's permutation is the rank of its units' random words (ties by position): ranking random
  keys gives a uniformly random permutation, as sorting them does (`jax.random.permutation`), and for
  layers of tens of units the O(n^2) comparisons are about fifty times cheaper than a sort on CPU.
  """
  perms, start = [], 0
  for n in layout.permutable_sizes:
    keys = words[start:start + n]
    start += n
    if n > PAIRWISE_RANK_MAX_UNITS:
      perms.append(jnp.argsort(keys, stable=True).astype(jnp.int32))
      continue
    pos = jnp.arange(n)
    before = (keys[None, :] < keys[:, None]) | ((keys[None, :] == keys[:, None]) & (pos[None, :] < pos[:, None]))
    perms.append(before.sum(axis=1, dtype=jnp.int32))
  return jnp.concatenate(perms)


def _index_from_words(words: jax.Array, layout: Layout) -> jax.Array:
  if not layout.permutable_layers:
    return jnp.arange(layout.num_params, dtype=jnp.int32)
  return _index_from_perms(_perms_from_words(words, layout), layout)


def _shape_tuple(shape: int | tuple[int, ...]) -> tuple[int, ...]:
  return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


@functools.partial(jax.jit, static_argnames=("layout", "shape"))
def _unit_permutations(key: jax.Array, layout: Layout, shape: tuple[int, ...]) -> tuple[jax.Array, ...]:
  words = jax.random.bits(key, shape + (_perm_words(layout),), jnp.uint32).reshape(-1, _perm_words(layout))
  perms = jax.vmap(_perms_from_words, in_axes=(0, None))(words, layout).reshape(shape + (-1,))
  return tuple(jnp.split(perms, np.cumsum(layout.permutable_sizes)[:-1].tolist(), axis=-1))


def unit_permutations(key: jax.Array, layout: Layout, shape: int | tuple[int, ...] = ()) -> tuple[jax.Array, ...]:
  """Uniformly random permutations of every permutable layer's units, independent across layers.

  Args:
    key: PRNG key (the same key gives the same permutations as `permutation_index` and `permute`).
    layout: the weight layout (static).
    shape: batch shape (static); `()` for one permutation per layer.

  Returns:
    int32 arrays `(*shape, n_l)` in `layout.permutable_layers` order; `perms[k][..., i]` is the old
    unit that new unit i takes, and `layout.permutation_index(perms)` is `permutation_index(key,
    layout)`.

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> [p.shape for p in augment.unit_permutations(jax.random.key(0), nets.PAPER_CNN.layout())]
    [(8,), (6,), (4,), (20,)]
  """
  _check_key(key)
  _check_layout(layout)
  if not layout.permutable_layers:
    return ()
  return _unit_permutations(key, layout, _shape_tuple(shape))


@functools.partial(jax.jit, static_argnames=("layout", "shape"))
def _permutation_index(key: jax.Array, layout: Layout, shape: tuple[int, ...]) -> jax.Array:
  # The same words, in the same shape, as `permute` draws for a batch of this shape.
  words = jax.random.bits(key, shape + (_perm_words(layout),), jnp.uint32).reshape(-1, _perm_words(layout))
  return jax.vmap(_index_from_words, in_axes=(0, None))(words, layout).reshape(shape + (layout.num_params,))


def permutation_index(key: jax.Array, layout: Layout, shape: int | tuple[int, ...] = ()) -> jax.Array:
  """The flat gather map of a random permutation: `permute(key, w, layout) == w[index]`.

  Args:
    key: PRNG key.
    layout: the weight layout (static).
    shape: batch shape (static): `()` for one map, `(B,)` for the maps that `permute(key, w, layout)`
      applies to the rows of a `(B, N)` batch.

  Returns:
    int32 `(*shape, N)`; every row is a permutation of `arange(N)`.

  Example:
    >>> import jax, numpy as np
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> index = augment.permutation_index(jax.random.key(0), layout)
    >>> index.shape, index.dtype, bool((np.sort(index) == np.arange(100)).all())
    ((100,), dtype('int32'), True)
  """
  _check_key(key)
  _check_layout(layout)
  return _permutation_index(key, layout, _shape_tuple(shape))


def apply_index(w: jax.Array, index: jax.Array) -> jax.Array:
  """Gather `w[..., index]`: one map for every row, or one map per row.

  Args:
    w: `(N,)` or `(B, N)`.
    index: int `(N,)`, or `(B, N)` with a map per row.

  Returns:
    Array of the broadcast shape of `w` and `index`.
  """
  w, index = jnp.asarray(w), jnp.asarray(index)
  _check_rows(w)
  _check_rows(index, "index")
  if w.shape[-1] != index.shape[-1]:
    raise ValueError(f"w has {w.shape[-1]} entries per row but index has {index.shape[-1]}")
  return _gather(w, index)


def invert_index(index: jax.Array) -> jax.Array:
  """The inverse gather map: `apply_index(apply_index(w, index), invert_index(index)) == w`.

  Args:
    index: int `(N,)` or `(B, N)`, each row a permutation of `arange(N)` (not checked).

  Returns:
    int32 array of the same shape.

  Example:
    >>> import jax, numpy as np
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> w = np.arange(100.0)
    >>> index = augment.permutation_index(jax.random.key(0), layout)
    >>> restored = augment.apply_index(augment.apply_index(w, index), augment.invert_index(index))
    >>> bool((restored == w).all())
    True
  """
  index = jnp.asarray(index)
  _check_rows(index, "index")
  return jnp.argsort(index, axis=-1).astype(jnp.int32)


def compose_index(*indices: jax.Array) -> jax.Array:
  """One gather map equal to applying `indices[0]`, then `indices[1]`, and so on.

  `apply_index(w, compose_index(a, b)) == apply_index(apply_index(w, a), b)`. Maps are `(N,)` or
  `(B, N)` (per row); the result has the broadcast shape.

  Example:
    >>> import jax, numpy as np
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> a = augment.permutation_index(jax.random.key(0), layout)
    >>> b = augment.permutation_index(jax.random.key(1), layout)
    >>> w = np.arange(100.0)
    >>> bool((augment.apply_index(w, augment.compose_index(a, b))
    ...       == augment.apply_index(augment.apply_index(w, a), b)).all())
    True
  """
  if not indices:
    raise ValueError("compose_index needs at least one index map")
  out = jnp.asarray(indices[0])
  for index in indices[1:]:
    out = apply_index(out, index)
  return out.astype(jnp.int32)


# ---- permute ------------------------------------------------------------------------------------


def _permute_with_words(w: jax.Array, words: jax.Array, layout: Layout) -> jax.Array:
  index = _rowwise(lambda row_words: _index_from_words(row_words, layout), words)
  return _gather(w, index)


@functools.partial(jax.jit, static_argnames=("layout",))
def _permute(key: jax.Array, w: jax.Array, layout: Layout) -> jax.Array:
  words = jax.random.bits(key, w.shape[:-1] + (_perm_words(layout),), jnp.uint32)
  return _permute_with_words(w, words, layout)


def permute(key: jax.Array, w: jax.Array, layout: Layout) -> jax.Array:
  """Randomly permute the hidden units of every permutable layer; the network function is unchanged.

  Layer l's weight rows (conv: whole kernels) and bias move by a random permutation, and so does the
  input axis of layer l+1 (conv: input channels, with their kernels; a dense layer after a flattened
  conv: blocks of `h * w` inputs). Input and output units never move.

  Args:
    key: PRNG key.
    w: flat weights `(N,)` or a batch `(B, N)` (an independent permutation per row and per layer).
    layout: the weight layout (static).

  Returns:
    Permuted weights, same shape and dtype:
    `apply_index(w, permutation_index(key, layout, w.shape[:-1]))`.

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> spec = nets.TETRIS_MLP
    >>> w = jax.numpy.linspace(-1.0, 1.0, 100)
    >>> w_perm = augment.permute(jax.random.key(1), w, spec.layout())
    >>> x = jax.numpy.ones((3, 16))
    >>> bool(jax.numpy.allclose(nets.apply(spec, w, x, "tanh"), nets.apply(spec, w_perm, x, "tanh"),
    ...                         atol=1e-6))
    True
  """
  _check_key(key)
  _check_weights(w, layout)
  return _permute(key, jnp.asarray(w), layout)


def _enumerate_table(layout: Layout) -> np.ndarray:
  """Every permutation's gather map, int32 `(num_permutations, N)`, in lexicographic order."""
  per_layer = [np.array(list(itertools.permutations(range(n))), np.int32).reshape(-1, n)
               for n in layout.permutable_sizes]
  if not per_layer:
    return np.arange(layout.num_params, dtype=np.int32)[None]
  choice = np.indices([len(p) for p in per_layer]).reshape(len(per_layer), -1)
  cat = np.concatenate([p[c] for p, c in zip(per_layer, choice)], axis=1)
  return _index_from_perms(cat, layout)


def permutation_table(key: jax.Array, layout: Layout, num: int, *, complete: bool = False) -> jax.Array:
  """A fixed set of permutations as gather maps, as the original data loader precomputed them.

  Args:
    key: PRNG key.
    layout: the weight layout (static).
    num: P, the number of permutations wanted (static).
    complete: if True and the layout has at most P permutations in total (`num_permutations`), return
      every one of them exactly once, in a random order (the paper's tetris setting: all 5! = 120).
      Otherwise (and always when False) P independent random permutations,
      `permutation_index(key, layout, (P,))`, as the original "random" mode used for the CNN zoos;
      rows may then repeat (rarely, when P is far below the total).

  Returns:
    int32 `(P, N)`, or `(num_permutations(layout), N)` for a complete table. Use with
    `permute_from_table` or `augment(..., table=table)`.

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> augment.permutation_table(jax.random.key(0), layout, 120, complete=True).shape
    (120, 100)
    >>> augment.permutation_table(jax.random.key(0), layout, 1000).shape
    (1000, 100)
  """
  _check_key(key)
  _check_layout(layout)
  num = int(num)
  if num < 1:
    raise ValueError(f"the table needs at least one permutation, got num={num}")
  if complete and num_permutations(layout) <= num:
    return _shuffle_rows(key, jnp.asarray(_enumerate_table(layout)))
  return _permutation_index(key, layout, (num,))


def unit_permutation_table(key: jax.Array, layout: Layout, num: int, *, complete: bool = False) -> jax.Array:
  """`permutation_table` in compact form: each row is the concatenated unit permutations `(S,)` of the
  permutable layers (S = `sum(layout.permutable_sizes)`) instead of a full `(N,)` gather map.

  A table of 25,000 permutations (the original's CNN setting) is 25,000 x 2,464 x 4 B = 246 MB as
  gather maps for the paper's CNN, 3.8 MB in this form (38 hidden units); `permute_from_unit_table`
  expands the drawn rows inside the jitted step. `complete` as in `permutation_table` (every permutation
  once when there are at most `num`).

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> table = augment.unit_permutation_table(jax.random.key(0), nets.TETRIS_MLP.layout(), 120, complete=True)
    >>> table.shape, len({tuple(r) for r in table.tolist()})
    ((120, 5), 120)
  """
  _check_key(key)
  _check_layout(layout)
  num = int(num)
  if num < 1:
    raise ValueError(f"the table needs at least one permutation, got num={num}")
  sizes = layout.permutable_sizes
  if not sizes:
    return jnp.zeros((1, 0), jnp.int32)
  if complete and num_permutations(layout) <= num:
    per_layer = [np.array(list(itertools.permutations(range(n))), np.int32).reshape(-1, n) for n in sizes]
    choice = np.indices([len(p) for p in per_layer]).reshape(len(per_layer), -1)
    every = np.concatenate([p[c] for p, c in zip(per_layer, choice)], axis=1)
    return _shuffle_rows(key, jnp.asarray(every))
  return jnp.concatenate(_unit_permutations(key, layout, (num,)), axis=-1)


@functools.partial(jax.jit, static_argnames=("layout",))
def _permute_from_unit_table(key: jax.Array, w: jax.Array, table: jax.Array, layout: Layout) -> jax.Array:
  rows = _uniform_int(jax.random.bits(key, w.shape[:-1], jnp.uint32), table.shape[0])
  perms = table[rows]
  if not layout.permutable_layers:
    return w
  index = jax.vmap(lambda p: _index_from_perms(p, layout))(perms.reshape(-1, perms.shape[-1]))
  return _gather(w, index.reshape(w.shape[:-1] + (layout.num_params,)))


def permute_from_unit_table(key: jax.Array, w: jax.Array, table: jax.Array, layout: Layout) -> jax.Array:
  """Permute each row of `w` by a uniformly drawn row of a `unit_permutation_table` (with replacement,
  as the original data loader: two views may share a permutation).

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> table = augment.unit_permutation_table(jax.random.key(0), layout, 120, complete=True)
    >>> augment.permute_from_unit_table(jax.random.key(1), jax.numpy.ones((4, 100)), table, layout).shape
    (4, 100)
  """
  _check_key(key)
  _check_weights(w, layout)
  if np.ndim(table) != 2 or np.shape(table)[0] < 1 or np.shape(table)[1] != sum(layout.permutable_sizes):
    raise ValueError(f"table must be int (P, {sum(layout.permutable_sizes)}) unit permutations of this layout "
                     f"with P >= 1, got shape {np.shape(table)}")
  return _permute_from_unit_table(key, jnp.asarray(w), jnp.asarray(table, jnp.int32), layout)


@jax.jit
def _shuffle_rows(key: jax.Array, table: jax.Array) -> jax.Array:
  return jax.random.permutation(key, table, axis=0, independent=False)


def _permute_from_table_with_words(w: jax.Array, words: jax.Array, table: jax.Array) -> jax.Array:
  return _gather(w, table[_uniform_int(words, table.shape[0])])


@jax.jit
def _permute_from_table(key: jax.Array, w: jax.Array, table: jax.Array) -> jax.Array:
  return _permute_from_table_with_words(w, jax.random.bits(key, w.shape[:-1], jnp.uint32), table)


def _check_table(table: Any, w: Any) -> None:
  if np.ndim(table) != 2 or np.shape(table)[0] < 1:
    raise ValueError(f"table must be an int array (P, N) with P >= 1, got shape {np.shape(table)}")
  if np.shape(table)[1] != np.shape(w)[-1]:
    raise ValueError(f"table maps {np.shape(table)[1]} parameters but w has {np.shape(w)[-1]}")
  dtype = table.dtype if hasattr(table, "dtype") else np.asarray(table).dtype
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f"table must hold integer indices, got dtype {dtype}")


def permute_from_table(key: jax.Array, w: jax.Array, table: jax.Array) -> jax.Array:
  """Permute each row by a uniformly drawn row of a precomputed `permutation_table`.

  Args:
    key: PRNG key.
    w: `(N,)` or `(B, N)`; each row draws its own table row (with replacement, as the original code:
      two views may share a permutation).
    table: int `(P, N)` gather maps.

  Returns:
    Permuted weights, same shape and dtype.

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> table = augment.permutation_table(jax.random.key(0), layout, 120, complete=True)
    >>> w = jax.numpy.zeros((4, 100))
    >>> augment.permute_from_table(jax.random.key(1), w, table).shape
    (4, 100)
  """
  _check_key(key)
  _check_rows(w)
  _check_table(table, w)
  return _permute_from_table(key, jnp.asarray(w), jnp.asarray(table))


# ---- noise --------------------------------------------------------------------------------------


@jax.jit
def _add_noise(key: jax.Array, w: jax.Array, std: Any) -> jax.Array:
  return w + jnp.asarray(std, w.dtype) * jax.random.normal(key, w.shape, w.dtype)


def add_noise(key: jax.Array, w: jax.Array, std: Any) -> jax.Array:
  """Additive i.i.d. Gaussian noise `w + std * N(0, 1)` on every entry (biases included).

  Args:
    key: PRNG key.
    w: floating `(N,)` or `(B, N)`.
    std: noise standard deviation (a number or a traced scalar; no recompilation when it changes).

  Returns:
    Noised weights, same shape and dtype.

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> augment.add_noise(jax.random.key(0), jax.numpy.zeros((2, 5)), 0.1).shape
    (2, 5)
  """
  _check_key(key)
  _check_rows(w)
  w = jnp.asarray(w)
  if not jnp.issubdtype(w.dtype, jnp.floating):
    raise ValueError(f"add_noise needs floating weights, got dtype {w.dtype}")
  return _add_noise(key, w, std)


# ---- erasing ------------------------------------------------------------------------------------


# Random uint32 words one row's erasing draws: the coin, then a length and a start per try. The
# "uniform" mode uses the first three; both draw the same block so the mode changes nothing else.
ERASE_WORDS = 1 + 2 * ERASE_TRIES


def _erase_row(w: jax.Array, words: jax.Array, p: Any, lo: Any, hi: Any, value: Any, mode: str) -> jax.Array:
  n = w.shape[-1]
  tries = ERASE_TRIES if mode == "original" else 1
  apply = _unit_float(words[0]) < p
  frac = lo + (hi - lo) * _unit_float(words[1:1 + tries])
  lengths = jnp.minimum(jnp.floor(n * frac).astype(jnp.int32), n)
  if mode == "original":
    # All tries at once; the first one that fits wins, and if none fits the row is not erased.
    starts = _uniform_int(words[1 + tries:1 + 2 * tries], n)
    fits = starts + lengths < n
    first = jnp.argmax(fits)
    start, length = starts[first], jnp.where(apply & fits[first], lengths[first], 0)
  else:
    start = _uniform_int(words[2], n - lengths[0] + 1)  # any start with start + length <= n
    length = jnp.where(apply, lengths[0], 0)
  pos = jnp.arange(n)
  return jnp.where((pos >= start) & (pos < start + length), jnp.asarray(value, w.dtype), w)


def _erase_with_words(w, words, p, lo, hi, value, mode):
  return _rowwise(lambda row, row_words: _erase_row(row, row_words, p, lo, hi, value, mode), w, words)


@functools.partial(jax.jit, static_argnames=("mode",))
def _random_erase(key: jax.Array, w: jax.Array, p: Any, lo: Any, hi: Any, value: Any, mode: str) -> jax.Array:
  words = jax.random.bits(key, w.shape[:-1] + (ERASE_WORDS,), jnp.uint32)
  return _erase_with_words(w, words, p, lo, hi, value, mode)


def random_erase(key: jax.Array, w: jax.Array, p: Any = 0.5, scale: tuple[Any, Any] = (0.02, 0.33),
                 value: Any = 0.0, mode: str = "original") -> jax.Array:
  """With probability p, set one contiguous block of each row to `value` (fixed shapes: a mask).

  The block has length `int(N * U(scale[0], scale[1]))` and ignores layer boundaries.

  * `mode="original"` (default) is the original code's `RandomErasingVector` "block" mode: up to 10
    tries, each drawing a length and `start ~ randint[0, N)` and accepted only if
    `start + length < N`; if all 10 fail the row stays unerased. This makes blocks near the end of
    the vector rarer (the last entry is never erased) and shifts the erased fraction towards short
    blocks (density proportional to `1 - x` on the scale interval).
  * `mode="uniform"` draws the start uniformly among the positions where the block fits
    (`start + length <= N`), so a block is always placed and the erased fraction is uniform on the
    scale interval.

  The defaults are the original code's settings; the paper's text states scale (0.03, 0.3)
  (reference.md §3.2, §9 B5).

  Args:
    key: PRNG key.
    w: `(N,)` or `(B, N)`; every row draws its own coin, length and start.
    p: probability that a row is erased (number or traced scalar).
    scale: (low, high) fractions of N, `0 <= low <= high <= 1` (numbers or traced scalars).
    value: the fill value.
    mode: "original" or "uniform" (static).

  Returns:
    Erased weights, same shape and dtype.

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> out = augment.random_erase(jax.random.key(0), jax.numpy.ones((4, 100)), p=1.0, mode="uniform")
    >>> bool(((out == 0).sum(axis=1) >= 1).all())
    True
  """
  _check_key(key)
  _check_rows(w)
  _check_probability(p, "p")
  lo, hi = _check_scale(scale)
  _check_mode(mode)
  return _random_erase(key, jnp.asarray(w), p, lo, hi, value, mode)


# ---- the composed pipeline ----------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("layout", "steps", "erase_mode"))
def _augment(key, w, table, noise_std, erase_p, erase_lo, erase_hi, erase_value, *, layout, steps, erase_mode):
  do_permute, do_noise, do_erase = steps
  k_words, k_noise = jax.random.split(key)
  # One block of words per row for permuting and erasing, always of the same size, so that switching
  # a step off does not change the randomness of the others.
  n_perm = max(_perm_words(layout), 1)
  words = jax.random.bits(k_words, w.shape[:-1] + (n_perm + ERASE_WORDS,), jnp.uint32)
  if do_permute:
    if table is None:
      w = _permute_with_words(w, words[..., :n_perm], layout)
    else:
      w = _permute_from_table_with_words(w, words[..., 0], table)
  if do_noise:
    w = w + jnp.asarray(noise_std, w.dtype) * jax.random.normal(k_noise, w.shape, w.dtype)
  if do_erase:
    w = _erase_with_words(w, words[..., n_perm:], erase_p, erase_lo, erase_hi, erase_value, erase_mode)
  return w


def _augment_args(key, w, layout, permute, noise_std, erase_p, erase_scale, erase_value, erase_mode, table):
  """Validate the pipeline's arguments; returns the jitted core's arguments and static config."""
  _check_key(key)
  _check_weights(w, layout)
  _check_probability(erase_p, "erase_p")
  lo, hi = _check_scale(erase_scale)
  _check_mode(erase_mode)
  if isinstance(noise_std, (int, float, np.number)) and noise_std < 0:
    raise ValueError(f"noise_std must be >= 0, got {noise_std}")
  if table is not None:
    _check_table(table, w)
    table = jnp.asarray(table)
  # A step whose strength is a concrete 0 is skipped at trace time; traced strengths always run.
  steps = (bool(permute), not _is_zero(noise_std), not _is_zero(erase_p))
  args = (key, jnp.asarray(w), table if steps[0] else None, noise_std, erase_p, lo, hi, erase_value)
  return args, dict(layout=layout, steps=steps, erase_mode=erase_mode)


def augment(key: jax.Array, w: jax.Array, layout: Layout, *, permute: bool = True, noise_std: Any = 0.0,
            erase_p: Any = 0.5, erase_scale: tuple[Any, Any] = (0.02, 0.33), erase_value: Any = 0.0,
            erase_mode: str = "original", table: jax.Array | None = None) -> jax.Array:
  """One augmented view, as the paper's pipeline: permute → add noise → random erase.

  Each step is skipped when switched off (`permute=False`, or `noise_std=0` / `erase_p=0` given as
  numbers; traced strengths always run). Switching a step off does not change the randomness of the
  others. The defaults are the original code's main-run settings (no noise; erasing with p 0.5,
  scale (0.02, 0.33), value 0 and its 10-tries placement rule). Rows get independent randomness.

  Args:
    key: PRNG key.
    w: `(N,)` or `(B, N)`.
    layout: the weight layout (static).
    permute: permute hidden units (see `permute`).
    noise_std: standard deviation of additive Gaussian noise (see `add_noise`).
    erase_p, erase_scale, erase_value, erase_mode: see `random_erase` (`erase_mode` is static).
    table: optional int `(P, N)` from `permutation_table`: permute by a random row of it (the
      original data loader) instead of a fresh random permutation. Used only when `permute` is True.

  Returns:
    The view, same shape and dtype as `w`.

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> w = jax.numpy.ones((16, 100))
    >>> augment.augment(jax.random.key(0), w, layout, noise_std=0.05).shape
    (16, 100)
  """
  args, static = _augment_args(key, w, layout, permute, noise_std, erase_p, erase_scale, erase_value,
                               erase_mode, table)
  return _augment(*args, **static)


def two_views(key: jax.Array, w: jax.Array, layout: Layout, **kwargs: Any) -> tuple[jax.Array, jax.Array]:
  """Two independent views `(view_i, view_j)` of the same weights, for contrastive training.

  One `augment` call on the batch stacked twice, `augment(key, concatenate([w, w]), layout,
  **kwargs)` (`stack` for one vector), split in halves: every row of both views gets its own
  randomness.

  Args:
    key: PRNG key.
    w: `(N,)` or `(B, N)`.
    layout: the weight layout (static).
    **kwargs: the keyword arguments of `augment`.

  Returns:
    Two arrays shaped like `w`.

  Example:
    >>> import jax
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> w = jax.numpy.ones((8, 100))
    >>> view_i, view_j = augment.two_views(jax.random.key(1), w, layout, noise_std=0.01)
    >>> view_i.shape == view_j.shape == (8, 100), bool((view_i != view_j).any())
    (True, True)
  """
  defaults = dict(permute=True, noise_std=0.0, erase_p=0.5, erase_scale=(0.02, 0.33), erase_value=0.0,
                  erase_mode="original", table=None)
  unknown = set(kwargs) - set(defaults)
  if unknown:
    raise TypeError(f"two_views got unexpected keyword arguments {sorted(unknown)}; "
                    f"it takes those of augment: {sorted(defaults)}")
  options = {**defaults, **kwargs}
  args, static = _augment_args(key, w, layout, options["permute"], options["noise_std"], options["erase_p"],
                               options["erase_scale"], options["erase_value"], options["erase_mode"],
                               options["table"])
  key, w, *rest = args
  # The same compiled program as `augment` on the doubled batch (under an outer jit it all fuses).
  if w.ndim == 1:
    views = _augment(key, jnp.stack([w, w]), *rest, **static)
    return views[0], views[1]
  views = _augment(key, jnp.concatenate([w, w]), *rest, **static)
  return views[:w.shape[0]], views[w.shape[0]:]


# ---- canonical form -----------------------------------------------------------------------------


def _order_key(x: jax.Array) -> jax.Array:
  """int32 keys whose order is a total order of the float32 values (-0.0 < 0.0; NaNs ordered)."""
  bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
  return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


def _lexsort_units(keys: jax.Array) -> jax.Array:
  """The permutation that sorts the rows of int `keys (n, m)` lexicographically (stable).

  Pairwise: unit v precedes unit u if its key is smaller at the first differing column, or the keys
  are equal and v comes first. O(n^2 m), which for layer widths of tens beats a sort with m keys
  (`lax.sort` with hundreds of key operands takes tens of seconds to compile).
  """
  n, m = keys.shape
  key_u = jnp.broadcast_to(keys[:, None, :], (n, n, m))
  key_v = jnp.broadcast_to(keys[None, :, :], (n, n, m))
  differ = key_u != key_v
  first = jnp.argmax(differ, axis=-1)[..., None]  # first differing column of units u and v
  u_less = jnp.take_along_axis(key_u, first, axis=-1) < jnp.take_along_axis(key_v, first, axis=-1)
  equal = ~differ.any(axis=-1)
  idx = jnp.arange(n)
  less = ~equal & u_less[..., 0]  # less[u, v]: u sorts before v
  tie_before = equal & (idx[:, None] < idx[None, :])
  rank = (less | tie_before).sum(axis=0)  # how many units sort before each unit
  return jnp.argsort(rank).astype(jnp.int32)


def _canonical_perms_row(w: jax.Array, layout: Layout) -> jax.Array:
  """Concatenated per-layer permutations that bring one network into canonical form."""
  groups = layout.permutable_layers
  perms = []
  for l in groups:
    layer = layout.layers[l]
    incoming = w[layout.weight_slice(l)].reshape(layer.out_units, layer.fan_in)
    if l - 1 in groups:  # read the inputs in the canonical order of the previous layer
      n_prev = layout.layers[l - 1].out_units
      incoming = incoming.reshape(layer.out_units, n_prev, -1)[:, perms[-1], :].reshape(layer.out_units, -1)
    parts = [jnp.sum(jnp.square(incoming), axis=1, keepdims=True), incoming]
    b = layout.bias_slice(l)
    if b is not None:
      parts.append(w[b][:, None])
    # Tie-break for units with identical incoming weights and bias: their outgoing weights. In the
    # output layer these are in a fixed order; a hidden next layer is not sorted yet, so use their
    # sorted values, which do not depend on its order.
    nxt = layout.layers[l + 1]
    outgoing = w[layout.weight_slice(l + 1)].reshape(nxt.out_units, layer.out_units, -1)
    outgoing = jnp.transpose(outgoing, (1, 0, 2)).reshape(layer.out_units, -1)
    parts.append(outgoing if l + 1 not in groups else jnp.sort(outgoing, axis=1))
    perms.append(_lexsort_units(_order_key(jnp.concatenate(parts, axis=1))))
  return jnp.concatenate(perms)


def _canonical_index_row(w: jax.Array, layout: Layout) -> jax.Array:
  if not layout.permutable_layers:
    return jnp.arange(layout.num_params, dtype=jnp.int32)
  return _index_from_perms(_canonical_perms_row(w, layout), layout)


@functools.partial(jax.jit, static_argnames=("layout",))
def _canonical_index(w: jax.Array, layout: Layout) -> jax.Array:
  if w.ndim == 1:
    return _canonical_index_row(w, layout)
  return jax.vmap(_canonical_index_row, in_axes=(0, None))(w, layout)


def canonical_index(w: jax.Array, layout: Layout) -> jax.Array:
  """The gather map that brings `w` into canonical form: `canonicalize(w) == apply_index(w, index)`.

  Args:
    w: `(N,)` or `(B, N)`.
    layout: the weight layout (static).

  Returns:
    int32 array shaped like `w`.
  """
  _check_weights(w, layout)
  return _canonical_index(jnp.asarray(w), layout)


def canonicalize(w: jax.Array, layout: Layout) -> jax.Array:
  """A deterministic canonical form under the hidden-unit permutation group.

  Layer by layer from the input side, the units of each permutable layer are sorted by:
  1. the squared L2 norm of their incoming weights (ascending),
  2. then lexicographically by those incoming weights, read in the already canonical order of the
     previous layer's units, then by the bias,
  3. then, for units with identical incoming weights and bias, by their outgoing weights: in the
     output layer's (fixed) order when the next layer is the output layer, else by their sorted
     values.
  Comparisons are exact (a total order on float32 bits), so every permutation of a network gives the
  same vector, ties included, except for one case that would need general graph canonisation: two
  units of a hidden layer that is not the last with identical incoming weights and bias whose
  outgoing weights are the same multiset in different positions. The canonical network computes the
  same function as `w`. Keys are compared as float32, and the pairwise sort costs O(n^2 m) memory per
  layer of n units with m key entries: meant for zoo-sized layers (tens of units).

  Args:
    w: `(N,)` or `(B, N)` (each row canonicalized on its own).
    layout: the weight layout (static).

  Returns:
    Canonical weights, same shape and dtype.

  Example:
    >>> import jax, numpy as np
    >>> from wsl_jax.hyperrep import augment
    >>> from wsl_jax.weights import nets
    >>> layout = nets.TETRIS_MLP.layout()
    >>> w = jax.numpy.linspace(-1.0, 1.0, 100)
    >>> w_perm = augment.permute(jax.random.key(1), w, layout)
    >>> bool((augment.canonicalize(w_perm, layout) == augment.canonicalize(w, layout)).all())
    True
  """
  return apply_index(w, canonical_index(w, layout))
