"""Zoo generation: one process on every core against one single-threaded process per core.

  python benchmarks/zoo_processes.py [--presets digits_seed unterthiner_digits] [--models 64] [--epochs 2]
                                     [--processes 2] [--repeats 2] [--json PATH]

For each preset it times the whole `wsl_jax.zoo.generate()` call (per-epoch evaluation included; warm:
every process compiles with one untimed call first) in three layouts, one after the other:

  * one process with XLA's default intra-op threading over all cores and one XLA device, `--models` models;
  * one process split into one XLA CPU device per core (`wsl_jax.runtime.configure()`, the models sharded
    over them): what `python -m wsl_jax.zoo generate` and the experiments run;
  * `--processes` processes started together, each pinned to one core (`os.sched_setaffinity`) with
    XLA's intra-op threading off, each generating its share of the models (the first `models / processes`
    of the preset: same shapes, same work as its share of the zoo). This is what `--worker i/n` does
    with a zoo's chunks (docs/scale.md), and how the PyTorch reference runs (benchmarks/vs_pytorch.py).
    Its time is from the first process's start of a timed call to the last one's end.

It prints µs per model-step of the whole machine for every layout (minimum over `--repeats`) and the
ratios of the pinned processes against both one-process layouts, measured in the same run.
`unterthiner_digits` is Unterthiner et al.'s CNN and sampled recipe on the embedded digits (as in
vs_pytorch.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--presets", nargs="+", default=["digits_seed", "unterthiner_digits"])
  p.add_argument("--models", type=int, default=64, help="models of the whole zoo")
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)),
                 help="single-threaded processes (default: one per core this process may use)")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--json", default=None, help="also write the results to this new file (an existing one is refused)")
  p.add_argument("--child", nargs=4, default=None, metavar=("PRESET", "MODELS", "EPOCHS", "CORE"),
                 help=argparse.SUPPRESS)
  return p.parse_args(argv)


def _preset(name: str):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import vs_pytorch  # noqa: E402  (the benchmarks' shared preset names; torch is imported only where used)
  return vs_pytorch.zoo_preset(name)


def _generate_fn(name: str, models: int, epochs: int):
  import importlib
  gen = importlib.import_module("wsl_jax.zoo.generate")
  preset = _preset(name)
  return lambda: gen.generate(preset, num_models=models, epochs=epochs, progress=False)


def model_steps(name: str, models: int, epochs: int) -> int:
  """Mini-batch updates of `models` models of preset `name` over `epochs` epochs."""
  import importlib
  gen = importlib.import_module("wsl_jax.zoo.generate")
  preset = _preset(name)
  return models * (gen.preset_dataset(preset).x_train.shape[0] // preset.batch_size) * epochs


SHARDED = -2  # the `--child` core of the one-process layout with one XLA CPU device per core


def _child(name: str, models: int, epochs: int, core: int) -> None:
  """Worker: compile, say "ready", then one timed call per "go" line, reporting its start and end. Pinned
  to `core` (>= 0), or (`SHARDED`) split into one XLA CPU device per core as the command line does."""
  if core >= 0:
    os.sched_setaffinity(0, {core})
  elif core == SHARDED:
    from wsl_jax import runtime
    runtime.configure(compilation_cache=False)
  run = _generate_fn(name, models, epochs)
  run()
  print("ready", flush=True)
  for line in sys.stdin:
    if line.strip() != "go":
      break
    t0 = time.time()
    run()
    print(f"{t0} {time.time()}", flush=True)


def one_process(name: str, models: int, epochs: int, repeats: int) -> float:
  run = _generate_fn(name, models, epochs)
  run()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return min(times)


def pinned_processes(name: str, models: int, epochs: int, processes: int, repeats: int) -> float:
  cores = sorted(os.sched_getaffinity(0))
  shares = [models // processes + (i < models % processes) for i in range(processes)]
  env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_FLAGS).strip()}
  return _timed_children(name, epochs, [(share, cores[i % len(cores)]) for i, share in enumerate(shares) if share > 0],
                         env, repeats)


def sharded_process(name: str, models: int, epochs: int, repeats: int) -> float:
  """One process with one XLA CPU device per core (the command line's layout)."""
  env = {k: v for k, v in os.environ.items() if k != "WSL_JAX_CPU_DEVICES"}
  return _timed_children(name, epochs, [(models, SHARDED)], env, repeats)


def _timed_children(name: str, epochs: int, jobs: list[tuple[int, int]], env: dict, repeats: int) -> float:
  """Wall seconds (min over `repeats`) from the first child's start of a timed call to the last one's end;
  `jobs`: (models, core) per child."""
  procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", name, str(share), str(epochs),
                             str(core)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
           for share, core in jobs]
  try:
    for p in procs:
      if p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"a worker of {name} did not start (exit status {p.wait()})")
    walls = []
    for _ in range(repeats):
      for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
      spans = [tuple(map(float, p.stdout.readline().split())) for p in procs]
      walls.append(max(end for _, end in spans) - min(start for start, _ in spans))
    return min(walls)
  finally:
    for p in procs:
      if p.stdin and not p.stdin.closed:
        p.stdin.close()
      p.wait(timeout=60)


def main(argv=None) -> int:
  args = _parse(argv)
  if args.child:
    name, models, epochs, core = args.child
    _child(name, int(models), int(epochs), int(core))
    return 0
  if args.processes < 1 or args.models < args.processes:
    raise SystemExit(f"need 1 <= --processes <= --models, got {args.processes} and {args.models}")
  if args.json and os.path.lexists(args.json):  # refuse before the work: the file is not ours to replace
    raise SystemExit(f"--json {args.json} exists; this benchmark does not overwrite files, name a new one")
  results = []
  for name in args.presets:
    steps = model_steps(name, args.models, args.epochs)
    one = one_process(name, args.models, args.epochs, args.repeats)
    sharded = sharded_process(name, args.models, args.epochs, args.repeats)
    many = pinned_processes(name, args.models, args.epochs, args.processes, args.repeats)
    row = {"preset": name, "models": args.models, "epochs": args.epochs, "model_steps": steps,
           "one_process_s": one, "sharded_process_s": sharded, "pinned_processes_s": many,
           "processes": args.processes, "one_process_us": one / steps * 1e6,
           "sharded_process_us": sharded / steps * 1e6, "pinned_processes_us": many / steps * 1e6,
           "ratio": one / many, "ratio_vs_sharded": sharded / many}
    results.append(row)
    print(f"{name:20s} {args.models} models x {args.epochs} epochs: one process, one device "
          f"{row['one_process_us']:8.1f} us/model-step ({one:.2f} s) | one process, a device per core (the CLI's) "
          f"{row['sharded_process_us']:8.1f} ({sharded:.2f} s) | {args.processes} pinned 1-thread processes "
          f"{row['pinned_processes_us']:8.1f} ({many:.2f} s) | pinned vs one device {row['ratio']:.2f}x, "
          f"vs the CLI's layout {row['ratio_vs_sharded']:.2f}x", flush=True)
  if args.json:
    from wsl_jax.outputs import atomic_write_text
    atomic_write_text(args.json, json.dumps(results, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
