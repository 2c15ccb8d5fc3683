"""Training throughput of hyper-representation learning, against the machine's matmul speed.

    python benchmarks/ssl_throughput.py                      # presets tetris and small, 1 device
    python benchmarks/ssl_throughput.py --presets tetris --devices 2 --steps 5

For each preset it compiles the real train step (`wsl_jax.hyperrep.train`: two augmented views per sample,
encoder + decoder + projection head, NT-Xent + MSE, Adam with the plateau schedule) on a TETRIS-sized
layout (N = 100) and times it. It prints one line per preset, e.g.

    tetris: 311.6 samples/s, 63% of matmul peak (76.0 GFLOP/s model, 78.2 GFLOP/s XLA count, matmul
    123.1 GFLOP/s; 66% per CPU-second; batch 500, step 1.605 s; compile 10.0 s)

* samples/s: training samples per second (each sample is two views through the whole model), from the
  fastest repetition.
* % of matmul peak: the model's FLOP/s over the float32 FLOP/s of a jitted 2048 x 2048 `jnp.matmul`,
  measured in the same run in pairs: each repetition times the matmul for about as long as the steps,
  right before them, and the median of the pairs' ratios is reported (on a shared machine, load from
  other processes then affects both sides of a pair alike). "per CPU-second" is the same ratio from
  this process's CPU time instead of wall time: less sensitive to other processes.
* model FLOP/s counts the matmuls of the model analytically (forward + backward = 3 x forward: the
  transformer's dense layers and attention products, embeddings, bottleneck, projection head,
  NT-Xent similarities); XLA count is `compiled.cost_analysis()["flops"]`, which also counts the
  element-wise work (norms, softmax, dropout masks, augmentation, Adam).
* compile: lowering + XLA compilation of the step, reported separately (the persistent compilation
  cache is disabled here so that it is measured).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _parse() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--presets", nargs="+", default=["tetris", "small"], help="wsl_jax.hyperrep.configs preset names")
  p.add_argument("--devices", type=int, default=1, help="virtual CPU devices for data parallelism")
  p.add_argument("--steps", type=int, default=4, help="timed steps per repetition")
  p.add_argument("--repeats", type=int, default=3, help="repetitions (paired with matmul timings)")
  p.add_argument("--batch-size", type=int, default=None, help="override the presets' batch size")
  return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.devices > 1:  # must be set before JAX initialises its CPU backend
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={ARGS.devices}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from wsl_jax.hyperrep import configs, train  # noqa: E402
from wsl_jax.hyperrep.configs import TrainConfig  # noqa: E402
from wsl_jax.hyperrep.models import ff_widths  # noqa: E402
from wsl_jax.hyperrep.tokenize import Tokenizer  # noqa: E402
from wsl_jax.weights import nets  # noqa: E402
from wsl_jax.weights.layout import Layout  # noqa: E402


def model_flops_per_view(config: TrainConfig, layout: Layout) -> float:
  """Forward matmul FLOPs of one view through encoder and decoder (2 per multiply-add)."""
  m = config.model
  if m.arch == "ff":
    widths = ff_widths(layout.num_params, m.latent_dim, m.ff_hidden_layers)
    return 2.0 * 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
  tok = Tokenizer(layout, m.tokens)
  t, d = tok.num_tokens, m.dim
  block = lambda n: n * (2 * d * 3 * d + 2 * d * d + 2 * 2 * d * m.ff_dim) + 2 * 2 * n * n * d
  io = 2 * d * sum(g.count * g.size for g in tok.groups)  # embedding and output maps
  t_enc = t + (1 if m.compression_token else 0)
  bottleneck = 2 * (d if m.compression_token else t * d) * m.latent_dim
  expand = 2 * m.latent_dim * t * d
  return float(2 * io + m.blocks * (block(t_enc) + block(t)) + bottleneck + expand)


def step_flops(config: TrainConfig, layout: Layout, batch: int) -> float:
  """Analytic matmul FLOPs of one train step (forward + backward = 3 x forward)."""
  m = config.model
  fwd = 2 * batch * model_flops_per_view(config, layout)
  if config.loss.gamma > 0:
    widths = [m.latent_dim] + [m.head_hidden] * m.head_layers + [m.head_out]
    fwd += 2 * batch * 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    fwd += 2 * (2 * batch) ** 2 * m.head_out  # NT-Xent similarity matrix
  return 3.0 * fwd


def _matmul(n: int = 2048):
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul).lower(a, b).compile()
  jax.block_until_ready(f(a, b))
  return (lambda: f(a, b)), 2.0 * n ** 3


def _timed(fn, calls: int) -> tuple[float, float]:
  """(wall, process CPU) seconds per call of `calls` back-to-back calls."""
  wall, cpu = time.perf_counter(), time.process_time()
  out = None
  for _ in range(calls):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def bench_preset(name: str, devices: int, steps: int, repeats: int, batch_size: int | None,
                 layout: Layout | None = None, between=None) -> dict:
  """Times the train step of preset `name` on `layout` (default: TETRIS-SEED's MLP); `between()`, when
  given, runs before each repetition (another side of a comparison, interleaved with this one)."""
  config = configs.preset(name)
  if batch_size is not None:
    config = config.replace(batch_size=batch_size)
  layout = nets.TETRIS_MLP.layout() if layout is None else layout
  batch = config.batch_size
  mesh = train.make_mesh(devices)
  replicated, data = train._shardings(mesh)
  state = jax.device_put(train.init_state(config, layout, jax.random.key(0), steps_per_epoch=1000), replicated)
  rng = np.random.default_rng(0)
  x = jax.device_put(rng.normal(0.0, 0.5, (batch, layout.num_params)).astype(np.float32), data)
  key = jax.random.key(1)
  step_fn = train._compiled_train_step(config, layout, 1000, mesh)
  table = train.permutation_table(config.augment, layout)  # the presets' permutation tables, as fit() passes them
  tables = () if table is None else (jax.device_put(table, replicated),)
  t = time.perf_counter()
  compiled = step_fn.lower(state, x, np.int32(0), np.int32(0), key, *tables).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  # The cost of an SPMD-partitioned step is per device.
  xla_flops = float(cost.get("flops", float("nan"))) * mesh.size if cost else float("nan")
  state, m = compiled(state, x, np.int32(0), np.int32(0), key, *tables)  # warm-up
  jax.block_until_ready(m)
  holder = {"state": state, "i": 1}

  def step():
    holder["state"], metrics = compiled(holder["state"], x, np.int32(0), np.int32(holder["i"]), key, *tables)
    holder["i"] += 1
    return metrics

  matmul, matmul_flops = _matmul()
  step_s, _ = _timed(step, 1)
  mm_s, _ = _timed(matmul, 3)
  mm_calls = max(1, round(steps * step_s / mm_s))  # time the matmul about as long as the steps
  flops = step_flops(config, layout, batch)
  pairs = []
  for _ in range(repeats):
    if between is not None:
      between()
    mm_wall, mm_cpu = _timed(matmul, mm_calls)
    st_wall, st_cpu = _timed(step, steps)
    pairs.append((st_wall, (flops / st_wall) / (matmul_flops / mm_wall), (flops / st_cpu) / (matmul_flops / mm_cpu),
                  matmul_flops / mm_wall))
  best = min(pairs)  # the least disturbed step timing
  return {"name": name, "samples_per_s": batch / best[0], "model_flops_per_s": flops / best[0],
          "xla_flops_per_s": xla_flops / best[0], "matmul_flops_per_s": max(p[3] for p in pairs),
          "ratio": float(np.median([p[1] for p in pairs])), "cpu_ratio": float(np.median([p[2] for p in pairs])),
          "compile_s": compile_s, "step_s": best[0], "batch": batch}


def main() -> int:
  args = ARGS or _parse()
  jax.config.update("jax_compilation_cache_dir", None)  # measure compilation, never load it
  print(f"jax {jax.__version__}, {jax.devices()[0].platform} x {args.devices} device(s), "
        f"{os.cpu_count()} CPU cores", file=sys.stderr)
  for name in args.presets:
    r = bench_preset(name, args.devices, args.steps, args.repeats, args.batch_size)
    print(f"{r['name']}: {r['samples_per_s']:.1f} samples/s, {100 * r['ratio']:.0f}% of matmul peak "
          f"({r['model_flops_per_s'] / 1e9:.1f} GFLOP/s model, {r['xla_flops_per_s'] / 1e9:.1f} GFLOP/s XLA count, "
          f"matmul {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s; {100 * r['cpu_ratio']:.0f}% per CPU-second; "
          f"batch {r['batch']}, step {r['step_s']:.3f} s; compile {r['compile_s']:.1f} s)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
