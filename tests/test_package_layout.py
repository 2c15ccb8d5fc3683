"""The stage packages (issue 18): the flat layout's module names import as the very same module objects
(so a patch through either name hits the same code), and every top-level module is a stage or the
process-level infrastructure."""

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import wsl_jax

STAGES = {"weights", "data", "zoo", "hyperrep", "evaluation"}
INFRASTRUCTURE = {"outputs", "progress", "runtime"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wsl_jax.__file__)))


@pytest.mark.parametrize("old", sorted(wsl_jax.MOVED))
def test_an_old_name_is_its_new_module(old):
  new = importlib.import_module(wsl_jax.MOVED[old])
  assert new.__name__ == new.__spec__.name == wsl_jax.MOVED[old] and new.__name__.split(".")[1] in STAGES
  assert importlib.import_module(f"wsl_jax.{old}") is new
  assert getattr(wsl_jax, old) is new
  namespace = {}
  exec(f"from wsl_jax import {old} as m", namespace)
  assert namespace["m"] is new
  assert new.__spec__.name == wsl_jax.MOVED[old]  # importing through the alias keeps the module's own spec


def test_a_patch_through_an_old_name_hits_the_new_module(monkeypatch):
  from wsl_jax.hyperrep import train
  sentinel = object()
  monkeypatch.setattr("wsl_jax.train.fit", sentinel)
  assert train.fit is sentinel


def test_old_names_first_in_a_fresh_interpreter():
  """The order of a user's script: old names before anything imported the new modules."""
  code = ("import wsl_jax.augment as a; from wsl_jax.layout import Layout; from wsl_jax import datasets; "
          "import wsl_jax.hyperrep.augment as b; from wsl_jax.weights.layout import Layout as L; "
          "from wsl_jax.data import datasets as d; assert a is b and Layout is L and datasets is d; "
          "assert datasets.load('tetris').name == 'tetris'; print('ok')")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_the_top_level_holds_the_stages_and_the_infrastructure():
  assert {m.name for m in pkgutil.iter_modules(wsl_jax.__path__)} == STAGES | INFRASTRUCTURE


def test_the_data_registry_is_the_package():
  from wsl_jax import data
  from wsl_jax.data import datasets
  assert data.register is datasets.register and data.load is datasets.load
  assert "tetris" in data.available()


def test_an_unknown_name_is_an_attribute_error():
  with pytest.raises(AttributeError, match="has no attribute 'no_such_module'"):
    wsl_jax.no_such_module  # noqa: B018
  with pytest.raises(ModuleNotFoundError):
    importlib.import_module("wsl_jax.no_such_module")
