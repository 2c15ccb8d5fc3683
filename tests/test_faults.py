"""Faults a user runs into: outputs that must never delete their files, damaged staging, a full disk,
concurrent runs, one-line errors. docs/reliability.md lists these cases; each is reproduced here."""

import errno
import importlib
import json
import os
import stat
import subprocess
import sys

import jax
import numpy as np
import pytest

from wsl_jax import outputs
from wsl_jax import zoo as zoo_lib
from wsl_jax.zoo import __main__ as zoo_cli
from wsl_jax.zoo import io as zoo_io
from wsl_jax.zoo import unterthiner

gen = importlib.import_module("wsl_jax.zoo.generate")
RUN_CHUNK = gen.run_chunk

SMALL = dict(num_models=6, epochs=2, progress=False, chunk_size=2, devices=jax.devices()[:1])
CLI_SMALL = ["--preset", "tetris_seed", "--models", "4", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def reference():
  """The uninterrupted in-memory zoo every resumed run must equal bit for bit."""
  return zoo_lib.generate("tetris_seed", **SMALL)


def _user_files(folder):
  """A folder holding a user's files; returns a function that checks they are all still there."""
  os.makedirs(folder, exist_ok=True)
  files = {os.path.join(folder, "thesis.tex"): b"my thesis", os.path.join(folder, "data.csv"): b"1,2,3"}
  for path, content in files.items():
    with open(path, "wb") as f:
      f.write(content)

  def intact():
    for path, content in files.items():
      with open(path, "rb") as f:
        assert f.read() == content, path
  return intact


def _same_zoo(a, b):
  np.testing.assert_array_equal(np.asarray(a.weights), np.asarray(b.weights))
  np.testing.assert_array_equal(a.diverged, b.diverged)
  for k in b.properties:
    np.testing.assert_array_equal(a.properties[k], b.properties[k], err_msg=k)


def _one_error_line(capsys):
  """The one `error: ` line on stderr (progress lines of stages that ran may precede it), no traceback."""
  err = capsys.readouterr().err
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "Traceback" not in err and err.rstrip().endswith(errors[0]), err
  return errors[0]


# ---- outputs never delete what wsl_jax did not write ----------------------------------------------------

@pytest.mark.parametrize("out", ["", "  ", ".", "typo/..", "./"])
def test_cli_refuses_the_working_directory(out, tmp_path, monkeypatch, capsys):
  intact = _user_files(str(tmp_path))
  monkeypatch.chdir(tmp_path)
  assert zoo_cli.main(["generate", "--out", out] + CLI_SMALL) == 2
  line = _one_error_line(capsys)
  assert "empty" in line or "working directory" in line
  intact()
  assert sorted(os.listdir(tmp_path)) == ["data.csv", "thesis.tex"]


def test_api_refuses_unsafe_outputs(tmp_path, monkeypatch):
  sub = tmp_path / "a" / "b"
  sub.mkdir(parents=True)
  monkeypatch.chdir(sub)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  (tmp_path / "home").mkdir()
  for out, reason in [("", "empty"), (".", "working directory"), ("..", "parent"), (str(tmp_path), "parent"),
                      ("~", "home directory"), (str(tmp_path / "home"), "home directory"), ("/", "root")]:
    with pytest.raises(outputs.UnsafeOutputError, match=reason):
      zoo_lib.generate("tetris_seed", out=out, **SMALL)
  with pytest.raises(outputs.UnsafeOutputError, match="empty"):
    zoo_lib.save(zoo_lib.generate("tetris_seed", **SMALL), "")
  assert os.listdir(sub) == []


def test_a_symlink_to_the_working_directory_is_refused(tmp_path, monkeypatch):
  work = tmp_path / "work"
  intact = _user_files(str(work))
  os.symlink(work, tmp_path / "link")
  monkeypatch.chdir(work)
  with pytest.raises(outputs.UnsafeOutputError, match="working directory"):
    zoo_lib.generate("tetris_seed", out=str(tmp_path / "link"), overwrite=True, **SMALL)
  intact()


def test_overwrite_refuses_a_folder_that_is_not_a_zoo(tmp_path, monkeypatch, capsys):
  notes = tmp_path / "notes"
  intact = _user_files(str(notes))
  assert zoo_cli.main(["generate", "--out", str(notes), "--overwrite"] + CLI_SMALL) == 2
  assert "is not a zoo written by wsl_jax" in _one_error_line(capsys)
  intact()
  # Without --overwrite the message does not suggest it.
  assert zoo_cli.main(["generate", "--out", str(notes)] + CLI_SMALL) == 2
  line = _one_error_line(capsys)
  assert "exists" in line and "--overwrite" not in line
  monkeypatch.chdir(notes)
  assert zoo_cli.main(["generate", "--out", ".", "--overwrite"] + CLI_SMALL) == 2
  assert "working directory" in _one_error_line(capsys)
  intact()
  assert not os.path.exists(str(notes) + ".partial")


def test_overwrite_replaces_only_a_zoo_of_ours_with_nothing_else_in_it(tmp_path, reference):
  out = str(tmp_path / "zoo")
  zoo_lib.save(reference.subset(models=np.arange(2)), out)
  with open(os.path.join(out, "README.txt"), "w") as f:
    f.write("my notes about this zoo")
  with pytest.raises(outputs.UnsafeOutputError, match="README.txt"):
    zoo_lib.generate("tetris_seed", out=out, overwrite=True, **SMALL)
  assert os.path.exists(os.path.join(out, "README.txt"))
  with pytest.raises(outputs.UnsafeOutputError, match="README.txt"):
    zoo_lib.save(reference, out, overwrite=True)
  os.remove(os.path.join(out, "README.txt"))
  z = zoo_lib.generate("tetris_seed", out=out, overwrite=True, **SMALL)
  _same_zoo(z, reference)
  # The old zoo moved aside is gone, and no bookkeeping stays in the new one or beside it.
  assert sorted(os.listdir(tmp_path)) == ["zoo"]
  assert sorted(os.listdir(out)) == ["diverged.npy", "hparams.npz", "properties.npz", "weights.npy", "zoo.json"]
  assert json.load(open(os.path.join(out, "zoo.json")))["writer"] == "wsl_jax"


def test_unterthiner_export_never_replaces_a_downloaded_data_set(tmp_path, reference):
  from wsl_jax.weights import nets
  downloaded = tmp_path / "mnist"
  downloaded.mkdir()
  for name in ("weights.npy", "metrics.csv", "layout.csv"):
    (downloaded / name).write_text("the user's download")
  small = reference.subset(models=np.arange(2))
  cnn = zoo_lib.Zoo(weights=np.zeros((2, 1, nets.UNTERTHINER_CNN.layout().num_params), np.float32),
                    epochs=np.zeros(1, np.int32), properties={"test_acc": np.zeros((2, 1), np.float32)},
                    hparams={k: v for k, v in small.hparams.items()}, net=nets.UNTERTHINER_CNN,
                    dataset="mnist", diverged=np.zeros(2, bool))
  with pytest.raises(outputs.UnsafeOutputError, match="is not a zoo written by wsl_jax"):
    unterthiner.export_zoo(cnn, str(downloaded), overwrite=True)
  assert (downloaded / "weights.npy").read_text() == "the user's download"


def test_a_folder_created_at_out_during_generation_is_kept(tmp_path, monkeypatch, reference):
  out = str(tmp_path / "zoo")
  real = gen.run_chunk
  calls = []

  def run_chunk(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # meanwhile, the user creates the folder (an empty one: a plain rename replaces it)
      os.makedirs(out)
    return real(*args, **kwargs)
  monkeypatch.setattr(gen, "run_chunk", run_chunk)
  with pytest.raises(FileExistsError, match="appeared while the zoo was generated"):
    zoo_lib.generate("tetris_seed", out=out, **SMALL)
  assert os.path.isdir(out) and os.listdir(out) == []
  staging = out + ".partial"
  assert sorted(os.listdir(staging)) == ["diverged.npy", "hparams.npz", "properties.npz", "weights.npy",
                                         "zoo.json"]
  # Once the user moved their folder away, the same command puts the finished zoo in place, no retraining.
  os.rmdir(out)
  calls.clear()
  z = zoo_lib.generate("tetris_seed", out=out, **SMALL)
  assert calls == [] and not os.path.exists(staging)
  _same_zoo(z, reference)


def test_rename_noreplace_refuses_an_empty_folder(tmp_path):
  (tmp_path / "src").mkdir()
  (tmp_path / "dst").mkdir()
  with pytest.raises(FileExistsError):
    outputs.rename_noreplace(str(tmp_path / "src"), str(tmp_path / "dst"))
  assert (tmp_path / "src").is_dir()
  outputs.rename_noreplace(str(tmp_path / "src"), str(tmp_path / "new"))
  assert (tmp_path / "new").is_dir() and not (tmp_path / "src").exists()


def test_a_staging_folder_with_user_files_is_not_used(tmp_path):
  out = str(tmp_path / "zoo")
  intact = _user_files(out + ".partial")
  with pytest.raises(outputs.UnsafeOutputError, match="did not write"):
    zoo_lib.generate("tetris_seed", out=out, **SMALL)
  intact()


# ---- staging integrity ----------------------------------------------------------------------------------

class _Crash(RuntimeError):
  pass


def _crash_after(monkeypatch, n):
  real = RUN_CHUNK
  calls = []

  def run_chunk(*args, **kwargs):
    calls.append(1)
    if len(calls) > n:
      raise _Crash("killed")
    return real(*args, **kwargs)
  monkeypatch.setattr(gen, "run_chunk", run_chunk)
  return calls


def _count_chunks(monkeypatch):
  real = RUN_CHUNK
  calls = []

  def run_chunk(bucket, models, *args, **kwargs):
    calls.append(np.asarray(models).tolist())
    return real(bucket, models, *args, **kwargs)
  monkeypatch.setattr(gen, "run_chunk", run_chunk)
  return calls


def test_truncated_staging_weights_are_rebuilt_not_zero_filled(tmp_path, monkeypatch, reference):
  out = str(tmp_path / "zoo")
  _crash_after(monkeypatch, 2)
  with pytest.raises(_Crash):
    zoo_lib.generate("tetris_seed", out=out, **SMALL)
  weights_file = os.path.join(out + ".partial", "weights.npy")
  size = os.path.getsize(weights_file)
  with open(weights_file, "r+b") as f:
    f.truncate(size // 2)
  calls = _count_chunks(monkeypatch)
  with pytest.warns(UserWarning, match="wrong size"):
    z = zoo_lib.generate("tetris_seed", out=out, **SMALL)
  assert len(calls) == 3  # every chunk recomputed: the finished ones lost their weights
  _same_zoo(z, reference)
  _same_zoo(zoo_lib.load(out), reference)
  assert (np.abs(z.weights).sum(axis=(1, 2)) > 0).all()


def test_a_chunk_whose_staged_weights_changed_is_recomputed(tmp_path, monkeypatch, reference):
  out = str(tmp_path / "zoo")
  _crash_after(monkeypatch, 2)
  with pytest.raises(_Crash):
    zoo_lib.generate("tetris_seed", out=out, **SMALL)
  staged = np.load(os.path.join(out + ".partial", "weights.npy"), mmap_mode="r+")
  staged[1] = 0.0  # a finished chunk's model (chunks are models [0, 1], [2, 3], [4, 5])
  staged.flush()
  del staged
  calls = _count_chunks(monkeypatch)
  with pytest.warns(UserWarning, match="do not match the checksum"):
    z = zoo_lib.generate("tetris_seed", out=out, **SMALL)
  assert calls == [[0, 1], [4, 5]]  # the damaged chunk and the one never finished; [2, 3] kept
  _same_zoo(z, reference)


def test_a_resume_with_other_settings_is_refused_with_the_difference(tmp_path, monkeypatch):
  out = str(tmp_path / "zoo")
  _crash_after(monkeypatch, 1)
  with pytest.raises(_Crash):
    zoo_lib.generate("tetris_seed", out=out, **SMALL)
  with pytest.raises(FileExistsError, match="seed: started with 0, now 1"):
    zoo_lib.generate("tetris_seed", out=out, **{**SMALL, "seed": 1})


def test_a_bad_chunk_size_leaves_nothing_behind(tmp_path, capsys):
  out = str(tmp_path / "zoo")
  assert zoo_cli.main(["generate", "--out", out, "--chunk-size", "0"] + CLI_SMALL) == 2
  assert "chunk_size" in _one_error_line(capsys)
  assert os.listdir(tmp_path) == []
  assert zoo_cli.main(["generate", "--out", out, "--chunk-size", "2"] + CLI_SMALL) == 0


# ---- space, disk full, concurrent runs ------------------------------------------------------------------

def test_a_zoo_that_does_not_fit_is_refused_before_writing(tmp_path, monkeypatch, capsys):
  real = outputs.shutil.disk_usage
  monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: real(p)._replace(free=10_000))
  out = str(tmp_path / "zoo")
  assert zoo_cli.main(["generate", "--out", out] + CLI_SMALL) == 2
  line = _one_error_line(capsys)
  assert "needs" in line and "only 10.0 KB are free" in line
  assert os.listdir(tmp_path) == []


def test_needed_bytes_counts_the_weights():
  # --models 5000000 of TETRIS-SEED: 5e6 x 76 x 100 float32 = 152 GB of weights alone.
  needed = gen._needed_bytes((5_000_000, 76, 100), num_classes=4)
  assert 152e9 <= needed < 190e9  # and the properties, twice (chunk files, properties.npz)


def test_a_full_disk_mid_run_is_a_clear_error_and_resumable(tmp_path, monkeypatch, capsys, reference):
  out = str(tmp_path / "zoo")
  real = gen._atomic_npz
  writes = []

  def full_disk(path, **arrays):
    writes.append(path)
    if len(writes) == 2:
      raise OSError(errno.ENOSPC, "No space left on device", path)
    return real(path, **arrays)
  monkeypatch.setattr(gen, "_atomic_npz", full_disk)
  with pytest.raises(outputs.OutOfSpaceError, match="disk is full.*resumes from"):
    zoo_lib.generate("tetris_seed", out=out, **SMALL)
  monkeypatch.setattr(gen, "_atomic_npz", real)
  calls = _count_chunks(monkeypatch)
  z = zoo_lib.generate("tetris_seed", out=out, **SMALL)
  assert calls == [[2, 3], [4, 5]]
  _same_zoo(z, reference)
  # Through the CLI: one line, exit 2.
  monkeypatch.setattr(gen, "_atomic_npz", full_disk)
  writes.clear()
  assert zoo_cli.main(["generate", "--out", str(tmp_path / "z2")] + CLI_SMALL + ["--chunk-size", "2"]) == 2
  assert "disk is full" in _one_error_line(capsys)


def test_a_second_run_on_the_same_out_is_refused(tmp_path):
  out = str(tmp_path / "zoo")
  os.makedirs(out + ".partial")
  with outputs.OutputLock(os.path.join(out + ".partial", f"{gen.LOCK_FILE}-0-of-1"), "the zoo"):
    with pytest.raises(outputs.UnsafeOutputError, match="another run"):
      zoo_lib.generate("tetris_seed", out=out, **SMALL)
  z = zoo_lib.generate("tetris_seed", out=out, **SMALL)  # the lock is released with its holder
  assert z.num_models == 6


def test_files_follow_the_umask(tmp_path, reference):
  old = os.umask(0o027)
  try:
    out = zoo_lib.save(reference, str(tmp_path / "zoo"))
    generated = zoo_lib.generate("tetris_seed", out=str(tmp_path / "gen"), **SMALL)
    del generated
    zoo_io.atomic_write_text(str(tmp_path / "result.json"), "{}")
  finally:
    os.umask(old)
  for folder in (out, str(tmp_path / "gen")):
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o750, folder
    for name in os.listdir(folder):
      assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o640, name
  assert stat.S_IMODE(os.stat(tmp_path / "result.json").st_mode) == 0o640


# ---- experiments' --out and the zoo cache ---------------------------------------------------------------

def test_experiment_outputs_are_checked_before_anything_is_written(tmp_path, monkeypatch):
  from experiments import common
  record = {"experiment": "tetris_seed", "seed": 0, "config": {"a": 1, "b": [1, 2]}}
  intact = _user_files(str(tmp_path / "mine"))
  with pytest.raises(outputs.UnsafeOutputError, match="not empty and holds no run"):
    common.start_run(str(tmp_path / "mine"), record)
  intact()
  assert not (tmp_path / "mine" / "config.json").exists()
  out = common.start_run(str(tmp_path / "run"), record)
  config_bytes = open(os.path.join(out, "config.json"), "rb").read()
  assert common.start_run(str(tmp_path / "run"), record) == out  # a rerun of the same run resumes
  with pytest.raises(outputs.UnsafeOutputError, match=r"seed: 0 there, 1 now"):
    common.start_run(str(tmp_path / "run"), {**record, "seed": 1})
  with pytest.raises(outputs.UnsafeOutputError, match=r"config.a: 1 there, 2 now"):
    common.start_run(str(tmp_path / "run"), {**record, "config": {"a": 2, "b": [1, 2]}})
  with pytest.raises(outputs.UnsafeOutputError, match="holds a run of experiments.tetris_seed"):
    common.start_run(str(tmp_path / "run"), {**record, "experiment": "tetris_hyp"})
  assert open(os.path.join(out, "config.json"), "rb").read() != b"" and json.loads(config_bytes)["seed"] == 0
  monkeypatch.chdir(tmp_path / "mine")
  for bad in ("", ".", ".."):
    with pytest.raises(outputs.UnsafeOutputError):
      common.start_run(bad, record)
  intact()


def test_experiment_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
  from experiments import tetris_seed
  intact = _user_files(str(tmp_path / "mine"))
  monkeypatch.chdir(tmp_path / "mine")
  assert tetris_seed.main(["--preset", "smoke", "--out", "", "--quiet", "--zoo-cache", str(tmp_path / "c")]) == 2
  assert "empty" in _one_error_line(capsys)
  assert tetris_seed.main(["--preset", "smoke", "--out", ".", "--quiet", "--zoo-cache", str(tmp_path / "c")]) == 2
  assert "working directory" in _one_error_line(capsys)
  assert tetris_seed.main(["--preset", "smoke", "--out", str(tmp_path / "r"), "--quiet",
                           "--zoo-cache", ""]) == 2
  assert "--zoo-cache is empty" in _one_error_line(capsys)
  intact()


def test_a_damaged_cached_zoo_is_named(tmp_path, reference):
  from experiments import common
  cache = tmp_path / "cache"
  folder = zoo_lib.save(reference, str(cache / common.cache_folder_name("tetris_seed", 6, 2, 0)))
  with open(os.path.join(folder, "weights.npy"), "r+b") as f:
    f.truncate(100)
  with pytest.raises(zoo_lib.ZooFormatError, match="cached zoo .* is damaged.*delete that folder"):
    common.cached_zoo("tetris_seed", 6, 2, 0, str(cache), progress=False)
  assert os.path.getsize(os.path.join(folder, "weights.npy")) == 100  # left as it was

def test_a_changed_preset_never_reuses_the_cached_zoo_of_its_old_recipe(tmp_path, monkeypatch):
  import dataclasses

  from experiments import common
  from wsl_jax.zoo import presets
  before = common.cache_folder_name("tetris_seed", 6, 2, 0)
  assert before == common.cache_folder_name("tetris_seed", 6, 2, 0)  # stable
  changed = dataclasses.replace(presets.get("tetris_seed"), batch_size=7)
  monkeypatch.setitem(presets.PRESETS, "tetris_seed", changed)
  after = common.cache_folder_name("tetris_seed", 6, 2, 0)
  assert after != before and after.startswith("tetris_seed-") and after.endswith("-m6-e2-s0")


def test_cli_user_error_in_a_subprocess_has_no_traceback(tmp_path):
  intact = _user_files(str(tmp_path))
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("WSL_JAX_TRACEBACK", None)
  proc = subprocess.run([sys.executable, "-m", "wsl_jax.zoo", "generate", "--out", ""] + CLI_SMALL,
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith("error: --out is empty") and "Traceback" not in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  intact()
