"""`python -m wsl_jax.zoo import / export / probe` on the public-zoo fixtures, and the nfn protocol of
`evaluate` (tests/test_public_zoos.py checks the readers themselves)."""

import os

import numpy as np
import pytest

from wsl_jax import zoo as zoo_lib
from wsl_jax.evaluation import evaluate
from wsl_jax.zoo import __main__ as zoo_cli
from wsl_jax.zoo import formats

DATA = os.path.join(os.path.dirname(__file__), "data", "public_zoos")
DUMP = os.path.join(DATA, "hsg_dump", "dataset_tiny_tetris_hyp.pt")
RAY = os.path.join(DATA, "hsg_ray", "mnist_cnn_zoo")


def _one_error_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


def test_import_converts_to_a_native_zoo_with_the_source_split(tmp_path, capsys):
  out = str(tmp_path / "native")
  assert zoo_cli.main(["import", DUMP, "--out", out]) == 0
  assert "hsg_dump -> native" in capsys.readouterr().out
  native, source = zoo_lib.load(out), formats.load_any(DUMP)
  np.testing.assert_array_equal(native.weights, source.weights)
  for k in source.properties:
    np.testing.assert_array_equal(native.properties[k], source.properties[k])
  assert native.meta["split"] == source.meta["split"]
  assert formats.source_split(native).train.tolist() == [0, 1, 2, 3]
  # An existing output is not replaced without --overwrite; a zoo of ours is replaced with it.
  assert zoo_cli.main(["import", DUMP, "--out", out]) == 2
  assert "exists" in _one_error_line(capsys)
  assert zoo_cli.main(["import", DUMP, "--out", out, "--overwrite"]) == 0


def test_export_hsg_reads_back_identically(tmp_path, capsys):
  native = str(tmp_path / "native")
  assert zoo_cli.main(["import", RAY, "--format", "hsg", "--out", native]) == 0
  exported = str(tmp_path / "hsg")
  assert zoo_cli.main(["export", native, "--format", "hsg", "--out", exported]) == 0
  again = formats.load_any(exported)
  np.testing.assert_array_equal(again.weights, zoo_lib.load(native).weights)
  # The export is not a native zoo: `export` of it is a clear error, not a traceback.
  assert zoo_cli.main(["export", exported, "--format", "unterthiner", "--out", str(tmp_path / "u")]) == 2
  assert "zoo.json" in _one_error_line(capsys)


def test_probe_runs_the_baselines_on_any_format(capsys):
  assert zoo_cli.main(["probe", DUMP, "--protocol", "nfn"]) == 0
  out = capsys.readouterr().out
  assert "split: the source's own" in out and "nfn protocol" in out and "| PCAr |" in out
  assert "train 4, val 2, test 2" in out
  # A zoo without its own split cannot use the nfn protocol.
  assert zoo_cli.main(["probe", RAY, "--protocol", "nfn"]) == 2
  assert "needs the zoo's own split" in _one_error_line(capsys)
  assert zoo_cli.main(["probe", os.path.join(DATA, "nfn")]) == 2
  assert "not a zoo in a known format" in _one_error_line(capsys)


def test_nfn_protocol_is_the_final_checkpoint_on_the_source_split():
  z = formats.load_any(DUMP)
  nfn = evaluate.evaluate_zoo(z, protocol="nfn", targets=["test_acc"])
  final = evaluate.evaluate_zoo(z, protocol="final", split=formats.source_split(z), targets=["test_acc"])
  assert nfn.protocol == "nfn" and final.protocol == "final"
  assert [r.kendall_tau for r in nfn.results] == [r.kendall_tau for r in final.results]
  assert all(r.metric == "kendall_tau" for r in nfn.results)
  with pytest.raises(ValueError, match="differs"):
    evaluate.evaluate_zoo(z, protocol="nfn", split=z.split(seed=1), targets=["test_acc"])
  ray = formats.load_any(RAY)
  with pytest.raises(ValueError, match="needs the zoo's own split"):
    evaluate.evaluate_zoo(ray, protocol="nfn")
