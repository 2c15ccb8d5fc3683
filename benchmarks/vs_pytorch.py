"""wsl_jax against PyTorch on this machine, both sides in the same run: zoo generation and the SSL step.

    pip install -e '.[bench]'        # PyTorch (CPU) for the reference side
    python benchmarks/vs_pytorch.py [--parts mlp paper_cnn unterthiner_cnn ssl] [--repeats 3]

Without PyTorch it prints one line saying so and exits 0. The PyTorch side (`benchmarks/torch_reference.py`)
is written from the paper's description of the models, configured at its best on this machine:

* Zoos: what users of the original code run, one model per process and one thread per process
  (`torch.set_num_threads(1)`; two threads per process collapse as soon as anything else runs), one
  worker process per core (`multiprocessing`, spawned and warmed up before timing). Each PyTorch model
  does the work `wsl_jax.zoo.generate()` does: init, per-epoch shuffle, mini-batch Adam/SGD/RMSprop
  steps (dropout, L2 and training shares as the model's hyper-parameters say), and at every checkpoint
  epoch the evaluation of the training-evaluation subset and the test set (loss, accuracy, per-class F1)
  and a copy of the weights. The wsl_jax side is the whole `generate()` call (warm: its programs compiled
  by a first call; every bucket, chunk, evaluation and host copy included) on all cores. PyTorch trains
  `--torch-models` of the zoo's models (its cost per model does not depend on how many); both are
  reported per model-step (one mini-batch update of one model; the zoo's steps per model x models).
* SSL: the paper's attention auto-encoder (encoder, decoder, projection head; NT-Xent + MSE; Adam) on
  pre-augmented views handed over as tensors (the augmentation is free for PyTorch, it is inside the
  wsl_jax step), the better of 1 thread and all threads; wsl_jax's compiled train step from
  `benchmarks/ssl_throughput.py`, and % of a jitted 2048 x 2048 matmul's FLOP/s measured in the same
  run.

Measurement: the two sides alternate, `--repeats` times, and the minimum of each is kept (the machine
may be shared: a slow phase then hits both sides). Ratios > 1 mean wsl_jax is faster.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PARTS = ("mlp", "paper_cnn", "unterthiner_cnn", "ssl")
# Zoo cases: (preset, zoo size, epochs, PyTorch models timed).
ZOOS = {"mlp": ("tetris_seed", None, None, 40), "paper_cnn": ("digits_seed", 64, 2, 8),
        "unterthiner_cnn": ("unterthiner_digits", 64, 2, 8)}
SSL_CASES = (("tetris", "tetris", 500), ("mnist_seed", "paper_cnn", 50))  # (config preset, layout, batch)


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
  p.add_argument("--repeats", type=int, default=3, help="alternating repetitions of both sides")
  p.add_argument("--torch-models", type=int, default=None, help="PyTorch models timed per zoo (default per zoo)")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="PyTorch processes (one per core)")
  p.add_argument("--ssl-steps", type=int, default=2, help="timed SSL steps per repetition")
  p.add_argument("--ssl-presets", nargs="+", default=[c[0] for c in SSL_CASES], choices=[c[0] for c in SSL_CASES])
  p.add_argument("--ssl-batch", type=int, default=None, help="override the SSL cases' batch sizes")
  p.add_argument("--zoo-models", type=int, default=None, help="override the zoo sizes (quick checks)")
  p.add_argument("--zoo-epochs", type=int, default=None, help="override the zoo epochs (quick checks)")
  return p.parse_args(argv)


def torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


# ---- zoos -------------------------------------------------------------------------------------------

def zoo_preset(name: str):
  from wsl_jax.zoo import cnn_presets, presets
  if name == "unterthiner_digits":  # Unterthiner et al.'s CNN and sampled recipe on digits (no download)
    return cnn_presets.unterthiner_hyp("digits_28", (), 28, "unterthiner_digits")
  return presets.get(name)


def torch_jobs(preset, hp: dict, models, workers: int, epochs: int) -> list[dict]:
  """The PyTorch work for `models`, split into one job per worker."""
  from wsl_jax.zoo import spec as zoo_spec
  keys = ("activation", "optimizer") + tuple(zoo_spec.CONTINUOUS_HPARAMS)
  per_model = [{**{k: (hp[k][m].item() if hasattr(hp[k][m], "item") else hp[k][m]) for k in keys},
                "seed": int(hp["seed"][m])} for m in models]
  common = dict(net=preset.net.to_dict(), batch_size=preset.batch_size, epochs=epochs,
                checkpoints=tuple(preset.checkpoints(epochs)), eval_batch=preset.eval_batch_size)
  return [dict(common, models=per_model[w::workers]) for w in range(workers) if per_model[w::workers]]


def bench_zoo(part: str, args) -> dict:
  import numpy as np
  import torch_reference
  from wsl_jax.zoo import metrics, presets
  gen = importlib.import_module("wsl_jax.zoo.generate")
  name, models, epochs, torch_models = ZOOS[part]
  models = args.zoo_models or models
  epochs = args.zoo_epochs or epochs
  preset = zoo_preset(name)
  epochs = preset.epochs if epochs is None else epochs
  torch_models = args.torch_models or torch_models
  hp = presets.build_hparams(preset, models, 0)
  m = len(hp["seed"])
  ds = gen.preset_dataset(preset)
  steps = ds.x_train.shape[0] // preset.batch_size
  subset = metrics.train_eval_indices(ds.x_train.shape[0], preset.train_eval_examples)
  x_eval, y_eval = (ds.x_train, ds.y_train) if subset is None else (ds.x_train[subset], ds.y_train[subset])
  f32 = lambda a: np.asarray(a, np.float32)
  init = (f32(ds.x_train), np.asarray(ds.y_train), f32(x_eval), np.asarray(y_eval), f32(ds.x_test),
          np.asarray(ds.y_test), 1)
  # Evenly spread over the zoo, so that every bucket (activation x optimizer) is represented.
  chosen = np.linspace(0, m - 1, min(torch_models, m)).round().astype(int)
  jobs = torch_jobs(preset, hp, chosen, args.workers, epochs)
  ctx = multiprocessing.get_context("spawn")  # never fork a process that runs XLA threads
  with ctx.Pool(args.workers, initializer=torch_reference.set_data, initargs=init) as pool:
    warm = torch_jobs(preset, hp, chosen[:args.workers], args.workers, 1)
    pool.map(torch_reference.train_models, warm)
    t0 = time.perf_counter()
    gen.generate(preset, num_models=models, epochs=epochs, progress=False)  # compiles
    compile_s = time.perf_counter() - t0
    jax_s, torch_s = [], []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      gen.generate(preset, num_models=models, epochs=epochs, progress=False)
      jax_s.append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      pool.map(torch_reference.train_models, jobs)
      torch_s.append(time.perf_counter() - t0)
  jax_us = min(jax_s) / (m * steps * epochs) * 1e6
  torch_us = min(torch_s) / (len(chosen) * steps * epochs) * 1e6
  print(f"{part:16s} {name} ({preset.net.layout().num_params} params, batch {preset.batch_size}, {steps} steps x "
        f"{epochs} epochs, {len(preset.checkpoints(epochs))} evaluations per model): wsl_jax generate() {m} models "
        f"{jax_us:8.1f} us/model-step ({min(jax_s):.2f} s; first call {compile_s:.1f} s) | PyTorch {len(chosen)} "
        f"models, {args.workers} x 1-thread processes {torch_us:8.1f} us/model-step | wsl_jax "
        f"{torch_us / jax_us:5.2f}x faster  [spread: jax {max(jax_s) / min(jax_s):.2f}, torch "
        f"{max(torch_s) / min(torch_s):.2f}]", flush=True)
  return {"part": part, "preset": name, "jax_us": jax_us, "torch_us": torch_us, "ratio": torch_us / jax_us,
          "jax_s": jax_s, "torch_s": torch_s, "compile_s": compile_s}


# ---- SSL -------------------------------------------------------------------------------------------

def bench_ssl(args) -> list[dict]:
  import numpy as np
  import torch_reference
  sys.path.insert(0, HERE)
  ssl_bench = importlib.import_module("ssl_throughput")
  from wsl_jax.hyperrep import configs
  from wsl_jax.hyperrep.tokenize import Tokenizer
  from wsl_jax.weights import nets
  layouts = {"tetris": nets.TETRIS_MLP, "paper_cnn": nets.PAPER_CNN}
  results = []
  for preset, layout_name, batch in SSL_CASES:
    if preset not in args.ssl_presets:
      continue
    batch = args.ssl_batch or batch
    config = configs.preset(preset)
    layout = layouts[layout_name].layout()
    mc = config.model
    tok = Tokenizer(layout, mc.tokens)
    groups = [(g.count, g.size) for g in tok.groups]
    rng = np.random.default_rng(0)
    views = [[rng.normal(0, 0.5, (batch, c, s)).astype(np.float32) for c, s in groups] for _ in range(2)]
    model_kw = dict(dim=mc.dim, heads=mc.heads, ff=mc.ff_dim, blocks=mc.blocks, latent=mc.latent_dim,
                    head=(mc.head_layers, mc.head_hidden, mc.head_out), dropout=mc.dropout)
    torch_s = {1: [], os.cpu_count() or 1: []}

    def torch_side():  # one PyTorch repetition per setting, before each wsl_jax repetition
      for threads in torch_s:
        torch_s[threads].append(torch_reference.ssl_step_time(
            groups, model_kw, views, config.loss.gamma, config.loss.temperature, args.ssl_steps, 1, threads))

    best = ssl_bench.bench_preset(preset, 1, args.ssl_steps, args.repeats, batch, layout=layout, between=torch_side)
    torch_best = {t: min(v) for t, v in torch_s.items()}
    threads = min(torch_best, key=torch_best.get)
    ratio = torch_best[threads] / best["step_s"]
    print(f"ssl {preset:12s} ({layout_name} layout, {tok.num_tokens} tokens, d {mc.dim}, batch {batch}): wsl_jax "
          f"{batch / best['step_s']:7.1f} samples/s ({100 * best['ratio']:.0f}% of matmul peak, matmul "
          f"{best['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s) | PyTorch "
          + ", ".join(f"{t} thread(s) {batch / s:7.1f}" for t, s in torch_best.items())
          + f" samples/s | wsl_jax {ratio:.2f}x PyTorch's best ({threads} thread(s))", flush=True)
    results.append({"part": "ssl", "preset": preset, "jax_samples_s": batch / best["step_s"],
                    "torch_samples_s": {t: batch / s for t, s in torch_best.items()}, "ratio": ratio,
                    "matmul_peak_fraction": best["ratio"]})
  return results


def main(argv=None) -> int:
  args = _parse(argv)
  if not torch_available():
    print("vs_pytorch: PyTorch is not installed (pip install -e '.[bench]'); skipped")
    return 0
  sys.path.insert(0, HERE)
  import jax
  import torch
  from wsl_jax import runtime
  runtime.configure(compilation_cache=False)
  print(f"vs_pytorch: jax {jax.__version__} ({len(jax.devices())} {jax.default_backend()} devices), torch "
        f"{torch.__version__}, python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}", flush=True)
  results = [bench_zoo(part, args) for part in args.parts if part in ZOOS]
  if "ssl" in args.parts:
    results += bench_ssl(args)
  print(f"load average at the end: {os.getloadavg()[0]:.1f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
