"""Zoo generation split over processes: independent `--worker i/n` runs and `jax.distributed` processes
write disjoint chunks into one staging folder; the zoo equals a one-process run bit for bit."""

import importlib
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from wsl_jax import outputs
from wsl_jax import zoo as zoo_lib
from wsl_jax.zoo import __main__ as zoo_cli

gen = importlib.import_module("wsl_jax.zoo.generate")
from test_faults import _count_chunks  # noqa: E402  (records the chunks each run trains)
ZOO = dict(num_models=8, epochs=2, chunk_size=2)  # 4 chunks of 2 models
ONE_DEVICE = dict(ZOO, progress=False, devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def reference():
  return zoo_lib.generate("tetris_seed", **ONE_DEVICE)


def _same_zoo(a, b):
  np.testing.assert_array_equal(np.asarray(a.weights), np.asarray(b.weights))
  np.testing.assert_array_equal(a.diverged, b.diverged)
  assert set(a.properties) == set(b.properties)
  for k in b.properties:
    np.testing.assert_array_equal(a.properties[k], b.properties[k], err_msg=k)


def test_workers_train_disjoint_chunks_and_the_last_one_finishes(tmp_path, monkeypatch, reference):
  out = str(tmp_path / "zoo")
  calls = _count_chunks(monkeypatch)
  assert zoo_lib.generate("tetris_seed", out=out, worker="0/2", **ONE_DEVICE) is None
  assert calls == [[0, 1], [4, 5]] and not os.path.exists(out)  # chunks 0 and 2 only
  calls.clear()
  z = zoo_lib.generate("tetris_seed", out=out, worker=(1, 2), **ONE_DEVICE)
  assert calls == [[2, 3], [6, 7]]
  _same_zoo(z, reference)
  _same_zoo(zoo_lib.load(out), reference)
  assert sorted(os.listdir(out)) == ["diverged.npy", "hparams.npz", "properties.npz", "weights.npy", "zoo.json"]


def test_a_killed_workers_chunks_are_done_by_any_rerun(tmp_path, monkeypatch, reference):
  out = str(tmp_path / "zoo")
  assert zoo_lib.generate("tetris_seed", out=out, worker="1/3", **ONE_DEVICE) is None  # chunk 1
  calls = _count_chunks(monkeypatch)
  z = zoo_lib.generate("tetris_seed", out=out, **ONE_DEVICE)  # workers 0 and 2 never ran: no --worker
  assert calls == [[0, 1], [4, 5], [6, 7]]
  _same_zoo(z, reference)


def test_bad_worker_arguments_are_refused(tmp_path, capsys):
  for bad in ("2/2", "-1/2", "a/b", "1", "0/0"):
    with pytest.raises(ValueError, match="worker"):
      zoo_lib.generate("tetris_seed", out=str(tmp_path / "z"), worker=bad, **ONE_DEVICE)
  with pytest.raises(ValueError, match="pass out"):
    zoo_lib.generate("tetris_seed", worker="0/2", **ONE_DEVICE)
  assert zoo_cli.main(["generate", "--preset", "tetris_seed", "--out", str(tmp_path / "z"), "--worker", "3/2",
                       "--quiet"]) == 2
  assert "0 <= i < n" in capsys.readouterr().err
  assert not os.path.exists(str(tmp_path / "z.partial"))


def test_the_same_worker_twice_at_once_is_refused(tmp_path):
  out = str(tmp_path / "zoo")
  os.makedirs(out + ".partial")
  with outputs.OutputLock(os.path.join(out + ".partial", f"{gen.LOCK_FILE}-1-of-2"), "worker 1/2"):
    with pytest.raises(outputs.UnsafeOutputError, match="another run"):
      zoo_lib.generate("tetris_seed", out=out, worker="1/2", **ONE_DEVICE)
    assert zoo_lib.generate("tetris_seed", out=out, worker="0/2", **ONE_DEVICE) is None  # another worker runs


def _env():
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "WSL_JAX_TRACEBACK")}
  return {**env, "JAX_PLATFORMS": "cpu", "WSL_JAX_CPU_DEVICES": "1", "WSL_JAX_CACHE": os.path.join(
      os.path.dirname(os.path.dirname(__file__)), ".jax_cache", "subprocess")}


def test_two_cli_workers_at_once_equal_one_process(tmp_path, reference):
  out = str(tmp_path / "zoo")
  args = [sys.executable, "-m", "wsl_jax.zoo", "generate", "--preset", "tetris_seed", "--out", out, "--models", "8",
          "--epochs", "2", "--chunk-size", "2", "--quiet"]
  procs = [subprocess.Popen(args + ["--worker", f"{i}/2"], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  results = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], results
  assert sum("wrote" in stdout for stdout, _ in results) == 1  # one of them put the zoo in place
  _same_zoo(zoo_lib.load(out), reference)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_jax_distributed_processes_split_the_chunks(tmp_path, reference):
  out = str(tmp_path / "zoo")
  script = textwrap.dedent(f"""
      import sys, jax
      jax.distributed.initialize(coordinator_address="127.0.0.1:{_free_port()}", num_processes=2,
                                 process_id=int(sys.argv[1]))
      from wsl_jax import zoo
      gen_module = sys.modules["wsl_jax.zoo.generate"]
      real, done = gen_module.run_chunk, []

      def counted(bucket, models, *args, **kwargs):
          done.append(models.tolist())
          return real(bucket, models, *args, **kwargs)
      gen_module.run_chunk = counted
      z = zoo.generate("tetris_seed", num_models=8, epochs=2, chunk_size=2, out={out!r}, progress=False)
      print("chunks", done, "finished", z is not None)
  """)
  procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  results = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], results
  stdout = [r[0] for r in results]
  assert "chunks [[0, 1], [4, 5]]" in stdout[0] and "chunks [[2, 3], [6, 7]]" in stdout[1]
  assert sum("finished True" in s for s in stdout) == 1
  _same_zoo(zoo_lib.load(out), reference)
