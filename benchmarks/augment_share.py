"""The augmentation's share of the SSL train step, where it matters: the same compiled step with and
without augmentation, in the same run.

  python benchmarks/augment_share.py                              # tetris and paper-CNN layouts
  python benchmarks/augment_share.py --layouts paper_cnn --batch-size 100 --steps 3

For each layout it compiles the real train step (`wsl_jax.hyperrep.train`: two views per sample, encoder, decoder,
projection head, NT-Xent + MSE, Adam) twice: with the preset's augmentation (permutation from the
original's table, erasing p 0.5) and with every augmentation step switched off (`AugmentConfig(permute=
False, erase_p=0.0)`: the views are the input rows, as a step fed pre-augmented views would see them).
Both steps are timed interleaved (repeats alternate, the minimum of each kept: a slow phase of the shared
machine hits both), after compilation. Share = 1 - t(without) / t(with). The model is the preset's
(tetris: d 256; paper CNN: the MNIST-SEED config, d 800, 45M parameters), so on a CPU the paper-CNN step
runs at a reduced batch (`--batch-size`); the share depends little on the batch, since both the
augmentation and the model scale linearly with it.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from wsl_jax.hyperrep import configs, train
from wsl_jax.hyperrep.configs import AugmentConfig
from wsl_jax.weights import nets

LAYOUTS = {"tetris": ("tetris", nets.TETRIS_MLP), "paper_cnn": ("mnist_seed", nets.PAPER_CNN),
           "unterthiner_cnn": ("unterthiner_mnist", nets.UNTERTHINER_CNN)}


def time_steps(config, layout, batch: int, steps: int, repeats: int) -> tuple[float, float, float]:
  """(seconds per step with augmentation, without, compile seconds of both)."""
  mesh = train.make_mesh(1)
  replicated, data = train._shardings(mesh)
  rng = np.random.default_rng(0)
  x = jax.device_put(rng.normal(0.0, 0.5, (batch, layout.num_params)).astype(np.float32), data)
  key = jax.random.key(1)
  plain = config.replace(augment=AugmentConfig(permute=False, erase_p=0.0))
  runs, compile_s = {}, 0.0
  for name, cfg in (("with", config), ("without", plain)):
    table = train.permutation_table(cfg.augment, layout)
    tables = () if table is None else (jax.device_put(table, replicated),)
    state = jax.device_put(train.init_state(cfg, layout, jax.random.key(0), steps_per_epoch=1000), replicated)
    t0 = time.perf_counter()
    step = train._compiled_train_step(cfg, layout, 1000, mesh).lower(
        state, x, np.int32(0), np.int32(0), key, *tables).compile()
    compile_s += time.perf_counter() - t0
    state, m = step(state, x, np.int32(0), np.int32(0), key, *tables)  # warm-up
    jax.block_until_ready(m)
    runs[name] = {"step": step, "state": state, "tables": tables, "times": []}
  for _ in range(repeats):
    for r in runs.values():
      t0 = time.perf_counter()
      for i in range(steps):
        r["state"], m = r["step"](r["state"], x, np.int32(0), np.int32(i + 1), key, *r["tables"])
      jax.block_until_ready(m)
      r["times"].append((time.perf_counter() - t0) / steps)
  return min(runs["with"]["times"]), min(runs["without"]["times"]), compile_s


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--layouts", nargs="+", default=["tetris", "paper_cnn"], choices=sorted(LAYOUTS))
  parser.add_argument("--batch-size", type=int, default=None,
                      help="batch size (default: the preset's, 500, for tetris; 50 for the CNN layouts)")
  parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}; share = 1 - step without / step with "
        "augmentation (same run)", flush=True)
  for name in args.layouts:
    preset, net = LAYOUTS[name]
    config = configs.preset(preset)
    batch = args.batch_size or (config.batch_size if name == "tetris" else 50)
    config = config.replace(batch_size=batch)
    with_s, without_s, compile_s = time_steps(config, net.layout(), batch, args.steps, args.repeats)
    print(f"{name:16s} preset {preset:18s} batch {batch:4d}  step with augmentation {with_s * 1e3:9.1f} ms, "
          f"without {without_s * 1e3:9.1f} ms: augmentation {100 * (1 - without_s / with_s):5.1f} % of the step "
          f"(permutations: {config.augment.permutations or 'fresh'}; compile {compile_s:.0f} s)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
