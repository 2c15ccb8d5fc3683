"""The zoo diagnostic against plain NumPy, the key property of each TETRIS recipe at smoke size, and the
sign symmetry that keeps a linear probe on tanh weights blind (wsl_jax/zoo/presets.py, TETRIS comments)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wsl_jax.weights import nets
from wsl_jax.zoo import core, diagnostics, presets


def _synthetic_zoo(inits=("uniform",), m=40, e=5, diverged=(3,), seed=0):
  """A zoo of random numbers (no training): weights, accuracies and hyper-parameters we control."""
  rng = np.random.default_rng(seed)
  net = nets.TETRIS_MLP
  n = net.layout().num_params
  w = rng.normal(size=(m, e, n)).astype(np.float32) * np.linspace(0.5, 2.0, e)[None, :, None]
  w += rng.normal(size=(1, 1, n)).astype(np.float32)
  test = rng.uniform(0.2, 0.9, (m, e)).astype(np.float32)
  train = np.clip(test + rng.uniform(0, 0.2, (m, e)), 0, 1).astype(np.float32)
  div = np.zeros(m, bool)
  div[list(diverged)] = True
  w[list(diverged), -1] = np.nan
  props = {"test_acc": test, "train_acc": train, "ggap": train - test,
           "epoch": np.tile(np.arange(e), (m, 1)).astype(np.float32)}
  hp = {"seed": np.arange(1, m + 1), "init": np.asarray([inits[i % len(inits)] for i in range(m)]),
        "init_std": np.full(m, 0.05, np.float32)}
  return core.Zoo(weights=w, epochs=np.arange(e, dtype=np.int32), properties=props, hparams=hp, net=net,
                  dataset="tetris", diverged=div)


def test_per_checkpoint_statistics_equal_numpy():
  z = _synthetic_zoo()
  d = diagnostics.diagnose(z)
  ok = ~z.diverged
  assert d["diverged"] == 1 and d["num_models"] == 40 and d["epochs"] == list(range(5))
  pc = d["per_checkpoint"]
  for name in ("test_acc", "train_acc", "ggap"):
    np.testing.assert_allclose(pc[f"{name}_mean"], z.properties[name][ok].mean(0), rtol=1e-6)
    np.testing.assert_allclose(pc[f"{name}_std"], z.properties[name][ok].std(0), rtol=1e-5)
  for e in range(5):
    w = z.weights[ok, e].astype(np.float64)
    np.testing.assert_allclose(pc["weight_var"][e], np.mean(np.var(w, axis=0)), rtol=1e-10)
    np.testing.assert_allclose(d["weight_var_per_layer"][e],
                               [np.var(w[:, :80], axis=0).mean(), np.var(w[:, 80:], axis=0).mean()], rtol=1e-10)


@pytest.mark.parametrize("inits", [("uniform",), ("kaiming_uniform",), ("normal", "xavier_normal"),
                                   ("uniform", "normal", "kaiming_normal", "kaiming_uniform", "xavier_normal",
                                    "xavier_uniform"), ("RandomNormal", "TruncatedNormal", "glorot_normal",
                                                        "he_uniform", "orthogonal")])
def test_analytic_init_variance_matches_formula_and_sampled_weights(inits):
  z = _synthetic_zoo(inits=inits, m=60, diverged=())
  got = diagnostics.analytic_init_variance(z)
  # Plain formula: per layer, the mixture of the models' initializers; fans of the 16-5-4 MLP.
  fans = [(16, 5, 80), (5, 4, 20)]
  var_of = {"uniform": lambda fi, fo: (0.5, 1 / 12), "normal": lambda fi, fo: (0.0, 1.0),
            "kaiming_normal": lambda fi, fo: (0.0, 2 / fi), "kaiming_uniform": lambda fi, fo: (0.0, 2 / fi),
            "he_uniform": lambda fi, fo: (0.0, 2 / fi), "xavier_normal": lambda fi, fo: (0.0, 2 / (fi + fo)),
            "xavier_uniform": lambda fi, fo: (0.0, 2 / (fi + fo)),
            "glorot_normal": lambda fi, fo: (0.0, 2 / (fi + fo)),
            "RandomNormal": lambda fi, fo: (0.0, 0.05 ** 2),
            "TruncatedNormal": lambda fi, fo: (0.0, (0.05 * 0.87962566103423978) ** 2),
            "orthogonal": lambda fi, fo: (0.0, 1 / max(fi, fo))}
  names = list(z.hparams["init"])
  total, per_layer = 0.0, []
  for fi, fo, count in fans:
    mom = np.array([var_of[n](fi, fo) for n in names])
    v = np.mean(mom[:, 1] + mom[:, 0] ** 2) - np.mean(mom[:, 0]) ** 2
    per_layer.append(v)
    total += v * count
  np.testing.assert_allclose(got["total"], total / 100, rtol=1e-6)  # init_std is float32
  np.testing.assert_allclose(got["per_layer"], per_layer, rtol=1e-6)
  # ... and the weights the initializers really draw (many models) have that variance.
  layout = z.layout
  keys = jax.random.split(jax.random.key(0), 3000)
  draws = np.stack([np.asarray(jax.vmap(lambda k: nets.init_weights(k, layout, n, init_std=0.05))(
      keys[i::len(names)][:3000 // len(names)])) for i, n in enumerate(names)])
  sampled = draws.reshape(-1, 100).astype(np.float64)
  emp = np.var(sampled, axis=0).mean()
  assert emp == pytest.approx(total / 100, rel=0.08)


def test_unknown_initializer_gives_no_analytic_variance():
  z = _synthetic_zoo()
  z.hparams["init"] = np.asarray(["mystery"] * z.num_models)
  assert diagnostics.analytic_init_variance(z) is None
  assert diagnostics.diagnose(z)["init_var_analytic"] is None


def test_pca_heldout_explained_equals_numpy_svd():
  z = _synthetic_zoo(m=60)
  split = z.split()
  d = diagnostics.diagnose(z, split=split, ks=(2, 8, 16, 500))
  assert list(d["pca_explained"]) == ["2", "8", "16", "100"]  # 500 capped by the parameter count
  x_tr = z.weights[split.train].reshape(-1, 100).astype(np.float64)
  x_va = z.weights[split.val].reshape(-1, 100).astype(np.float64)
  x_tr, x_va = x_tr[np.isfinite(x_tr).all(1)], x_va[np.isfinite(x_va).all(1)]
  mu = x_tr.mean(0)
  _, _, vt = np.linalg.svd(x_tr - mu, full_matrices=False)
  for k in (2, 8, 16, 100):
    rec = mu + (x_va - mu) @ vt[:k].T @ vt[:k]
    want = 1 - ((x_va - rec) ** 2).sum() / ((x_va - x_va.mean(0)) ** 2).sum()
    assert d["pca_explained"][str(k)] == pytest.approx(want, abs=1e-9)
  assert d["pca_explained"]["100"] == pytest.approx(1.0, abs=1e-9)
  # More parameters than rows: the Gram-matrix path gives the same numbers as the SVD.
  few = diagnostics.pca_heldout_explained(z, split.train[:3], split.val, ks=(4, 8))
  x3 = z.weights[split.train[:3]].reshape(-1, 100).astype(np.float64)
  x3 = x3[np.isfinite(x3).all(1)]
  _, _, vt3 = np.linalg.svd(x3 - x3.mean(0), full_matrices=False)
  rec = x3.mean(0) + (x_va - x3.mean(0)) @ vt3[:8].T @ vt3[:8]
  assert few["8"] == pytest.approx(1 - ((x_va - rec) ** 2).sum() / ((x_va - x_va.mean(0)) ** 2).sum(), abs=1e-8)


def test_format_and_json():
  import json
  z = _synthetic_zoo()
  d = diagnostics.diagnose(z)
  json.dumps(d, allow_nan=False)
  text = diagnostics.format_diagnostics(d)
  assert "1 diverged" in text and "k=8" in text and "analytic: 0.08333" in text


# ---- the recipes ---------------------------------------------------------------------------------------

def test_tetris_seed_models_fit_and_their_gap_grows():
  """The TETRIS-SEED recipe (32 models, all 75 epochs): train accuracy approaches 1, the gap grows."""
  from wsl_jax.zoo.generate import generate
  z = generate("tetris_seed", num_models=32, progress=False)
  d = diagnostics.diagnose(z)
  gap, train = np.asarray(d["per_checkpoint"]["ggap_mean"]), np.asarray(d["per_checkpoint"]["train_acc_mean"])
  assert abs(gap[0]) < 0.03
  assert gap[5] + 0.05 < gap[25] and gap[40:].mean() > 0.2, gap[[5, 25, 40, 75]]
  assert train[-1] > 0.88, train[-1]
  assert d["per_checkpoint"]["weight_var"][0] == pytest.approx(d["init_var_analytic"], rel=0.1)
  assert d["per_checkpoint"]["weight_var"][-1] > 5 * d["init_var_analytic"]  # the weights moved


def test_tetris_hyp_grid_spreads_accuracy_by_learning_rate_and_the_gap_grows():
  """TETRIS-HYP at smoke size (72 models, 2 per configuration, all 600 epochs): the learning rates of
  the paper's grid separate, and the lr 1e-3 models overfit their 25 images (the gap grows)."""
  from wsl_jax.zoo.generate import generate
  z = generate(presets.TETRIS_HYP, num_models=72, progress=False)
  assert z.num_checkpoints == 76 and not z.diverged.any()
  acc, gap, lr = z.properties["test_acc"], z.properties["ggap"], z.hparams["lr"]
  by_lr = {v: acc[np.isclose(lr, v), -1].mean() for v in (1e-3, 1e-4, 1e-5)}
  assert by_lr[1e-3] > by_lr[1e-4] + 0.1 and by_lr[1e-4] > by_lr[1e-5] + 0.05, by_lr
  assert acc[:, -1].std() > 0.05
  fast = gap[np.isclose(lr, 1e-3)].mean(0)
  assert abs(gap[:, 0].mean()) < 0.04 and fast[-1] > fast[5] + 0.1 and fast[-1] > 0.25, fast[[0, 5, 25, 75]]
  assert z.properties["train_acc"][np.isclose(lr, 1e-3), -1].mean() > 0.85
  assert set(z.hparams["init"]) == set(presets.TETRIS_HYP.grid[1][1])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_sign_flip_of_a_hidden_unit_is_a_symmetry_of_training_only_for_tanh(activation):
  """Why W cannot predict accuracy for tanh with a sign-symmetric init (presets.py, TETRIS comments):
  flipping one hidden unit's in- and out-weights gives the same function, and Adam then trains the
  flipped net along the flipped path, so a weight's sign carries nothing a linear probe could use.
  ReLU is not odd: the flipped net is another function."""
  import types
  from wsl_jax.data import datasets
  from wsl_jax.zoo.train import make_optimizer
  data = datasets.load("tetris")
  x, y = jnp.asarray(data.x_train[:50]), jnp.asarray(data.y_train[:50])
  spec = nets.TETRIS_MLP
  flip = np.ones(100, np.float32)
  flip[16:32] = -1.0  # unit 1's incoming weights: row 1 of the (5, 16) kernel
  flip[80 + np.arange(4) * 5 + 1] = -1.0  # its outgoing weights: column 1 of the (4, 5) kernel
  flip = jnp.asarray(flip)
  tx = make_optimizer("adam", types.SimpleNamespace(lr=1e-2))

  def loss(w):
    logits = nets.apply(spec, w, x, activation)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def run(w):
    def step(carry, _):
      w, s = carry
      u, s = tx.update(jax.grad(loss)(w), s, w)
      return (w + u, s), None
    return jax.lax.scan(step, (w, tx.init(w)), None, length=200)[0][0]

  w0 = nets.init_weights(jax.random.key(3), spec.layout(), "kaiming_uniform")
  same_function = np.allclose(nets.apply(spec, w0, x, activation), nets.apply(spec, w0 * flip, x, activation),
                              atol=1e-6)
  w_a, w_b = run(w0), run(w0 * flip)
  acc = [float((nets.apply(spec, w, x, activation).argmax(-1) == y).mean()) for w in (w_a, w_b)]
  assert not np.allclose(w_a, w0, atol=0.1)  # it trained
  if activation == "tanh":
    assert same_function
    np.testing.assert_allclose(w_b, w_a * flip, atol=1e-5)
    assert acc[0] == acc[1]
  else:
    assert not same_function
    assert not np.allclose(w_b, w_a * flip, atol=1e-2)
