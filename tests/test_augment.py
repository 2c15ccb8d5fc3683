"""Tests for wsl_jax.hyperrep.augment: function preservation, permutation algebra, erasing statistics, no retracing.

Compilation dominates the runtime on CPU, so the tests share one batch shape `(ROWS, N)` per
architecture and cache the weights, the permuted batches and the jitted forward passes.
"""

import doctest
import functools
import logging
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from wsl_jax.hyperrep import augment
from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layout
from wsl_jax.weights.nets import ConvBlock, NetSpec

# Small architectures covering every permutation rule: several hidden layers, with and without
# biases, conv -> conv (whole kernels move with input channels), conv -> flatten -> dense (blocks of
# h * w inputs move), and conv -> global pool -> dense.
SPECS = {
    "tetris": nets.TETRIS_MLP,  # 16-5-4, no bias
    "mlp_bias": NetSpec(input_shape=(6,), num_classes=3, hidden=(5, 4, 3), bias=True),
    "mlp_nobias": NetSpec(input_shape=(6,), num_classes=3, hidden=(4, 5), bias=False),
    "cnn_flatten": NetSpec(input_shape=(8, 8, 2), num_classes=3, hidden=(5,), bias=True,
                           convs=(ConvBlock(4, 3), ConvBlock(3, 2, pool=2))),  # dense in_block = 2 * 2
    "cnn_pool": NetSpec(input_shape=(7, 7, 1), num_classes=3, global_pool=True, bias=False,
                        convs=(ConvBlock(3, 3), ConvBlock(4, 3, stride=2))),
}
ROWS = 24  # networks per batch in the property tests


def _layout(name):
  return SPECS[name].layout()


@functools.cache
def _base_weights(name):
  """ROWS different random networks of architecture `name`, (ROWS, N) (NumPy RNG: nothing to compile)."""
  rng = np.random.default_rng(list(SPECS).index(name))
  return jnp.asarray(0.5 * rng.standard_normal((ROWS, _layout(name).num_params), np.float32))


@functools.cache
def _forward(name):
  """Jitted logits of a batch of networks on fixed inputs: (ROWS, N) -> (ROWS, 5, classes)."""
  spec = SPECS[name]
  x = np.random.default_rng(3).standard_normal((5,) + spec.input_shape, np.float32)

  def logits(w):
    # nets.apply as first committed adds biases by implicit rank promotion, which tests/conftest.py
    # turns into an error; allowing it here is harmless once nets.py broadcasts explicitly.
    with jax.numpy_rank_promotion("allow"):
      return jax.vmap(lambda v: nets.apply(spec, v, x, "tanh"))(w)
  return jax.jit(logits)


def _arange_rows(layout):
  return jnp.broadcast_to(jnp.arange(layout.num_params, dtype=jnp.float32), (ROWS, layout.num_params))


@functools.cache
def _permuted(name):
  """(weights, permuted weights, each row's gather map: the same permutation of arange(N))."""
  layout = _layout(name)
  w = _base_weights(name)
  key = jax.random.key(11)
  index = augment.permute(jax.random.clone(key), _arange_rows(layout), layout).astype(jnp.int32)
  return w, augment.permute(key, w, layout), index


def _unit_perms_of(index, layout):
  """Recover each layer's unit permutation from a gather map (row i's first weight comes from row p[i])."""
  perms = []
  for l in layout.permutable_layers:
    layer, start = layout.layers[l], layout.weight_slice(l).start
    perms.append((index[start + np.arange(layer.out_units) * layer.fan_in] - start) // layer.fan_in)
  return perms


def _assert_same_logits(name, w_a, w_b):
  forward = _forward(name)
  a, b = np.asarray(forward(w_a)), np.asarray(forward(w_b))
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


# ---- permutations -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SPECS))
def test_permute_preserves_the_network_function(name):
  w, w_perm, _ = _permuted(name)
  assert w_perm.shape == w.shape and w_perm.dtype == w.dtype
  assert not np.array_equal(w_perm, w)  # the permutation did something
  _assert_same_logits(name, w, w_perm)
  for seed in range(3):  # more keys, each with ROWS independent permutations
    _assert_same_logits(name, w, augment.permute(jax.random.key(100 + seed), w, _layout(name)))


@pytest.mark.parametrize("name", list(SPECS))
def test_permute_is_a_layout_permutation_and_keeps_each_layers_multiset(name):
  layout = _layout(name)
  w, w_perm, index = map(np.asarray, _permuted(name))
  assert index.shape == w.shape and index.dtype == np.int32
  np.testing.assert_array_equal(np.take_along_axis(w, index, axis=1), w_perm)
  for row in index:  # each row is exactly Layout's gather map for some unit permutations
    perms = _unit_perms_of(row, layout)
    for p, n in zip(perms, layout.permutable_sizes):
      np.testing.assert_array_equal(np.sort(p), np.arange(n))
    np.testing.assert_array_equal(row, layout.permutation_index(perms))
  for l in range(layout.num_layers):
    for part in (layout.weight_slice(l), layout.bias_slice(l)):
      if part is not None:
        np.testing.assert_array_equal(np.sort(w_perm[:, part], axis=1), np.sort(w[:, part], axis=1))
  last = layout.bias_slice(layout.num_layers - 1)
  if last is not None:  # output units never move
    np.testing.assert_array_equal(w_perm[:, last], w[:, last])


def test_key_gives_the_same_permutation_in_every_entry_point():
  name = "cnn_flatten"
  layout = _layout(name)
  key = jax.random.key(11)  # the key of _permuted
  perms = augment.unit_permutations(jax.random.clone(key), layout, ROWS)
  assert [(p.shape, p.dtype) for p in perms] == [((ROWS, n), jnp.int32) for n in layout.permutable_sizes]
  expected = np.stack([layout.permutation_index([np.asarray(p[b]) for p in perms]) for b in range(ROWS)])
  index = augment.permutation_index(key, layout, (ROWS,))
  assert index.shape == (ROWS, layout.num_params) and index.dtype == jnp.int32
  np.testing.assert_array_equal(index, expected)
  np.testing.assert_array_equal(_permuted(name)[2], expected)  # = permute(key, arange(N) rows)


@pytest.mark.parametrize("name", ["mlp_bias", "cnn_flatten"])
def test_inverse_restores_exactly_and_maps_compose(name):
  layout = _layout(name)
  w, w_perm, index = _permuted(name)
  np.testing.assert_array_equal(augment.apply_index(w_perm, augment.invert_index(index)), w)
  np.testing.assert_array_equal(augment.compose_index(index, augment.invert_index(index)),
                                np.broadcast_to(np.arange(layout.num_params), index.shape))
  # Permuting twice with known maps equals one permutation by the composed map, per row ...
  key = jax.random.key(9)
  second = augment.permutation_index(jax.random.clone(key), layout, ROWS)
  twice = augment.permute(key, w_perm, layout)
  np.testing.assert_array_equal(twice, augment.apply_index(w, augment.compose_index(index, second)))
  _assert_same_logits(name, w, twice)
  # ... and the composed map is the group product: new unit i takes old unit pa[pb[i]] in every layer.
  a, b = np.asarray(index[0]), np.asarray(second[0])
  product = [p[q] for p, q in zip(_unit_perms_of(a, layout), _unit_perms_of(b, layout))]
  np.testing.assert_array_equal(augment.compose_index(a, b), layout.permutation_index(product))
  np.testing.assert_array_equal(augment.invert_index(a)[a], np.arange(layout.num_params))


def test_rows_and_keys_get_different_permutations():
  layout = _layout("tetris")
  w = jnp.broadcast_to(_base_weights("tetris")[0], (ROWS, layout.num_params))
  key = jax.random.key(0)
  out = np.asarray(augment.permute(jax.random.clone(key), w, layout))
  assert len({row.tobytes() for row in out}) > 15  # 24 draws from 5! = 120 orders: ~22 distinct
  other = np.asarray(augment.permute(jax.random.key(1), w, layout))
  assert not np.array_equal(other, out)
  # vmap over keys: row b is the unbatched call with key b.
  keys = jax.random.split(key, ROWS)
  vmapped = np.asarray(jax.vmap(augment.permute, in_axes=(0, 0, None))(jax.random.clone(keys), w, layout))
  np.testing.assert_array_equal(vmapped[5], augment.permute(keys[5], w[5], layout))
  assert len({row.tobytes() for row in vmapped}) > 15


def test_unit_permutations_are_uniform_and_independent_across_layers():
  layout = Layout.mlp([2, 3, 3, 2])
  perms = np.asarray(augment.unit_permutations(jax.random.key(0), layout, 6000))  # (2 layers, 6000, 3)
  codes = perms[0] @ [9, 3, 1] * 27 + perms[1] @ [9, 3, 1]  # the pair of orders
  counts = np.unique(codes, return_counts=True)[1]
  assert len(counts) == 36 and stats.chisquare(counts).pvalue > 1e-4  # 6 x 6 pairs, all equally likely


def test_wide_layers_are_shuffled_by_sorting():
  layout = Layout.mlp([3, augment.PAIRWISE_RANK_MAX_UNITS + 6, 4, 2])  # one wide, one narrow hidden layer
  index = np.asarray(augment.permutation_index(jax.random.key(0), layout, 8))
  for row in index:
    perms = _unit_perms_of(row, layout)
    for p, n in zip(perms, layout.permutable_sizes):
      np.testing.assert_array_equal(np.sort(p), np.arange(n))
    np.testing.assert_array_equal(row, layout.permutation_index(perms))
  assert len({row.tobytes() for row in index}) == 8


def test_permute_moves_conv_kernels_and_flattened_blocks_whole():
  layout = _layout("cnn_flatten")  # conv(4, 2, 3x3) -> conv(3, 4, 2x2) -> dense(5, 3 * 4) -> dense(3, 5)
  perms = [np.array([3, 1, 0, 2]), np.array([2, 0, 1]), np.array([4, 3, 2, 1, 0])]
  index = augment._index_from_perms(np.concatenate(perms), layout)
  np.testing.assert_array_equal(index, layout.permutation_index(perms))
  w = np.arange(layout.num_params, dtype=np.float32)
  params, orig = layout.unflatten(w[index]), layout.unflatten(w)
  np.testing.assert_array_equal(params[0]["w"], orig[0]["w"][perms[0]])
  np.testing.assert_array_equal(params[1]["w"], orig[1]["w"][perms[1]][:, perms[0]])  # kernels whole
  block = layout.layers[2].in_block
  cols = (perms[1][:, None] * block + np.arange(block)).reshape(-1)
  np.testing.assert_array_equal(params[2]["w"], orig[2]["w"][perms[2]][:, cols])
  np.testing.assert_array_equal(params[3]["w"], orig[3]["w"][:, perms[2]])
  np.testing.assert_array_equal(params[3]["b"], orig[3]["b"])


def test_paper_layouts_gather_maps_match_layout():
  for spec in (nets.TETRIS_MLP, nets.PAPER_CNN, nets.UNTERTHINER_CNN):
    layout = spec.layout()
    rng = np.random.default_rng(0)
    perms = [[rng.permutation(n) for n in layout.permutable_sizes] for _ in range(20)]
    cat = np.stack([np.concatenate(p) for p in perms])
    np.testing.assert_array_equal(augment._index_from_perms(cat, layout),
                                  np.stack([layout.permutation_index(p) for p in perms]))


@pytest.mark.slow
def test_paper_cnn_permutation_keeps_the_float64_reference_forward():
  spec = nets.PAPER_CNN
  w = nets.init_weights(jax.random.key(0), spec.layout(), "kaiming_normal", bias_value=0.1)
  w_perm = augment.permute(jax.random.key(1), w, spec.layout())
  x = np.asarray(jax.random.uniform(jax.random.key(2), (4, 28, 28, 1)))
  np.testing.assert_allclose(nets.numpy_forward(spec, np.asarray(w_perm), x, "relu"),
                             nets.numpy_forward(spec, np.asarray(w), x, "relu"), rtol=1e-5, atol=1e-6)


def test_layout_without_hidden_layers_is_left_alone():
  layout = Layout.mlp([4, 3])
  w = jnp.arange(15.0)
  np.testing.assert_array_equal(augment.permute(jax.random.key(0), w, layout), w)
  assert augment.unit_permutations(jax.random.key(0), layout) == ()
  assert augment.num_permutations(layout) == 1
  assert augment.permutation_table(jax.random.key(0), layout, 5, complete=True).shape == (1, 15)


# ---- permutation tables -------------------------------------------------------------------------


def test_complete_table_enumerates_every_permutation_once():
  layout = _layout("tetris")
  table = np.asarray(augment.permutation_table(jax.random.key(0), layout, 120, complete=True))
  assert table.shape == (120, 100) and table.dtype == np.int32
  assert len({row.tobytes() for row in table}) == 120 == augment.num_permutations(layout)
  np.testing.assert_array_equal(table, np.stack([layout.permutation_index(_unit_perms_of(r, layout))
                                                 for r in table]))
  w = _base_weights("tetris")[0]
  _assert_same_logits("tetris", jnp.broadcast_to(w, (ROWS, 100)), augment.apply_index(w, table[:ROWS]))
  # Several layers: the Cartesian product; asking for more than exist gives each one once.
  layout = Layout.mlp([2, 3, 2, 2])
  table = np.asarray(augment.permutation_table(jax.random.key(1), layout, 50, complete=True))
  assert table.shape == (12, layout.num_params) and len({r.tobytes() for r in table}) == 12


def test_random_table_rows_are_valid_permutations():
  layout = _layout("cnn_flatten")
  assert augment.num_permutations(layout) == math.factorial(4) * math.factorial(3) * math.factorial(5)
  table = augment.permutation_table(jax.random.key(0), layout, ROWS, complete=True)  # 17280 > ROWS: random
  assert table.shape == (ROWS, layout.num_params) and table.dtype == jnp.int32
  assert len({row.tobytes() for row in np.asarray(table)}) == ROWS
  w = _base_weights("cnn_flatten")
  _assert_same_logits("cnn_flatten", w, augment.apply_index(w, table))


def test_permute_from_table_draws_rows_uniformly():
  layout = _layout("tetris")
  table = augment.permutation_table(jax.random.key(0), layout, 120, complete=True)
  arange = jnp.broadcast_to(jnp.arange(100, dtype=jnp.float32), (2400, 100))
  out = np.asarray(augment.permute_from_table(jax.random.key(1), arange, table)).astype(np.int32)
  rows = {row.tobytes(): i for i, row in enumerate(np.asarray(table))}
  drawn = np.array([rows[row.tobytes()] for row in out])  # every output row is a table row
  counts = np.bincount(drawn, minlength=120)
  assert counts.min() > 0 and stats.chisquare(counts).pvalue > 1e-4


# ---- canonical form -----------------------------------------------------------------------------


def _with_ties(name, w):
  """Make units that tie under simple keys: duplicate incoming weights, equal norms, a zero row."""
  layout = _layout(name)
  params = layout.unflatten(np.array(w))
  for l in layout.permutable_layers:
    p = params[l]
    p["w"][1] = p["w"][0]  # units 0 and 1: identical incoming weights and bias ...
    if "b" in p:
      p["b"][1] = p["b"][0]
    nxt = params[l + 1]["w"]
    block = nxt.shape[1] // p["w"].shape[0]
    # ... and related, but different, outgoing weights: which is larger depends on the next layer's order.
    nxt[:, block:2 * block] = -2.0 * nxt[:, :block]
    if p["w"].shape[0] > 3:  # units 2 and 3: same norm, bias and outgoing weights, different incoming
      p["w"][3] = p["w"][2][..., ::-1]
      if "b" in p:
        p["b"][3] = p["b"][2]
      nxt[:, 3 * block:4 * block] = nxt[:, 2 * block:3 * block]
  params[0]["w"][-1] = 0.0  # an erased unit
  return layout.flatten(params)


@pytest.mark.parametrize("name", ["tetris", "mlp_bias", "cnn_flatten", "cnn_pool"])
def test_canonicalize_is_identical_for_every_permutation(name):
  layout = _layout(name)
  w0 = np.asarray(_base_weights(name)[0])
  for w in (w0, _with_ties(name, w0)):
    views = augment.permute(jax.random.key(4), jnp.broadcast_to(w, (ROWS, layout.num_params)), layout)
    views = views.at[0].set(w)  # the unpermuted network too
    index = augment.canonical_index(views, layout)
    canon = np.asarray(augment.apply_index(views, index))
    np.testing.assert_array_equal(canon, np.broadcast_to(canon[0], canon.shape))
    np.testing.assert_array_equal(augment.canonicalize(views, layout), canon)
    np.testing.assert_array_equal(augment.canonicalize(canon, layout), canon)  # idempotent
    _assert_same_logits(name, jnp.broadcast_to(w, canon.shape), canon)


def test_canonicalize_sorts_by_incoming_norm():
  layout = Layout.mlp([3, 4, 2], bias=False)
  w = np.zeros(layout.num_params, np.float32)
  w[:12] = np.repeat([3.0, 1.0, 2.0, 0.5], 3)  # unit norms: 3, 1, 2, 0.5 (times sqrt 3)
  w[12:] = np.arange(8.0)
  canon = layout.unflatten(np.asarray(augment.canonicalize(w, layout)))
  np.testing.assert_array_equal(canon[0]["w"][:, 0], [0.5, 1.0, 2.0, 3.0])
  np.testing.assert_array_equal(canon[1]["w"], np.arange(8.0).reshape(2, 4)[:, [3, 1, 2, 0]])


# ---- noise --------------------------------------------------------------------------------------


def test_add_noise_statistics_and_independence():
  w = jnp.zeros((64, 500))
  out = np.asarray(augment.add_noise(jax.random.key(0), w, 0.05))
  assert abs(out.std() - 0.05) < 0.002 and abs(out.mean()) < 0.002
  assert not np.allclose(out[0], out[1])
  assert stats.kstest(out.reshape(-1)[:5000] / 0.05, "norm").pvalue > 1e-3
  np.testing.assert_array_equal(augment.add_noise(jax.random.key(1), w, 0.0), w)


# ---- erasing ------------------------------------------------------------------------------------

ERASE_N, ERASE_ROWS = 2000, 4000


@functools.cache
def _erased(mode, p=1.0, scale=(0.02, 0.33), value=0.0, seed=0):
  """Erase rows of ones; returns (mask of erased entries, start, length) per row."""
  ones = jnp.ones((ERASE_ROWS, ERASE_N))
  out = np.asarray(augment.random_erase(jax.random.key(seed), ones, p=p, scale=scale, value=value, mode=mode))
  assert set(np.unique(out)) <= {1.0, value}
  mask = out == value
  length = mask.sum(axis=1)
  start = np.where(length > 0, mask.argmax(axis=1), -1)
  return mask, start, length


@pytest.mark.parametrize("mode", augment.ERASE_MODES)
def test_erase_is_one_contiguous_block_per_row_and_rows_differ(mode):
  mask, start, length = _erased(mode)
  transitions = np.abs(np.diff(mask.astype(np.int8), axis=1)).sum(axis=1)
  assert (transitions <= 2).all()
  assert (length > 0).all()  # p = 1: every row (10 failed tries in a row has probability ~1e-8)
  end = start + length
  np.testing.assert_array_equal(mask[np.arange(ERASE_ROWS), end - 1], True)
  if mode == "original":
    assert end.max() < ERASE_N  # accepted only if start + len < N: the last entry is never erased
  else:
    assert end.max() == ERASE_N  # uniform placement reaches the end
  assert len(np.unique(start)) > 1000


def test_erased_fraction_matches_the_requested_scale():
  lo, hi = 0.02, 0.33
  # uniform mode: the fraction is uniform on [lo, hi) (up to int() truncation, < 1/N).
  frac = _erased("uniform")[2] / ERASE_N
  assert frac.min() >= lo - 1 / ERASE_N and frac.max() <= hi
  assert abs(frac.mean() - (lo + hi) / 2) < 0.005
  assert stats.kstest(frac + 0.5 / ERASE_N, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
  # original mode: a try with length x fits with probability 1 - x, so the density is ~ (1 - x).
  frac = _erased("original")[2] / ERASE_N

  def cdf(x):
    x = np.clip(x, lo, hi)
    return ((x - lo) - (x**2 - lo**2) / 2) / ((hi - lo) - (hi**2 - lo**2) / 2)
  assert stats.kstest(frac + 0.5 / ERASE_N, cdf).pvalue > 1e-3
  assert stats.kstest(frac + 0.5 / ERASE_N, stats.uniform(lo, hi - lo).cdf).pvalue < 1e-6  # not uniform
  # The paper's stated scale.
  frac = _erased("uniform", scale=(0.03, 0.3))[2] / ERASE_N
  assert frac.min() >= 0.03 - 1 / ERASE_N and frac.max() <= 0.3 and abs(frac.mean() - 0.165) < 0.005


@pytest.mark.parametrize("mode", augment.ERASE_MODES)
def test_erase_start_is_uniform_over_valid_positions(mode):
  _, start, length = _erased(mode)
  last_start = ERASE_N - length - (1 if mode == "original" else 0)  # start + len < N vs <= N
  assert (start <= last_start).all()
  assert stats.kstest((start + 0.5) / (last_start + 1), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("mode", augment.ERASE_MODES)
def test_erase_probability_and_value(mode):
  assert (_erased(mode, p=0.0)[2] == 0).all()
  length = _erased(mode, p=0.5, value=-3.0, seed=1)[2]
  assert abs((length > 0).mean() - 0.5) < 5 * math.sqrt(0.25 / ERASE_ROWS)
  length = _erased(mode, scale=(0.25, 0.25), seed=2)[2]  # original: a try fits with probability 3/4
  assert set(np.unique(length)) <= {0, ERASE_N // 4} and (length > 0).mean() > 0.99
  assert (_erased(mode, scale=(0.0, 0.0), seed=3)[2] == 0).all()


def test_uniform_int_is_the_high_word_of_the_product():
  rng = np.random.default_rng(0)
  bits = np.concatenate([rng.integers(0, 2**32, 1000, dtype=np.uint64),
                         np.array([0, 2**32 - 1, 2**31, 65535, 65536], np.uint64)])
  uniform_int = jax.jit(augment._uniform_int)
  for n in (1, 2, 3, 100, 4970, 65535, 65536, 65537, 123_456_789, 2**31 - 1):
    got = np.asarray(uniform_int(jnp.asarray(bits.astype(np.uint32)), n))
    np.testing.assert_array_equal(got, (bits * np.uint64(n)) >> np.uint64(32))


# ---- the composed pipeline ----------------------------------------------------------------------


def test_augment_steps_switch_off_and_use_separate_keys():
  name = "mlp_bias"
  layout = _layout(name)
  w = _base_weights(name)
  key = jax.random.key(0)
  np.testing.assert_array_equal(augment.augment(jax.random.clone(key), w, layout, permute=False, erase_p=0.0), w)
  perm_only = augment.augment(jax.random.clone(key), w, layout, erase_p=0.0)
  assert not np.array_equal(perm_only, w)
  _assert_same_logits(name, w, perm_only)  # no noise, no erasing: the network function is kept
  # Turning noise on moves neither the erased blocks nor the permutation.
  ones = jnp.ones_like(w)
  kwargs = dict(erase_p=0.7, erase_mode="uniform")
  plain = np.asarray(augment.augment(jax.random.clone(key), ones, layout, **kwargs))
  noisy = np.asarray(augment.augment(jax.random.clone(key), ones, layout, noise_std=0.01, **kwargs))
  np.testing.assert_array_equal(plain == 0, noisy == 0)
  assert (plain == 0).any() and not np.array_equal(plain, noisy)
  arange = _arange_rows(layout)
  perm_arange = np.asarray(augment.augment(jax.random.clone(key), arange, layout, erase_p=0.0))
  full = np.asarray(augment.augment(key, arange, layout, noise_std=0.01, **kwargs))
  kept = full != 0
  np.testing.assert_array_equal(np.rint(full)[kept], perm_arange[kept])
  np.testing.assert_array_equal(kept, plain != 0)


def test_augment_with_table_uses_table_rows():
  layout = _layout("tetris")
  table = augment.permutation_table(jax.random.key(0), layout, 120, complete=True)
  arange = _arange_rows(layout)
  out = np.asarray(augment.augment(jax.random.key(1), arange, layout, table=table, erase_p=0.0))
  rows = {row.tobytes() for row in np.asarray(table)}
  assert all(row.astype(np.int32).tobytes() in rows for row in out)
  assert len({row.tobytes() for row in out}) > 15
  np.testing.assert_array_equal(
      augment.augment(jax.random.key(1), arange, layout, table=table, permute=False, erase_p=0.0), arange)


def test_two_views_are_independent_augments():
  name = "cnn_flatten"
  layout = _layout(name)
  w = _base_weights(name)
  key = jax.random.key(0)
  kwargs = dict(noise_std=0.01, erase_p=0.5, erase_scale=(0.03, 0.3), erase_mode="uniform")
  view_i, view_j = augment.two_views(jax.random.clone(key), w, layout, **kwargs)
  assert view_i.shape == view_j.shape == w.shape
  both = augment.augment(key, jnp.concatenate([w, w]), layout, **kwargs)
  np.testing.assert_array_equal(view_i, both[:ROWS])
  np.testing.assert_array_equal(view_j, both[ROWS:])
  assert not (np.asarray(view_i) == np.asarray(view_j)).all(axis=1).any()  # every pair differs
  one_i, one_j = augment.two_views(jax.random.key(3), w[0], layout, **kwargs)
  assert one_i.shape == one_j.shape == w[0].shape and not np.array_equal(one_i, one_j)
  with pytest.raises(TypeError, match="unexpected keyword"):
    augment.two_views(jax.random.key(1), w, layout, noise=0.1)


def test_everything_runs_under_jit_and_vmap_with_traced_settings():
  name = "cnn_pool"
  layout = _layout(name)
  w = _base_weights(name)
  # vmap over keys: row b is the unbatched call with key b.
  keys = jax.random.split(jax.random.key(0), ROWS)
  vmapped = jax.vmap(lambda k, v: augment.augment(k, v, layout, erase_p=0.0))(jax.random.clone(keys), w)
  np.testing.assert_array_equal(vmapped[3], augment.augment(keys[3], w[3], layout, erase_p=0.0))
  _assert_same_logits(name, w, vmapped)
  # jit with the layout static and the strengths traced: a traced 0 runs the step, with no effect.
  step = jax.jit(functools.partial(augment.two_views, layout=layout, erase_mode="uniform"))
  view_i, view_j = step(jax.random.key(1), w, noise_std=0.0, erase_p=0.0, erase_scale=(0.1, 0.2))
  assert view_i.shape == view_j.shape == w.shape and not np.array_equal(view_i, view_j)
  _assert_same_logits(name, w, view_i)
  view_i, _ = step(jax.random.key(2), w, noise_std=0.02, erase_p=1.0, erase_scale=(0.1, 0.2))
  assert ((np.asarray(view_i) == 0).sum(axis=1) >= int(0.1 * layout.num_params)).all()
  canon = jax.jit(augment.canonicalize, static_argnames="layout")(jnp.concatenate([w, vmapped]), layout=layout)
  np.testing.assert_array_equal(canon[:ROWS], canon[ROWS:])


def test_no_recompilation_across_calls_with_the_same_shapes(caplog):
  layout = _layout("mlp_nobias")
  w = _base_weights("mlp_nobias")

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(key, w, std, p):
    return augment.two_views(key, w, layout, noise_std=std, erase_p=p)

  for i, k in enumerate(jax.random.split(jax.random.key(0), 4)):
    jax.block_until_ready(step(k, w + i, 0.01 * i, 0.25 * i))
  # The eager entry points compile once per shape and static configuration, not per value.
  # Shapes and static settings as in the tests above, so that their programs are reused here.
  w_bias, ones, zeros = _base_weights("mlp_bias"), jnp.ones((ERASE_ROWS, ERASE_N)), jnp.zeros((64, 500))
  calls = [lambda k, s: augment.augment(k, w_bias, _layout("mlp_bias"), noise_std=0.1 + s, erase_p=0.5 - s,
                                        erase_mode="uniform"),
           lambda k, s: augment.random_erase(k, ones, p=0.5 + s, scale=(0.02 + s, 0.3), value=s),
           lambda k, s: augment.add_noise(k, zeros, 0.1 + s),
           lambda k, s: augment.permute(k, w, layout)]
  for call in calls:
    jax.block_until_ready(call(jax.random.key(9), 0.0))
  keys = [[jax.random.key(100 + 10 * i + j) for j in range(len(calls))] for i in range(3)]
  with caplog.at_level(logging.WARNING), jax.log_compiles():
    for i in range(3):
      for call, k in zip(calls, keys[i]):
        jax.block_until_ready(call(k, 0.01 * (i + 1)))
  assert [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()] == []


# ---- input validation ---------------------------------------------------------------------------


def test_rejects_bad_inputs_with_clear_errors():
  layout = _layout("tetris")
  key = jax.random.key(0)  # never consumed: every call below fails its checks first
  with pytest.raises(ValueError, match=r"expected \(\.\.\., 100\)"):
    augment.permute(key, jnp.zeros(99), layout)
  with pytest.raises(ValueError, match=r"expected \(\.\.\., 100\)"):
    augment.augment(key, jnp.zeros((3, 101)), layout)
  with pytest.raises(ValueError, match=r"expected \(\.\.\., 100\)"):
    augment.two_views(key, jnp.zeros((3, 101)), layout)
  with pytest.raises(ValueError, match=r"expected \(\.\.\., 100\)"):
    augment.canonicalize(jnp.zeros(10), layout)
  with pytest.raises(ValueError, match=r"\(N,\) or a batch \(B, N\)"):
    augment.permute(key, jnp.zeros((2, 3, 100)), layout)
  with pytest.raises(ValueError, match="single PRNG key"):
    augment.permute(jax.random.split(jax.random.key(1), 2), jnp.zeros(100), layout)
  with pytest.raises(ValueError, match="erase mode"):
    augment.random_erase(key, jnp.zeros(100), mode="scatter")
  with pytest.raises(ValueError, match="scale"):
    augment.random_erase(key, jnp.zeros(100), scale=(0.5, 0.2))
  with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
    augment.random_erase(key, jnp.zeros(100), p=1.5)
  with pytest.raises(ValueError, match=r"erase_p must be in \[0, 1\]"):
    augment.augment(key, jnp.zeros(100), layout, erase_p=-0.1)
  with pytest.raises(ValueError, match="noise_std"):
    augment.augment(key, jnp.zeros(100), layout, noise_std=-1.0)
  with pytest.raises(ValueError, match="table maps"):
    augment.permute_from_table(key, jnp.zeros(100), jnp.zeros((4, 80), jnp.int32))
  with pytest.raises(ValueError, match="table maps"):
    augment.augment(key, jnp.zeros(100), layout, table=jnp.zeros((4, 80), jnp.int32))
  with pytest.raises(TypeError, match="Layout"):
    augment.permute(key, jnp.zeros(100), nets.TETRIS_MLP)
  with pytest.raises(ValueError, match="floating"):
    augment.add_noise(key, jnp.zeros(100, jnp.int32), 0.1)
  with pytest.raises(ValueError, match="at least one"):
    augment.permutation_table(key, layout, 0)


def test_docstring_examples_run():
  result = doctest.testmod(augment, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 10 and result.failed == 0
