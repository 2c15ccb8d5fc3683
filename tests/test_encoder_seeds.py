"""Several encoder seeds per zoo (`encoder.seeds`): mean ± std of every EcD number, per-seed values in
results.json, and one seed giving exactly the single-encoder run."""

import json
import os

import numpy as np
import pytest

from experiments import ablations, generating_factors, pipeline, tetris_hyp, tetris_seed


def test_two_encoder_seeds_report_mean_and_std(tmp_path):
  cache = str(tmp_path / "zoos")
  config = tetris_seed.get_config("smoke")
  one = pipeline.run(config, str(tmp_path / "one"), seed=0, zoo_cache=cache, progress=False)
  out = str(tmp_path / "two")
  two = pipeline.run(config.replace(**{"encoder.seeds": 2}), out, seed=0, zoo_cache=cache, progress=False)
  assert "encoder_seeds" not in one and "per_seed" not in one["table"]  # one seed: as before
  record = two["encoder_seeds"]["tetris_seed"]
  assert record["seeds"] == [0, 1] and record["ssl_epochs"] == [2, 2]
  rec = record["reconstruction_r2"]["test"]
  # The first seed's encoder is the single-seed run's (same zoo, split, seed); the second differs.
  assert rec["values"][0] == one["reconstruction_r2_test"] and rec["values"][1] != rec["values"][0]
  assert two["reconstruction_r2_test"] == pytest.approx(np.mean(rec["values"]), abs=1e-12)
  assert rec["std"] == pytest.approx(np.std(rec["values"], ddof=1))
  table = two["table"]
  for target in tetris_seed.TARGETS:
    seeds = table["per_seed"][target]["EcD"]
    assert seeds[0] == pytest.approx(one["table"]["values"][target]["EcD"], rel=1e-6)
    assert table["values"][target]["EcD"] == pytest.approx(np.mean(seeds))
    assert table["std"][target]["EcD"] == pytest.approx(np.std(seeds, ddof=1))
    for method in ("W", "s(W)", "PCAl"):  # not seeded: the single run's values, no std
      assert table["values"][target][method] == one["table"]["values"][target][method]
      assert method not in table["per_seed"][target]
  assert os.path.isdir(os.path.join(out, "ssl.seed1"))  # the second encoder's checkpoints
  with open(os.path.join(out, "results.json")) as f:
    assert json.load(f)["encoder_seeds"] == json.loads(json.dumps(two["encoder_seeds"]))
  with open(os.path.join(out, "results.md")) as f:
    text = f.read()
  assert " ± " in text and "over 2 seeds of the encoder" in text
  # The reconstruction beside its PCA ceiling and its permutation-invariant score, per seed.
  context = two["reconstruction_context"]["tetris_seed"]
  assert context["pca_ceiling"] == one["reconstruction_context"]["tetris_seed"]["pca_ceiling"]
  assert context["pca_ceiling"]["k"] == context["latent_dim"] == 8 and context["checkpoints"] == "encoder"
  plain, invariant = context["plain"]["values"], context["permutation_invariant"]["values"]
  assert len(plain) == len(invariant) == 2 and plain[0] == one["reconstruction_context"]["tetris_seed"]["plain"]["mean"]
  assert all(b >= a - 1e-12 for a, b in zip(plain, invariant))
  assert "up to the best hidden-unit permutation" in text and "PCA ceiling at k = latent size 8" in text


def test_reconstruction_context_scores_the_test_rows(tetris_zoo):
  """On a trained encoder: the plain score is `evaluate.reconstruction_r2` of the test rows at the encoder's
  checkpoints, the invariant one at least that, and the PCA ceiling the diagnostic's on the same rows."""
  from wsl_jax.evaluation import evaluate
  from wsl_jax.hyperrep import train
  from wsl_jax.zoo import diagnostics
  zoo = tetris_zoo.subset(models=np.arange(40), checkpoints=np.arange(0, 76, 15))
  split = zoo.split()
  ec = pipeline.EncoderConfig(checkpoint_stride=2)
  ssl = pipeline.tiny_tetris_ssl().replace(epochs=1)
  result, _ = pipeline.fit_encoder(zoo, split, ssl, ec, workdir=None, seed=0, progress=False)
  c = pipeline.reconstruction_context(zoo, split, [result], ec)
  test = zoo.samples(split.test, [0, 2, 4])[0]
  assert c["rows"] == test.shape[0]
  assert c["plain"]["values"] == [pytest.approx(evaluate.reconstruction_r2(test, train.reconstruct(result, test)))]
  assert c["permutation_invariant"]["mean"] >= c["plain"]["mean"]
  sub = zoo.subset(checkpoints=[0, 2, 4])
  expected = diagnostics.pca_heldout_explained(sub, split.train, split.test, ks=(8,))
  assert c["pca_ceiling"] == {"k": 8, "r2": pytest.approx(expected["8"])}
  text = pipeline.reconstruction_markdown({"zoo": c})
  assert "PCA ceiling at k = latent size 8" in text


def test_ablations_take_seeds_not_encoder_seeds():
  config = ablations.get_config("smoke", "loss")
  with pytest.raises(pipeline.ConfigError, match="set seeds, not encoder.seeds=2"):
    config.replace(**{"encoder.seeds": 2})


def test_seed_helpers():
  ec = pipeline.EncoderConfig(seeds=3)
  assert pipeline.encoder_seeds(5, ec) == [5, 6, 7]
  assert [pipeline.seed_workdir("ssl", i, s) for i, s in enumerate([5, 6])] == ["ssl", "ssl.seed6"]
  assert pipeline.seed_workdir(None, 1, 6) is None
  with pytest.raises(pipeline.ConfigError, match="encoder.seeds must be a positive integer"):
    pipeline.EncoderConfig(seeds=0)
  assert pipeline.encoder_seeds(5, ec, 1) == [5] and pipeline.encoder_seeds(5, ec, None) == [5, 6, 7]
  with pytest.raises(pipeline.ConfigError, match="encoder seeds must be a positive integer, got 0"):
    pipeline.encoder_seeds(5, ec, 0)
  run = pipeline.ZooRun(job=None, zoo=None, split=None, seeds=[0, 1],
                        recons=[{"test": 0.5}, {"test": 0.7}], recon={"test": 0.6})
  assert pipeline.recon_text(run) == "60.0 ± 14.1%" and run.recon_std["test"] == pytest.approx(0.1414, abs=1e-4)
  single = pipeline.ZooRun(job=None, zoo=None, split=None, seeds=[0], recons=[{"test": 0.5}], recon={"test": 0.5})
  assert pipeline.recon_text(single) == "50.0%" and single.recon_std == {"test": None}


def test_headline_tables_take_three_encoder_seeds():
  # Issue 16: TETRIS-SEED, TETRIS-HYP and the CNN SEED zoo report EcD as mean ± std over 3 encoders; the
  # generating-factors HYP zoos (reconstruction beside the PCA ceiling) one each, trained shorter.
  assert tetris_seed.get_config("quick").encoder.seeds == 3 and tetris_hyp.get_config("quick").encoder.seeds == 3
  config = generating_factors.get_config("quick")
  jobs = {j.key: j for j in generating_factors.jobs(config, None)}
  seed_job = jobs["digits8_seed"]
  assert config.encoder.seeds == 3 and seed_job.encoder_seeds is None and seed_job.ssl.epochs == config.ssl.epochs
  hyp = [j for k, j in jobs.items() if "_hyp_" in k]
  assert len(hyp) == 4 and all(j.encoder_seeds == 1 and j.ssl.epochs == config.hyp_ssl_epochs for j in hyp)
  assert all(j.ssl.replace(epochs=config.ssl.epochs) == config.ssl for j in hyp)  # otherwise the same encoder
  with pytest.raises(pipeline.ConfigError, match="hyp_encoder_seeds must be a positive integer"):
    config.replace(hyp_encoder_seeds=0)
  with pytest.raises(pipeline.ConfigError, match="hyp_ssl_epochs must be a positive integer"):
    config.replace(hyp_ssl_epochs=0)


def test_wins_against_the_best_baseline_only_beyond_the_spread():
  from wsl_jax.evaluation import report
  values = {"acc": {"W": 0.50, "s(W)": 0.70, "EcD": 0.75}, "gap": {"W": 0.20, "s(W)": 0.60, "EcD": 0.62},
            "lr": {"W": None, "s(W)": None, "EcD": 0.3}}
  per_seed = {"acc": {"EcD": (0.74, 0.75, 0.76)}, "gap": {"EcD": (0.58, 0.62, 0.66)}, "lr": {"EcD": (0.3, 0.3)}}
  table = report.ResultTable(title="t", rows=("acc", "gap", "lr"), methods=("W", "s(W)", "EcD"),
                             metrics={"acc": "r2", "gap": "r2", "lr": "r2"}, values=values, per_seed=per_seed)
  # acc: 0.75 ± 0.01 above s(W)'s 0.70; gap: 0.62 ± 0.04 is within its spread of 0.60; lr: no baseline.
  assert report.wins(table, "EcD") == {"acc": True, "gap": False}
  assert report.wins(table, "EcD", "W") == {"acc": True, "gap": True, "lr": False}  # W has no lr score
  assert report.wins_line(report.wins(table, "EcD"), "EcD", "the best baseline") == (
      "EcD above the best baseline by more than the spread (report.beats) on 1 of 2 targets: acc")
