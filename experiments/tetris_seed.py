"""TETRIS-SEED end to end: zoo -> EcD hyper-representation -> linear probes -> the paper's Table 5 (left).

  python -m experiments.tetris_seed [--preset smoke|quick|paper] [--out DIR] [--seed S] [--set KEY=VALUE ...]

Stages (`experiments.pipeline`; this module holds the presets and the table):
  1. zoo: TETRIS-SEED (1000 MLPs 16-5-4 without biases, 75 epochs, every epoch a checkpoint), from the
     zoo cache (`--zoo-cache`, default ~/.cache/wsl_jax/zoos) or generated into it;
  2. split by model 70/15/15 (seed 42, as the original);
  3. EcD hyper-representation: AttN with compression token, permutation + erasing augmentation,
     gamma 0.5 NT-Xent + reconstruction;
  4. probes on frozen features of every checkpoint (the paper's protocol): ridge R² for epoch, test
     accuracy, ggap and the per-class F1 of W, kernel PCA (linear, cosine, rbf), UMAP (if installed),
     s(W) and EcD, with the paper's numbers beside ours; test reconstruction R².

Overrides: `--set KEY=VALUE ...` changes any setting of the preset (dotted keys of `get_config`'s
`pipeline.Config`, values parsed as JSON where they parse), e.g. `--set ssl.epochs=30 zoo.models=500
probes.checkpoint_stride=2`; an unknown key stops the run with one line naming the valid ones
(experiments/pipeline.py, README "Experiments"). The encoder trains on exactly the strided checkpoints
with the configured batch size, and the reconstruction R² is measured on the test models at those
checkpoints (`encoder.*`: the TETRIS experiments' rules; the CNN experiments add the last checkpoint,
cap the batch and drop non-finite rows).

Outputs in --out: config.json, results.json, results.md, results.csv, training_curves.png, the probe
plots (predicted vs true, embeddings coloured by accuracy, R² per method), the SSL run's checkpoints
and metrics.jsonl (a killed run resumes from them).

Presets (runtimes measured on the 2-core development machine; see docs/results.md):
  smoke  48 models x 6 epochs, a tiny encoder for 2 epochs, one seed: seconds; for the tests.
  quick  the full 1000-model zoo (generated once, then cached), three encoders (seeds S, S+1, S+2 for
         --seed S; `encoder.seeds`, EcD's numbers are mean ± std over them) of width d 64 (4 heads,
         FF 128, L 50, 2 blocks; batch 100, Adam lr 1e-3, plateau rule, 60 epochs), each trained on every
         5th checkpoint of the 700 training models (11 200 samples), probes on every checkpoint. The
         default. Measured: 49 min 12 s with a cold zoo cache, 2026-12-06, on the 2 cores shared with
         four other jobs (load average 11-13): zoo 26 s, encoders 2854 s (3 x 16 min), reconstruction
         scores 2 s, probes 43 s, report 21 s. On the idle machine, same day, cold zoo cache
         (`time python -m experiments.tetris_seed --out /tmp/idle_ts --zoo-cache /tmp/idle_zc`): 15 min
         4 s wall (zoo 5 s, encoders 878 s = 3 x 293 s, probes 14 s, report 4 s), with the same results
         to the last digit: at the 15 min target, not under it. (UMAP runs only when umap-learn is
         installed; it was not.)
  paper  the paper's configuration (d=256, 4 heads, FF 512, L=50, batch 500, 1000 epochs, every
         checkpoint), three seeds; meant for a GPU. Not run (no GPU was lent to the development
         sessions). At the rate measured for this configuration on the 2 CPU cores (311.6 samples/s,
         `benchmarks/ssl_throughput.py`), each seed's 53.2M training samples (700 models x 76
         checkpoints x 1000 epochs) would take about 47 h there.

Expected result (quick, `python -m experiments.tetris_seed`, the TETRIS-SEED zoo recipe of 2026-12-06;
R² % on the 150 test models, every checkpoint a sample; EcD mean ± sample std over encoder seeds 0, 1, 2,
the other columns do not depend on the encoder; the paper's EcD beside):

  target      W     PCAl  PCAc  PCAr  s(W)  EcD          EcD - s(W)  (paper EcD)
  epoch      78.0  75.1  74.2  94.0  98.6  97.2 ± 0.2    -1.4       (97.0)
  test_acc   75.1  73.9  83.7  89.5  88.9  91.4 ± 0.0    +2.5       (90.2)
  ggap       65.8  65.4  78.2  78.7  76.7  78.6 ± 1.3    +1.9       (81.9)
  f1_class_0 59.7  58.4  65.3  71.7  74.3  74.4 ± 0.5    +0.1       (70.7)
  f1_class_1 61.2  60.6  73.0  75.1  72.1  77.6 ± 1.0    +5.5       (75.9)
  f1_class_2 71.0  70.7  82.8  84.3  82.6  84.6 ± 1.0    +2.0       (69.4)
  f1_class_3 58.4  56.1  64.5  68.9  67.6  73.8 ± 0.9    +6.2       (86.6)
  EcD test reconstruction R² 83.0 ± 0.4 (paper 84.1); of the un-augmented test weights 82.8 ± 0.4,
  82.9 ± 0.5 up to the best hidden-unit permutation, against a PCA ceiling of 91.6 at k = 50.

EcD is above s(W) by more than its spread (`report.beats`: mean margin > sample std) on 5 of 7 targets
(test accuracy, ggap, F1 of classes 1, 2, 3; results.md says which), level on class 0's F1 and 1.4
below on epoch, where s(W) is at 98.6. EcD is above W and every PCA variant on every target but ggap
(PCAr 78.7, within EcD's spread). On the validation models the same encoders beat s(W) beyond the spread
on 4 of 7 (F1 of class 2 is level there: 83.7 ± 1.3 against 83.9), so the fifth target is a narrow one.
Against the paper: EcD within 1.2 points on epoch and accuracy, 3.3 below on ggap, 12.8 below on class
3's F1 and 15.2 above on class 2's. Our baselines are mostly higher than the paper's (W and PCAl on
every target by 4-71 points, s(W) on epoch, accuracy and F1 0-2; s(W) is lower on ggap and F1 3), so
EcD's lead over s(W) is smaller here than in the paper (+0.6 to +12.8 on every target).

How the quick encoder was chosen (issue 16: on the validation split; the previous table, chosen on test
R², is gone). Fixed: the zoo, its split (seed 42), the probes. Candidates were scored by the EcD probes'
validation R² and the validation reconstruction R² (which the issue requires >= 80 on test); test
numbers were looked at only for the chosen one (the table above). Val R² %, epoch / test_acc / ggap /
F1 0-3; the s(W) row for reference; measured 2026-12-06 with a search script calling
`pipeline.fit_encoder` and `pipeline.probe` exactly as the pipeline does (each row is `--set` away from
the quick preset, given after it), on the 2 shared cores (fit times under load average ~11):

  s(W)                                         98.6 / 89.5 / 77.1 / 74.7 72.3 83.9 66.0
  1 epoch (seed 0)                             89.4 / 88.4 / 80.3 / 70.1 76.2 83.8 68.0, recon 5.4
    ssl.epochs=1
  30 epochs (seed 0; fit 605 s)                96.5 / 88.8 / 77.7 / 73.7 73.5 81.9 69.6, recon 74.7
    ssl.epochs=30
  30 epochs, cosine, 2 warmup (seed 0; 572 s)  95.8 / 89.5 / 78.6 / 74.2 73.5 82.8 68.9, recon 47.0
    ssl.epochs=30 ssl.schedule=cosine ssl.warmup_epochs=2
  60 epochs (seeds 0, 1, 2; quick)             97.3±0.2 / 90.6±0.3 / 79.5±0.4 / 74.5±0.5 76.0±0.7
                                               83.7±1.3 70.9±0.6, recon 83.3±0.6

Why 60 epochs: it is the only candidate whose validation reconstruction reaches 80 (83.3 ± 0.6), and it
has the most validation targets above s(W) (4 beyond the spread: test_acc, ggap, F1 1 and 3). Half the
epochs, which would have bought a run of about 7 min, loses 9 points of reconstruction, puts test
accuracy below s(W) and widens the gaps on epoch and class 2's F1; the cosine decay (lr down to 1 % of
1e-3 over 30 epochs) stops the reconstruction at 47 % (the plateau rule never decayed in the three
60-epoch runs: lr 1e-3 at their last epoch; the reconstruction needs that rate). The 1-epoch row is why
ggap and class 1's F1 are not evidence that training helps: an encoder one epoch old already beats s(W)
on them; training buys epoch (+8), class 0 and the reconstruction. Not tried for lack of time on the
shared machine (each 60-epoch seed took 16 min there): latent size, width, batch size, augmentation
settings and the loss weighting; a second cosine run at lr 2e-3 was stopped unfinished. The batch of 100
and stride 5 came from the previous zoo's search (batch 500 gives 22 steps per epoch, too few in a CPU
budget; batch 100 learned the reconstruction five times faster per epoch at the same cost per sample).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from experiments import common, pipeline

NAME = "tetris_seed"
# Encoders per run (seeds S, S+1, S+2): EcD's numbers are mean ± std over them, and "beats" needs the spread.
SEEDS = 3
TARGETS = ("epoch", "test_acc", "ggap", "f1_class_0", "f1_class_1", "f1_class_2", "f1_class_3")


def get_config(preset: str = "quick") -> pipeline.Config:
  """The configuration of `preset` (smoke, quick, paper)."""
  if preset == "smoke":
    return pipeline.Config(
        experiment=NAME, preset=preset, zoo=pipeline.ZooConfig(preset="tetris_seed", models=48, epochs=6),
        ssl=pipeline.ssl_config("small", epochs=2, batch_size=50, eval_every=1, checkpoint_every=1,
                                model=pipeline.TINY_MODEL),
        probes=pipeline.ProbeConfig(targets=TARGETS, columns=pipeline.paper_columns(umap=False), pca_components=8,
                                    pca_fit_samples=200))
  if preset not in ("quick", "paper"):
    raise pipeline.unknown_preset(preset)
  # quick: the encoder chosen by the search in the module docstring (docs/results.md); paper: the original's.
  ssl = (pipeline.ssl_config("tetris", epochs=60, lr=1e-3, batch_size=100, eval_every=10, checkpoint_every=10,
                             model={"dim": 64, "heads": 4, "ff_dim": 128})
         if preset == "quick" else pipeline.ssl_config("tetris"))
  return pipeline.Config(
      experiment=NAME, preset=preset, zoo=pipeline.ZooConfig(preset="tetris_seed", models=1000, epochs=75), ssl=ssl,
      encoder=pipeline.EncoderConfig(checkpoint_stride=5 if preset == "quick" else 1, seeds=SEEDS),
      probes=pipeline.ProbeConfig(targets=TARGETS, columns=pipeline.paper_columns(umap=common.umap_available())))


def jobs(config: pipeline.Config, loaded: Any) -> list[pipeline.Job]:
  return [pipeline.Job(key=NAME, label="TETRIS-SEED", zoo=config.zoo, ssl=config.ssl)]


def tables(config: pipeline.Config, runs: dict[str, pipeline.ZooRun],
           ctx: pipeline.Context) -> tuple[dict[str, Any], str]:
  """Table 5 (left) with the paper's numbers, and the test reconstruction R² (mean ± std with several
  encoder seeds, then also where EcD beats s(W) beyond the spread)."""
  from wsl_jax.evaluation import report
  run = pipeline.only(runs)
  lines = [f"EcD test reconstruction R²: {pipeline.recon_text(run)} (paper: 84.1%)"]
  results = {**pipeline.header(config, ctx), "table": report.to_json_dict(run.table),
             "reconstruction_r2_test": run.recon["test"], "ssl_history": run.result.history, "files": run.files,
             "zoo": {"models": run.zoo.num_models, "checkpoints": run.zoo.num_checkpoints,
                     "diverged": int(run.zoo.diverged.sum())}}
  if len(run.seeds) > 1:
    results["ecd_beats_sw"] = above = report.wins(run.table, "EcD", "s(W)")
    lines.append(report.wins_line(above, "EcD", "s(W)"))
  return results, report.to_markdown(run.table) + "\n\n" + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
  return pipeline.main(NAME, argv)


if __name__ == "__main__":
  sys.exit(main())
