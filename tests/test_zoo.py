"""Zoo generation and storage: vmapped = alone, lr 0, recorded metrics, storage, splits, errors."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsl_jax import zoo as zoo_lib
from wsl_jax.data import datasets
from wsl_jax.weights import nets
from wsl_jax.zoo import __main__ as zoo_cli
from wsl_jax.zoo import presets
from wsl_jax.zoo import batched, metrics
from wsl_jax.zoo import train as zoo_train


def _spec(**kw):
  base = dict(net=nets.TETRIS_MLP, epochs=3, batch_size=32, checkpoint_epochs=(0, 1, 3), activation="tanh",
              optimizer="adam", inits=("kaiming_uniform", "normal"))
  return zoo_train.TrainSpec(**{**base, **kw})


def _keys(seeds):
  return jax.vmap(lambda s: jax.random.fold_in(jax.random.key(0), s))(jnp.asarray(seeds, jnp.uint32))


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_vmapped_training_equals_training_alone(optimizer):
  spec = _spec(optimizer=optimizer)
  data = zoo_train.to_device_data(datasets.load("tetris"))
  hp = zoo_train.default_hparams(6, lr=np.array([1e-3, 3e-3, 1e-2, 1e-3, 1e-4, 2e-3]),
                                 init_index=np.array([0, 1, 0, 1, 0, 0]), momentum=0.5)
  batch = zoo_train.compiled_trainer(spec)(_keys(range(1, 7)), hp, data)
  for m in (1, 4):
    alone = jax.jit(zoo_train.train_one, static_argnames="spec")(
        jax.random.fold_in(jax.random.key(0), m + 1), jax.tree.map(lambda v: v[m], hp), data, spec=spec)
    np.testing.assert_allclose(batch.weights[m], alone.weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batch.metrics[m], alone.metrics, rtol=1e-5, atol=1e-6)


def test_zero_learning_rate_keeps_the_initialisation():
  spec = _spec(inits=("kaiming_uniform",))
  data = zoo_train.to_device_data(datasets.load("tetris"))
  hp = zoo_train.default_hparams(3, lr=np.array([1e-2, 0.0, 1e-2]), wd=1e-3)
  rec = zoo_train.compiled_trainer(spec)(_keys([1, 2, 3]), hp, data)
  w = np.asarray(rec.weights)
  np.testing.assert_array_equal(w[1, 1:], np.broadcast_to(w[1, 0], w[1, 1:].shape))
  assert not np.allclose(w[0, 0], w[0, -1])
  init = nets.init_weights(jax.random.split(jax.random.fold_in(jax.random.key(0), 2), 4)[0],
                           nets.TETRIS_MLP.layout(), "kaiming_uniform")
  np.testing.assert_array_equal(w[1, 0], init)


def test_tetris_seed_zoo_has_spread_and_learns(tetris_zoo):
  acc = tetris_zoo.properties["test_acc"]
  assert tetris_zoo.weights.shape == (128, 76, 100)
  assert not tetris_zoo.diverged.any()
  final = acc[:, -1]
  assert final.max() - final.min() >= 0.15, (final.min(), final.max())
  means = acc.mean(0)
  assert means[0] < 0.3 and means[-1] > 0.6
  assert means[25] < means[50] < means[75]  # mean accuracy rises over epochs
  np.testing.assert_array_equal(tetris_zoo.properties["epoch"][0], np.arange(76))
  np.testing.assert_allclose(tetris_zoo.properties["ggap"],
                             tetris_zoo.properties["train_acc"] - tetris_zoo.properties["test_acc"])
  assert set(tetris_zoo.properties) >= {"test_acc", "train_acc", "test_loss", "train_loss", "ggap", "epoch",
                                        "f1_class_0", "f1_class_1", "f1_class_2", "f1_class_3"}
  np.testing.assert_array_equal(tetris_zoo.hparams["seed"], np.arange(1, 129))


def test_recorded_metrics_equal_recomputed_ones(tetris_zoo):
  from sklearn.metrics import f1_score
  from wsl_jax.zoo.generate import dataset_for
  data = dataset_for(tetris_zoo)  # the preset's training subset (50 of the 200 tetris images)
  rng = np.random.default_rng(0)
  for _ in range(5):
    m, e = rng.integers(128), rng.integers(76)
    logits = np.asarray(tetris_zoo.forward(tetris_zoo.weights[m, e], data.x_test, m))
    pred = logits.argmax(1)
    assert tetris_zoo.properties["test_acc"][m, e] == pytest.approx((pred == data.y_test).mean(), abs=1e-6)
    f1 = f1_score(data.y_test, pred, average=None, labels=range(4), zero_division=0)
    for k in range(4):
      assert tetris_zoo.properties[f"f1_class_{k}"][m, e] == pytest.approx(f1[k], abs=1e-5)
    train_pred = np.asarray(tetris_zoo.forward(tetris_zoo.weights[m, e], data.x_train, m)).argmax(1)
    assert tetris_zoo.properties["train_acc"][m, e] == pytest.approx((train_pred == data.y_train).mean(), abs=1e-6)


def test_same_seed_same_zoo_and_other_seed_other_zoo():
  a = zoo_lib.generate("tetris_seed", num_models=4, epochs=2, progress=False)
  b = zoo_lib.generate("tetris_seed", num_models=4, epochs=2, progress=False)
  c = zoo_lib.generate("tetris_seed", num_models=4, epochs=2, seed=1, progress=False)
  np.testing.assert_array_equal(a.weights, b.weights)
  assert not np.allclose(a.weights, c.weights)


def test_save_load_is_bit_identical(tmp_path, tetris_zoo):
  small = tetris_zoo.subset(models=np.arange(10), checkpoints=np.arange(0, 76, 5))
  path = zoo_lib.save(small, str(tmp_path / "z"))
  loaded = zoo_lib.load(path)
  np.testing.assert_array_equal(loaded.weights, small.weights)
  np.testing.assert_array_equal(loaded.epochs, small.epochs)
  np.testing.assert_array_equal(loaded.diverged, small.diverged)
  for group in ("properties", "hparams"):
    a, b = getattr(small, group), getattr(loaded, group)
    assert set(a) == set(b)
    for k in a:
      assert a[k].dtype == b[k].dtype
      np.testing.assert_array_equal(a[k], b[k])
  assert loaded.net == small.net and loaded.layout == small.layout and loaded.dataset == "tetris"
  # Readable with numpy and json alone.
  meta = json.load(open(os.path.join(path, "zoo.json")))
  assert meta["layout"]["num_params"] == 100
  np.testing.assert_array_equal(np.load(os.path.join(path, "weights.npy")), small.weights)


def test_generate_to_disk_then_cli_info(tmp_path, capsys):
  out = str(tmp_path / "cli_zoo")
  assert zoo_cli.main(["generate", "--preset", "tetris_seed", "--out", out, "--models", "6", "--epochs", "2",
                       "--quiet"]) == 0
  assert not os.path.exists(out + ".partial")
  assert sorted(os.listdir(out)) == ["diverged.npy", "hparams.npz", "properties.npz", "weights.npy", "zoo.json"]
  z = zoo_lib.load(out)
  assert z.weights.shape == (6, 3, 100)
  assert zoo_cli.main(["info", out]) == 0
  assert "6 models x 3 checkpoints" in capsys.readouterr().out
  # An existing zoo is not overwritten by accident.
  assert zoo_cli.main(["generate", "--preset", "tetris_seed", "--out", out, "--models", "6", "--epochs", "2",
                       "--quiet"]) == 2


def test_splits_are_disjoint_seeded_and_sized():
  s = zoo_lib.split_models(1000, seed=42)
  assert (len(s.train), len(s.val), len(s.test)) == (700, 150, 150)
  ids = np.concatenate([s.train, s.val, s.test])
  assert len(set(ids.tolist())) == 1000
  assert not set(s.train) & set(s.test) and not set(s.train) & set(s.val) and not set(s.val) & set(s.test)
  s2 = zoo_lib.split_models(1000, seed=42)
  np.testing.assert_array_equal(s.test, s2.test)
  assert not np.array_equal(zoo_lib.split_models(1000, seed=1).test, s.test)
  excluded = np.zeros(1000, bool)
  excluded[:100] = True
  s3 = zoo_lib.split_models(1000, exclude=excluded)
  assert min(np.concatenate([s3.train, s3.val, s3.test])) >= 100
  with pytest.raises(ValueError, match="sum"):
    zoo_lib.split_models(10, fractions=(0.5, 0.2, 0.2))


def test_zoo_samples_are_model_major(tetris_zoo):
  w, props, model_ids = tetris_zoo.samples(np.array([3, 7]), checkpoints=np.array([0, 10]))
  assert w.shape == (4, 100)
  np.testing.assert_array_equal(model_ids, [3, 3, 7, 7])
  np.testing.assert_array_equal(w[1], tetris_zoo.weights[3, 10])
  np.testing.assert_array_equal(props["epoch"], [0, 10, 0, 10])


def test_diverged_runs_are_flagged_not_dropped():
  preset = dataclasses.replace(presets.TETRIS_SEED, name="diverging", fixed=(
      ("activation", "relu"), ("init", "normal"), ("optimizer", "sgd"), ("lr", 1e30)))
  z = zoo_lib.generate(preset, num_models=4, epochs=2, progress=False)
  assert z.diverged.all() and z.weights.shape == (4, 3, 100)
  ok = zoo_lib.generate("tetris_seed", num_models=2, epochs=2, progress=False)
  assert not ok.diverged.any()
  assert len(z.split().train) == 0  # diverged models are excluded from splits by default


def test_tetris_hyp_grid_is_the_papers():
  hp = presets.build_hparams(presets.TETRIS_HYP)
  assert len(hp["seed"]) == 3600
  combos = set(zip(hp["activation"], hp["init"], hp["lr"].round(8), hp["seed"]))
  assert len(combos) == 3600
  assert set(hp["activation"]) == {"tanh", "relu"} and len(set(hp["init"])) == 6
  assert sorted(set(hp["lr"].round(8))) == [1e-5, 1e-4, 1e-3]
  assert sorted(set(hp["seed"].tolist())) == list(range(1, 101))
  sub = presets.build_hparams(presets.TETRIS_HYP, num_models=100, seed=3)
  assert len(sub["seed"]) == 100 and len(set(sub["init"])) == 6


def test_bad_inputs_give_clear_errors(tmp_path, tetris_zoo):
  with pytest.raises(ValueError, match="unknown zoo preset"):
    zoo_lib.generate("tetris_sed")
  with pytest.raises(ValueError, match="has 3600 models"):
    presets.build_hparams(presets.TETRIS_HYP, num_models=4000)
  with pytest.raises(ValueError, match="checkpoint_epochs"):
    _spec(checkpoint_epochs=(0, 5))
  with pytest.raises(ValueError, match="unknown optimizer"):
    _spec(optimizer="lbfgs")
  with pytest.raises(zoo_lib.ZooFormatError, match="does not exist"):
    zoo_lib.load(str(tmp_path / "nothing"))
  path = zoo_lib.save(tetris_zoo.subset(models=np.arange(3)), str(tmp_path / "z"))
  with open(os.path.join(path, "weights.npy"), "r+b") as f:  # truncate
    f.truncate(os.path.getsize(os.path.join(path, "weights.npy")) - 8)
  with pytest.raises(zoo_lib.ZooFormatError, match="truncated"):
    zoo_lib.load(path)
  path = zoo_lib.save(tetris_zoo.subset(models=np.arange(3)), str(tmp_path / "z2"))
  with open(os.path.join(path, "diverged.npy"), "r+b") as f:  # same size, other content
    f.seek(-1, 2)
    f.write(b"\x01")
  with pytest.raises(zoo_lib.ZooFormatError, match="SHA-256"):
    zoo_lib.load(path)
  os.remove(os.path.join(path, "zoo.json"))
  with pytest.raises(zoo_lib.ZooFormatError, match="no zoo.json"):
    zoo_lib.load(path)
  with pytest.raises(ValueError, match="expected"):
    tetris_zoo.forward(np.zeros(99), np.zeros((2, 16)), 0)


def test_a_failed_save_leaves_no_zoo(tmp_path, tetris_zoo, monkeypatch):
  from wsl_jax.zoo import io as zoo_io

  def boom(*args, **kwargs):
    raise KeyboardInterrupt("killed")
  monkeypatch.setattr(zoo_io, "zoo_meta", boom)
  with pytest.raises(KeyboardInterrupt):
    zoo_lib.save(tetris_zoo.subset(models=np.arange(2)), str(tmp_path / "z"))
  assert os.listdir(tmp_path) == []


# ---- the batched rules of the zoo trainer (models evaluated and differentiated together) --------------

_WIDE_MLP = nets.NetSpec(input_shape=(16,), num_classes=4, hidden=(7, 6), bias=True)


@pytest.mark.parametrize("eval_batch_size,train_eval_size", [(0, 0), (300, 0), (0, 50)])
def test_models_evaluation_equals_vmapped_single_evaluation(eval_batch_size, train_eval_size):
  spec = _spec(net=_WIDE_MLP, eval_batch_size=eval_batch_size, train_eval_size=train_eval_size)
  data = zoo_train.to_device_data(datasets.load("tetris"))
  w = jax.random.normal(jax.random.key(3), (5, _WIDE_MLP.layout().num_params))
  single = jax.jit(jax.vmap(lambda v: zoo_train.evaluate(spec, v, data, 4)))(w)
  models = jax.jit(lambda v: zoo_train.evaluate_models(spec, v, data, 4))(w)
  np.testing.assert_allclose(models, single, rtol=1e-5, atol=1e-6)
  assert float(single[:, 1].std()) > 0  # accuracies differ between the models: a real comparison


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "sigmoid"])
@pytest.mark.parametrize("net", [nets.TETRIS_MLP, _WIDE_MLP], ids=["tetris", "wide_bias"])
def test_batched_cross_entropy_gradient_equals_autodiff(net, activation):
  spec = _spec(net=net, activation=activation)
  k = jax.random.split(jax.random.key(4), 3)
  w = jax.random.normal(k[0], (6, net.layout().num_params))
  x = jax.random.normal(k[1], (6, 20, 16))
  y = jax.random.randint(k[2], (6, 20), 0, 4)
  loss, grad = jax.jit(lambda *a: batched.models_ce_value_and_grad(spec, *a))(w, x, y)
  ref_loss, ref_grad = jax.jit(jax.vmap(lambda v, xb, yb: jax.value_and_grad(
      lambda u: metrics.cross_entropy(metrics.net_logits(spec, u, xb), yb).mean())(v)))(w, x, y)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)
  # vmap of the batchable function runs that rule.
  via_vmap = jax.jit(jax.vmap(batched.batchable_ce_value_and_grad(spec)))(w, x, y)
  np.testing.assert_allclose(via_vmap[1], grad, rtol=1e-6, atol=1e-7)


def test_batched_rules_fall_back_when_the_data_is_shared():
  # vmapped over the weights only (one batch for every model): the generic vmap path, same values.
  spec = _spec(net=_WIDE_MLP)
  w = jax.random.normal(jax.random.key(5), (4, _WIDE_MLP.layout().num_params))
  x = jax.random.normal(jax.random.key(6), (20, 16))
  y = jnp.arange(20) % 4
  fn = batched.batchable_ce_value_and_grad(spec)
  loss, grad = jax.jit(jax.vmap(fn, in_axes=(0, None, None)))(w, x, y)
  for m in range(4):
    ref_loss, ref_grad = jax.jit(fn)(w[m], x, y)
    np.testing.assert_allclose(loss[m], ref_loss, rtol=1e-6)
    np.testing.assert_allclose(grad[m], ref_grad, rtol=1e-4, atol=1e-6)


def test_the_batched_rules_switch_changes_the_program_not_the_zoo():
  on = _spec(epochs=2, checkpoint_epochs=(0, 1, 2), batch_size=40, inits=("kaiming_uniform",))
  off = dataclasses.replace(on, batched_rules=False)
  data = zoo_train.to_device_data(datasets.load("tetris"))
  hp = zoo_train.default_hparams(3, lr=np.array([1e-3, 3e-3, 1e-2]))
  with_rules = zoo_train.compiled_trainer(on)(_keys(range(3)), hp, data)  # fresh keys: the checker forbids reuse
  without = zoo_train.compiled_trainer(off)(_keys(range(3)), hp, data)
  np.testing.assert_allclose(with_rules.weights, without.weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(with_rules.metrics, without.metrics, rtol=1e-5, atol=1e-6)
  programs = [zoo_train.compiled_trainer(s).lower(_keys(range(3)), hp, data).as_text() for s in (on, off)]
  assert programs[0] != programs[1]  # the switch really selects another program



@pytest.mark.parametrize("models, chunk", [(64, 50), (1000, 512), (12, 4), (1, 50), (100, 50), (101, 50), (7, 1)])
def test_chunks_are_balanced(models, chunk):
  """As many chunks as `chunk_size` gives, each at most `chunk_size`, padding below one model per chunk."""
  from wsl_jax.zoo.generate import balanced_chunk_size
  size = balanced_chunk_size(models, chunk)
  chunks = -(-models // chunk)
  assert size <= chunk and -(-models // size) == chunks
  assert 0 <= chunks * size - models < chunks


_STRIDED_CNN = nets.NetSpec(input_shape=(8, 8, 1), num_classes=10, convs=(nets.ConvBlock(4, 3, stride=2),),
                            global_pool=True)


@pytest.mark.parametrize("net", [nets.DIGITS_CNN, _STRIDED_CNN], ids=["pool_flatten", "stride_global_pool"])
@pytest.mark.parametrize("eval_batch_size", [0, 150])
def test_cnn_models_evaluation_equals_vmapped_single_evaluation(net, eval_batch_size):
  """The CNN rule (first conv of all models as one GEMM on the shared inputs) gives vmap(evaluate)'s
  metrics; it is what vmap of `batchable_evaluate` runs."""
  spec = _spec(net=net, eval_batch_size=eval_batch_size, train_eval_size=200, activation="relu")
  data = zoo_train.to_device_data(datasets.load("digits_8"))
  w = 0.5 * jax.random.normal(jax.random.key(3), (5, net.layout().num_params))
  single = jax.jit(jax.vmap(lambda v: zoo_train.evaluate(spec, v, data, 10)))(w)
  models = jax.jit(lambda v: batched.evaluate_cnn_models(spec, v, data, 10))(w)
  np.testing.assert_allclose(models, single, rtol=1e-5, atol=1e-6)
  assert float(single[:, 3].std()) > 0  # test accuracies differ between the models: a real comparison
  fn = batched.batchable_evaluate(spec, 10)
  via_vmap = jax.jit(jax.vmap(fn, in_axes=(0, None, None, None, None)))(
      w, data.x_train, data.y_train, data.x_test, data.y_test)
  np.testing.assert_array_equal(via_vmap, models)


def test_evaluation_chunks_are_balanced():
  """360 examples in chunks of at most 250: two chunks of 180 (no padded rows), every example counted once."""
  x, y = jnp.arange(360.0)[:, None], jnp.zeros(360, jnp.int32)
  count, rows, total = metrics.summed_over_chunks(
      lambda xc, yc, valid: (valid.sum(), jnp.float32(xc.shape[0]), jnp.where(valid, xc[:, 0], 0.0).sum()), x, y, 250)
  assert (int(count), float(rows), float(total)) == (360, 360.0, float(np.arange(360).sum()))
  count, rows, _ = metrics.summed_over_chunks(lambda xc, yc, valid: (valid.sum(), jnp.float32(xc.shape[0]), 0.0),
                                              x[:361 - 2], y[:359], 100)
  assert (int(count), float(rows)) == (359, 360.0)  # 4 chunks of 90: one padded row
