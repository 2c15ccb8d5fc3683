"""Trainer: optimizer and schedule, views and targets, fit / resume / data parallelism, evaluation."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wsl_jax.hyperrep import configs, losses, train
from wsl_jax.hyperrep.configs import AugmentConfig, LossConfig, ModelConfig, TrainConfig
from wsl_jax.weights import nets

LAYOUT = nets.TETRIS_MLP.layout()
# One small configuration for every run in this file, so that they share compiled steps.
TINY = TrainConfig(
    model=ModelConfig(dim=16, heads=2, ff_dim=32, blocks=1, latent_dim=8, head_layers=1, head_hidden=16,
                      head_out=8),
    loss=LossConfig(contrast="ntxent", gamma=0.5, temperature=0.1),
    batch_size=32, epochs=3, lr=3e-3, eval_every=1, checkpoint_every=1, eval_batch_size=64)
NUM_TRAIN = 192  # 6 steps per epoch


def _weights(num, seed):
  """Structured synthetic "zoo" weights: a rank-6 signal plus noise, so reconstruction can improve."""
  rng = np.random.default_rng(seed)
  basis = np.random.default_rng(123).normal(size=(6, LAYOUT.num_params))
  return (rng.normal(size=(num, 6)) @ basis * 0.3 + 0.05 * rng.normal(size=(num, LAYOUT.num_params))
          ).astype(np.float32)


W_TRAIN, W_VAL = _weights(NUM_TRAIN, 0), _weights(40, 1)


def _params(result):
  return np.asarray(jax.device_get(result.state["params"]))


def _strip_times(history):
  return [{k: v for k, v in h.items() if k not in ("epoch_time_s", "samples_per_s")} for h in history]


@pytest.fixture(scope="module")
def trained():
  return train.fit(TINY, W_TRAIN, W_VAL, layout=LAYOUT, seed=0, devices=1, progress=False)


# ---- optimizer and schedule -------------------------------------------------------------------------

def _torch_plateau(epoch_losses, factor, patience, threshold):
  """PyTorch's ReduceLROnPlateau(mode="min", threshold_mode="rel") scale after each epoch."""
  best, bad, scale, out = float("inf"), 0, 1.0, []
  for loss in epoch_losses:
    if loss < best * (1 - threshold):
      best, bad = loss, 0
    else:
      bad += 1
    if bad > patience:
      scale, bad = scale * factor, 0
    out.append(scale)
  return out


def test_reduce_on_plateau_matches_pytorch():
  epoch_losses = [5.0, 4.0, 4.0, 3.9999, 4.1, 4.0, 3.0, 3.5, 3.2, 3.1, 3.05, 3.3, 2.0, 2.5, 2.5, 2.5, 2.5]
  tx = train.reduce_on_plateau(factor=0.3, patience=2, threshold=1e-4, steps_per_epoch=2)
  update = jax.jit(tx.update)
  state = tx.init(jnp.zeros(()))
  scales = []
  for loss in epoch_losses:  # two steps per epoch whose mean is `loss`
    for step_loss in (loss - 0.5, loss + 0.5):
      applied = float(state.scale)
      updates, state = update(jnp.ones(()), state, value=jnp.float32(step_loss))
      assert float(updates) == pytest.approx(applied)  # this epoch's scale, updated only after it
    scales.append(float(state.scale))
  np.testing.assert_allclose(scales, _torch_plateau(epoch_losses, 0.3, 2, 1e-4), rtol=1e-6)
  assert scales[-1] < 1.0  # the sequence does trigger reductions


def test_adam_with_coupled_l2():
  config = TINY.replace(lr=0.01, weight_decay=0.1)
  tx = train.make_optimizer(config, steps_per_epoch=100)
  params = jnp.array([1.0, -2.0, 0.5])
  state = tx.init(params)
  m = v = np.zeros(3)
  p = np.asarray(params, np.float64)
  for t in range(1, 4):
    g = np.array([0.3, -0.1, 0.0]) * t
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params, value=jnp.float32(1.0))
    params = optax.apply_updates(params, updates)
    # PyTorch's Adam with weight_decay: the decay is added to the gradient before the moments.
    g = g + 0.1 * p
    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    p = p - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
  np.testing.assert_allclose(np.asarray(params), p, rtol=1e-5)
  assert float(train.learning_rate(config, state)) == pytest.approx(0.01)


def _schedule_reference(step, epochs, steps_per_epoch, warmup_epochs, schedule):
  """The documented schedule factor of step `step` (0-based), in float64."""
  warm = warmup_epochs * steps_per_epoch
  factor = min(1.0, (step + 1) / warm) if warm else 1.0
  if schedule == "cosine":
    t = min(max((step - warm) / max(epochs * steps_per_epoch - warm - 1, 1), 0.0), 1.0)
    factor *= configs.COSINE_FLOOR + (1 - configs.COSINE_FLOOR) * 0.5 * (1 + np.cos(np.pi * t))
  return factor


@pytest.mark.parametrize("schedule,warmup", [("cosine", 2), ("cosine", 0), ("constant", 3), ("plateau", 2)])
def test_warmup_and_cosine_schedule_values(schedule, warmup):
  config = TINY.replace(epochs=10, lr=0.5, schedule=schedule, warmup_epochs=warmup)
  spe = 4
  tx = train.make_optimizer(config, steps_per_epoch=spe)
  sched = train.step_schedule(config, spe)
  update = jax.jit(sched.update)
  state, opt_state = sched.init(None), tx.init(jnp.zeros(3))
  factors, lrs = [], []
  for step in range(config.epochs * spe):
    lrs.append(float(train.learning_rate(config, opt_state)))
    updates, state = update(jnp.ones(()), state)
    factors.append(float(updates))
    _, opt_state = tx.update(jnp.ones(3), opt_state, jnp.zeros(3), value=jnp.float32(1.0))  # loss constant
  ref = [_schedule_reference(s, 10, spe, warmup, schedule) for s in range(10 * spe)]
  np.testing.assert_allclose(factors, ref, rtol=1e-5, atol=1e-7)  # float32
  if schedule != "plateau":  # the plateau scale of a constant loss drops after `patience` epochs
    np.testing.assert_allclose(lrs, 0.5 * np.asarray(ref), rtol=1e-5, atol=1e-7)
  warm = warmup * spe
  if warm:  # linear from lr / warm_steps to lr
    assert factors[0] == pytest.approx(1 / warm) and factors[warm - 1] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(factors[:warm]), 1 / warm, rtol=1e-5)
  if schedule == "cosine":  # from 1 after the warmup down to the floor at the last step, monotonically
    assert factors[warm] == pytest.approx(1.0) and factors[-1] == pytest.approx(configs.COSINE_FLOOR)
    mid = warm + (10 * spe - warm - 1) / 2
    if mid == int(mid):
      assert factors[int(mid)] == pytest.approx((1 + configs.COSINE_FLOOR) / 2)
    assert (np.diff(factors[warm:]) < 0).all()
  else:
    assert factors[warm:] == [1.0] * (10 * spe - warm)


def test_default_plateau_optimizer_state_is_unchanged():
  # Without warmup the plateau run keeps the optimizer state (and checkpoints) it always had.
  state = train.make_optimizer(TINY, steps_per_epoch=6).init(jnp.zeros(3))
  assert len(state) == 4 and isinstance(state[-1], train.PlateauState)
  assert not any(isinstance(s, train.StepScheduleState) for s in state)
  assert configs.preset("tetris").schedule == "plateau" and configs.preset("tetris").warmup_epochs == 0
  state = train.make_optimizer(TINY.replace(schedule="constant"), steps_per_epoch=6).init(jnp.zeros(3))
  assert len(state) == 3


def test_schedule_settings_are_validated():
  with pytest.raises(ValueError, match="schedule must be one of"):
    TINY.replace(schedule="linear")
  with pytest.raises(ValueError, match="warmup_epochs must be a non-negative integer"):
    TINY.replace(warmup_epochs=-1)
  with pytest.raises(ValueError, match="warmup_epochs must be a non-negative integer"):
    TINY.replace(warmup_epochs=1.5)
  with pytest.raises(ValueError, match="warmup_epochs=3 must be smaller than epochs=3"):
    TINY.replace(warmup_epochs=3)
  cfg = TINY.replace(schedule="cosine", warmup_epochs=1)
  assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
  # Runs that differ only in their length share compiled steps, unless the cosine spans the length.
  long_warmup = TINY.replace(epochs=3000, warmup_epochs=1500)
  assert train._step_config(long_warmup) == train._step_config(long_warmup.replace(epochs=4000))
  assert train._step_config(cfg) != train._step_config(cfg.replace(epochs=4))


def test_contrast_curriculum_weights_and_validation():
  loss = LossConfig(gamma=0.4, contrast_delay=2, contrast_ramp=3)
  assert [loss.gamma_at(e) for e in range(7)] == pytest.approx([0, 0, 0.1, 0.2, 0.3, 0.4, 0.4])
  traced = jax.jit(loss.gamma_at)(jnp.arange(7, dtype=jnp.int32))
  np.testing.assert_allclose(np.asarray(traced), [0, 0, 0.1, 0.2, 0.3, 0.4, 0.4], rtol=1e-6)
  assert LossConfig(gamma=0.4).gamma_at(0) == 0.4 and not LossConfig(gamma=0.0, contrast_delay=3).curriculum
  assert [LossConfig(gamma=0.5, contrast_delay=1).gamma_at(e) for e in range(3)] == [0, 0.5, 0.5]
  with pytest.raises(ValueError, match="loss.contrast_delay must be a non-negative integer"):
    LossConfig(contrast_delay=-1)
  with pytest.raises(ValueError, match="loss.contrast_ramp must be a non-negative integer"):
    LossConfig(contrast_ramp=1.5)
  with pytest.raises(ValueError, match="the plateau rule would read"):
    TINY.replace(**{"loss.contrast_delay": 1})
  with pytest.raises(ValueError, match="contrast_delay=3 must be smaller than epochs=3"):
    TINY.replace(schedule="constant", **{"loss.contrast_delay": 3})
  with pytest.raises(ValueError, match="contrast_ramp = 3 must be smaller than epochs=3"):
    TINY.replace(schedule="constant", **{"loss.contrast_delay": 1, "loss.contrast_ramp": 2})
  cfg = TINY.replace(schedule="constant", epochs=4, **{"loss.contrast_delay": 1, "loss.contrast_ramp": 2})
  assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
  # Long constant-schedule runs share compiled steps whatever their length, a long delay included.
  long_delay = TINY.replace(schedule="constant", epochs=3000, **{"loss.contrast_delay": 1500})
  assert train._step_config(long_delay) == train._step_config(long_delay.replace(epochs=4000))
  with pytest.raises(ValueError, match="gamma must be in"):
    losses.combined(0.0, 1.0, np.float32(1.5))


def test_contrast_delay_trains_reconstruction_only_until_the_term_enters(tmp_path, monkeypatch):
  # During the delay the contrastive term has weight 0: the first epoch is the reconstruction-only (ED)
  # run's first epoch, step for step; from the epoch the term enters (here ramped: 1/2, then 2/2 of gamma),
  # the runs differ. A killed curriculum run resumes bit-identically (the weight depends on the epoch only).
  base = TINY.replace(schedule="constant")
  ed = train.fit(base.replace(**{"loss.gamma": 0.0}), W_TRAIN, layout=LAYOUT, seed=0, devices=1, progress=False)
  config = base.replace(**{"loss.contrast_delay": 1, "loss.contrast_ramp": 1})
  delayed = train.fit(config, W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "a"), seed=0, devices=1,
                      progress=False)
  assert [h["gamma"] for h in delayed.history] == [0.0, 0.25, 0.5] and "gamma" not in ed.history[0]
  assert delayed.history[0]["train_loss"] == pytest.approx(ed.history[0]["train_loss"], rel=1e-6)
  assert delayed.history[0]["train_recon"] == pytest.approx(ed.history[0]["train_recon"], rel=1e-6)
  for h in delayed.history:  # the logged loss is the weighted sum with that epoch's weight (per-step means)
    expected = h["gamma"] * h["train_contrast"] + (1 - h["gamma"]) * h["train_recon"]
    assert h["train_loss"] == pytest.approx(expected, rel=1e-5)
  assert abs(delayed.history[1]["train_recon"] - ed.history[1]["train_recon"]) > 1e-6
  real = train._compiled_train_step
  monkeypatch.setattr(train, "_compiled_train_step", _dying_step(real, at_call=8))  # in epoch 2, mid-ramp
  with pytest.raises(_Killed):
    train.fit(config, W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=0, devices=1, progress=False)
  monkeypatch.setattr(train, "_compiled_train_step", real)
  resumed = train.fit(config, W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=0, devices=1,
                      progress=False)
  np.testing.assert_array_equal(_params(resumed), _params(delayed))
  assert _strip_times(resumed.history) == _strip_times(delayed.history)
  with pytest.raises(ValueError, match="different config"):
    train.fit(config.replace(**{"loss.contrast_ramp": 0}), W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "b"),
              seed=0, devices=1, progress=False)


# ---- views and targets ------------------------------------------------------------------------------

def test_views_and_reconstruction_targets():
  w = jnp.asarray(W_TRAIN[:16])
  aug = AugmentConfig(permute=True, noise_std=0.0, erase_p=1.0, erase_mode="uniform")

  @jax.jit
  def views(key, w):  # one compilation for the three targets
    keys = jax.random.clone(key), jax.random.clone(key), key
    return [train.make_views(k, w, LAYOUT, aug, t) for k, t in zip(keys, ("augmented", "denoised", "original"))]

  (v_aug, t_aug), (v_den, t_den), (v_orig, t_orig) = views(jax.random.key(0), w)
  assert v_aug.shape == t_aug.shape == (16, 2, 100)
  np.testing.assert_array_equal(np.asarray(v_aug), np.asarray(t_aug))
  np.testing.assert_array_equal(np.asarray(v_den), np.asarray(v_aug))  # same key, same views
  np.testing.assert_array_equal(np.asarray(t_orig), np.stack([w, w], axis=1))
  # Denoised targets: the views' permutation of w, without the erased block.
  erased = np.asarray(v_den) != np.asarray(t_den)
  assert erased.any() and (np.asarray(v_den)[erased] == 0.0).all()
  assert not erased.all(axis=-1).any()
  np.testing.assert_allclose(np.sort(np.asarray(t_den), axis=-1), np.sort(np.stack([w, w], 1), axis=-1))
  assert not np.array_equal(np.asarray(t_den[:, 0]), np.asarray(w))  # permuted
  # The two views of a sample are augmented independently.
  assert not np.array_equal(np.asarray(v_aug[:, 0]), np.asarray(v_aug[:, 1]))


# ---- fit ---------------------------------------------------------------------------------------------

def test_fit_reduces_the_loss_and_logs_history(trained):
  h = trained.history
  assert [r["epoch"] for r in h] == [1, 2, 3]
  assert h[-1]["train_recon"] < 0.8 * h[0]["train_recon"]
  assert h[-1]["train_loss"] < h[0]["train_loss"]
  assert h[-1]["val_r2"] > h[0]["val_r2"]
  assert {"train_contrast", "lr", "samples_per_s", "val_loss", "val_recon", "val_contrast"} <= set(h[-1])
  assert trained.epochs_done == 3 and "test_r2" not in h[-1]


class _Killed(Exception):
  """The simulated kill of a training run."""


def _dying_step(real, at_call):
  """A stand-in for `train._compiled_train_step` whose compiled step raises `_Killed` on call `at_call`."""
  def dying(*args):
    step_fn, calls = real(*args), [0]

    def run(*a):
      calls[0] += 1
      if calls[0] == at_call:
        raise _Killed
      return step_fn(*a)
    return run
  return dying


def test_resume_after_interruption_gives_identical_parameters(tmp_path, monkeypatch):
  uninterrupted = train.fit(TINY, W_TRAIN, W_VAL, layout=LAYOUT, workdir=str(tmp_path / "a"), seed=3,
                            devices=1, progress=False)
  # Kill the second run in the middle of epoch 2 (after its epoch-1 checkpoint).
  real = train._compiled_train_step
  dying = _dying_step(real, at_call=9)  # step 3 of epoch 2

  monkeypatch.setattr(train, "_compiled_train_step", dying)
  with pytest.raises(_Killed):
    train.fit(TINY, W_TRAIN, W_VAL, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=3, devices=1,
              progress=False)
  monkeypatch.setattr(train, "_compiled_train_step", real)
  log = tmp_path / "b" / train.METRICS_FILE
  assert len(log.read_text().splitlines()) == 1
  resumed = train.fit(TINY, W_TRAIN, W_VAL, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=3, devices=1,
                      progress=False)
  np.testing.assert_array_equal(_params(resumed), _params(uninterrupted))
  assert _strip_times(resumed.history) == _strip_times(uninterrupted.history)
  lines = [json.loads(x) for x in log.read_text().splitlines()]
  assert _strip_times(lines) == _strip_times(uninterrupted.history)
  # A finished run resumes to itself; restore() reads it back without training.
  again = train.fit(TINY, W_TRAIN, W_VAL, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=3, devices=1,
                    progress=False)
  np.testing.assert_array_equal(_params(again), _params(uninterrupted))
  restored = train.restore(str(tmp_path / "b"), devices=1)
  np.testing.assert_array_equal(_params(restored), _params(uninterrupted))
  assert restored.config == TINY and restored.seed == 3
  # Training longer continues the run; fewer epochs than done, or other settings, are refused.
  longer = train.fit(TINY.replace(epochs=4, eval_every=2), W_TRAIN, W_VAL, layout=LAYOUT,
                     workdir=str(tmp_path / "b"), seed=3, devices=1, progress=False)
  assert [h["epoch"] for h in longer.history] == [1, 2, 3, 4] and "val_r2" in longer.history[3]
  with pytest.raises(ValueError, match="more than the 3 asked for"):
    train.fit(TINY, W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=3, devices=1, progress=False)
  with pytest.raises(ValueError, match="seed 3"):
    train.fit(TINY.replace(epochs=5), W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=4, devices=1,
              progress=False)
  with pytest.raises(ValueError, match="different config"):
    train.fit(TINY.replace(lr=1e-3, epochs=5), W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=3,
              devices=1, progress=False)
  with pytest.raises(ValueError, match="different training weights"):
    train.fit(TINY.replace(epochs=5), W_VAL, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=3, devices=1,
              progress=False)


def test_cosine_warmup_run_resumes_bit_identically(tmp_path, monkeypatch):
  config = TINY.replace(schedule="cosine", warmup_epochs=1)
  uninterrupted = train.fit(config, W_TRAIN, W_VAL, layout=LAYOUT, workdir=str(tmp_path / "a"), seed=2,
                            devices=1, progress=False)
  # The logged learning rate (of the epoch's last update's successor) follows the schedule.
  spe = NUM_TRAIN // TINY.batch_size
  lrs = [h["lr"] for h in uninterrupted.history]
  ref = [TINY.lr * _schedule_reference(e * spe, 3, spe, 1, "cosine") for e in (1, 2, 3)]
  np.testing.assert_allclose(lrs, ref, rtol=1e-6)
  real = train._compiled_train_step
  dying = _dying_step(real, at_call=10)  # step 4 of epoch 2, after the epoch-1 checkpoint (mid-cosine)

  monkeypatch.setattr(train, "_compiled_train_step", dying)
  with pytest.raises(_Killed):
    train.fit(config, W_TRAIN, W_VAL, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=2, devices=1,
              progress=False)
  monkeypatch.setattr(train, "_compiled_train_step", real)
  resumed = train.fit(config, W_TRAIN, W_VAL, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=2, devices=1,
                      progress=False)
  np.testing.assert_array_equal(_params(resumed), _params(uninterrupted))
  assert _strip_times(resumed.history) == _strip_times(uninterrupted.history)
  count = [s for s in resumed.state["opt_state"] if isinstance(s, train.StepScheduleState)][0].count
  assert int(count) == 3 * spe
  # A cosine run's length is part of its schedule: it cannot be extended (a plateau run can, above).
  with pytest.raises(ValueError, match="cosine schedule over 3 epochs"):
    train.fit(config.replace(epochs=5), W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=2, devices=1,
              progress=False)
  with pytest.raises(ValueError, match="different config"):
    train.fit(config.replace(warmup_epochs=2), W_TRAIN, layout=LAYOUT, workdir=str(tmp_path / "b"), seed=2,
              devices=1, progress=False)


def test_two_devices_give_the_same_loss_as_one():
  config = TINY.replace(epochs=1)
  one = train.fit(config, W_TRAIN, W_VAL, layout=LAYOUT, seed=1, devices=1, progress=False)
  two = train.fit(config, W_TRAIN, W_VAL, layout=LAYOUT, seed=1, devices=2, progress=False)
  assert two.mesh.size == 2
  # Same data order, views and dropout masks; only the float summation order differs. (Parameters are
  # not compared: Adam's first steps move each one by about +-lr, so a gradient component near 0 may
  # flip sign with the summation order.)
  for key in ("train_loss", "train_recon", "train_contrast"):
    assert two.history[0][key] == pytest.approx(one.history[0][key], rel=1e-5), key
  # The same parameters evaluate alike on one and two devices.
  ev_one, ev_two = (train.evaluate(one, W_VAL, devices=n) for n in (1, 2))
  for key in ("loss", "recon", "contrast", "r2"):
    assert ev_two[key] == pytest.approx(ev_one[key], rel=1e-5), key


def test_embed_reconstruct_and_evaluate_agree(trained):
  w = W_VAL[:37]  # not a multiple of the batch size: the last batch is padded
  z = train.embed(trained, w, batch_size=16)
  assert z.shape == (37, 8) and np.isfinite(z).all()
  np.testing.assert_allclose(train.embed(trained, w, batch_size=64), z, rtol=1e-5, atol=1e-6)
  # The same as the NNX model, in evaluation mode.
  z_model = jax.jit(lambda m, x: m.encode(x))(trained.model, jnp.asarray(w))
  np.testing.assert_allclose(np.asarray(z_model), z, rtol=1e-4, atol=1e-5)
  recon = train.reconstruct(trained, w, batch_size=16)
  assert recon.shape == (37, 100)
  # evaluate() with un-augmented views and targets is the R^2 of reconstruct().
  plain = trained.config.replace(eval_augment=AugmentConfig(permute=False, erase_p=0.0), target="original")
  ev = train.evaluate(trained, w, config=plain, batch_size=16)
  mse = np.mean((recon - w) ** 2)
  assert ev["recon"] == pytest.approx(mse, rel=1e-4)
  sst = np.sum((w - w.mean(0)) ** 2)
  assert ev["r2"] == pytest.approx(1 - np.sum((recon - w) ** 2) / sst, rel=1e-4)
  assert ev["loss"] == pytest.approx(0.5 * ev["contrast"] + 0.5 * ev["recon"], rel=1e-6)
  # The default evaluation (permuted views) is reproducible.
  assert train.evaluate(trained, w) == train.evaluate(trained, w)


def test_bad_input_raises_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="fewer than one batch"):
    train.fit(TINY, W_TRAIN[:10], layout=LAYOUT, devices=1, progress=False)
  with pytest.raises(ValueError, match="100 parameters"):
    train.fit(TINY, W_TRAIN[:, :99], layout=LAYOUT, devices=1, progress=False)
  bad = W_TRAIN.copy()
  bad[3, 4] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    train.fit(TINY, bad, layout=LAYOUT, devices=1, progress=False)
  with pytest.raises(ValueError, match="not divisible by the 3 devices"):
    train.fit(TINY, W_TRAIN, layout=LAYOUT, devices=3, progress=False)
  with pytest.raises(ValueError, match="must be a TrainConfig"):
    train.fit(TINY.model, W_TRAIN, layout=LAYOUT, progress=False)
  with pytest.raises(ValueError, match="no checkpoint"):
    train.restore(str(tmp_path))
  with pytest.raises(ValueError, match="target"):
    TINY.replace(target="clean")
  with pytest.raises(ValueError, match="no field"):
    TINY.replace(**{"model.width": 3})


def test_config_round_trips_through_json():
  for name in configs.preset_names():
    config = configs.preset(name)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
  assert configs.with_architecture(configs.preset("tetris"), "FF").lr == pytest.approx(3e-4)
  assert configs.with_loss(TINY, "Ec+D(code)").loss.contrast == "positive_code"
  with pytest.raises(ValueError, match="unknown preset"):
    configs.preset("imagenet")


@pytest.mark.slow
def test_tetris_zoo_training_reaches_validation_r2_above_half(tetris_zoo):
  """~540 steps of the small preset, reconstruction only (ED), on a 128-model TETRIS-SEED zoo.

  With the contrastive term (EcD) reconstruction improves far more slowly: the contrast asks for z to
  be invariant to the permutation that the reconstruction of the permuted view needs (the paper:
  R^2 84% for EcD vs 96% for ED after ~1000 epochs).
  """
  split = tetris_zoo.split()
  w_train = tetris_zoo.samples(split.train)[0]
  w_val = tetris_zoo.samples(split.val)[0]
  config = configs.with_loss(configs.preset("small"), "ED").replace(epochs=8, eval_every=1)
  result = train.fit(config, w_train, w_val, layout=tetris_zoo.layout, seed=0, devices=1, progress=False)
  h = result.history
  assert h[-1]["train_recon"] < 0.6 * h[0]["train_recon"]
  assert h[0]["val_r2"] < 0.5 < h[-1]["val_r2"]


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
  """Kill a training process at a random moment, resume it, compare with an uninterrupted run."""
  import signal
  import subprocess
  import sys
  import time
  script = f"""
import os, sys, numpy as np
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_train import TINY, W_TRAIN, W_VAL, LAYOUT
from wsl_jax.hyperrep import train
r = train.fit(TINY.replace(epochs=6), W_TRAIN, W_VAL, layout=LAYOUT, workdir=sys.argv[1], seed=5, devices=1,
              progress=False)
np.save(os.path.join(sys.argv[1], "params.npy"), np.asarray(r.state["params"]))
"""
  path = tmp_path / "run.py"
  path.write_text(script)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  for name in ("a", "b"):
    (tmp_path / name).mkdir()
  subprocess.run([sys.executable, str(path), str(tmp_path / "a")], check=True, env=env)
  proc = subprocess.Popen([sys.executable, str(path), str(tmp_path / "b")], env=env)
  log = tmp_path / "b" / train.METRICS_FILE
  while not (log.exists() and len(log.read_text().splitlines()) >= 2):
    time.sleep(0.05)
  time.sleep(0.3)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  subprocess.run([sys.executable, str(path), str(tmp_path / "b")], check=True, env=env)
  np.testing.assert_array_equal(np.load(tmp_path / "b" / "params.npy"), np.load(tmp_path / "a" / "params.npy"))


def test_default_devices_divide_the_batch():
  # Accelerators: the most devices that split the batch evenly; CPU: one (see default_device_count).
  assert [train.default_device_count(b, 4, "gpu") for b in (32, 6, 7, 50)] == [4, 3, 1, 2]
  assert train.default_device_count(32, 4, "cpu") == 1
  assert train.default_device_count(32) == 1  # the test session's 4 virtual CPU devices
