"""CNN zoo training throughput: vmapped programs, conv implementations, devices, and a loop over models.

  python benchmarks/cnn_zoo_throughput.py [--nets paper unterthiner] [--sizes 1 16 64] [--loop-models 8]
                                          [--impls taps lax] [--devices 2] [--steps 20] [--batch 32]

For both zoo CNNs (the paper's, 2464 parameters; Unterthiner et al.'s, 4970) it trains models with the
zoo trainer (`wsl_jax.zoo.train.train_one`: init, Adam, mini-batches gathered on device, evaluation at
the end) on 28x28 digits and prints, per net, all measured in this run:

  * µs per model-step of one `jit(vmap(train_one))` call at several zoo sizes, for each conv
    implementation (`taps`: im2col's matmul split by kernel tap, the default; `im2col`: an explicit patch
    tensor; `lax`: `jax.lax.conv_general_dilated`, a grouped convolution under vmap),
  * the same for a Python loop that calls the jitted single-model trainer once per model (baseline),
  * ratios: vmapped (best size) vs loop, taps vs lax at the largest size, and 2 devices vs 1 at the
    largest size (on CPU a subprocess with `--xla_force_host_platform_device_count`; on an accelerator
    host the visible devices),
  * the GEMM floor (`--no-floor` skips it): any im2col formulation of a training step runs, per conv
    layer, a forward GEMM (patches x kernel), a kernel-gradient GEMM and, except for the first layer, a
    patch-gradient GEMM. Each is timed alone, batched over the zoo (each zoo size > 1, the fastest kept),
    in the fastest of its operand layouts, with its inputs ready; their sum per model-step is what such a
    program would cost if patches, pooling, activations, dense layers and the optimizer were free. Loop
    time / floor (`ceiling`) is the highest vmapped-vs-loop ratio an im2col program can reach here; the
    conv GEMMs' FLOPs give the GFLOP/s of the loop, the vmapped program and the floor. XLA:CPU does not
    fuse a gather into a dot, so such a program also writes its patch tensors: the second ceiling adds
    the time of gathering them (one `jnp.take` per layer from a precomputed index table).

Timing: inputs on device; compile timed separately (AOT `lower().compile()`); then the minimum wall time
over `--repeats` calls of `jax.block_until_ready(...)`. A model-step is one mini-batch update of one
model; the reported time includes the final evaluation (a 64-image subset of each split), which adds a
few percent. The same script runs unchanged on a GPU (use bigger `--sizes` there).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from wsl_jax.data import datasets, image_data
from wsl_jax.weights import nets
from wsl_jax.zoo import train as zoo_train

NETS = {"paper": nets.PAPER_CNN, "unterthiner": nets.UNTERTHINER_CNN}


def make_spec(net: nets.NetSpec, impl: str, batch: int) -> zoo_train.TrainSpec:
  return zoo_train.TrainSpec(net=net, epochs=1, batch_size=batch, checkpoint_epochs=(1,), activation="relu",
                             optimizer="adam", inits=("kaiming_uniform",), eval_batch_size=64, train_eval_size=64,
                             conv_impl=impl)


def make_data(batch: int, steps: int) -> zoo_train.Data:
  d = image_data.subset(datasets.load("digits_28"), batch * steps, 64)
  return zoo_train.to_device_data(d)


def model_inputs(n: int):
  keys = jax.random.split(jax.random.key(0), n)
  hp = zoo_train.default_hparams(n, lr=np.geomspace(1e-4, 1e-2, n) if n > 1 else 1e-3)
  return keys, jax.device_put(hp)


def best_of(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return min(times)


def time_vmapped(spec, data, n: int, repeats: int, mesh=None) -> tuple[float, float]:
  """(compile seconds, µs per model-step) of one jit(vmap(train_one)) call over n models."""
  keys, hp = model_inputs(n)
  if mesh is not None:
    from jax.sharding import NamedSharding, PartitionSpec
    shard = NamedSharding(mesh, PartitionSpec("models"))
    keys, hp = jax.device_put(keys, shard), jax.device_put(hp, shard)
    data = jax.device_put(data, NamedSharding(mesh, PartitionSpec()))
  fn = jax.jit(jax.vmap(functools.partial(zoo_train.train_one, spec=spec), in_axes=(0, 0, None)))
  t0 = time.perf_counter()
  compiled = fn.lower(keys, hp, data).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(keys, hp, data))
  steps = data.x_train.shape[0] // spec.batch_size
  return compile_s, best_of(lambda: compiled(keys, hp, data), repeats) / (n * steps) * 1e6


def time_loop(spec, data, n: int, repeats: int) -> tuple[float, float]:
  """(compile seconds, µs per model-step) of a Python loop calling the jitted single-model trainer."""
  keys, hp = model_inputs(n)
  per_model = [jax.tree.map(lambda v, i=i: v[i], hp) for i in range(n)]
  single = jax.jit(functools.partial(zoo_train.train_one, spec=spec))
  t0 = time.perf_counter()
  compiled = single.lower(keys[0], per_model[0], data).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(keys[0], per_model[0], data))
  steps = data.x_train.shape[0] // spec.batch_size
  run = lambda: [compiled(keys[i], per_model[i], data).weights for i in range(n)]
  return compile_s, best_of(run, repeats) / (n * steps) * 1e6


# Operand layouts tried for each GEMM of an im2col conv layer, batched over models (m): o = output
# channels, k = patch length (in_channels * kh * kw), n = output positions of the mini-batch.
FORWARD_LAYOUTS = ("mok,mkn->mon", "mnk,mok->mno")
KERNEL_GRAD_LAYOUTS = ("mon,mkn->mok", "mno,mnk->mok", "mkn,mno->mko")
PATCH_GRAD_LAYOUTS = ("mok,mon->mkn", "mno,mok->mnk")


def conv_layers(net: nets.NetSpec) -> list[tuple[nets.ConvBlock, tuple[int, int, int], tuple[int, int]]]:
  """Per conv layer: the block, its input (h, w, c), and its output size (ho, wo) before pooling."""
  inputs = (net.input_shape,) + net.conv_output_shapes()[:-1]
  return [(block, (h, w, c), ((h - block.kernel) // block.stride + 1, (w - block.kernel) // block.stride + 1))
          for block, (h, w, c) in zip(net.convs, inputs)]


def conv_gemms(net: nets.NetSpec, batch: int) -> list[dict]:
  """Per conv layer of `net`: o, k, n (every output position of the batch, before pooling), first."""
  return [dict(o=block.out_channels, k=c * block.kernel ** 2, n=batch * ho * wo, first=i == 0)
          for i, (block, (_, _, c), (ho, wo)) in enumerate(conv_layers(net))]


def conv_gemm_flops(net: nets.NetSpec, batch: int) -> float:
  """FLOPs of the conv GEMMs of one model-step (forward, kernel gradient, patch gradient after layer 0)."""
  return sum(2 * g["o"] * g["k"] * g["n"] * (2 if g["first"] else 3) for g in conv_gemms(net, batch))


def time_einsum(spec: str, sizes: dict[str, int], repeats: int) -> float:
  """Seconds of one jitted `jnp.einsum(spec)` on random operands whose axes have `sizes`."""
  names = spec.split("->")[0].split(",")
  keys = jax.random.split(jax.random.key(0), len(names))
  operands = [jax.random.normal(k, tuple(sizes[a] for a in name)) for k, name in zip(keys, names)]
  fn = jax.jit(lambda *ops: jnp.einsum(spec, *ops))
  jax.block_until_ready(fn(*operands))
  return best_of(lambda: fn(*operands), repeats)


def patch_indices(net: nets.NetSpec) -> list[tuple[np.ndarray, int]]:
  """Per conv layer: (positions, patch length) indices into one example's flattened (H, W, C) input,
  and that input's size."""
  tables = []
  for block, (h, w, c), (ho, wo) in conv_layers(net):
    k, s = block.kernel, block.stride
    oi, oj, ci, ki, kj = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(c), np.arange(k), np.arange(k),
                                     indexing="ij")
    tables.append(((((s * oi + ki) * w + s * oj + kj) * c + ci).reshape(ho * wo, c * k * k), h * w * c))
  return tables


def patches_us(net: nets.NetSpec, batch: int, models: int, repeats: int) -> float:
  """µs per model-step of gathering every conv layer's patch tensor (models x batch examples)."""
  total = 0.0
  for table, size in patch_indices(net):
    x = jax.random.normal(jax.random.key(1), (models * batch, size))
    index = jnp.asarray(table.reshape(-1))
    fn = jax.jit(lambda x, index=index: jnp.take(x, index, axis=1, mode="clip"))
    jax.block_until_ready(fn(x))
    total += best_of(lambda: fn(x), repeats)
  return total / models * 1e6


def gemm_floor_us(net: nets.NetSpec, batch: int, models: int, repeats: int) -> float:
  """µs per model-step of the conv GEMMs alone, batched over `models`, each in its fastest layout."""
  total = 0.0
  for g in conv_gemms(net, batch):
    sizes = dict(m=models, o=g["o"], k=g["k"], n=g["n"])
    groups = [FORWARD_LAYOUTS, KERNEL_GRAD_LAYOUTS] + ([] if g["first"] else [PATCH_GRAD_LAYOUTS])
    total += sum(min(time_einsum(spec, sizes, repeats) for spec in group) for group in groups)
  return total / models * 1e6


def device_run(args) -> dict:
  """The multi-device measurement (in this process): {net: µs per model-step} at the largest size."""
  from jax.sharding import Mesh
  devices = jax.devices()[:args.devices]
  mesh = Mesh(np.asarray(devices), ("models",))
  data = make_data(args.batch, args.steps)
  n = max(args.sizes)
  n = -(-n // len(devices)) * len(devices)
  return {name: time_vmapped(make_spec(NETS[name], args.impls[0], args.batch), data, n, args.repeats, mesh)[1]
          for name in args.nets}


def multi_device_us(args) -> tuple[dict | None, str]:
  if jax.default_backend() != "cpu":
    if len(jax.devices()) < args.devices:
      return None, f"only {len(jax.devices())} {jax.default_backend()} device(s)"
    return device_run(args), f"{args.devices} {jax.default_backend()} devices"
  cmd = [sys.executable, os.path.abspath(__file__), "--child-devices", "--devices", str(args.devices),
         "--nets", *args.nets, "--sizes", str(max(args.sizes)), "--impls", args.impls[0], "--steps", str(args.steps),
         "--batch", str(args.batch), "--repeats", str(args.repeats)]
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={args.devices}"}
  out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1]), f"{args.devices} virtual CPU devices (subprocess)"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--nets", nargs="+", default=["paper", "unterthiner"], choices=sorted(NETS))
  parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64])
  parser.add_argument("--impls", nargs="+", default=["taps", "lax"], choices=nets.CONV_IMPLS,
                      help="conv implementations; the first is used for the loop and device comparisons")
  parser.add_argument("--loop-models", type=int, default=8)
  parser.add_argument("--devices", type=int, default=2, help="devices for the multi-device comparison (0: skip)")
  parser.add_argument("--steps", type=int, default=20, help="mini-batches per model")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no-floor", action="store_true", help="skip the GEMM floor")
  parser.add_argument("--child-devices", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.expanduser("~"), ".cache", "wsl_jax", "jax"))

  if args.child_devices:
    print(json.dumps(device_run(args)))
    return

  print(f"cnn_zoo_throughput: jax {jax.__version__}, python {platform.python_version()}, "
        f"{jax.default_backend()} x{len(jax.devices())} ({jax.devices()[0].device_kind}), {os.cpu_count()} cores; "
        f"batch {args.batch}, {args.steps} steps per model")
  data = make_data(args.batch, args.steps)
  results = {}
  for name in args.nets:
    net = NETS[name]
    res = results[name] = {}
    for impl in args.impls:
      spec = make_spec(net, impl, args.batch)
      for n in args.sizes:
        compile_s, us = time_vmapped(spec, data, n, args.repeats)
        res[(impl, n)] = us
        print(f"{name:12s} vmap  {impl:7s} M={n:<5d} {us:9.0f} us/model-step   (compile {compile_s:5.1f} s)",
              flush=True)
    compile_s, us = time_loop(make_spec(net, args.impls[0], args.batch), data, args.loop_models, args.repeats)
    res["loop"] = us
    print(f"{name:12s} loop  {args.impls[0]:7s} M={args.loop_models:<5d} {us:9.0f} us/model-step   "
          f"(compile {compile_s:5.1f} s; Python loop over the jitted single-model trainer)", flush=True)
    if not args.no_floor:
      floors = {n: gemm_floor_us(net, args.batch, n, args.repeats) for n in args.sizes if n > 1}
      if floors:
        n_floor = min(floors, key=floors.get)
        res["floor"] = floors[n_floor]
        res["patches"] = min(patches_us(net, args.batch, n, args.repeats) for n in floors)
        print(f"{name:12s} GEMM floor   M={n_floor:<5d} {res['floor']:9.0f} us/model-step   "
              f"(conv GEMMs alone, {conv_gemm_flops(net, args.batch) / 1e6:.1f} MFLOP per model-step; "
              f"gathering the patches: {res['patches']:.0f} us more)", flush=True)

  multi, where = (None, "skipped") if args.devices < 2 else multi_device_us(args)
  big = max(args.sizes)
  print(f"\nratios (same run; {where} for the device comparison):")
  for name in args.nets:
    res = results[name]
    main_impl = args.impls[0]
    batched = [n for n in args.sizes if n > 1] or args.sizes  # vmap over one model is not a zoo
    best_n = min(batched, key=lambda n: res[(main_impl, n)])
    line = (f"{name:12s} vmapped M={best_n} vs loop: {res['loop'] / res[(main_impl, best_n)]:.1f}x faster per model")
    for other in args.impls[1:]:
      line += f" | {main_impl} vs {other} at M={big}: {res[(other, big)] / res[(main_impl, big)]:.2f}x"
    if "floor" in res:
      flops = conv_gemm_flops(NETS[name], args.batch)
      gflops = lambda us: flops / us / 1e3
      line += (f" | ceiling loop / GEMM floor {res['loop'] / res['floor']:.1f}x, "
               f"with patches {res['loop'] / (res['floor'] + res['patches']):.1f}x"
               f" | conv GFLOP/s: loop {gflops(res['loop']):.1f}, vmapped {gflops(res[(main_impl, best_n)]):.1f}, "
               f"floor {gflops(res['floor']):.1f}")
    if multi is not None:
      line += f" | {args.devices} devices vs 1 at M={big}: {res[(main_impl, big)] / multi[name]:.2f}x " \
              f"({multi[name]:.0f} us/model-step)"
    print(line)


if __name__ == "__main__":
  main()
