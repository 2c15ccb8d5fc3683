"""Process-level JAX settings for command-line entry points (call before any JAX computation).

`configure()` enables the persistent compilation cache (a second run skips most compilation) and, on
CPU, splits the host into several XLA devices: zoo generation shards its model axis over them, which
on the 2-core development machine made the full TETRIS-SEED zoo 1.5x faster (13.2 s -> 8.8 s,
`benchmarks/zoo_throughput.py`). Accelerator hosts are unaffected (the setting only shapes the CPU
backend, and generation uses the default backend's devices).
"""

from __future__ import annotations

import os

import jax


def cache_root() -> str:
  """Where wsl_jax caches zoos and compiled programs (`WSL_JAX_CACHE`, else ~/.cache/wsl_jax)."""
  return os.environ.get("WSL_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "wsl_jax"))


def configure(cpu_devices: int | None = None, compilation_cache: bool = True) -> None:
  """Set the CPU device count (default: the number of cores, at most 8) and the compile cache.

  `WSL_JAX_CPU_DEVICES` overrides the device count; 1 keeps JAX's default single CPU device.
  """
  if cpu_devices is None:
    cpu_devices = int(os.environ.get("WSL_JAX_CPU_DEVICES", min(os.cpu_count() or 1, 8)))
  if cpu_devices > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    jax.config.update("jax_num_cpu_devices", int(cpu_devices))
  if compilation_cache:
    jax.config.update("jax_compilation_cache_dir", os.path.join(cache_root(), "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
