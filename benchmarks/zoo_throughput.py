"""Zoo generation throughput: vmapped programs against a Python loop over models.

  python benchmarks/zoo_throughput.py [--sizes 64 256 1024] [--loop-models 16] [--epochs 75]

For the tetris_seed recipe (16-5-4 MLP, the preset's batch size and training subset: batch 5 of 50
images = 10 steps per epoch; every epoch evaluated and recorded) it prints, after compilation (compile time reported separately):
  * µs per model-step and models/s of one `jit(vmap(train_one))` call at several zoo sizes,
  * the same for a Python loop that calls the jitted single-model trainer once per model,
  * the ratio (per model) of the two, measured in the same run,
  * the wall time of `wsl_jax.zoo.generate("tetris_seed")` for the full zoo (1000 models x 75 epochs),
    warm (its programs already compiled), with the model axis sharded over one XLA CPU device per core
    (`wsl_jax.runtime.configure`, as the CLI and experiments do) and, in a subprocess, on one device.

The vmap and loop timings run on one device, so their ratio compares vectorisation alone; the last line
compares the whole generate() call (every bucket, chunk and record copy included, both cores) with the
same loop, which runs one model at a time and so cannot use the second core.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time

import jax
import numpy as np

from wsl_jax.zoo import presets
from wsl_jax.zoo import train as zoo_train

zoo_generate = importlib.import_module("wsl_jax.zoo.generate")  # the module (the package exports a function)


def best_of(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return min(times)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
  parser.add_argument("--loop-models", type=int, default=16)
  parser.add_argument("--epochs", type=int, default=75)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--skip-full", action="store_true", help="skip the full 1000-model generate() timing")
  parser.add_argument("--full-only", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  from wsl_jax import runtime
  runtime.configure(compilation_cache=False)
  if args.full_only:
    full_zoo(args.epochs)
    return

  preset = presets.TETRIS_SEED
  print(f"jax {jax.__version__}, devices {jax.devices()}, {os.cpu_count()} cores")
  hp_all = presets.build_hparams(preset, max(args.sizes + [args.loop_models]))
  buckets = zoo_generate.plan_buckets(preset, hp_all, args.epochs, preset.checkpoints(args.epochs))
  bucket = buckets[0]
  data = zoo_train.to_device_data(zoo_generate.preset_dataset(preset))  # the preset's training subset
  steps_per_model = args.epochs * (data.x_train.shape[0] // preset.batch_size)

  def inputs(n):
    models = np.arange(n)
    keys = zoo_generate.model_keys(0, hp_all["seed"][models])
    return keys, jax.device_put(zoo_generate.trainer_inputs(bucket, hp_all, models))

  # The loop baseline: the same train_one, jitted for one model, called once per model.
  single = jax.jit(zoo_train.train_one, static_argnames="spec")
  keys, hp = inputs(args.loop_models)
  per_model = [jax.tree.map(lambda v, i=i: v[i], hp) for i in range(args.loop_models)]
  t0 = time.perf_counter()
  single(keys[0], per_model[0], data, spec=bucket.spec).weights.block_until_ready()
  loop_compile = time.perf_counter() - t0
  run_loop = lambda: [single(keys[i], per_model[i], data, spec=bucket.spec).weights
                      for i in range(args.loop_models)]

  fn = jax.jit(jax.vmap(lambda k, h, d: zoo_train.train_one(k, h, d, bucket.spec), in_axes=(0, 0, None)))
  programs, compile_s = {}, {}
  for n in args.sizes:
    keys_n, hp_n = inputs(n)
    t0 = time.perf_counter()
    compiled = fn.lower(keys_n, hp_n, data).compile()
    compile_s[n] = time.perf_counter() - t0
    jax.block_until_ready(compiled(keys_n, hp_n, data).weights)
    programs[n] = lambda c=compiled, k=keys_n, h=hp_n: c(k, h, data).weights

  # Interleaved: every repeat times the loop and each zoo size back to back, so that a slow phase of
  # the (shared, noisy) machine hits both sides; the minimum over repeats is reported for each.
  loop_times, times = [], {n: [] for n in args.sizes}
  for _ in range(args.repeats):
    loop_times.append(best_of(run_loop, 1))
    for n in args.sizes:
      times[n].append(best_of(programs[n], 1))
  loop_us = min(loop_times) / (args.loop_models * steps_per_model) * 1e6
  spread = max(loop_times) / min(loop_times)
  print(f"python loop over {args.loop_models} models: {loop_us:.2f} us/model-step, "
        f"{args.loop_models / min(loop_times):.1f} models/s (compile {loop_compile:.1f} s; "
        f"slowest repeat {spread:.2f}x the fastest)")
  for n in args.sizes:
    t = min(times[n])
    us = t / (n * steps_per_model) * 1e6
    print(f"vmap, {n:5d} models: {us:.2f} us/model-step, {n / t:.1f} models/s, "
          f"{loop_us / us:.1f}x faster per model than the loop (compile {compile_s[n]:.1f} s)")

  if not args.skip_full:
    sharded, num_models = full_zoo(args.epochs)
    env = dict(os.environ, WSL_JAX_CPU_DEVICES="1")
    out = subprocess.run([sys.executable, __file__, "--full-only", "--epochs", str(args.epochs)], env=env,
                         capture_output=True, text=True, check=True).stdout
    print(out.strip())
    one = float(out.split("device(s): ")[1].split(" s")[0])
    print(f"sharding over {len(jax.devices())} CPU devices: {one / sharded:.2f}x faster than one device")
    full_us = sharded / (num_models * steps_per_model) * 1e6
    print(f"generate() on {len(jax.devices())} device(s), whole zoo: {full_us:.2f} us/model-step, "
          f"{loop_us / full_us:.1f}x faster per model than the loop")


def full_zoo(epochs: int) -> tuple[float, int]:
  preset = presets.TETRIS_SEED
  zoo_generate.generate(preset, epochs=epochs, progress=False)  # compiles the generate() programs
  t0 = time.perf_counter()
  zoo = zoo_generate.generate(preset, epochs=epochs, progress=False)
  full = time.perf_counter() - t0
  print(f"full tetris_seed zoo ({zoo.num_models} models x {epochs} epochs) via generate() on "
        f"{len(jax.devices())} device(s): {full:.2f} s warm, {zoo.num_models / full:.0f} models/s")
  return full, zoo.num_models


if __name__ == "__main__":
  main()
