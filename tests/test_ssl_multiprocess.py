"""SSL training across processes (jax.distributed on local CPU processes, gloo collectives): the same
losses as one process with as many devices, and a kill of one process resumes to the uninterrupted run."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from wsl_jax.hyperrep import train
from wsl_jax.hyperrep.configs import LossConfig, ModelConfig, TrainConfig
from wsl_jax.weights import nets

LAYOUT = nets.TETRIS_MLP.layout()
CONFIG = dict(batch_size=32, lr=3e-3, eval_every=1, checkpoint_every=1, eval_batch_size=64)
# 192 samples: 6 steps per epoch, so two epochs are 12 steps.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import jax
    import numpy as np
    try:  # cross-process collectives on CPU (the default on newer jax)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, KeyError, ValueError):
        pass
    jax.distributed.initialize(coordinator_address="127.0.0.1:" + sys.argv[2], num_processes=2,
                               process_id=int(sys.argv[1]))
    from wsl_jax.hyperrep import train
    from wsl_jax.hyperrep.configs import LossConfig, ModelConfig, TrainConfig
    from wsl_jax.weights import nets
    layout = nets.TETRIS_MLP.layout()
    config = TrainConfig(model=ModelConfig(dim=16, heads=2, ff_dim=32, blocks=1, latent_dim=8, head_layers=1,
                                           head_hidden=16, head_out=8),
                         loss=LossConfig(contrast="ntxent", gamma=0.5, temperature=0.1), epochs=int(sys.argv[4]),
                         **json.loads(sys.argv[5]))
    rng = np.random.default_rng(0)
    w, w_val = (rng.normal(size=(n, layout.num_params)).astype(np.float32) for n in (192, 40))
    die_after = int(sys.argv[6])
    def callback(record):
        if jax.process_index() == 1 and record["epoch"] == die_after:
            os._exit(9)  # killed right after a checkpoint
    result = train.fit(config, w, w_val, layout=layout, workdir=sys.argv[3], seed=3, progress=False,
                       callback=callback)
    embedding = train.embed(result, w_val)
    if jax.process_index() == 0:
        print("RESULT " + json.dumps({"history": result.history, "embedding": embedding.tolist(),
                                      "devices": result.mesh.size}))
""")


def _config(epochs):
  return TrainConfig(model=ModelConfig(dim=16, heads=2, ff_dim=32, blocks=1, latent_dim=8, head_layers=1,
                                       head_hidden=16, head_out=8),
                     loss=LossConfig(contrast="ntxent", gamma=0.5, temperature=0.1), epochs=epochs, **CONFIG)


def _data():
  rng = np.random.default_rng(0)
  return tuple(rng.normal(size=(n, LAYOUT.num_params)).astype(np.float32) for n in (192, 40))


def _port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return str(s.getsockname()[1])


def _start(workdir, epochs, die_after=0):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  port = _port()
  return [subprocess.Popen([sys.executable, "-c", SCRIPT, str(i), port, str(workdir), str(epochs), json.dumps(CONFIG),
                            str(die_after)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for i in range(2)]


def _result(procs, timeout=300):
  outs = [p.communicate(timeout=timeout) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
  line = next(line for line in outs[0][0].splitlines() if line.startswith("RESULT "))
  return json.loads(line[len("RESULT "):])


def _same_run(result, reference, rtol=1e-5):
  keys = ("train_loss", "train_contrast", "train_recon", "val_loss", "val_r2")
  got = np.array([[h[k] for k in keys] for h in result["history"]])
  want = np.array([[h[k] for k in keys] for h in reference.history])
  np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6)


@pytest.fixture(scope="module")
def one_process():
  """The reference: one process sharding the same global batch over 2 devices, 2 epochs."""
  w, w_val = _data()
  result = train.fit(_config(2), w, w_val, layout=LAYOUT, seed=3, devices=2, progress=False)
  return result, train.embed(result, w_val)


def test_two_processes_train_as_one_process_with_two_devices(tmp_path, one_process):
  reference, embedding = one_process
  result = _result(_start(tmp_path / "run", epochs=2))
  assert result["devices"] == 2
  _same_run(result, reference)  # 12 steps, losses equal within 1e-5 relative
  np.testing.assert_allclose(np.asarray(result["embedding"]), embedding, rtol=1e-4, atol=1e-5)
  # Process 0 wrote the log, the checkpoints hold both epochs with their checksum records.
  lines = (tmp_path / "run" / train.METRICS_FILE).read_text().splitlines()
  assert len(lines) == 2
  assert sorted(os.listdir(tmp_path / "run" / train.CHECKPOINT_DIR)) == ["1", "2"]


@pytest.mark.slow  # about 100 s on 2 cores: two launches of two processes
def test_a_killed_process_resumes_to_the_uninterrupted_run(tmp_path, one_process):
  reference, _ = one_process
  workdir = tmp_path / "run"
  procs = _start(workdir, epochs=2, die_after=1)  # process 1 dies after epoch 1's checkpoint
  procs[1].wait(timeout=300)
  assert procs[1].returncode == 9
  time.sleep(2)
  procs[0].send_signal(signal.SIGKILL)  # its partner is gone: process 0 waits in a collective
  procs[0].wait(timeout=60)
  assert sorted(os.listdir(workdir / train.CHECKPOINT_DIR)) == ["1"]
  result = _result(_start(workdir, epochs=2))  # both restart: resume from epoch 1
  _same_run(result, reference)
