"""Every benchmark at accelerator sizes in one call, and a slice of the TETRIS-SEED paper run: one JSON.

  python benchmarks/device_check.py --out device_check.json           # on a GPU / TPU host (~8 min)
  python benchmarks/device_check.py --small --out /tmp/check.json      # on a CPU, in seconds (the test)

Made for the few minutes a lent accelerator is available: run it once, keep the JSON. Each benchmark of
this folder runs in its own subprocess (so a crash or an out-of-memory in one leaves the others) with
accelerator-sized arguments and a time limit; its printed lines, exit status and wall time go into the
JSON. Then the script itself measures what the README's GPU questions need:

* `zoo_generation`: `wsl_jax.zoo.generate("tetris_seed")` at 1k / 10k / 30k models (2 epochs each,
  second call, compile excluded) in µs per model-step, beside a loop of the jitted single-model trainer
  measured in the same run (the ratio is what counts);
* `tetris_seed_paper_slice`: the paper preset's encoder (`configs.preset("tetris")`, batch 500) trained
  for a few epochs on the full TETRIS-SEED zoo; the seconds per epoch after the first, and the run time
  that implies for the paper's number of epochs.

The JSON records the device (`jax.devices()[0]`, its kind and count), versions and the date; it is
written atomically at the end of every section, so a run stopped by its time limit keeps what it has.
`--small` shrinks every size so that the whole script runs in a minute or two on a CPU: the numbers are
then meaningless, but every code path has run (tests/test_device_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, script, accelerator arguments, --small arguments, time limit in seconds on an accelerator)
BENCHMARKS = (
    ("zoo_throughput", "zoo_throughput.py", ["--sizes", "1024", "8192", "--loop-models", "16", "--repeats", "2"],
     ["--sizes", "8", "--loop-models", "2", "--epochs", "1", "--repeats", "1", "--skip-full"], 120),
    ("cnn_zoo_throughput", "cnn_zoo_throughput.py",
     ["--sizes", "256", "1024", "--loop-models", "8", "--devices", "0", "--repeats", "2"],
     ["--nets", "unterthiner", "--sizes", "2", "--loop-models", "1", "--devices", "0", "--steps", "2",
      "--repeats", "1", "--no-floor", "--impls", "taps"], 150),
    ("augment_throughput", "augment_throughput.py",
     ["--layouts", "paper_cnn", "unterthiner_cnn", "--batch-sizes", "4096", "32768", "--repeats", "5"],
     ["--quick", "--layouts", "tetris", "--batch-sizes", "64", "--repeats", "1"], 60),
    ("ssl_throughput", "ssl_throughput.py", ["--presets", "tetris", "small", "--steps", "10", "--repeats", "3"],
     ["--presets", "small", "--steps", "1", "--repeats", "1", "--batch-size", "16"], 90),
    ("augment_share", "augment_share.py",
     ["--layouts", "tetris", "paper_cnn", "unterthiner_cnn", "--batch-size", "500"],
     ["--layouts", "tetris", "--batch-size", "16", "--steps", "1", "--repeats", "1"], 90),
    ("probe_speed", "probe_speed.py", ["--sizes", "50000x100", "50000x2464", "--repeats", "3"],
     ["--sizes", "500x10", "--repeats", "1", "--skip", "sklearn Ridge loop"], 60),
)


def environment() -> dict[str, Any]:
  import jax
  devices = jax.devices()
  return {"device": str(devices[0]), "device_kind": getattr(devices[0], "device_kind", ""),
          "platform": devices[0].platform, "device_count": len(devices), "jax": jax.__version__,
          "python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
          "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def run_benchmark(script: str, args: list[str], limit_s: float) -> dict[str, Any]:
  """Run benchmarks/<script> in a subprocess; its output lines, exit status and wall time."""
  command = [sys.executable, os.path.join(HERE, script)] + args
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=limit_s)
    rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
  except subprocess.TimeoutExpired as e:
    rc = "timeout"
    stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
  return {"command": " ".join(["python", os.path.join("benchmarks", script)] + args), "rc": rc,
          "seconds": round(time.perf_counter() - t0, 1), "lines": stdout.strip().splitlines(),
          "stderr_tail": stderr.strip().splitlines()[-5:]}


def zoo_generation(sizes: list[int], epochs: int, loop_models: int) -> dict[str, Any]:
  """µs per model-step of `generate("tetris_seed")` per zoo size (second call) and of a loop of the
  jitted single-model trainer, measured here."""
  import importlib

  import jax
  import numpy as np

  from wsl_jax.zoo import presets
  from wsl_jax.zoo import train as zoo_train
  gen = importlib.import_module("wsl_jax.zoo.generate")
  preset = presets.TETRIS_SEED
  dataset = gen.preset_dataset(preset)
  steps_per_model = epochs * (len(dataset.y_train) // preset.batch_size)
  hp = presets.build_hparams(preset, loop_models)
  bucket = gen.plan_buckets(preset, hp, epochs, preset.checkpoints(epochs))[0]
  data = zoo_train.to_device_data(dataset)
  keys = gen.model_keys(0, hp["seed"])
  inputs = jax.device_put(gen.trainer_inputs(bucket, hp, np.arange(loop_models)))
  single = jax.jit(zoo_train.train_one, static_argnames="spec")
  per_model = [jax.tree.map(lambda v, i=i: v[i], inputs) for i in range(loop_models)]
  single(keys[0], per_model[0], data, spec=bucket.spec).weights.block_until_ready()
  t0 = time.perf_counter()
  jax.block_until_ready([single(keys[i], per_model[i], data, spec=bucket.spec).weights for i in range(loop_models)])
  loop_us = (time.perf_counter() - t0) / (loop_models * steps_per_model) * 1e6
  result: dict[str, Any] = {"epochs": epochs, "steps_per_model": steps_per_model, "loop_models": loop_models,
                            "loop_us_per_model_step": round(loop_us, 3), "sizes": {}}
  for n in sizes:
    gen.generate(preset, num_models=n, epochs=epochs, progress=False)  # compiles
    t0 = time.perf_counter()
    gen.generate(preset, num_models=n, epochs=epochs, progress=False)
    seconds = time.perf_counter() - t0
    us = seconds / (n * steps_per_model) * 1e6
    result["sizes"][str(n)] = {"seconds": round(seconds, 3), "us_per_model_step": round(us, 4),
                               "vs_loop": round(loop_us / us, 2)}
    print(f"zoo generation, {n} models: {us:.3f} us/model-step, {loop_us / us:.1f}x the loop", flush=True)
  return result


def tetris_seed_paper_slice(models: int, epochs: int, config_overrides: dict[str, Any]) -> dict[str, Any]:
  """Seconds per epoch of the paper's TETRIS-SEED encoder on the TETRIS-SEED zoo, and the projection to
  the paper's epoch count."""
  from wsl_jax import zoo as zoo_lib
  from wsl_jax.hyperrep import configs, train
  zoo = zoo_lib.generate("tetris_seed", num_models=models, progress=False)
  split = zoo.split()
  paper = configs.preset("tetris")
  config = paper.replace(epochs=epochs, eval_every=epochs, checkpoint_every=epochs, **config_overrides)
  w_train = zoo.samples(split.train)[0]
  times = []
  t0 = time.perf_counter()
  train.fit(config, w_train, layout=zoo.layout, progress=False,
            callback=lambda record: times.append(record["epoch_time_s"]))
  total = time.perf_counter() - t0
  steady = times[1:] or times  # the first epoch includes compilation
  per_epoch = sum(steady) / len(steady)
  out = {"models": models, "train_samples": int(w_train.shape[0]), "batch_size": config.batch_size,
         "epochs_run": epochs, "seconds_total": round(total, 2), "seconds_first_epoch": round(times[0], 2),
         "seconds_per_epoch": round(per_epoch, 3), "paper_epochs": paper.epochs,
         "projected_paper_run_minutes": round(per_epoch * paper.epochs / 60, 1)}
  print(f"TETRIS-SEED paper encoder: {per_epoch:.2f} s/epoch -> {out['projected_paper_run_minutes']} min for "
        f"{paper.epochs} epochs", flush=True)
  return out


def write(path: str, report: dict[str, Any]) -> None:
  from wsl_jax.zoo.io import atomic_write_text
  atomic_write_text(path, json.dumps(report, indent=1))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="device_check.json", help="the JSON to write (default device_check.json)")
  parser.add_argument("--small", action="store_true", help="tiny sizes: every code path in a minute on a CPU")
  parser.add_argument("--only", nargs="+", default=None,
                      help="sections to run (default all): " + ", ".join(
                          [b[0] for b in BENCHMARKS] + ["zoo_generation", "tetris_seed_paper_slice"]))
  args = parser.parse_args(argv)
  from wsl_jax import outputs
  out = outputs.resolve_output(args.out)
  wanted = set(args.only) if args.only else None
  report: dict[str, Any] = {"environment": environment(), "small": args.small, "sections": {}}
  started = time.perf_counter()
  for name, script, big, small, limit in BENCHMARKS:
    if wanted is not None and name not in wanted:
      continue
    print(f"== {name}", flush=True)
    report["sections"][name] = run_benchmark(script, small if args.small else big, 300 if args.small else limit)
    print("\n".join(report["sections"][name]["lines"][-6:]), flush=True)
    write(out, report)
  if wanted is None or "zoo_generation" in wanted:
    print("== zoo_generation", flush=True)
    report["sections"]["zoo_generation"] = (zoo_generation([16, 32], 1, 2) if args.small
                                            else zoo_generation([1000, 10000, 30000], 2, 16))
    write(out, report)
  if wanted is None or "tetris_seed_paper_slice" in wanted:
    print("== tetris_seed_paper_slice", flush=True)
    report["sections"]["tetris_seed_paper_slice"] = (
        tetris_seed_paper_slice(24, 2, {"batch_size": 16, "model.dim": 16, "model.heads": 2, "model.ff_dim": 32,
                                        "model.blocks": 1, "model.latent_dim": 8})
        if args.small else tetris_seed_paper_slice(1000, 4, {}))
    write(out, report)
  report["seconds"] = round(time.perf_counter() - started, 1)
  write(out, report)
  failed = [n for n, s in report["sections"].items() if isinstance(s, dict) and s.get("rc") not in (None, 0)]
  print(f"wrote {out} ({report['seconds']} s); failed: {', '.join(failed) or 'none'}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
