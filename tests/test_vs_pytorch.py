"""benchmarks/vs_pytorch.py: skipped with one line without PyTorch; its PyTorch side builds the zoo
networks with wsl_jax's parameter counts and trains and evaluates them (when PyTorch is installed)."""

import importlib.util
import pathlib

import numpy as np
import pytest

from wsl_jax.weights import nets

_DIR = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
  spec = importlib.util.spec_from_file_location(name, _DIR / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_without_pytorch_it_says_so_in_one_line(monkeypatch, capsys):
  bench = _load("vs_pytorch")
  monkeypatch.setattr(bench, "torch_available", lambda: False)
  assert bench.main(["--parts", "mlp"]) == 0
  out = capsys.readouterr().out.strip().splitlines()
  assert out == ["vs_pytorch: PyTorch is not installed (pip install -e '.[bench]'); skipped"]


def test_torch_side_builds_trains_and_evaluates_the_zoo_networks(monkeypatch):
  pytest.importorskip("torch")
  monkeypatch.syspath_prepend(str(_DIR))
  ref = _load("torch_reference")
  for net in (nets.PAPER_CNN, nets.UNTERTHINER_CNN, nets.TETRIS_MLP, nets.DIGITS_CNN):
    model = ref.build_net(net.to_dict(), "tanh", 0.1)
    assert sum(p.numel() for p in model.parameters()) == net.layout().num_params
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 8, 8, 1)).astype(np.float32)
  y = rng.integers(0, 10, 40)
  ref.set_data(x, y, x[:10], y[:10], x[10:30], y[10:30])
  hp = dict(activation="relu", optimizer="sgd", lr=1e-2, wd=0.0, l2=1e-4, momentum=0.9, dropout=0.0,
            train_fraction=0.5, init_std=0.05, seed=1)
  job = dict(net=nets.DIGITS_CNN.to_dict(), batch_size=10, epochs=2, checkpoints=(0, 2), eval_batch=7, models=[hp])
  assert ref.train_models(job) > 0
  import torch
  model = ref.build_net(nets.DIGITS_CNN.to_dict(), "relu", 0.0)
  stats = ref.evaluate(model, ref._DATA["x_test"], ref._DATA["y_test"], 7, 10)
  logits = model(ref._DATA["x_test"])
  assert stats[1] == pytest.approx((logits.argmax(1) == ref._DATA["y_test"]).double().mean().item())
  assert stats[0] == pytest.approx(torch.nn.functional.cross_entropy(logits, ref._DATA["y_test"]).item(), rel=1e-5)
