"""Issue 16's fidelity fixes: table-based permutations as the original data loader, the plateau rule with
negative losses (reference.md B18), and the code variant of Ec+D with a batch-independent weight (B1)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsl_jax.hyperrep import augment, configs, losses, train
from wsl_jax.hyperrep.configs import AugmentConfig, LossConfig, ModelConfig, TrainConfig
from wsl_jax.weights import nets

LAYOUT = nets.TETRIS_MLP.layout()


def test_complete_unit_table_holds_every_tetris_permutation_once():
  table = np.asarray(augment.unit_permutation_table(jax.random.key(0), LAYOUT, 120, complete=True))
  assert table.shape == (120, 5)
  assert {tuple(r) for r in table} == set(itertools.permutations(range(5)))
  # Fewer rows than the group: random permutations, each a valid one.
  small = np.asarray(augment.unit_permutation_table(jax.random.key(0), LAYOUT, 7, complete=True))
  assert small.shape == (7, 5) and all(sorted(r) == list(range(5)) for r in small)
  cnn = nets.PAPER_CNN.layout()
  big = augment.unit_permutation_table(jax.random.key(0), cnn, 25_000)
  assert big.shape == (25_000, 38) and big.nbytes == 25_000 * 38 * 4  # 3.8 MB, not 246 MB of gather maps


def test_table_permutations_preserve_the_function():
  spec = nets.PAPER_CNN
  layout = spec.layout()
  w = jax.random.normal(jax.random.key(1), (3, layout.num_params)) * 0.1
  table = augment.unit_permutation_table(jax.random.key(2), layout, 50)
  wp = augment.permute_from_unit_table(jax.random.key(3), w, table, layout)
  assert not np.allclose(wp, w)
  x = jax.random.normal(jax.random.key(4), (5,) + spec.input_shape)
  for i in range(3):
    np.testing.assert_allclose(nets.apply(spec, wp[i], x, "tanh"), nets.apply(spec, w[i], x, "tanh"), atol=1e-5)
  # Every permuted row is one of the table's permutations, expanded.
  maps = np.asarray(jax.vmap(lambda p: augment._index_from_perms(p, layout))(table))
  for i in range(3):
    assert any(np.array_equal(np.asarray(w[i])[m], np.asarray(wp[i])) for m in maps)


def test_views_draw_from_the_table():
  # A one-row table: both views of a sample get the same permutation (no noise, no erasing).
  aug = AugmentConfig(permutations=1, table_seed=5, erase_p=0.0)
  w = jax.random.normal(jax.random.key(0), (4, 100))
  table = train.permutation_table(aug, LAYOUT)
  assert table.shape == (1, 5)
  views, _ = train.make_views(jax.random.key(1), w, LAYOUT, aug, "augmented", jnp.asarray(table))
  np.testing.assert_array_equal(views[:, 0], views[:, 1])
  fresh, _ = train.make_views(jax.random.key(1), w, LAYOUT, AugmentConfig(erase_p=0.0), "augmented")
  assert not np.array_equal(fresh[:, 0], fresh[:, 1])
  # The paper presets use the original's tables; the test views a separate one.
  tetris = configs.preset("tetris")
  assert tetris.augment.permutations == 120 and tetris.eval_augment.permutations == 100
  assert tetris.eval_augment.table_seed != tetris.augment.table_seed
  assert configs.preset("mnist_seed").augment.permutations == 25_000
  assert configs.preset("small").augment.permutations == 0


def test_training_with_tables_is_deterministic_and_resumable(tmp_path):
  config = TrainConfig(model=ModelConfig(dim=16, heads=2, ff_dim=32, blocks=1, latent_dim=8, head_layers=1,
                                         head_hidden=16, head_out=8),
                       augment=AugmentConfig(permutations=120), eval_augment=AugmentConfig(
                           erase_p=0.0, permutations=10, table_seed=1),
                       batch_size=32, epochs=2, lr=3e-3, eval_every=1, checkpoint_every=1, eval_batch_size=64)
  rng = np.random.default_rng(0)
  w, w_val = (rng.normal(size=(n, 100)).astype(np.float32) for n in (96, 40))
  a = train.fit(config, w, w_val, layout=LAYOUT, seed=1, devices=1, progress=False)
  b = train.fit(config.replace(epochs=1), w, w_val, layout=LAYOUT, seed=1, devices=1, progress=False,
                workdir=str(tmp_path))
  b = train.fit(config, w, w_val, layout=LAYOUT, seed=1, devices=1, progress=False, workdir=str(tmp_path))
  np.testing.assert_array_equal(np.asarray(a.state["params"]), np.asarray(b.state["params"]))
  assert np.isfinite(a.history[-1]["val_r2"])
  other = train.fit(config.replace(**{"augment.table_seed": 7}), w, w_val, layout=LAYOUT, seed=1, devices=1,
                    progress=False)
  assert not np.array_equal(np.asarray(other.state["params"]), np.asarray(a.state["params"]))


def _plateau_scales(losses_per_epoch, threshold=1e-4, patience=1):
  tx = train.reduce_on_plateau(factor=0.5, patience=patience, threshold=threshold, steps_per_epoch=1)
  state = tx.init(jnp.zeros(1))
  scales = []
  for value in losses_per_epoch:
    _, state = tx.update(jnp.zeros(1), state, value=value)
    scales.append(float(state.scale))
  return scales


def test_plateau_rule_decays_for_negative_losses():
  # Eq. 3's loss (-cos + log T) is negative. Slightly worse epochs are no improvement.
  worse = [-3.0, -2.9999, -2.9998, -2.9997, -2.9996]
  assert _plateau_scales(worse) == [1.0, 1.0, 0.5, 0.5, 0.25]
  # Positive losses: PyTorch's rule, unchanged.
  assert _plateau_scales([3.0, 3.0001, 3.0002, 3.0003, 3.0004]) == [1.0, 1.0, 0.5, 0.5, 0.25]
  # Real improvements (beyond the relative threshold) keep the rate, for either sign.
  assert _plateau_scales([-3.0, -3.1, -3.2, -3.3]) == [1.0] * 4
  assert _plateau_scales([3.0, 2.9, 2.8, 2.7]) == [1.0] * 4
  # An improvement within the threshold does not count (relative to |best|).
  assert _plateau_scales([-3.0, -3.0001, -3.0002], threshold=1e-3) == [1.0, 1.0, 0.5]


def test_code_variant_weight_does_not_depend_on_the_batch_size():
  rng = np.random.default_rng(0)
  p = rng.normal(size=(64, 8)).astype(np.float32)
  q = p + 0.3 * rng.normal(size=(64, 8)).astype(np.float32)
  half = losses.positive_contrast_code(p[:32], q[:32], 0.1, code_batch=500)
  full = losses.positive_contrast_code(p, q, 0.1, code_batch=500)
  per_pair = np.mean((np.sum(p * q, 1) / np.linalg.norm(p, axis=1) / np.linalg.norm(q, axis=1) / 0.1) ** 2)
  np.testing.assert_allclose(full, per_pair / 1000, rtol=1e-5)  # the original's weight at its batch of 500
  assert abs(float(half) / float(full) - 1) < 0.5  # the same scale at half the batch (not twice as large)
  # code_batch=0: the original code's own division by this batch's 2B.
  np.testing.assert_allclose(losses.positive_contrast_code(p, q, 0.1, code_batch=0), per_pair / 128, rtol=1e-5)
  assert LossConfig().code_batch == 500
  with pytest.raises(ValueError, match="code_batch"):
    LossConfig(code_batch=-1)
