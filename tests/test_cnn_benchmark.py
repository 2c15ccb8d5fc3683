"""The CNN benchmark's ceiling: its patch tables are real im2col and its FLOP count is the step's."""

import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from wsl_jax import nets

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "cnn_zoo_throughput.py"
_spec = importlib.util.spec_from_file_location("cnn_zoo_throughput", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("name", sorted(bench.NETS))
def test_patch_tables_compute_every_conv_layer(name):
  """Gathered patches times the kernel = `nets.conv2d` for every conv layer, so the timed gathers build
  the patch tensors an im2col program needs, and their shapes match the timed GEMMs."""
  net = bench.NETS[name]
  rng = np.random.default_rng(0)
  h, w, c = net.input_shape
  for block, (table, size), gemm in zip(net.convs, bench.patch_indices(net), bench.conv_gemms(net, batch=3)):
    x = rng.normal(size=(3, h, w, c)).astype(np.float32)
    kernel = rng.normal(size=(block.out_channels, c, block.kernel, block.kernel)).astype(np.float32)
    expected = np.asarray(nets.conv2d(jnp.asarray(x), jnp.asarray(kernel), None, block.stride, "lax"))
    patches = jnp.take(jnp.asarray(x.reshape(3, -1)), jnp.asarray(table.reshape(-1)), axis=1).reshape(3, *table.shape)
    got = np.asarray(patches @ kernel.reshape(block.out_channels, -1).T).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert size == h * w * c
    assert (gemm["o"], gemm["k"], gemm["n"]) == (block.out_channels, table.shape[1], 3 * table.shape[0])
    ho, wo = expected.shape[1:3]
    h, w, c = ho // block.pool, wo // block.pool, block.out_channels


def test_conv_gemm_flops_count_forward_and_both_gradients():
  # Paper CNN, batch 32: conv1 8x25 over 32*24*24 positions (forward + kernel gradient), conv2 6x200 over
  # 32*8*8 and conv3 4x24 over 32*3*3 (forward + kernel gradient + patch gradient), 2 FLOPs per MAC.
  expected = 2 * (8 * 25 * 32 * 576 * 2 + 6 * 200 * 32 * 64 * 3 + 4 * 24 * 32 * 9 * 3)
  assert bench.conv_gemm_flops(nets.PAPER_CNN, 32) == expected == 29_657_088


def test_gemm_floor_runs_and_is_positive():
  floor = bench.gemm_floor_us(nets.UNTERTHINER_CNN, batch=2, models=2, repeats=1)
  patches = bench.patches_us(nets.UNTERTHINER_CNN, batch=2, models=2, repeats=1)
  assert np.isfinite(floor) and floor > 0 and np.isfinite(patches) and patches > 0
