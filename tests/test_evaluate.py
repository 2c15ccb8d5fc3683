"""The evaluation harness on small synthetic zoos: targets, protocols, OOD, and the bookkeeping."""

import numpy as np
import pytest

from wsl_jax.evaluation import baselines, evaluate, probe
from wsl_jax.weights import nets
from wsl_jax.zoo.core import Split, Zoo

FAST = ("W", "s(W)")  # skip kernel PCA where a test is not about it


def make_zoo(models=40, checkpoints=5, seed=0, nan_at=None, diverged=(3,), nonfinite_at=None,
             activations=("tanh", "relu")) -> Zoo:
  """A TETRIS-sized zoo whose accuracy is a function of the weights' per-layer spread."""
  rng = np.random.default_rng(seed)
  spec = nets.TETRIS_MLP
  n = spec.layout().num_params
  epochs = np.arange(checkpoints)
  start = rng.normal(size=(models, 1, n)) * rng.uniform(0.2, 1.0, size=(models, 1, 1))
  drift = rng.normal(size=(models, 1, n)) * (epochs[None, :, None] / checkpoints)
  w = (start + drift).astype(np.float32)
  spread = w.std(axis=-1)
  acc = 0.25 + 0.5 * np.tanh(spread) + 0.005 * rng.normal(size=(models, checkpoints))
  props = {"test_acc": acc, "train_acc": acc + 0.03, "ggap": np.full_like(acc, 0.03) + 0.001 * acc,
           "epoch": np.tile(epochs, (models, 1)).astype(np.float64), "test_loss": 1.0 - acc,
           "train_loss": 0.9 - acc, "f1_class_0": acc * 0.8, "f1_class_1": acc * 0.9}
  if nan_at is not None:
    props["f1_class_1"][nan_at] = np.nan
  if nonfinite_at is not None:
    w[nonfinite_at] = np.nan
  hparams = {"seed": np.arange(models), "activation": np.array(activations)[np.arange(models) % len(activations)],
             "lr": np.where(np.arange(models) % 2 == 0, 1e-3, 1e-4), "batch_size": np.full(models, 32)}
  div = np.zeros(models, bool)
  div[list(diverged)] = True
  return Zoo(weights=w, epochs=epochs, properties=props, hparams=hparams, net=spec, dataset="tetris",
             diverged=div, meta={"preset": "tetris_seed"})


def _fast_extractors(zoo):
  return {k: v for k, v in baselines.paper_extractors(zoo.layout).items() if k in FAST}


def test_probe_targets_kinds_and_order():
  targets = {t.name: t for t in evaluate.probe_targets(make_zoo())}
  assert list(targets)[:5] == ["epoch", "test_acc", "ggap", "f1_class_0", "f1_class_1"]
  assert targets["activation"].task == "classification" and targets["activation"].source == "hparam"
  assert targets["lr"].task == "regression"
  assert "seed" not in targets  # excluded by default
  assert "batch_size" not in targets  # constant: nothing to predict
  with pytest.raises(ValueError, match="not probe targets"):
    evaluate.probe_targets(make_zoo(), include=["test_acc", "momentum"])


def test_paper_protocol_scores_counts_and_drops():
  zoo = make_zoo(nan_at=(np.arange(40), 2))  # every model's checkpoint 2 lacks f1_class_1
  split = zoo.split()
  ev = evaluate.evaluate_zoo(zoo, _fast_extractors(zoo))
  assert ev.excluded_diverged == {"zoo": 1} and 3 not in np.concatenate(list(split.as_dict().values()))
  assert ev.methods == FAST
  r = ev.result("test_acc", "s(W)")
  assert r.metric == "r2" and r.score == r.r2 and r.score > 0.9
  assert r.alpha in probe.PAPER_ALPHAS
  assert r.counts == {s: 5 * len(split[s]) for s in evaluate.SPLITS}  # every checkpoint, split by model
  assert r.dropped == {"train": 0, "val": 0, "test": 0}
  f1 = ev.result("f1_class_1", "W")
  assert f1.dropped == {s: len(split[s]) for s in evaluate.SPLITS}  # one NaN checkpoint per model
  assert f1.counts == {s: 4 * len(split[s]) for s in evaluate.SPLITS}
  act = ev.result("activation", "W")
  assert act.metric == "accuracy" and act.task == "classification" and 0.0 <= act.score <= 1.0
  assert ev.result("epoch", "W").kendall_tau is not None
  # The harness agrees with a direct probe on the same samples.
  x_tr, p_tr, _ = zoo.samples(split.train)
  x_va, p_va, _ = zoo.samples(split.val)
  x_te, p_te, _ = zoo.samples(split.test)
  direct = probe.fit_ridge_val(x_tr, p_tr["test_acc"], x_va, p_va["test_acc"])
  ours = ev.result("test_acc", "W")
  assert ours.alpha == float(direct.alpha)
  assert ours.r2 == pytest.approx(float(probe.r2_score(p_te["test_acc"], direct.predict(x_te))), rel=1e-9)


def test_final_protocol_uses_last_checkpoint_and_kendall_tau():
  zoo = make_zoo(models=60)
  ev = evaluate.evaluate_zoo(zoo, _fast_extractors(zoo), protocol="final", targets=["test_acc", "epoch"])
  r = ev.result("test_acc", "s(W)")
  assert r.metric == "kendall_tau" and r.score == r.kendall_tau
  assert r.counts["test"] == len(zoo.split().test)  # one sample per model
  assert r.score == pytest.approx(probe.kendall_tau(r.y_true, r.y_pred))
  assert "epoch" in ev.skipped and "constant" in ev.skipped["epoch"]  # one epoch only
  with pytest.raises(ValueError, match="protocol"):
    evaluate.evaluate_zoo(zoo, protocol="all")


def test_default_extractors_and_callable_encoder():
  zoo = make_zoo(models=30, checkpoints=4)
  ev = evaluate.evaluate_zoo(zoo, targets=["test_acc"])
  assert ev.methods == ("W", "PCAl", "PCAc", "PCAr", "s(W)")
  n_fit = (ev.models["train"] * 4 + 1) // 2  # every 2nd training sample
  assert ev.embeddings["PCAr"].shape[1] == min(50, n_fit)
  ev = evaluate.evaluate_zoo(zoo, {"enc": lambda w: np.abs(w[:, :8])}, targets=["test_acc"])
  assert ev.methods == ("enc",) and ev.embeddings["enc"].shape[1] == 8
  with pytest.raises(ValueError, match="non-finite features"):
    evaluate.evaluate_zoo(zoo, {"bad": lambda w: np.where(w > 0, w, np.nan)}, targets=["test_acc"])


def test_diverged_and_nonfinite_samples_are_counted():
  zoo = make_zoo(diverged=(0, 1), nonfinite_at=(5, 3))  # model 5 is not marked diverged
  split = zoo.split()
  where = next(s for s in evaluate.SPLITS if 5 in split[s])
  explicit = Split(train=np.arange(0, 28), val=np.arange(28, 34), test=np.arange(34, 40))
  ev = evaluate.evaluate_zoo(zoo, {"W": baselines.Identity()}, targets=["test_acc"])
  assert ev.excluded_diverged == {"zoo": 2}
  assert ev.dropped_nonfinite[where] == 1 and sum(ev.dropped_nonfinite.values()) == 1
  ev = evaluate.evaluate_zoo(zoo, {"W": baselines.Identity()}, split=explicit, targets=["test_acc"])
  assert ev.models["train"] == 26  # models 0 and 1 removed from the given split
  with pytest.raises(ValueError, match="share models"):
    evaluate.evaluate_zoo(zoo, split=Split(np.arange(20), np.arange(15, 30), np.arange(30, 40)))


def test_class_only_outside_training_split_is_an_error():
  zoo = make_zoo(models=30, activations=("tanh", "relu", "gelu"))
  # gelu (models i % 3 == 2) only in the validation split
  split = Split(train=np.array([i for i in range(6, 30) if i % 3 != 2]), val=np.array([2, 5, 8]),
                test=np.array([0, 1, 4]))
  with pytest.raises(ValueError, match=r"activation.*not in the training split: \['gelu'\]"):
    evaluate.evaluate_zoo(zoo, {"W": baselines.Identity()}, split=split, targets=["activation"])


def test_ood_matches_in_distribution_on_the_same_zoo():
  zoo = make_zoo(seed=1)
  other = make_zoo(seed=2, diverged=(4, 5))
  ex = _fast_extractors(zoo)
  ood = evaluate.evaluate_ood(zoo, {"A": zoo, "B": other}, ex, targets=["test_acc"])
  ind = evaluate.evaluate_zoo(zoo, ex, targets=["test_acc"])
  for m in FAST:
    a = ood.result("test_acc", m, eval_zoo="A")
    assert a.metric == "kendall_tau" and a.row == "test_acc@A"
    assert a.score == pytest.approx(ind.result("test_acc", m).kendall_tau, rel=1e-12)
    assert a.alpha == ind.result("test_acc", m).alpha
    assert ood.result("test_acc", m, eval_zoo="B").counts["test"] == 5 * len(other.split().test)
  assert ood.excluded_diverged == {"train_zoo": 1, "A": 1, "B": 2}
  mlp = Zoo(weights=np.zeros((4, 2, 109), np.float32), epochs=np.arange(2), properties={}, hparams={},
            net=nets.NetSpec(input_shape=(16,), num_classes=4, hidden=(5,)), dataset="tetris",
            diverged=np.zeros(4, bool))
  with pytest.raises(ValueError, match="same Layout"):
    evaluate.evaluate_ood(zoo, {"mlp": mlp}, ex)
  with pytest.raises(ValueError, match="categorical"):
    evaluate.evaluate_ood(zoo, {"A": zoo}, ex, targets=["activation"])


def test_generated_tetris_seed_zoo_s_w_beats_w(tetris_zoo):
  """Table 5's headline on a real (small) zoo: per-layer statistics predict accuracy, raw weights don't."""
  ev = evaluate.evaluate_zoo(tetris_zoo, _fast_extractors(tetris_zoo), targets=["test_acc", "epoch", "ggap"])
  s_w, w = ev.result("test_acc", "s(W)"), ev.result("test_acc", "W")
  assert s_w.r2 > w.r2 and s_w.r2 > 0.7
  assert ev.result("epoch", "s(W)").r2 > 0.8
  assert s_w.counts["test"] == 76 * len(tetris_zoo.split().test)


# ---- reconstruction scores ----------------------------------------------------------------------------

from wsl_jax.weights.layout import Layout  # noqa: E402

RECON_LAYOUTS = {"tetris": nets.TETRIS_MLP.layout(), "mlp2": Layout.mlp([6, 4, 3, 2]),
                 "cnn": nets.PAPER_CNN.layout()}


def _permuted(layout, x, seed):
  """Every row of `x` with its own random function-preserving permutation of the hidden units."""
  rng = np.random.default_rng(seed)
  return np.stack([row[layout.permutation_index([rng.permutation(u) for u in layout.permutable_sizes])]
                   for row in x])


@pytest.mark.parametrize("name", sorted(RECON_LAYOUTS))
def test_permutation_invariant_reconstruction_score(name):
  layout = RECON_LAYOUTS[name]
  rng = np.random.default_rng(0)
  w = rng.normal(size=(12, layout.num_params))
  # The weights themselves, and a permuted copy of them: R² 1 up to the permutation.
  assert evaluate.permutation_invariant_r2(w, w, layout) == evaluate.reconstruction_r2(w, w) == 1.0
  shuffled = _permuted(layout, w, 1)
  assert evaluate.reconstruction_r2(w, shuffled) < 0.5
  assert evaluate.permutation_invariant_r2(w, shuffled, layout) == pytest.approx(1.0, abs=1e-12)
  # A reconstruction in the weights' unit order (small errors) scores its plain R².
  close = w + 0.05 * rng.normal(size=w.shape)
  assert evaluate.permutation_invariant_r2(w, close, layout) == evaluate.reconstruction_r2(w, close)
  # Permuting the reconstruction's hidden units does not change the score.
  noisy = w + 0.5 * rng.normal(size=w.shape)
  score = evaluate.permutation_invariant_r2(w, noisy, layout)
  assert evaluate.permutation_invariant_r2(w, _permuted(layout, noisy, 2), layout) == pytest.approx(score, rel=1e-9)
  # Never below the plain score, and above it for an unrelated reconstruction.
  for r in (noisy, rng.normal(size=w.shape), _permuted(layout, noisy, 3)):
    assert evaluate.permutation_invariant_r2(w, r, layout) >= evaluate.reconstruction_r2(w, r) - 1e-12
  other = rng.normal(size=w.shape)
  assert evaluate.permutation_invariant_r2(w, other, layout) > evaluate.reconstruction_r2(w, other)


def test_aligned_reconstruction_is_the_same_network():
  layout = RECON_LAYOUTS["mlp2"]
  rng = np.random.default_rng(4)
  w, r = rng.normal(size=(5, layout.num_params)), rng.normal(size=(5, layout.num_params))
  aligned = evaluate.align_hidden_units(w, r, layout)
  x = rng.normal(size=(7, 6))

  def forward(v):
    h = x
    for i, p in enumerate(layout.unflatten(v)):
      h = h @ p["w"].T + p["b"]
      h = np.maximum(h, 0) if i < layout.num_layers - 1 else h
    return h
  for a, b in zip(aligned, r):
    np.testing.assert_allclose(forward(a), forward(b), atol=1e-12)
    np.testing.assert_array_equal(np.sort(a), np.sort(b))


def test_reconstruction_scores_reject_bad_input():
  layout = RECON_LAYOUTS["tetris"]
  w = np.ones((4, layout.num_params))
  with pytest.raises(ValueError, match="do not vary"):
    evaluate.reconstruction_r2(w, w)
  with pytest.raises(ValueError, match="same"):
    evaluate.reconstruction_r2(w, w[:, :5])
  with pytest.raises(ValueError, match="at least 2 samples"):
    evaluate.reconstruction_r2(w[:1], w[:1])
  bad = np.random.default_rng(0).normal(size=w.shape)
  bad[1, 2] = np.nan
  with pytest.raises(ValueError, match="finite"):
    evaluate.permutation_invariant_r2(bad, bad, layout)
  with pytest.raises(ValueError, match="expected"):
    evaluate.permutation_invariant_r2(w[:, :10], w[:, :10], layout)
