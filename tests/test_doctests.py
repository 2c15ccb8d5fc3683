"""Every docstring example of the library runs (doctest), so that the examples in the docs stay true."""

import doctest
import importlib
import pkgutil

import pytest

import wsl_jax

MODULES = sorted(m.name for m in pkgutil.walk_packages(wsl_jax.__path__, "wsl_jax.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # examples that write files write them here
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
