"""Every model's first conv layer as one GEMM on shared inputs: evaluation and training step, same run.

    python benchmarks/cnn_first_conv.py [--models 32] [--preset digits_seed] [--repeats 5]

Prints, for the preset's CNN and evaluation sets (training-evaluation subset and test set, in chunks of
the preset's `eval_batch_size`):
  * one evaluation of all models: `jax.vmap(evaluate)` against `batched.evaluate_cnn_models` (the rule
    the zoo trainer uses: the first conv of all models as one GEMM, the rest vmapped), and checks that
    both give the same metrics;
  * one gradient step of all models at batch 32: vmapped `taps` on per-model mini-batches (the trainer)
    against the shared-GEMM formulation on one mini-batch shared by every model (what a shared data
    order would allow), autodiffed.
Minimum (and median) over `--repeats` interleaved calls, after compilation.
"""

from __future__ import annotations

import argparse
import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from wsl_jax.weights import nets
from wsl_jax.zoo import batched, presets
from wsl_jax.zoo import train as zoo_train

gen = importlib.import_module("wsl_jax.zoo.generate")


def timed(fns: dict, args: dict, repeats: int) -> dict:
  compiled = {k: f.lower(*args[k]).compile() for k, f in fns.items()}
  for k, c in compiled.items():
    jax.block_until_ready(c(*args[k]))
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for k, c in compiled.items():
      t0 = time.perf_counter()
      jax.block_until_ready(c(*args[k]))
      times[k].append(time.perf_counter() - t0)
  return compiled, times


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", type=int, default=32)
  p.add_argument("--preset", default="digits_seed")
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args(argv)
  preset = presets.get(args.preset)
  net, m, batch = preset.net, args.models, 32
  spec = zoo_train.TrainSpec(net=net, epochs=1, batch_size=batch, checkpoint_epochs=(1,), activation="tanh",
                             optimizer="adam", inits=("kaiming_uniform",), eval_batch_size=preset.eval_batch_size,
                             train_eval_size=preset.train_eval_examples)
  data = zoo_train.to_device_data(gen.preset_dataset(preset))
  classes = net.num_classes
  k = jax.random.split(jax.random.key(0), 3)
  w = 0.1 * jax.random.normal(k[0], (m, net.layout().num_params))
  print(f"cnn_first_conv: jax {jax.__version__}, {args.preset} ({net.layout().num_params} params), {m} models")

  fns = {"vmap(evaluate)": jax.jit(jax.vmap(lambda v: zoo_train.evaluate(spec, v, data, classes))),
         "evaluate_cnn_models": jax.jit(lambda v: batched.evaluate_cnn_models(spec, v, data, classes))}
  compiled, times = timed(fns, {name: (w,) for name in fns}, args.repeats)
  np.testing.assert_allclose(compiled["vmap(evaluate)"](w), compiled["evaluate_cnn_models"](w), rtol=1e-4, atol=1e-5)
  for name, t in times.items():
    print(f"evaluation of all models  {name:22s} {min(t) * 1e3:9.1f} ms (median {np.median(t) * 1e3:.1f})", flush=True)

  x = jax.random.normal(k[1], (m, batch) + net.input_shape)
  y = jax.random.randint(k[2], (m, batch), 0, classes)

  def ce(logits, labels):
    return (jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[:, None], 1)[:, 0]).mean()

  def shared_loss(wm, xs, ys):
    first = batched.first_conv_all_models(spec, wm, xs)
    rest = lambda v, f: ce(nets.apply_after_first_conv(net, v, f, "tanh"), ys)
    return jax.vmap(rest)(wm, first).sum()  # models are independent: d(sum)/dw_m = d(loss_m)/dw_m

  own_loss = lambda v, xb, yb: ce(nets.apply(net, v, xb, "tanh"), yb)
  fns = {"vmap taps, own batches": jax.jit(jax.vmap(jax.grad(own_loss))),
         "shared first-conv GEMM": jax.jit(jax.grad(shared_loss))}
  _, times = timed(fns, {"vmap taps, own batches": (w, x, y), "shared first-conv GEMM": (w, x[0], y[0])}, args.repeats)
  for name, t in times.items():
    print(f"gradient step, batch {batch}  {name:22s} {min(t) / m * 1e6:9.0f} us/model-step "
          f"(median {np.median(t) / m * 1e6:.0f})", flush=True)


if __name__ == "__main__":
  main()
