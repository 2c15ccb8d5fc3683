"""Throughput of `wsl_jax.hyperrep.augment` (views/s) against a per-sample NumPy data loader, in one run.

The baseline does what the original PyTorch data loader did for each sample, one sample at a time:
draw a row of a precomputed permutation table, gather `w[idx]`, add Gaussian noise (only when
sigma > 0, as the original), and erase a block with the 10-tries rule. The JAX side augments the whole
batch in one jit-compiled call, either from the same table (`table`) or with a fresh random
permutation per row (`fresh`).

Configurations (reference.md §3):
* `main`: the paper's main runs: permute → erase (p 0.5, scale (0.02, 0.33)), no noise;
* `noise`: the noise ablation: permute → noise (sigma 0.05) → erase.

Timing: inputs on device, compile timed separately, then the min over repeats of
`jax.block_until_ready(f(...))`; the NumPy baseline is timed the same way (min over repeats). Ratio =
JAX views/s / NumPy views/s, both measured in this run.

Command:
  python benchmarks/augment_throughput.py            # full grid (a few minutes on 2 CPU cores)
  python benchmarks/augment_throughput.py --quick    # B = 512 only, fewer repeats

`bound` is the NumPy time over the time of one jitted elementwise pass over the batch (read it, write
a fresh output buffer): no augmentation that returns a new array can beat that ratio on the machine.
`gather` is the NumPy time over one jitted `take_along_axis` with a precomputed (B, N) index (the
cheapest XLA form of a per-row permutation): the ceiling of any permutation written as an XLA gather.

`--keep-freed-memory` (glibc only) first calls `mallopt` so that freed buffers stay in the process heap
instead of going back to the OS: fresh XLA outputs then reuse already-mapped pages (no page faults),
which shows how much of the time is the VM's page-fault cost rather than the augmentation.

Notes:
* On CPU every fresh XLA output buffer is page-faulted in on first touch; on some VMs that costs as
  much as the augmentation itself for (4096, 4970) float32 (81 MB). glibc's transparent huge pages
  (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, glibc >= 2.35) remove most of it; NumPy already asks for
  huge pages itself. The script prints whether the tunable is set.
* With noise on, both sides are bound by Gaussian random-number generation: NumPy's ziggurat sampler
  is several times cheaper per sample on CPU than JAX's counter-based threefry + erfinv, so expect
  the `noise` ratio well below the `main` ratio on CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from wsl_jax.hyperrep import augment
from wsl_jax.weights import nets
from wsl_jax.weights.layout import Layout

LAYOUTS = {"tetris": nets.TETRIS_MLP, "paper_cnn": nets.PAPER_CNN, "unterthiner_cnn": nets.UNTERTHINER_CNN}
TABLE_SIZES = {"tetris": 120, "paper_cnn": 25_000, "unterthiner_cnn": 25_000}  # as the paper's loaders
CONFIGS = {"main": 0.0, "noise": 0.05}  # name -> noise std
ERASE_P, ERASE_SCALE, ERASE_VALUE = 0.5, (0.02, 0.33), 0.0


def numpy_views(w: np.ndarray, table: np.ndarray, rng: np.random.Generator, noise_std: float) -> np.ndarray:
  """The original loader's augmentation, one sample at a time (reference.md §3)."""
  batch, n = w.shape
  lo, hi = ERASE_SCALE
  out = np.empty_like(w)
  for i in range(batch):
    x = w[i][table[rng.integers(len(table))]]
    if noise_std > 0:
      x += noise_std * rng.standard_normal(n, dtype=np.float32)
    if rng.random() < ERASE_P:
      for _ in range(10):
        length = int(n * rng.uniform(lo, hi))
        start = int(rng.integers(n))
        if start + length < n:
          x[start:start + length] = ERASE_VALUE
          break
    out[i] = x
  return out


def keep_freed_memory() -> None:
  """Make glibc keep freed memory mapped: no mmap for blocks below 2 GiB, no trimming of the heap top."""
  import ctypes
  libc = ctypes.CDLL("libc.so.6")
  m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's mallopt parameter numbers
  for param, value in ((m_mmap_threshold, 2**31 - 1), (m_trim_threshold, 2**31 - 1), (m_top_pad, 2**28)):
    if libc.mallopt(param, ctypes.c_int(value)) != 1:
      raise RuntimeError(f"mallopt({param}, {value}) failed")
  print("glibc mallopt: freed memory stays in the heap (mmap threshold 2 GiB, no trimming)")


def min_time(fn: Callable[[], object], repeats: int) -> float:
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t0)
  return best


def jax_augmenter(layout: Layout, noise_std: float, use_table: bool) -> Callable:
  def views(key, w, table):
    return augment.augment(key, w, layout, noise_std=noise_std, erase_p=ERASE_P, erase_scale=ERASE_SCALE,
                           erase_value=ERASE_VALUE, erase_mode="original", table=table if use_table else None)
  return jax.jit(views)


def run(batch_sizes: list[int], layouts: list[str], repeats: int, numpy_repeats: int) -> None:
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  print(f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}")
  print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), {cores} CPU cores, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}")
  header = (f"{'layout':16s} {'N':>5s} {'B':>5s} {'config':6s} {'perm':6s} {'numpy views/s':>14s} "
            f"{'jax views/s':>12s} {'ratio':>7s} {'bound':>7s} {'gather':>7s} {'compile s':>9s}")
  print(header)
  key = jax.random.key(0)
  for name in layouts:
    layout = LAYOUTS[name].layout()
    n = layout.num_params
    k_table, k_w, key = jax.random.split(key, 3)
    table = augment.permutation_table(k_table, layout, TABLE_SIZES[name], complete=name == "tetris")
    table_np = np.asarray(table)
    for batch in batch_sizes:
      w = jax.random.normal(k_w, (batch, n), jnp.float32)
      w_np = np.asarray(w)
      # The memory-traffic bound: one elementwise pass that reads the batch and writes a fresh output
      # buffer, as every augmentation call must. `bound` = NumPy time / this time is the highest ratio
      # any such implementation can reach on this machine.
      negate = jax.jit(jnp.negative).lower(w).compile()
      jax.block_until_ready(negate(w))
      t_pass = min_time(lambda: negate(w), repeats)
      index = augment.permutation_index(k_table, layout, (batch,))
      gather = jax.jit(augment.apply_index).lower(w, index).compile()
      jax.block_until_ready(gather(w, index))
      t_gather = min_time(lambda: gather(w, index), repeats)
      for config, noise_std in CONFIGS.items():
        rng = np.random.default_rng(0)
        t_np = min_time(lambda: numpy_views(w_np, table_np, rng, noise_std), numpy_repeats)
        for perm in ("table", "fresh"):
          fn = jax_augmenter(layout, noise_std, perm == "table")
          t0 = time.perf_counter()
          compiled = fn.lower(key, w, table).compile()
          t_compile = time.perf_counter() - t0
          keys = iter(jax.random.split(jax.random.fold_in(key, batch), repeats + 1))
          jax.block_until_ready(compiled(next(keys), w, table))  # warm-up
          t_jax = min_time(lambda: compiled(next(keys), w, table), repeats)
          print(f"{name:16s} {n:5d} {batch:5d} {config:6s} {perm:6s} {batch / t_np:14,.0f} "
                f"{batch / t_jax:12,.0f} {t_np / t_jax:6.1f}x {t_np / t_pass:6.1f}x {t_np / t_gather:6.1f}x "
                f"{t_compile:9.2f}", flush=True)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="B = 512 only, fewer repeats")
  parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
  parser.add_argument("--batch-sizes", nargs="+", type=int, default=None)
  parser.add_argument("--repeats", type=int, default=None, help="JAX timing repeats (default 10, quick 5)")
  parser.add_argument("--keep-freed-memory", action="store_true",
                      help="glibc: keep freed buffers in the heap (mallopt), so fresh outputs are not page-faulted")
  args = parser.parse_args(argv)
  if args.keep_freed_memory:
    keep_freed_memory()
  batch_sizes = args.batch_sizes or ([512] if args.quick else [512, 4096])
  repeats = args.repeats or (5 if args.quick else 10)
  run(batch_sizes, args.layouts, repeats, numpy_repeats=2 if args.quick else 3)


if __name__ == "__main__":
  sys.exit(main())
