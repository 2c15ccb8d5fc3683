"""The CNN benchmark's ceiling: real im2col tables, one product per GEMM layout group, the step's FLOPs."""

import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from wsl_jax.weights import nets

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


@pytest.mark.parametrize("group", ["FORWARD_LAYOUTS", "KERNEL_GRAD_LAYOUTS", "PATCH_GRAD_LAYOUTS"])
def test_every_timed_layout_computes_the_same_gemm(group):
  """The floor keeps the fastest layout of each GEMM, so every layout must be the same product with its
  operands and result merely transposed (kernel w: m,o,k; patches p: m,k,n; output gradient y: m,o,n)."""
  rng = np.random.default_rng(1)
  canonical = {"mok": rng.normal(size=(2, 3, 5)), "mkn": rng.normal(size=(2, 5, 7)), "mon": rng.normal(size=(2, 3, 7))}
  canonical = {k: v.astype(np.float32) for k, v in canonical.items()}

  def as_named(names):  # the canonical array holding these axes, transposed to the order of `names`
    source = next(k for k in canonical if sorted(k) == sorted(names))
    return np.transpose(canonical[source], [source.index(a) for a in names])

  results = []
  for spec in getattr(bench, group):
    ins, out = spec.split("->")
    got = np.asarray(jnp.einsum(spec, *(jnp.asarray(as_named(n)) for n in ins.split(","))))
    canon_out = next(k for k in ("mok", "mkn", "mon") if sorted(k) == sorted(out))
    results.append(np.transpose(got, [out.index(a) for a in canon_out]))
  assert len(results) >= 2
  for r in results[1:]:
    np.testing.assert_allclose(r, results[0], rtol=1e-5, atol=1e-5)
