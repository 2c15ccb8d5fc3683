"""The paper's ablations on TETRIS-SEED: augmentations (Table 3), architectures, SSL losses.

  python -m experiments.ablations --study {augmentation,architecture,loss} [--preset smoke|quick|paper]
                                  [--out DIR] [--seed S] [--cells 'A;B'] [--set KEY=VALUE ...]

Studies (every cell is one self-supervised run per seed on the same zoo and split; the reference
setting is the paper's: AttN+t, EcD, permutation + erasing):
  augmentation  Table 3: losses ED, EcD, Ec+D(code) x augmentations none, P, E, N, P+E, P+N, E+N,
                P+E+N (P = permutation, E = random erasing p 0.5, N = Gaussian noise sigma 0.05; 24
                cells). The paper's Ec+D row was run with the original code's positive-only loss
                (reference.md §9 B1), so the study runs that loss (`Ec+D(code)`, with its 2B fixed at
                the original's 2 x 500: `LossConfig.code_batch`). The test views are permuted exactly
                when the cell trains with permutation (never erased or noised); `rec_r2_plain` is the
                reconstruction R² of the un-augmented test weights, the same task for every cell, and
                `rec_r2_pi` the same up to the hidden-unit permutation that matches each network best.
  architecture  FF, AttW, AttW+t, AttN, AttN+t (`configs.with_architecture`; FF gets 3x the learning
                rate, as the original), EcD loss.
  loss          Ec, ED, EcD, Ec+D (the paper's eq. 3, which the paper did not run: no paper column) and
                Ec+D(code) (what the original code computes, reference.md B1; the paper's Ec+D numbers
                are printed beside it) (`configs.with_loss`), AttN+t.

Per cell: test reconstruction R² (`train.evaluate(result, w_test)["r2"]`; for Ec the decoder is not
trained, its value is shown but meaningless, the paper prints "–"), the plain and the
permutation-invariant R² of the un-augmented test weights (`wsl_jax.evaluation.evaluate.reconstruction_r2`,
`permutation_invariant_r2`), and downstream ridge R² (the paper's protocol: every probed checkpoint a
sample, alpha chosen on validation) of epoch, test accuracy, ggap and the four per-class F1 scores on the
frozen embeddings; mean ± sample std over the seeds S, S+1, ... Beside them, the PCA ceiling: the test
rows' variance that the top-k PCA of the training rows explains, k = the encoder's latent size.
results.md prints the table in the paper's layout (Table 3: losses x augmentations; the others:
variants x Rec., Eph, Acc, GGap, F1C0..3) with the paper's value in brackets, then says whether the
paper's qualitative findings hold (augmentation: permutation raises the test reconstruction R²;
architecture: AttN+t is best downstream; loss: EcD is best downstream), with the numbers. A difference
counts only where the difference of the seed means exceeds the larger std (`compare`,
`wsl_jax.evaluation.report.beats`); with one seed per cell (the smoke preset) nothing is decided.

Overrides: `--set KEY=VALUE ...` changes any setting of the preset (dotted keys of `get_config`'s
config: `seeds`, `cells`, `ssl.*` (the reference cell, of which every cell is a variant), `zoo.first_models`,
`zoo.checkpoint_stride`, ...; values parsed as JSON where they parse), e.g. `--set seeds=1 ssl.epochs=10`;
an unknown key stops the run with one line naming the valid ones (experiments/pipeline.py). Every cell
trains through `pipeline.fit_encoder` without checkpoints or test monitoring, on exactly the zoo's
(strided) checkpoints, and is probed on its embedding alone.

Outputs in --out: config.json, results.json (every cell's mean / std / per-seed values, the paper's
values, the findings, per-run times), results.md, cells.png (bar chart of the cells), training_curves.png
(the reference cell's first seed), runs/ (one JSON per finished run: a killed study resumes at the next
unfinished run).

Presets:
  smoke  the 48-model x 6-epoch TETRIS-SEED zoo, every checkpoint, a tiny encoder (d 16) for 2
         epochs, 1 seed, and two cells per study that between them exercise every code path (see
         SMOKE_CELLS: augmentation "EcD / E,N" and "EcD / P,E,N": each of P, E, N, both loss terms
         and one with / without permutation pair for the finding; architecture FF and AttN+t: both
         model families; loss Ec and EcD: the contrast-only special case and the reference; every
         cell is a variant of one config, so the others run the same code). About 45-55 s per study
         on the loaded 2-core development machine (compilation dominates); for the tests. The
         numbers are meaningless.
  quick  the first 250 models of the 1000-model TETRIS-SEED zoo (shared with experiments.tetris_seed
         through the zoo cache), every 5th checkpoint (16 per model: 175 training models, 2800
         training samples; the probes use the same checkpoints), a narrow encoder (d 32, 2 heads,
         FF 64, L 16, projection head 2 x 32 -> 16; batch 100, lr 1e-3), 3 seeds, every cell, and
         QUICK_EPOCHS epochs per run (augmentation 30, architecture 30, loss 40; augmentation was 12
         until short timing runs showed reconstruction R² of about 10 % at that length). Measured on the 2-core development machine
         (py3.11, jax 0.10.2, other experiments running beside each study, so upper bounds): loss
         518 s (15 runs), augmentation 66 min (72 runs, 20-206 s each), architecture 52 min (15 runs;
         AttW and AttW+t, with 100 weight tokens, take 7-12 min a run, the others under a minute).
         `--cells` runs a part of a study, and a killed study resumes. Absolute numbers are far
         below the paper's (a 4x smaller zoo, and a tiny encoder trained for tens of epochs instead
         of d 256 for 1000 epochs: with a contrastive term the test reconstruction R² stays under
         25 %), so compare the ordering of the cells, not the values.
  paper  the full zoo, every checkpoint, the paper's tetris configuration (d 256, 4 heads, FF 512,
         L 50, 1000 epochs), 3 seeds; meant for a GPU. Not run: each run is one tetris_seed paper
         encoder (about 47 h on 2 CPU cores at the measured 311.6 samples/s).

Expected result (the paper, reference.md §8): permutation raises test reconstruction R² for every loss
(ED 88.1 -> 95.5, EcD 49.2 -> 72.9, Ec+D 86.3 -> 95.6 without -> with P); AttN+t and AttN are best
downstream (Eph 97, Acc 88-90), FF worst; Ec and EcD are best downstream (Acc ~90), ED and Ec+D ~69.

Obtained (quick, seeds 0-2, the TETRIS-SEED zoo of 2026-12-06; tables in docs/results.md): augmentation
(30 min 49 s beside other jobs): permutation raises the test reconstruction R² beyond the spread in 7 of
12 with / without pairs: all 4 for ED (62.1 -> 69.9, ...), 3 of 4 for the code's Ec+D (59.5 -> 69.2, ...),
none for EcD (12.8 -> 5.2, ...), whose short-trained encoder does not reconstruct permuted views;
downstream EcD is best with P+E (epoch 87.1, accuracy 84.0 against 69.0 / 60.7 without augmentation).
Loss (10 min 51 s beside other jobs): mean downstream R² Ec+D (Eq. 3) 77.0, Ec 75.8, EcD 73.9, ED 67.1,
Ec+D (code) 64.7: EcD is not best (below Eq. 3 and Ec beyond the spread); ED and the code's Ec+D, the
paper's "far behind", are far behind. Architecture (29 min of cells, CI beside it for 15 minutes): AttW+t
best downstream (mean R² 80.7; epoch 96.4), then FF 74.7, AttN+t 73.4, AttN 70.0, AttW 24.9 (two of its
three seeds collapsed to a constant embedding); the paper has AttN / AttN+t best and FF worst. AttW+t
costs 3-6 min a run against under a minute for AttN+t.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments import common, pipeline

NAME = "ablations"
STUDIES = ("augmentation", "architecture", "loss")
DOWNSTREAM = ("epoch", "test_acc", "ggap", "f1_class_0", "f1_class_1", "f1_class_2", "f1_class_3")
METRICS = ("rec_r2", "rec_r2_plain", "rec_r2_pi") + DOWNSTREAM
RECONSTRUCTION = ("rec_r2", "rec_r2_plain", "rec_r2_pi")
METRIC_LABELS = {"rec_r2": "Rec.", "rec_r2_plain": "Rec. (plain)", "rec_r2_pi": "Rec. (perm.-inv.)",
                 "epoch": "Eph", "test_acc": "Acc",
                 "ggap": "GGap", "f1_class_0": "F1C0", "f1_class_1": "F1C1", "f1_class_2": "F1C2",
                 "f1_class_3": "F1C3"}
# Our metric -> the paper's column in the architecture / loss ablation tables.
PAPER_COLUMNS = {"rec_r2": "Rec.", "epoch": "Eph", "test_acc": "Acc", "f1_class_0": "F1C0",
                 "f1_class_1": "F1C1", "f1_class_2": "F1C2", "f1_class_3": "F1C3"}

# The paper's Ec+D numbers (Table 3, the loss ablation) came from the original code's positive-only loss
# (reference.md §9 B1), so its columns sit beside Ec+D(code); the paper's Eq. 3 (Ec+D) has no paper column.
AUG_LOSSES = ("ED", "EcD", "Ec+D(code)")
PAPER_ROW = {"Ec+D(code)": "Ec+D"}  # our loss -> the paper's row of that loss
AUGMENTATIONS = ("none", "P", "E", "N", "P,E", "P,N", "E,N", "P,E,N")
ARCHITECTURES = ("FF", "AttW", "AttW+t", "AttN", "AttN+t")
LOSSES = ("Ec", "ED", "EcD", "Ec+D", "Ec+D(code)")
NOISE_STD = 0.05  # the paper's noise augmentation
ERASE_P = 0.5     # the paper's erasing probability
REFERENCE = {"augmentation": "EcD / P,E", "architecture": "AttN+t", "loss": "EcD"}
SMOKE_CELLS = {"augmentation": ("EcD / E,N", "EcD / P,E,N"), "architecture": ("FF", "AttN+t"),
               "loss": ("Ec", "EcD")}

# Epochs per study of the quick preset, sized so that each quick study takes about 15 minutes (the
# augmentation study has 72 runs, the others 15).
QUICK_EPOCHS = {"augmentation": 30, "architecture": 30, "loss": 40}


def all_cells(study: str) -> tuple[str, ...]:
  """Every cell of a study, in the paper's order (augmentation: "<loss> / <augmentations>")."""
  if study == "augmentation":
    return tuple(f"{loss} / {aug}" for loss in AUG_LOSSES for aug in AUGMENTATIONS)
  if study == "architecture":
    return ARCHITECTURES
  if study == "loss":
    return LOSSES
  raise ValueError(f"unknown study {study!r}; choose from {STUDIES}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(pipeline.Config):
  """`pipeline.Config` (its `ssl` is the reference cell's config, AttN+t, EcD, P+E; the zoo is cut to
  `zoo.first_models` models and every `zoo.checkpoint_stride`-th checkpoint, for the encoders and the
  probes alike) and

  Attributes:
    study: augmentation, architecture or loss.
    seeds: SSL runs per cell (seeds S, S+1, ...).
    cells: the cells to run (a subset of `all_cells(study)`, in its order).
  """

  study: str
  seeds: int
  cells: tuple[str, ...]

  def __post_init__(self):
    super().__post_init__()
    unknown = [c for c in self.cells if c not in all_cells(self.study)]  # all_cells checks the study
    if unknown:
      raise pipeline.ConfigError(f"unknown cells {unknown}; cells of {self.study}: {'; '.join(all_cells(self.study))}")
    if not isinstance(self.seeds, int) or self.seeds < 1:
      raise pipeline.ConfigError(f"seeds must be a positive integer, got {self.seeds!r}")
    if self.encoder.seeds != 1:
      raise pipeline.ConfigError(f"the ablations train `seeds` runs per cell (seeds={self.seeds}); set seeds, "
                                 f"not encoder.seeds={self.encoder.seeds}")


def get_config(preset: str = "quick", study: str = "loss") -> Config:
  """The configuration of `preset` (smoke, quick, paper) for `study`."""
  from wsl_jax.hyperrep import configs
  # Every cell trains without checkpoints and without test monitoring (dozens of runs); the probes score
  # the encoder's embedding only.
  fields = {"experiment": NAME, "preset": preset, "study": study,
            "encoder": pipeline.EncoderConfig(monitor_test=False),
            "probes": pipeline.ProbeConfig(targets=DOWNSTREAM, columns=("EcD",))}
  if preset == "smoke":
    return Config(**fields, zoo=pipeline.ZooConfig(preset="tetris_seed", models=48, epochs=6),
                  ssl=pipeline.tiny_tetris_ssl(), seeds=1, cells=SMOKE_CELLS[study])
  if preset == "quick":
    epochs = QUICK_EPOCHS[study]
    ssl = pipeline.ssl_config("tetris", epochs=epochs, lr=1e-3, batch_size=100, eval_every=epochs,
                              checkpoint_every=epochs,
                              model={"dim": 32, "heads": 2, "ff_dim": 64, "latent_dim": 16,
                                     "head_layers": configs.preset("small").model.head_layers,
                                     "head_hidden": 32, "head_out": 16})
    zoo = pipeline.ZooConfig(preset="tetris_seed", models=1000, epochs=75, first_models=250, checkpoint_stride=5)
    return Config(**fields, zoo=zoo, ssl=ssl, seeds=3, cells=all_cells(study))
  if preset == "paper":
    return Config(**fields, zoo=pipeline.ZooConfig(preset="tetris_seed", models=1000, epochs=75),
                  ssl=pipeline.ssl_config("tetris"), seeds=3, cells=all_cells(study))
  raise pipeline.unknown_preset(preset)


def cell_config(study: str, cell: str, base):
  """The `TrainConfig` of one cell: `base` with the cell's augmentation, architecture or loss."""
  from wsl_jax.hyperrep import configs
  if study == "augmentation":
    loss, _, aug = cell.partition(" / ")
    if loss not in AUG_LOSSES or aug not in AUGMENTATIONS:
      raise ValueError(f"unknown augmentation cell {cell!r}; cells: {all_cells(study)}")
    parts = set() if aug == "none" else set(aug.split(","))
    cfg = configs.with_loss(base, loss)
    train_aug = dataclasses.replace(base.augment, permute="P" in parts, erase_p=ERASE_P if "E" in parts else 0.0,
                                    noise_std=NOISE_STD if "N" in parts else 0.0)
    eval_aug = dataclasses.replace(base.eval_augment, permute="P" in parts, erase_p=0.0, noise_std=0.0)
    return dataclasses.replace(cfg, augment=train_aug, eval_augment=eval_aug)
  if study == "architecture":
    return configs.with_architecture(base, cell)
  if study == "loss":
    return configs.with_loss(base, cell)
  raise ValueError(f"unknown study {study!r}; choose from {STUDIES}")


def paper_values(study: str, cell: str) -> dict[str, float | None]:
  """The paper's numbers (percent) for a cell, keyed by our metric names: the paper's Ec+D row belongs
  to Ec+D(code), the loss its runs used (reference.md §9 B1); Ec+D (Eq. 3) was not run by the paper."""
  from wsl_jax.evaluation import paper_results
  if study == "augmentation":
    loss, _, aug = cell.partition(" / ")
    row = PAPER_ROW.get(loss, loss)
    return {"rec_r2": paper_results.AUGMENTATION_ABLATION.value(row, aug)}
  table = paper_results.ARCHITECTURE_ABLATION if study == "architecture" else paper_results.SSL_LOSS_ABLATION
  row = PAPER_ROW.get(cell, cell) if study == "loss" else cell
  if cell == "Ec+D" or row not in table.rows:
    return {}
  return {m: table.value(row, col) for m, col in PAPER_COLUMNS.items()}


# ---- the runs --------------------------------------------------------------------------------------

def jobs(config: Config, loaded: Any) -> list[pipeline.Job]:
  """One encoder config per cell, all on the same zoo and split (no per-cell report or checkpoints)."""
  return [pipeline.Job(key=cell, label="TETRIS-SEED", zoo=config.zoo, ssl=cell_config(config.study, cell, config.ssl),
                       folder=None, workdir=None) for cell in config.cells]


def run_jobs(config: Config, jobs: Sequence[pipeline.Job], ctx: pipeline.Context, loaded: Any = None) -> dict:
  """Every cell x seed on one zoo; a finished run's record (runs/<cell>-s<seed>.json) is reused, so a
  killed study resumes at the next unfinished run."""
  from wsl_jax.progress import progress_bar
  os.makedirs(ctx.path("runs"), exist_ok=True)
  with ctx.stage("zoo"):
    zoo = loaded[0] if loaded is not None else pipeline.get_zoo(config.zoo, ctx)
    split = loaded[1] if loaded is not None else pipeline.split_zoo(zoo, config.zoo)
    samples = {s: int(len(split[s]) * zoo.num_checkpoints) for s in pipeline.SPLITS}
    common.log(zoo.summary())
    common.log(f"SSL samples: train {samples['train']}, val {samples['val']}, test {samples['test']}")
    ceiling = pca_ceiling(zoo, split, config.ssl.model.latent_dim)
  seeds = [ctx.seed + k for k in range(config.seeds)]
  runs: dict[str, list[dict[str, Any]]] = {job.key: [] for job in jobs}
  with ctx.stage(f"{config.study} cells ({len(jobs)} x {len(seeds)} seeds)"):
    bar = progress_bar(total=len(jobs) * len(seeds), desc=config.study, unit="run", enabled=ctx.progress)
    for job in jobs:
      for s in seeds:
        bar.set_postfix_str(f"{job.key} s{s}")
        path = ctx.path("runs", f"{_safe(job.key)}-s{s}.json")
        record = _load_run(path, job.ssl, s)
        if record is None:
          record = run_cell(config, job.ssl, zoo, split, s)
          record.update(cell=job.key, config=job.ssl.to_dict())
          common.write_json(path, record)
        runs[job.key].append(record)
        bar.update(1)
        common.log(f"  {job.key} seed {s}: " + ", ".join(f"{METRIC_LABELS[k]} {100 * v:.1f}"
                                                        for k, v in record["metrics"].items() if v is not None)
                   + f" ({record['seconds']:.0f} s)")
    bar.close()
  return {"runs": runs, "seeds": seeds, "samples": samples, "pca_ceiling": ceiling,
          "zoo": {"models": zoo.num_models, "checkpoints": zoo.num_checkpoints, "diverged": int(zoo.diverged.sum())}}


def run_cell(config: Config, cfg, zoo: Any, split: Any, seed: int) -> dict[str, Any]:
  """Train one cell's encoder (`TrainConfig` `cfg`) with `seed`; its test reconstruction R² and downstream
  probe R²."""
  from wsl_jax.hyperrep import train
  t0 = time.perf_counter()
  result, recon = pipeline.fit_encoder(zoo, split, cfg, config.encoder, workdir=None, seed=seed, progress=False)
  w_test = zoo.samples(split.test)[0]
  rec = train.reconstruct(result, w_test)
  metrics = {"rec_r2": recon["test"], "rec_r2_plain": reconstruction_r2(w_test, rec),
             "rec_r2_pi": permutation_invariant_r2(w_test, rec, zoo.layout)}
  ev = pipeline.probe(zoo, split, result, config.probes, name="TETRIS-SEED", keep_embeddings=False)
  for r in ev.results:
    metrics[r.target] = r.r2
  return {"seed": seed, "metrics": metrics, "history": result.history, "skipped": dict(ev.skipped),
          "seconds": round(time.perf_counter() - t0, 2)}


def reconstruction_r2(w: np.ndarray, rec: np.ndarray) -> float:
  """R² = 1 - SSE / SST of reconstructions of un-augmented weights, SST the summed per-position variance
  (`wsl_jax.evaluation.evaluate.reconstruction_r2`: the definition of `train.evaluate`, `losses.r2_from_sums`)."""
  from wsl_jax.evaluation import evaluate
  return evaluate.reconstruction_r2(w, rec)


def permutation_invariant_r2(w: np.ndarray, rec: np.ndarray, layout: Any) -> float:
  """The same R² with each reconstruction aligned to its input by the best hidden-unit permutation
  (`wsl_jax.evaluation.evaluate.permutation_invariant_r2`), on at most `pipeline.RECON_MAX_ROWS` rows (a fixed random
  subset; every row in the smoke and quick presets)."""
  from wsl_jax.evaluation import evaluate
  if w.shape[0] > pipeline.RECON_MAX_ROWS:
    keep = np.sort(np.random.default_rng(0).choice(w.shape[0], pipeline.RECON_MAX_ROWS, replace=False))
    w, rec = w[keep], rec[keep]
  return evaluate.permutation_invariant_r2(w, rec, layout)


def pca_ceiling(zoo: Any, split: Any, latent: int) -> dict[str, Any]:
  """The held-out variance of the test rows that the top-`latent` PCA of the training rows explains
  (`wsl_jax.zoo.diagnostics.pca_heldout_explained`; the same rows as the cells' reconstruction R²)."""
  from wsl_jax.zoo import diagnostics
  found = diagnostics.pca_heldout_explained(zoo, split.train, split.test, ks=(latent,))
  (k, value), = found.items() if found else ((latent, None),)
  return {"k": int(k), "latent_dim": latent, "r2": value}


# ---- aggregation and findings ----------------------------------------------------------------------

def aggregate(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
  """cell -> metric -> {"mean", "std", "values"} over the cell's seeds."""
  return {cell: {m: mean_std([r["metrics"].get(m) for r in rs]) for m in METRICS}
          for cell, rs in runs.items()}


def downstream_mean(stats: dict[str, dict[str, Any]]) -> float | None:
  """Mean over the downstream targets of a cell's mean R² (its overall downstream score)."""
  vals = [stats[m]["mean"] for m in DOWNSTREAM if stats.get(m, {}).get("mean") is not None]
  return float(np.mean(vals)) if vals else None


def _seeds(stat: Mapping[str, Any] | None) -> list[float]:
  """A metric's finite per-seed values."""
  return [v for v in (stat or {}).get("values", []) if v is not None and math.isfinite(v)]


def downstream_per_seed(stats: dict[str, dict[str, Any]]) -> list[float]:
  """Per seed, the mean over the downstream targets of that seed's R² (seeds missing a target left out)."""
  per_target = [stats.get(m, {}).get("values", []) for m in DOWNSTREAM]
  n = min((len(v) for v in per_target), default=0)
  out = []
  for i in range(n):
    vals = [v[i] for v in per_target]
    if all(x is not None and math.isfinite(x) for x in vals):
      out.append(float(np.mean(vals)))
  return out


def compare(a: Sequence[float], b: Sequence[float]) -> str:
  """"above" / "below" when the difference of means exceeds the larger std (`wsl_jax.evaluation.report.beats`),
  "level" otherwise, "undecided" with fewer than two seeds on a side (no spread measured)."""
  from wsl_jax.evaluation import report
  if len(a) < 2 or len(b) < 2:
    return "undecided"
  return "above" if report.beats(a, b) else "below" if report.beats(b, a) else "level"


def findings(study: str, cells: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
  """Whether the paper's qualitative finding for `study` holds in `cells`, with the numbers. A difference
  counts only beyond the spread over seeds (`compare`); with one seed per cell nothing is decided."""
  if study == "augmentation":
    pairs = []
    for loss in AUG_LOSSES:
      for without, with_p in (("none", "P"), ("E", "P,E"), ("N", "P,N"), ("E,N", "P,E,N")):
        a, b = cells.get(f"{loss} / {without}"), cells.get(f"{loss} / {with_p}")
        if a and b and a["rec_r2"]["mean"] is not None and b["rec_r2"]["mean"] is not None:
          verdict = compare(_seeds(b["rec_r2"]), _seeds(a["rec_r2"]))
          pairs.append({"loss": loss, "without": without, "with": with_p, "rec_without": a["rec_r2"]["mean"],
                        "rec_with": b["rec_r2"]["mean"], "std_without": a["rec_r2"]["std"],
                        "std_with": b["rec_r2"]["std"], "verdict": verdict, "raised": verdict == "above"})
    raised = sum(p["raised"] for p in pairs)
    decided = [p for p in pairs if p["verdict"] != "undecided"]
    if not decided:
      holds = None
    else:
      holds = raised == len(pairs) or ("partly" if raised > len(pairs) / 2 else False)
    return {"claim": "permutation raises the test reconstruction R²", "pairs": pairs,
            "raised": raised, "lowered": sum(p["verdict"] == "below" for p in pairs),
            "level": sum(p["verdict"] == "level" for p in pairs), "compared": len(pairs), "decided": len(decided),
            "holds": holds, "paper": "raised in 12 of 12 pairs"}
  scores = {c: downstream_mean(s) for c, s in cells.items()}
  per_seed = {c: downstream_per_seed(s) for c, s in cells.items()}
  ranked = sorted((c for c in scores if scores[c] is not None), key=lambda c: -scores[c])
  ref = REFERENCE[study]
  best_per_target = {}
  for m in DOWNSTREAM:
    have = [(c, s[m]["mean"]) for c, s in cells.items() if s.get(m, {}).get("mean") is not None]
    if have:
      best_per_target[m] = max(have, key=lambda x: x[1])[0]
  against = {c: compare(per_seed[ref], per_seed[c]) for c in ranked if c != ref} if ref in ranked else {}
  if ref not in ranked or not against or "undecided" in against.values():
    holds = None
  elif all(v == "above" for v in against.values()):
    holds = True
  elif "below" in against.values():
    holds = False
  else:
    holds = "level"  # not beaten, but not above every other cell beyond the spread
  return {"claim": f"{ref} is best downstream", "downstream_mean": scores, "downstream_per_seed": per_seed,
          "ranking": ranked, "best": ranked[0] if ranked else None, "reference": ref,
          "reference_against": against, "holds": holds, "best_per_target": best_per_target,
          "paper": ("AttN / AttN+t best (Eph 97, Acc 88-90), FF worst" if study == "architecture"
                    else "EcD best by a hair over Ec (mean of Eph, Acc, F1: 81.6 vs 81.2), ED and Ec+D (the "
                         "original code's loss) far behind")}


# ---- tables ----------------------------------------------------------------------------------------

def to_markdown(config: Config, cells: dict[str, dict[str, dict[str, Any]]], found: dict[str, Any],
                n_seeds: int, ceiling: Mapping[str, Any] | None = None) -> str:
  """The study's table in the paper's layout (ours mean ± std, the paper's value in brackets) and the findings."""
  study = config.study
  lines = [f"**Ablation: {study}, TETRIS-SEED, preset {config.preset}** "
           f"(R² %, mean ± std over {n_seeds} seed(s); the paper's value in brackets)", ""]
  if study == "augmentation":
    lines += ["Test reconstruction R² (Table 3):", "",
              "| loss | " + " | ".join(AUGMENTATIONS) + " |", "|---|" + "---:|" * len(AUGMENTATIONS)]
    for loss in AUG_LOSSES:
      row = [fmt_pct(cells.get(f"{loss} / {a}", {}).get("rec_r2"),
                            paper_values(study, f"{loss} / {a}")["rec_r2"]) for a in AUGMENTATIONS]
      lines.append(f"| {loss} | " + " | ".join(row) + " |")
    lines += ["", "Reconstruction R² of the un-augmented test weights (the same task in every cell):", "",
              "| loss | " + " | ".join(AUGMENTATIONS) + " |", "|---|" + "---:|" * len(AUGMENTATIONS)]
    for loss in AUG_LOSSES:
      row = [fmt_pct(cells.get(f"{loss} / {a}", {}).get("rec_r2_plain")) for a in AUGMENTATIONS]
      lines.append(f"| {loss} | " + " | ".join(row) + " |")
    lines += ["", "The same, up to the hidden-unit permutation that matches each test network best:", "",
              "| loss | " + " | ".join(AUGMENTATIONS) + " |", "|---|" + "---:|" * len(AUGMENTATIONS)]
    for loss in AUG_LOSSES:
      row = [fmt_pct(cells.get(f"{loss} / {a}", {}).get("rec_r2_pi")) for a in AUGMENTATIONS]
      lines.append(f"| {loss} | " + " | ".join(row) + " |")
    lines += ["", "Downstream ridge R² per cell:", ""]
  cols = [m for m in METRICS if study != "augmentation" or m not in RECONSTRUCTION]
  lines += ["| " + ("cell" if study == "augmentation" else study) + " | " + " | ".join(METRIC_LABELS[m] for m in cols)
            + " |", "|---|" + "---:|" * len(cols)]
  for cell in all_cells(study):
    if cell not in cells:
      continue
    pv = paper_values(study, cell) if study != "augmentation" else {}
    row = [fmt_pct(cells[cell].get(m), pv.get(m)) for m in cols]
    lines.append(f"| {cell} | " + " | ".join(row) + " |")
  missing = [c for c in all_cells(study) if c not in cells]
  if missing:
    lines += ["", f"Not run in this preset: {', '.join(missing)}."]
  if ceiling is not None and ceiling.get("r2") is not None:
    lines += ["", f"PCA ceiling: the top-{ceiling['k']} PCA of the training rows (k = the latent size "
              f"{ceiling['latent_dim']}) explains {100 * ceiling['r2']:.1f}% of the test rows' variance (the rows of "
              "Rec. (plain) and Rec. (perm.-inv.); `wsl_jax.zoo.diagnostics.pca_heldout_explained`)."]
  if study == "loss" and "Ec" in cells:
    lines += ["", "Ec trains no decoder (gamma 1): its reconstruction R² is meaningless (the paper prints –)."]
  if study in ("loss", "augmentation"):
    lines += ["", "The paper's Ec+D numbers are beside Ec+D(code): its runs used the original code's positive-only "
              "loss (reference.md §9 B1). Ec+D (the paper's Eq. 3) has no published number."]
  lines += ["", "**Does the paper's finding hold?** " + describe_findings(study, found)]
  return "\n".join(lines) + "\n"


def describe_findings(study: str, found: dict[str, Any]) -> str:
  if study == "augmentation":
    if not found["compared"]:
      return "not testable: no cell pair with and without permutation was run."
    pairs = "; ".join(f"{p['loss']} {p['without']} -> {p['with']}: {100 * p['rec_without']:.1f} -> "
                      f"{100 * p['rec_with']:.1f} ({p['verdict']})" for p in found["pairs"])
    if found["holds"] is None:
      return (f"Undecided: one seed per cell measures no spread, so no pair counts as raised ({found['claim']}; "
              f"paper: {found['paper']}). {pairs}.")
    verdict = {True: "Yes", False: "No", "partly": "Partly"}[found["holds"]]
    return (f"{verdict}: {found['claim']} beyond the spread over seeds in {found['raised']} of "
            f"{found['compared']} pairs (lowered in {found['lowered']}, level in {found['level']}; paper: "
            f"{found['paper']}). {pairs}.")
  scores = found["downstream_mean"]
  ref = found.get("reference", REFERENCE[study])
  if ref not in found["ranking"]:
    return f"not testable: the reference cell was not run or gave no scores ({found['claim']})."
  if not found["reference_against"]:
    return f"not testable: no cell beside the reference {ref} was run ({found['claim']})."
  ranking = ", ".join(f"{c} {100 * scores[c]:.1f}" for c in found["ranking"])
  per_target = ", ".join(f"{METRIC_LABELS[m]}: {c}" for m, c in found["best_per_target"].items())
  against = ", ".join(f"{v} {c}" for c, v in found["reference_against"].items())
  verdict = {None: "Undecided (one seed per cell measures no spread)", True: "Yes", False: "No",
             "level": "Not shown (level with some cell within the spread)"}[found["holds"]]
  return (f"{verdict}: {found['claim']}? Mean downstream R² over {', '.join(METRIC_LABELS[m] for m in DOWNSTREAM)}: "
          f"{ranking}. {ref} against the others (beyond the larger std over seeds): {against}. "
          f"Best mean per target: {per_target}. Paper: {found['paper']}.")


def tables(config: Config, done: dict[str, Any], ctx: pipeline.Context) -> tuple[dict[str, Any], str]:
  """The study's table in the paper's layout, whether the paper's finding holds, and the plots."""
  runs, seeds = done["runs"], done["seeds"]
  cells = aggregate(runs)
  found = findings(config.study, cells)
  markdown = to_markdown(config, cells, found, len(seeds), done.get("pca_ceiling"))
  paper = {c: paper_values(config.study, c) for c in config.cells}
  plot_cells(cells, METRICS, ctx.path("cells.png"), title=f"TETRIS-SEED {config.study} ablation ({config.preset})",
             paper=paper)
  ref = REFERENCE[config.study] if REFERENCE[config.study] in runs else config.cells[0]
  common.plot_training_curves(runs[ref][0]["history"], ctx.path("training_curves.png"),
                              f"TETRIS-SEED, {ref} (seed {seeds[0]})")
  results = {"experiment": NAME, "study": config.study, "preset": config.preset, "seed": ctx.seed, "seeds": seeds,
             "rows": list(config.cells), "columns": list(METRICS), "cells": cells, "paper": paper,
             "findings": found,
             "runs": [{"cell": c, "seed": r["seed"], "metrics": r["metrics"], "seconds": r["seconds"],
                       "skipped": r.get("skipped", {})} for c, rs in runs.items() for r in rs],
             "zoo": {**done["zoo"], "samples": done["samples"]}, "pca_ceiling": done.get("pca_ceiling")}
  return results, markdown


def _safe(cell: str) -> str:
  from wsl_jax.evaluation.report import safe_name
  return safe_name(cell.replace("+", "plus"))


def _load_run(path: str, cfg, seed: int) -> dict[str, Any] | None:
  """A finished run's record, if it exists and was made with the same configuration and seed."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  same = record.get("seed") == seed and record.get("config") == json.loads(json.dumps(cfg.to_dict()))
  complete = set(METRICS) <= set(record.get("metrics", {}))  # a record of an older version lacks some
  return record if same and complete else None


# ---- plots and formatting --------------------------------------------------------------------------

def mean_std(values: Sequence[float]) -> dict[str, Any]:
  """{"mean", "std" (sample std, ddof 1, as `wsl_jax.evaluation.report.mean_std`; 0 for one value), "values"} of the
  finite numbers (None if there are none). Whether a cell beats another: `wsl_jax.evaluation.report.beats` on the
  per-seed values."""
  import numpy as np
  vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  if not vals:
    return {"mean": None, "std": None, "values": [None if v is None else float(v) for v in values]}
  return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
          "values": [float(v) for v in values]}


def fmt_pct(stat: Mapping[str, Any] | None, paper: float | None = None, std: bool = True) -> str:
  """"84.1 ± 1.2 (84.1)": a mean ± std of fractions in percent, the paper's value (percent) in brackets."""
  if stat is None or stat.get("mean") is None:
    text = "n/a"
  else:
    text = f"{100 * stat['mean']:.1f}"
    if std and len(stat.get("values", [])) > 1:
      text += f" ± {100 * stat['std']:.1f}"
  if paper is not None:
    text += f" ({paper:.1f})"
  return text


HATCHES = ("", "///", "...", "xx", "\\\\")


def _bar_styles(names: Sequence[str]) -> dict[str, tuple[Any, str]]:
  """A distinct (colour, hatch) per bar. Names "<group> / <variant>" (e.g. "EcD / P,E") get a colour
  per variant and a hatch per group, so 24 cells stay tellable apart; others cycle the colours and
  change the hatch every ten."""
  import matplotlib
  parts = [n.split(" / ", 1) for n in names]
  if all(len(p) == 2 for p in parts):
    groups = list(dict.fromkeys(p[0] for p in parts))
    variants = list(dict.fromkeys(p[1] for p in parts))
    cmap = matplotlib.colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {n: (cmap(variants.index(v) % cmap.N), HATCHES[groups.index(g) % len(HATCHES)])
            for n, (g, v) in zip(names, parts)}
  cmap = matplotlib.colormaps["tab10"]
  return {n: (cmap(i % 10), HATCHES[(i // 10) % len(HATCHES)]) for i, n in enumerate(names)}


def plot_cells(cells: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: Sequence[str], path: str,
               title: str = "", paper: Mapping[str, Mapping[str, float | None]] | None = None) -> str:
  """Grouped bar chart: one group per metric, one bar per cell (mean, std as error bar); paper values
  (percent) as black ticks."""
  from wsl_jax.evaluation.report import _figure, _save_figure

  names = list(cells)
  styles = _bar_styles(names)
  width = 0.8 / max(1, len(names))
  fig = _figure(figsize=(min(16.0, max(6.0, 0.9 * len(metrics) * max(1, len(names)) * 0.35 + 3)), 4.2))
  ax = fig.subplots()
  x = np.arange(len(metrics))
  for i, name in enumerate(names):
    means = [cells[name].get(m, {}).get("mean") for m in metrics]
    stds = [cells[name].get(m, {}).get("std") for m in metrics]
    pos = x + (i - (len(names) - 1) / 2) * width
    color, hatch = styles[name]
    ax.bar(pos, [np.nan if v is None else v for v in means], width, color=color, hatch=hatch,
           edgecolor="white" if hatch else None, linewidth=0,
           yerr=[0.0 if s is None else s for s in stds], label=name, capsize=2)
    if paper and name in paper:
      pv = [paper[name].get(m) for m in metrics]
      ax.scatter([p for p, v in zip(pos, pv) if v is not None], [v / 100 for v in pv if v is not None],
                 marker="_", color="k", s=60, zorder=3)
  ax.axhline(0.0, color="k", lw=0.6)
  ax.set_xticks(x, list(metrics), fontsize=8)
  ax.set_ylabel("R² (fraction)")
  ax.set_ylim(bottom=max(-0.5, ax.get_ylim()[0]))
  ax.set_title(title + ("  (black ticks: paper)" if paper else ""), fontsize=9)
  ax.legend(fontsize=7, ncol=min(len(names), 8), loc="upper center", bbox_to_anchor=(0.5, -0.12),
            frameon=False)
  fig.tight_layout()
  return _save_figure(fig, path)


# ---- the command line ------------------------------------------------------------------------------

OUT = "ablations-{study}-{preset}"


def add_arguments(parser) -> None:
  parser.add_argument("--study", choices=STUDIES, required=True, help="which ablation to run")
  parser.add_argument("--cells", default=None,
                      help="the cells to run, separated by ';', e.g. 'EcD / none;EcD / P' (default: the "
                           "preset's); the same as --set cells='[...]'")


def config_from_args(args) -> Config:
  config = get_config(args.preset, args.study)
  if not args.cells:
    return config
  cells = [c.strip() for c in args.cells.split(";") if c.strip()]
  unknown = [c for c in cells if c not in all_cells(args.study)]
  if unknown:
    raise pipeline.ConfigError(f"unknown cells {unknown}; cells of {args.study}: {'; '.join(all_cells(args.study))}")
  return config.replace(cells=[c for c in all_cells(args.study) if c in cells])


def main(argv: Sequence[str] | None = None) -> int:
  return pipeline.main(NAME, argv)


if __name__ == "__main__":
  sys.exit(main())
