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
  quick  the full 1000-model zoo (generated once, then cached), a narrow encoder (see QUICK below)
         trained on every 3rd checkpoint, probes on every checkpoint: about 15 minutes on 2 CPU
         cores. The default.
  paper  the paper's configuration (d=256, 4 heads, FF 512, L=50, 1000 epochs, every checkpoint);
         meant for a GPU.

Expected result (quick): see docs/results.md for the table we obtained and the settings search.
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
        base, epochs=QUICK_EPOCHS, lr=QUICK_LR, eval_every=10, checkpoint_every=10,
        model=dataclasses.replace(base.model, dim=QUICK_DIM, heads=QUICK_HEADS, ff_dim=2 * QUICK_DIM))
    return ExperimentConfig("quick", 1000, 75, ssl, 3, 1, 50, 4000, umap=_umap_available())
  if preset == "paper":
    return ExperimentConfig("paper", 1000, 75, base, 1, 1, 50, 4000, umap=_umap_available())
  raise ValueError(f"unknown preset {preset!r}; choose from {common.PRESETS}")


# The quick preset's encoder (chosen by the search documented in docs/results.md).
QUICK_DIM = 64
QUICK_HEADS = 4
QUICK_EPOCHS = 150
QUICK_LR = 1e-3


def _umap_available() -> bool:
  try:
    import umap  # noqa: F401
  except ImportError:
    return False
  return True


def run(config: ExperimentConfig, out: str, seed: int = 0, zoo_cache: str | None = None,
        progress: bool = True) -> dict[str, Any]:
  """Run the experiment; write every output into `out`; return the results dict."""
  from wsl_jax import baselines, evaluate, report, train

  os.makedirs(out, exist_ok=True)
  timings: dict[str, float] = {}
  common.write_json(os.path.join(out, "config.json"),
                    {"experiment": NAME, "seed": seed, "config": config, "environment": common.environment()})

  with common.stage("zoo", timings):
    zoo_cache = zoo_cache or os.path.join(common.cache_root(), "zoos")
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
                                       targets=TARGETS, name="TETRIS-SEED")

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


def main(argv: Sequence[str] | None = None) -> int:
  args = common.parse_args(NAME, __doc__, argv)
  common.setup_jax()
  run(get_config(args.preset), args.out, seed=args.seed, zoo_cache=args.zoo_cache, progress=not args.quiet)
  return 0


if __name__ == "__main__":
  sys.exit(main())
