"""The CPU-scale CNN of the digits zoos (`nets.DIGITS_CNN`), its data, and each CNN recipe's key property
at smoke size: test accuracy rises over the checkpoints and the weights leave their initial variance."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsl_jax.data import datasets
from wsl_jax.weights import nets
from wsl_jax.zoo import cnn_presets, diagnostics, presets

apply = jax.jit(nets.apply, static_argnames=("spec", "activation", "conv_impl"))


def _images(n, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, size=(n, 8, 8, 1)).astype(np.float32)


def test_digits_cnn_layout_mirrors_the_paper_cnn():
  spec = nets.DIGITS_CNN
  layout = spec.layout()
  assert nets.param_count(spec) == layout.num_params == 988
  assert [l.kind for l in layout.layers] == ["conv", "conv", "dense", "dense"]
  assert [l.num_params for l in layout.layers] == [80, 198, 500, 210]
  assert layout.layer_offsets == (0, 80, 278, 778)
  assert [l.out_units for l in layout.layers] == [8, 6, 20, 10]
  assert spec.conv_output_shapes() == ((3, 3, 8), (2, 2, 6))
  assert layout.layers[2].in_block == 4  # the dense layer reads 6 channels x 2x2 positions, channel-major
  assert [layout.unit_index(l).shape[1] for l in range(4)] == [10, 33, 25, 21]  # token lengths (+ bias)
  assert layout.permutable_sizes == (8, 6, 20)  # every layer but the output one
  # The paper CNN's widths: 8 and 6 conv channels, 20 hidden units, 10 classes.
  paper = nets.PAPER_CNN.layout()
  assert [paper.layers[i].out_units for i in (0, 1, 3, 4)] == [l.out_units for l in layout.layers]


@pytest.mark.parametrize("impl, activation", [("taps", "tanh"), ("im2col", "relu"), ("lax", "sigmoid")])
def test_digits_cnn_forward_matches_numpy(impl, activation):
  spec = nets.DIGITS_CNN
  w = nets.init_weights(jax.random.key(1), spec.layout(), "kaiming_uniform", bias_value=0.1)
  x = _images(5)
  got = apply(spec, w, jnp.asarray(x), activation, conv_impl=impl)
  assert got.shape == (5, 10)
  np.testing.assert_allclose(got, nets.numpy_forward(spec, np.asarray(w), x, activation), rtol=1e-4, atol=1e-5)


def test_permuting_hidden_units_keeps_the_digits_cnn_function():
  spec = nets.DIGITS_CNN
  layout = spec.layout()
  w = np.asarray(nets.init_weights(jax.random.key(3), layout, "uniform", bias_value=0.05))
  rng = np.random.default_rng(1)
  w_perm = w[layout.permutation_index([rng.permutation(n) for n in layout.permutable_sizes])]
  assert not np.allclose(w, w_perm)
  x = jnp.asarray(_images(4))
  np.testing.assert_allclose(apply(spec, w_perm, x, "tanh"), apply(spec, w, x, "tanh"), rtol=1e-5, atol=1e-5)


def test_digits_8_is_the_digits_split_at_native_size():
  d8, d = datasets.load("digits_8"), datasets.load("digits")
  assert d8.x_train.shape == (1437, 8, 8, 1) and d8.x_test.shape == (360, 8, 8, 1)
  assert d8.x_train.dtype == np.float32 and d8.input_shape == nets.DIGITS_CNN.input_shape
  np.testing.assert_allclose(d8.x_train.reshape(-1, 64), d.x_train * 2 - 1, atol=1e-6)
  np.testing.assert_array_equal(d8.y_test, d.y_test)
  assert d8.x_train.min() == -1.0 and d8.x_train.max() == 1.0


def test_cpu_presets_keep_the_generating_factors_design():
  seed = presets.get("digits8_seed")
  assert seed.net == nets.DIGITS_CNN and seed.dataset == "digits_8" and not seed.grid
  assert len(seed.checkpoints()) >= 10 and seed.checkpoints()[0] == 0
  fixed = dict(seed.fixed)
  assert (fixed["activation"], fixed["init"], fixed["optimizer"]) == ("tanh", "uniform", "adam")
  for s in (1, 5):
    for mode in ("fix", "rand"):
      p = presets.get(f"digits8_hyp_{s}_{mode}_seed")
      assert (p.seeds_per_config, p.seed_mode, p.net, p.dataset) == (s, mode, nets.DIGITS_CNN, "digits_8")
      assert p.grid == presets.get(f"mnist_hyp_{s}_{mode}_seed").grid == cnn_presets.HYP_GRID
      assert p.subset_unit == "config" and p.checkpoints() == seed.checkpoints()
      assert p.num_models == seed.num_models  # "approximately the same number of CNN models"
  hp1 = presets.build_hparams(presets.get("digits8_hyp_1_fix_seed"), 20)
  hp5 = presets.build_hparams(presets.get("digits8_hyp_5_rand_seed"), 20)
  assert set(hp1["seed"]) == {1} and len(set(hp5["seed"])) == 20
  configs5 = {tuple(hp5[k][i] for k in ("activation", "init", "optimizer", "lr", "wd")) for i in range(20)}
  assert len(configs5) == 4  # 4 configurations x 5 seeds


def _smoke(name, models, epochs, **overrides):
  from wsl_jax.zoo.generate import generate
  p = dataclasses.replace(presets.get(name), **overrides)
  return generate(p, num_models=models, epochs=epochs, progress=False)


def test_digits8_seed_recipe_trains_and_moves_the_weights():
  """Smoke size (8 models, the first 3 of the preset's 10 checkpoint intervals): accuracy rises at every
  checkpoint and ends far above chance (the 200-model zoo: 0.10, 0.35, 0.49, 0.62 at epochs 0, 3, 6, 9),
  the across-model weight variance leaves the analytic U(0, 1) init variance, and the mean weight
  drifts (the linear signal W reads)."""
  p = presets.get("digits8_seed")
  step = p.checkpoints()[1]
  z = _smoke("digits8_seed", 8, 3 * step, chunk_size=8)
  assert z.num_checkpoints == 4 and not z.diverged.any()
  acc = z.properties["test_acc"].mean(0)
  assert np.all(np.diff(acc) > 0), acc
  assert acc[0] < 0.2 and acc[-1] > 0.45, acc
  d = diagnostics.diagnose(z)
  var = d["per_checkpoint"]["weight_var"]
  assert var[0] == pytest.approx(d["init_var_analytic"] * 7 / 8, rel=0.1)  # across 8 models, ddof 0
  assert var[-1] > 1.3 * var[0], var
  mean_w = z.weights.mean(axis=(0, 2))
  assert mean_w[0] > 0.4 and np.all(np.diff(mean_w) < 0), mean_w


def test_digits8_hyp_recipe_spreads_accuracy():
  """HYP zoos at smoke size: 4 configurations of the grid; some train, and accuracies spread."""
  z = _smoke("digits8_hyp_1_fix_seed", 4, 3, chunk_size=8,
             grid=(("activation", ("tanh",)), ("init", ("kaiming_uniform", "uniform")), ("optimizer", ("adam",)),
                   ("lr", (1e-2, 1e-4)), ("wd", (0.0,))))
  final = z.properties["test_acc"][:, -1]
  assert final.max() > 0.5 and final.max() - final.min() > 0.2, final
