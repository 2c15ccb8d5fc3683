"""The paper's ablations on TETRIS-SEED: augmentations (Table 3), architectures, SSL losses.

  python -m experiments.ablations --study {augmentation,architecture,loss} [--preset smoke|quick|paper]
                                  [--out DIR] [--seed S]

Studies (every cell is one self-supervised run per seed on the same zoo and split; the reference
setting is the paper's: AttN+t, EcD, permutation + erasing):
  augmentation  Table 3: losses ED, EcD, Ec+D x augmentations none, P, E, N, P+E, P+N, E+N, P+E+N
                (P = permutation, E = random erasing p 0.5, N = Gaussian noise sigma 0.05; 24 cells).
                The test views are permuted exactly when the cell trains with permutation (never
                erased or noised); `rec_r2_plain` is the reconstruction R² of the un-augmented test
                weights, the same task for every cell.
  architecture  FF, AttW, AttW+t, AttN, AttN+t (`configs.with_architecture`; FF gets 3x the learning
                rate, as the original), EcD loss.
  loss          Ec, ED, EcD, Ec+D (the paper's eq. 3) and, as an extra row, Ec+D(code) (what the
                original code computes, reference.md B1) (`configs.with_loss`), AttN+t.

Per cell: test reconstruction R² (`train.evaluate(result, w_test)["r2"]`; for Ec the decoder is not
trained, its value is shown but meaningless, the paper prints "–") and downstream ridge R² (the paper's
protocol: every probed checkpoint a sample, alpha chosen on validation) of epoch, test accuracy, ggap
and the four per-class F1 scores on the frozen embeddings; mean ± std over the seeds S, S+1, ...
results.md prints the table in the paper's layout (Table 3: losses x augmentations; the others:
variants x Rec., Eph, Acc, GGap, F1C0..3) with the paper's value in brackets, then says whether the
paper's qualitative findings hold (augmentation: permutation raises the test reconstruction R²;
architecture: AttN+t is best downstream; loss: EcD is best downstream), with the numbers.

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

Obtained (quick, seeds 0-2; tables in docs/results.md): augmentation: permutation raises ED's test
reconstruction R² in all 4 with / without pairs (55.6 -> 65.2, ...) but lowers EcD's (12.2 -> 6.0) and
Ec+D's (23.8 -> 10.1), whose short-trained encoders hardly reconstruct at all; downstream EcD is best
with P+E (epoch 86.6, accuracy 81.8 vs 69.9 / 64.2 without augmentation). Architecture: AttW+t is best
downstream (mean R² 74.5; accuracy 90.7), then AttN+t 66.5, AttN 65.6, FF 64.7, AttW 43.3 (one of its
three seeds collapsed to a constant embedding); the paper has AttN / AttN+t best and FF worst. AttW+t
costs 7-12 min a run against under a minute for AttN+t. Loss: Ec 68.5 and EcD 67.9 (tied), Ec+D 66.9,
ED 48.6 (mean downstream R²); the paper has EcD best by a hair over Ec, ED and Ec+D far behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments import _tetris_shared as shared
from experiments import common

NAME = "ablations"
STUDIES = ("augmentation", "architecture", "loss")
DOWNSTREAM = ("epoch", "test_acc", "ggap", "f1_class_0", "f1_class_1", "f1_class_2", "f1_class_3")
METRICS = ("rec_r2", "rec_r2_plain") + DOWNSTREAM
METRIC_LABELS = {"rec_r2": "Rec.", "rec_r2_plain": "Rec. (plain)", "epoch": "Eph", "test_acc": "Acc",
                 "ggap": "GGap", "f1_class_0": "F1C0", "f1_class_1": "F1C1", "f1_class_2": "F1C2",
                 "f1_class_3": "F1C3"}
# Our metric -> the paper's column in the architecture / loss ablation tables.
PAPER_COLUMNS = {"rec_r2": "Rec.", "epoch": "Eph", "test_acc": "Acc", "f1_class_0": "F1C0",
                 "f1_class_1": "F1C1", "f1_class_2": "F1C2", "f1_class_3": "F1C3"}

AUG_LOSSES = ("ED", "EcD", "Ec+D")
AUGMENTATIONS = ("none", "P", "E", "N", "P,E", "P,N", "E,N", "P,E,N")
ARCHITECTURES = ("FF", "AttW", "AttW+t", "AttN", "AttN+t")
LOSSES = ("Ec", "ED", "EcD", "Ec+D", "Ec+D(code)")
NOISE_STD = 0.05  # the paper's noise augmentation
ERASE_P = 0.5     # the paper's erasing probability
REFERENCE = {"augmentation": "EcD / P,E", "architecture": "AttN+t", "loss": "EcD"}
SMOKE_CELLS = {"augmentation": ("EcD / E,N", "EcD / P,E,N"), "architecture": ("FF", "AttN+t"),
               "loss": ("Ec", "EcD")}

# The quick preset.
QUICK_MODELS = 250
QUICK_STRIDE = 5
QUICK_DIM = 32
QUICK_HEADS = 2
# Epochs per study, sized so that each quick study takes about 15 minutes (the augmentation study has 72
# runs, the others 15).
QUICK_EPOCHS = {"augmentation": 30, "architecture": 30, "loss": 40}
QUICK_LR = 1e-3


def all_cells(study: str) -> tuple[str, ...]:
  """Every cell of a study, in the paper's order (augmentation: "<loss> / <augmentations>")."""
  if study == "augmentation":
    return tuple(f"{loss} / {aug}" for loss in AUG_LOSSES for aug in AUGMENTATIONS)
  if study == "architecture":
    return ARCHITECTURES
  if study == "loss":
    return LOSSES
  raise ValueError(f"unknown study {study!r}; choose from {STUDIES}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One preset of one study.

  Attributes:
    preset: smoke, quick or paper.
    study: augmentation, architecture or loss.
    zoo_models, zoo_epochs: the TETRIS-SEED zoo in the cache.
    models: use its first this many models (0 = all).
    checkpoint_stride: use every k-th checkpoint, for the SSL training and the probes alike.
    ssl: the reference self-supervised configuration (AttN+t, EcD, P+E); cells are variants of it.
    seeds: SSL runs per cell (seeds S, S+1, ...).
    cells: the cells to run (a subset of `all_cells(study)`, in its order).
  """

  preset: str
  study: str
  zoo_models: int
  zoo_epochs: int
  models: int
  checkpoint_stride: int
  ssl: Any
  seeds: int
  cells: tuple[str, ...]


def get_config(preset: str = "quick", study: str = "loss") -> ExperimentConfig:
  """The configuration of `preset` (smoke, quick, paper) for `study`."""
  from wsl_jax import configs
  cells = all_cells(study)
  if preset == "smoke":
    return ExperimentConfig("smoke", study, 48, 6, 0, 1, shared.tiny_ssl(epochs=2), 1, SMOKE_CELLS[study])
  if preset == "quick":
    small = configs.preset("small")
    epochs = QUICK_EPOCHS[study]
    ssl = shared.narrow_ssl(configs.preset("tetris"), dim=QUICK_DIM, heads=QUICK_HEADS, epochs=epochs,
                            lr=QUICK_LR, batch_size=100, latent_dim=16, eval_every=epochs)
    ssl = dataclasses.replace(ssl, model=dataclasses.replace(ssl.model, head_layers=small.model.head_layers,
                                                             head_hidden=32, head_out=16))
    return ExperimentConfig("quick", study, 1000, 75, QUICK_MODELS, QUICK_STRIDE, ssl, 3, cells)
  if preset == "paper":
    return ExperimentConfig("paper", study, 1000, 75, 0, 1, configs.preset("tetris"), 3, cells)
  raise ValueError(f"unknown preset {preset!r}; choose from {common.PRESETS}")


def cell_config(study: str, cell: str, base):
  """The `TrainConfig` of one cell: `base` with the cell's augmentation, architecture or loss."""
  from wsl_jax import configs
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
  """The paper's numbers (percent) for a cell, keyed by our metric names."""
  from wsl_jax import paper_results
  if study == "augmentation":
    loss, _, aug = cell.partition(" / ")
    return {"rec_r2": paper_results.AUGMENTATION_ABLATION.value(loss, aug)}
  table = paper_results.ARCHITECTURE_ABLATION if study == "architecture" else paper_results.SSL_LOSS_ABLATION
  if cell not in table.rows:
    return {}
  return {m: table.value(cell, col) for m, col in PAPER_COLUMNS.items()}


# ---- one run ---------------------------------------------------------------------------------------

def run_cell(cfg, data: dict[str, Any], seed: int) -> dict[str, Any]:
  """Train one cell's encoder with `seed`; its test reconstruction R² and downstream probe R²."""
  from wsl_jax import baselines, evaluate, train
  t0 = time.perf_counter()
  result = train.fit(cfg, data["w_train"], data["w_val"], None, layout=data["layout"], seed=seed, progress=False)
  metrics = {"rec_r2": train.evaluate(result, data["w_test"], seed=seed)["r2"]}
  metrics["rec_r2_plain"] = reconstruction_r2(data["w_test"], train.reconstruct(result, data["w_test"]))
  ev = evaluate.evaluate_zoo(data["probe_zoo"],
                             {"z": baselines.FunctionExtractor(lambda w: train.embed(result, w), name="z")},
                             split=data["split"], protocol="paper", targets=DOWNSTREAM, keep_embeddings=False,
                             name="TETRIS-SEED")
  for r in ev.results:
    metrics[r.target] = r.r2
  return {"seed": seed, "metrics": metrics, "history": result.history, "skipped": dict(ev.skipped),
          "seconds": round(time.perf_counter() - t0, 2)}


def reconstruction_r2(w: np.ndarray, rec: np.ndarray) -> float:
  """R² = 1 - SSE / SST of reconstructions of un-augmented weights, SST the summed per-position variance
  (the definition of `train.evaluate`, `losses.r2_from_sums`)."""
  w = np.asarray(w, np.float64)
  sse = float(((np.asarray(rec, np.float64) - w) ** 2).sum())
  sst = float(((w - w.mean(axis=0)) ** 2).sum())
  return 1.0 - sse / sst


# ---- aggregation and findings ----------------------------------------------------------------------

def aggregate(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
  """cell -> metric -> {"mean", "std", "values"} over the cell's seeds."""
  return {cell: {m: shared.mean_std([r["metrics"].get(m) for r in rs]) for m in METRICS}
          for cell, rs in runs.items()}


def downstream_mean(stats: dict[str, dict[str, Any]]) -> float | None:
  """Mean over the downstream targets of a cell's mean R² (its overall downstream score)."""
  vals = [stats[m]["mean"] for m in DOWNSTREAM if stats.get(m, {}).get("mean") is not None]
  return float(np.mean(vals)) if vals else None


def findings(study: str, cells: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
  """Whether the paper's qualitative finding for `study` holds in `cells`, with the numbers."""
  if study == "augmentation":
    pairs = []
    for loss in AUG_LOSSES:
      for without, with_p in (("none", "P"), ("E", "P,E"), ("N", "P,N"), ("E,N", "P,E,N")):
        a, b = cells.get(f"{loss} / {without}"), cells.get(f"{loss} / {with_p}")
        if a and b and a["rec_r2"]["mean"] is not None and b["rec_r2"]["mean"] is not None:
          pairs.append({"loss": loss, "without": without, "with": with_p, "rec_without": a["rec_r2"]["mean"],
                        "rec_with": b["rec_r2"]["mean"], "raised": b["rec_r2"]["mean"] > a["rec_r2"]["mean"]})
    raised = sum(p["raised"] for p in pairs)
    holds = None if not pairs else (raised == len(pairs) or ("partly" if raised > len(pairs) / 2 else False))
    return {"claim": "permutation raises the test reconstruction R²", "pairs": pairs,
            "raised": raised, "compared": len(pairs), "holds": holds,
            "paper": "raised in 12 of 12 pairs"}
  scores = {c: downstream_mean(s) for c, s in cells.items()}
  ranked = sorted((c for c in scores if scores[c] is not None), key=lambda c: -scores[c])
  ref = REFERENCE[study]
  best_per_target = {}
  for m in DOWNSTREAM:
    have = [(c, s[m]["mean"]) for c, s in cells.items() if s.get(m, {}).get("mean") is not None]
    if have:
      best_per_target[m] = max(have, key=lambda x: x[1])[0]
  return {"claim": f"{ref} is best downstream", "downstream_mean": scores, "ranking": ranked,
          "best": ranked[0] if ranked else None, "holds": (ranked[0] == ref) if ranked and ref in scores else None,
          "best_per_target": best_per_target,
          "paper": ("AttN / AttN+t best (Eph 97, Acc 88-90), FF worst" if study == "architecture"
                    else "EcD best by a hair over Ec (mean of Eph, Acc, F1: 81.6 vs 81.2), ED and Ec+D far behind")}


# ---- tables ----------------------------------------------------------------------------------------

def to_markdown(config: ExperimentConfig, cells: dict[str, dict[str, dict[str, Any]]], found: dict[str, Any],
                n_seeds: int) -> str:
  """The study's table in the paper's layout (ours mean ± std, the paper's value in brackets) and the findings."""
  study = config.study
  lines = [f"**Ablation: {study}, TETRIS-SEED, preset {config.preset}** "
           f"(R² %, mean ± std over {n_seeds} seed(s); the paper's value in brackets)", ""]
  if study == "augmentation":
    lines += ["Test reconstruction R² (Table 3):", "",
              "| loss | " + " | ".join(AUGMENTATIONS) + " |", "|---|" + "---:|" * len(AUGMENTATIONS)]
    for loss in AUG_LOSSES:
      row = [shared.fmt_pct(cells.get(f"{loss} / {a}", {}).get("rec_r2"),
                            paper_values(study, f"{loss} / {a}")["rec_r2"]) for a in AUGMENTATIONS]
      lines.append(f"| {loss} | " + " | ".join(row) + " |")
    lines += ["", "Reconstruction R² of the un-augmented test weights (the same task in every cell):", "",
              "| loss | " + " | ".join(AUGMENTATIONS) + " |", "|---|" + "---:|" * len(AUGMENTATIONS)]
    for loss in AUG_LOSSES:
      row = [shared.fmt_pct(cells.get(f"{loss} / {a}", {}).get("rec_r2_plain")) for a in AUGMENTATIONS]
      lines.append(f"| {loss} | " + " | ".join(row) + " |")
    lines += ["", "Downstream ridge R² per cell:", ""]
  cols = [m for m in METRICS if study != "augmentation" or m not in ("rec_r2", "rec_r2_plain")]
  lines += ["| " + ("cell" if study == "augmentation" else study) + " | " + " | ".join(METRIC_LABELS[m] for m in cols)
            + " |", "|---|" + "---:|" * len(cols)]
  for cell in all_cells(study):
    if cell not in cells:
      continue
    pv = paper_values(study, cell) if study != "augmentation" else {}
    row = [shared.fmt_pct(cells[cell].get(m), pv.get(m)) for m in cols]
    lines.append(f"| {cell} | " + " | ".join(row) + " |")
  missing = [c for c in all_cells(study) if c not in cells]
  if missing:
    lines += ["", f"Not run in this preset: {', '.join(missing)}."]
  if study == "loss" and "Ec" in cells:
    lines += ["", "Ec trains no decoder (gamma 1): its reconstruction R² is meaningless (the paper prints –)."]
  lines += ["", "**Does the paper's finding hold?** " + describe_findings(study, found)]
  return "\n".join(lines) + "\n"


def describe_findings(study: str, found: dict[str, Any]) -> str:
  if study == "augmentation":
    if not found["compared"]:
      return "not testable: no cell pair with and without permutation was run."
    verdict = {True: "Yes", False: "No", "partly": "Partly"}[found["holds"]]
    pairs = "; ".join(f"{p['loss']} {p['without']} -> {p['with']}: {100 * p['rec_without']:.1f} -> "
                      f"{100 * p['rec_with']:.1f}" for p in found["pairs"])
    return (f"{verdict}: {found['claim']} in {found['raised']} of {found['compared']} pairs "
            f"(paper: {found['paper']}). {pairs}.")
  scores = found["downstream_mean"]
  if found["holds"] is None:
    return f"not testable: the reference cell was not run or gave no scores ({found['claim']})."
  verdict = "Yes" if found["holds"] else "No"
  ranking = ", ".join(f"{c} {100 * scores[c]:.1f}" for c in found["ranking"])
  per_target = ", ".join(f"{METRIC_LABELS[m]}: {c}" for m, c in found["best_per_target"].items())
  return (f"{verdict}: {found['claim']}? Mean downstream R² over {', '.join(METRIC_LABELS[m] for m in DOWNSTREAM)}: "
          f"{ranking}. Best per target: {per_target}. Paper: {found['paper']}.")


# ---- the experiment --------------------------------------------------------------------------------

def load_data(config: ExperimentConfig, seed: int, zoo_cache: str, progress: bool) -> dict[str, Any]:
  """The zoo (subset to `models` and every `checkpoint_stride`-th checkpoint), its split and the SSL samples."""
  zoo = common.cached_zoo("tetris_seed", config.zoo_models, config.zoo_epochs, seed, zoo_cache, progress)
  models = np.arange(config.models) if 0 < config.models < zoo.num_models else None
  ck = np.arange(0, zoo.num_checkpoints, config.checkpoint_stride)
  if models is not None or config.checkpoint_stride > 1:
    zoo = zoo.subset(models=models, checkpoints=ck)
  split = zoo.split(seed=42)
  return {"zoo": zoo, "probe_zoo": zoo, "split": split, "layout": zoo.layout,
          "w_train": zoo.samples(split.train)[0], "w_val": zoo.samples(split.val)[0],
          "w_test": zoo.samples(split.test)[0]}


def run(config: ExperimentConfig, out: str, seed: int = 0, zoo_cache: str | None = None,
        progress: bool = True) -> dict[str, Any]:
  """Run the study; write every output into `out`; return the results dict."""
  from wsl_jax.progress import progress_bar

  timings: dict[str, float] = {}
  cell_cfgs = {c: cell_config(config.study, c, config.ssl) for c in config.cells}
  out = common.start_run(out, {"experiment": NAME, "study": config.study, "seed": seed, "config": config,
                               "cell_configs": {c: cfg.to_dict() for c, cfg in cell_cfgs.items()}})
  os.makedirs(os.path.join(out, "runs"), exist_ok=True)

  with common.stage("zoo", timings):
    data = load_data(config, seed, common.zoo_cache_dir(zoo_cache), progress)
    zoo = data["zoo"]
    common.log(zoo.summary())
    common.log(f"SSL samples: train {len(data['w_train'])}, val {len(data['w_val'])}, test {len(data['w_test'])}")

  seeds = [seed + k for k in range(config.seeds)]
  runs: dict[str, list[dict[str, Any]]] = {c: [] for c in config.cells}
  with common.stage(f"{config.study} cells ({len(config.cells)} x {len(seeds)} seeds)", timings):
    bar = progress_bar(total=len(config.cells) * len(seeds), desc=config.study, unit="run", enabled=progress)
    for cell in config.cells:
      for s in seeds:
        bar.set_postfix_str(f"{cell} s{s}")
        path = os.path.join(out, "runs", f"{_safe(cell)}-s{s}.json")
        record = _load_run(path, cell_cfgs[cell], s)
        if record is None:
          record = run_cell(cell_cfgs[cell], data, s)
          record.update(cell=cell, config=cell_cfgs[cell].to_dict())
          common.write_json(path, record)
        runs[cell].append(record)
        bar.update(1)
        common.log(f"  {cell} seed {s}: " + ", ".join(f"{METRIC_LABELS[k]} {100 * v:.1f}"
                                                     for k, v in record["metrics"].items() if v is not None)
                   + f" ({record['seconds']:.0f} s)")
    bar.close()

  with common.stage("report", timings):
    cells = aggregate(runs)
    found = findings(config.study, cells)
    markdown = to_markdown(config, cells, found, len(seeds))
    common.write_text(os.path.join(out, "results.md"), markdown)
    paper = {c: paper_values(config.study, c) for c in config.cells}
    shared.plot_cells(cells, METRICS, os.path.join(out, "cells.png"),
                      title=f"TETRIS-SEED {config.study} ablation ({config.preset})", paper=paper)
    ref = REFERENCE[config.study] if REFERENCE[config.study] in runs else config.cells[0]
    common.plot_training_curves(runs[ref][0]["history"], os.path.join(out, "training_curves.png"),
                                f"TETRIS-SEED, {ref} (seed {seeds[0]})")

  results = {"experiment": NAME, "study": config.study, "preset": config.preset, "seed": seed, "seeds": seeds,
             "rows": list(config.cells), "columns": list(METRICS), "cells": cells, "paper": paper,
             "findings": found, "timings_s": timings,
             "runs": [{"cell": c, "seed": r["seed"], "metrics": r["metrics"], "seconds": r["seconds"],
                       "skipped": r.get("skipped", {})} for c, rs in runs.items() for r in rs],
             "zoo": {"models": zoo.num_models, "checkpoints": zoo.num_checkpoints,
                     "diverged": int(zoo.diverged.sum()),
                     "samples": {k: len(data[f"w_{k}"]) for k in ("train", "val", "test")}}}
  common.write_json(os.path.join(out, "results.json"), results)
  print(markdown)
  print(f"outputs in {os.path.abspath(out)}; stage times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
  return results


def _safe(cell: str) -> str:
  from wsl_jax.report import safe_name
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
  return record if same else None


def main(argv: Sequence[str] | None = None) -> int:
  def extra(parser):
    parser.add_argument("--study", choices=STUDIES, required=True, help="which ablation to run")
    parser.add_argument("--cells", default=None,
                        help="the cells to run, separated by ';', e.g. 'EcD / none;EcD / P' (default: the "
                             "preset's)")

  args = common.parse_args(NAME, __doc__, argv, extra=extra)
  if args.out == os.path.join("runs", f"{NAME}-{args.preset}"):
    args.out = os.path.join("runs", f"{NAME}-{args.study}-{args.preset}")
  common.setup_jax()
  config = get_config(args.preset, args.study)
  if args.cells:
    cells = tuple(c.strip() for c in args.cells.split(";") if c.strip())
    unknown = [c for c in cells if c not in all_cells(args.study)]
    if unknown:
      raise SystemExit(f"unknown cells {unknown}; cells of {args.study}: {'; '.join(all_cells(args.study))}")
    config = dataclasses.replace(config, cells=tuple(c for c in all_cells(args.study) if c in cells))
  return common.main_guard(
      lambda: run(config, args.out, seed=args.seed, zoo_cache=args.zoo_cache, progress=not args.quiet))


if __name__ == "__main__":
  sys.exit(main())
