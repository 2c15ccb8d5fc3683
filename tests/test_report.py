"""Result tables (markdown, CSV, JSON round trips, atomic writes), plots, and the paper's numbers."""

import dataclasses
import json
import os

import numpy as np
import pytest

from wsl_jax.evaluation import evaluate, paper_results, report
from wsl_jax.zoo.io import atomic_write

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(target, method, score, metric="r2", task="regression", dropped=0, seed=0):
  rng = np.random.default_rng(seed)
  if task == "regression":
    y = rng.normal(size=30)
    pred = y + 0.3 * rng.normal(size=30)
    extra = {"r2": score, "kendall_tau": 0.7, "accuracy": None, "alpha": 1.0}
  else:
    y = rng.choice(np.array(["relu", "tanh"]), size=30)
    pred = np.where(rng.uniform(size=30) < score, y, "relu")
    extra = {"r2": None, "kendall_tau": None, "accuracy": score, "alpha": None}
  return evaluate.ProbeResult(target=target, method=method, task=task, protocol="paper", metric=metric,
                              score=score, train_score=score, val_score=score,
                              counts={"train": 70, "val": 15, "test": 15},
                              dropped={"train": 0, "val": dropped, "test": 0}, y_true=y, y_pred=pred, **extra)


def _evaluation(zoo="tetris_seed"):
  results = []
  for i, (t, scores) in enumerate({"epoch": (0.5, 0.97), "test_acc": (0.41, 0.88), "train_loss": (0.3, 0.8)}.items()):
    for m, s in zip(("W", "s(W)"), scores):
      results.append(_result(t, m, s, dropped=2 if t == "epoch" else 0, seed=i))
  results += [_result("activation", m, s, "accuracy", "classification") for m, s in (("W", 0.75), ("s(W)", 0.6))]
  rng = np.random.default_rng(0)
  return evaluate.Evaluation(
      zoo=zoo, protocol="paper", results=tuple(results), methods=("W", "s(W)"), targets=(),
      skipped={"lr": "constant on the training split"}, excluded_diverged={"zoo": 3},
      dropped_nonfinite={"train": 0, "val": 1, "test": 0}, models={"train": 70, "val": 15, "test": 15},
      embeddings={"W": rng.normal(size=(30, 5))}, colors={"test_acc": rng.uniform(size=30)})


def test_table_with_paper_columns_and_markdown():
  table = report.results_table(_evaluation())
  assert table.paper_source == "table5_tetris_seed"
  assert table.rows == ("epoch", "test_acc", "train_loss", "activation")
  assert table.paper_value("test_acc", "s(W)") == pytest.approx(0.869)
  assert table.paper_value("epoch", "EcD") == pytest.approx(0.970)
  assert "train_loss" not in table.paper  # not in the paper's table
  headers = [h for h, _, _ in table.columns()]
  assert headers[:4] == ["W", "W (paper)", "s(W)", "s(W) (paper)"]
  assert {"PCAl (paper)", "EcD (paper)"} <= set(headers)
  md = report.to_markdown(table)
  assert "| test_acc | R² % | 41.0 | 49.1 | **88.0** | 86.9 |" in md
  assert "| activation | accuracy % | **75.0** | – | 60.0 | – |" in md
  assert "3 diverged model(s) excluded" in md and "epoch: samples with a missing (NaN) target dropped: val 2." in md
  assert "lr: not probed (constant on the training split)." in md
  assert "1 val sample(s) with non-finite weights dropped." in md
  plain = report.results_table(_evaluation(), paper=None)
  assert plain.paper == {} and "(paper)" not in report.to_markdown(plain)
  assert report.results_table(_evaluation("my_zoo")).paper_source is None


def test_write_and_read_back(tmp_path):
  ev = _evaluation()
  table = report.results_table(ev)
  paths = report.write_table(table, tmp_path / "sub" / "results", ev)
  assert sorted(os.listdir(tmp_path / "sub")) == ["results.csv", "results.json", "results.md"]  # no temp files
  assert report.read_json(paths["json"]) == table
  back = report.read_csv(paths["csv"], title=table.title)
  assert back.rows == table.rows and back.methods == table.methods and back.metrics == table.metrics
  assert back.values == table.values
  assert back.paper == {r: v for r, v in table.paper.items()}
  details = report.read_json_details(paths["json"])
  assert details["results"][0]["alpha"] == 1.0 and "y_true" not in details["results"][0]
  assert details["excluded_diverged"] == {"zoo": 3}
  with open(paths["json"]) as f:
    json.load(f)  # strict JSON (no NaN)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
  path = tmp_path / "t.md"
  report.write_text(path, "old\n")

  def failing(f):
    f.write("half a ta")
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError):
    atomic_write(path, failing)
  assert path.read_text() == "old\n"
  assert os.listdir(tmp_path) == ["t.md"]


def test_readers_reject_foreign_files(tmp_path):
  (tmp_path / "a.csv").write_text("x,y\n1,2\n")
  with pytest.raises(ValueError, match="not a result table"):
    report.read_csv(tmp_path / "a.csv")
  (tmp_path / "a.json").write_text(json.dumps({"format_version": 99}))
  with pytest.raises(ValueError, match="format_version"):
    report.read_json(tmp_path / "a.json")
  with pytest.raises(ValueError, match="metric"):
    report.ResultTable("t", ("a",), ("W",), {"a": "mse"}, {"a": {"W": 1.0}})


def test_plots_are_pngs(tmp_path):
  ev = _evaluation()
  paths = report.write_report(ev, tmp_path)
  for key in ("scores", "predictions_W", "predictions_s(W)", "embedding_W"):
    with open(paths[key], "rb") as f:
      assert f.read(8) == PNG_MAGIC, key
  assert os.path.basename(paths["predictions_s(W)"]) == "predictions_s_W.png"
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
  labels = np.array(["relu", "tanh"] * 15)
  path = report.plot_embedding(np.random.default_rng(1).normal(size=(30, 1)), labels, tmp_path / "cat.png")
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC
  with pytest.raises(ValueError, match="color"):
    report.plot_embedding(np.zeros((30, 3)), np.zeros(5), tmp_path / "x.png")


def test_report_zoo_in_one_call(tmp_path):
  from test_evaluate import make_zoo  # noqa: PLC0415  (the synthetic zoo of the harness tests)

  zoo = make_zoo(models=30, checkpoints=3)
  ev, table = report.report_zoo(zoo, tmp_path, targets=["test_acc", "epoch"], plots=False)
  assert table.rows == ("test_acc", "epoch") and table.methods == ("W", "PCAl", "PCAc", "PCAr", "s(W)")
  assert table.paper_source == "table5_tetris_seed"
  assert report.read_json(tmp_path / "results.json") == table
  assert ev.result("test_acc", "s(W)").score == table.value("test_acc", "s(W)")


def test_paper_tables_are_consistent():
  for key, t in paper_results.TABLES.items():
    assert t.key == key and len(t.values) == len(t.rows)
    assert all(len(v) == len(t.columns) for v in t.values)
  t5 = paper_results.TABLES["table5_tetris_seed"]
  assert t5.value("Acc", "s(W)") == 86.9 and t5.lookup("f1_class_3", "EcD") == pytest.approx(0.866)
  assert t5.lookup("lr", "W") is None and t5.lookup("test_acc", "GNN") is None
  hyp = paper_results.for_zoo("tetris-hyp")
  assert hyp.metric_of("Act") == "accuracy" and hyp.lookup("activation", "EcD") == pytest.approx(0.869)
  assert hyp.is_uncertain("Acc", "EcD") and not hyp.is_uncertain("Act", "EcD")
  t6 = paper_results.get("table6_cifar10_hyp")
  assert t6.lookup("init", "W") == pytest.approx(0.935) and t6.lookup("l2reg", "EcD") == pytest.approx(0.28)
  assert paper_results.ood_value("SVHN-HYP", "FASHION-HYP", "s(W)") == 0.27
  assert paper_results.TABLE7_OOD_GGAP.fraction("MNIST-HYP", "CIFAR10-HYP:s(W)") == 0.41
  factors = paper_results.TABLES["table4_generating_factors"]
  assert factors.fraction("MNIST-SEED", "VAR") == 0.234 and factors.fraction("MNIST-SEED", "R_tes") == 0.59
  assert paper_results.for_zoo("unknown") is None
  with pytest.raises(KeyError):
    paper_results.get("table99")


# ---- several seeds: mean ± std, beats ----------------------------------------------------------------

def _seed_evaluation(ecd_scores, zoo="tetris_seed", with_baselines=True):
  """One seed's evaluation: W and s(W) (only with `with_baselines`) and EcD with the given scores."""
  results = []
  for i, t in enumerate(("epoch", "test_acc")):
    if with_baselines:
      results += [_result(t, "W", 0.5, seed=i), _result(t, "s(W)", 0.8, seed=i)]
    results.append(_result(t, "EcD", ecd_scores[i], seed=i))
  return evaluate.Evaluation(
      zoo=zoo, protocol="paper", results=tuple(results), methods=(("W", "s(W)") if with_baselines else ()) + ("EcD",),
      targets=(), skipped={}, excluded_diverged={}, dropped_nonfinite={}, models={"train": 70, "val": 15, "test": 15},
      embeddings={}, colors={})


def test_table_over_seeds_reports_mean_and_std(tmp_path):
  evs = [_seed_evaluation((0.90, 0.80)), _seed_evaluation((0.92, 0.86), with_baselines=False),
         _seed_evaluation((0.94, 0.83), with_baselines=False)]
  table = report.results_table_over(evs, seeded=("EcD",))
  assert table.value("epoch", "EcD") == pytest.approx(0.92)
  assert table.std("epoch", "EcD") == pytest.approx(0.02)  # sample std (ddof 1)
  assert table.value("epoch", "W") == 0.5 and table.std("epoch", "W") is None
  assert table.scores("test_acc", "EcD") == (0.80, 0.86, 0.83) and table.scores("test_acc", "s(W)") == 0.8
  assert table.multi_seed
  md = report.to_markdown(table)
  assert "| epoch | R² % | 50.0 | 55.4 | 80.0 | 96.4 | **92.0 ± 2.0** | 97.0 |" in md
  assert "EcD: mean ± std (sample std) over 3 seeds of the encoder" in md
  paths = report.write_table(table, tmp_path / "results", evs[0])
  assert report.read_json(paths["json"]) == table  # per-seed values round-trip
  with open(paths["json"]) as f:
    on_disk = json.load(f)
  assert on_disk["per_seed"]["epoch"]["EcD"] == [0.90, 0.92, 0.94]
  assert on_disk["std"]["epoch"]["EcD"] == pytest.approx(0.02)
  assert "EcD (std)" in open(paths["csv"]).read().splitlines()[0]
  back = report.read_csv(paths["csv"])
  assert back.methods == table.methods and back.values == table.values
  # One seed: the same table as results_table, and nothing about seeds in the files.
  one = report.results_table_over(evs[:1], seeded=("EcD",))
  plain = report.results_table(evs[0])
  assert report.to_json_dict(one) == report.to_json_dict(plain) and report.to_markdown(one) == report.to_markdown(plain)
  assert report.to_csv(one) == report.to_csv(plain) and not one.multi_seed
  with pytest.raises(ValueError, match="evaluation 1 has no EcD score"):
    report.results_table_over([evs[0], dataclasses.replace(evs[1], results=evs[1].results[:1])],
                              seeded=("EcD",))
  with pytest.raises(ValueError, match="at least one evaluation"):
    report.results_table_over([])


def test_beats_needs_the_difference_beyond_the_spread():
  assert report.beats([0.80, 0.82, 0.84], 0.79)            # 0.03 above, std 0.02
  assert not report.beats([0.80, 0.82, 0.84], 0.805)       # 0.015 above, std 0.02
  assert not report.beats(0.79, [0.80, 0.82, 0.84])
  assert report.beats(0.9, 0.8) and not report.beats(0.8, 0.8)  # deterministic scores: no spread
  assert not report.beats([0.99], 0.1) and not report.beats(0.1, [0.0])  # one seed: no spread measured
  assert not report.beats(None, 0.1) and not report.beats(float("nan"), 0.1)
  # The larger of the two spreads counts.
  assert report.beats([0.90, 0.91, 0.92], [0.84, 0.85, 0.86])      # 0.06 above, stds 0.01 and 0.01
  assert not report.beats([0.90, 0.91, 0.92], [0.78, 0.85, 0.92])  # 0.06 above, stds 0.01 and 0.07
  st = report.mean_std([0.1, None, 0.3])
  assert st["mean"] == pytest.approx(0.2) and st["std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
  assert st["values"] == [0.1, None, 0.3]
  assert report.mean_std([0.5])["std"] is None and report.mean_std([None])["mean"] is None
