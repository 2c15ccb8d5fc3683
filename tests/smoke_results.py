"""The experiments' smoke-preset results.json values recorded before the single pipeline (issue 18), and
the comparison the smoke tests make against them.

tests/data/experiment_smoke_results/<name>.jax-<major.minor>.json holds a run's results.json without what
changes from run to run (stage and epoch times, throughput, file paths: `VOLATILE`), recorded at commit
4a14649 (the last before `experiments/pipeline.py`) by that commit's smoke tests, on the test suite's 4
virtual CPU devices: with Python 3.11 / jax 0.10.2 and with Python 3.12 / jax 0.12.1 (the two supported
set-ups; "recorded_with" in each file).

Tolerance: two runs of that commit, in separate processes with separate zoo caches, gave bit-identical
values (every float of every run, on each of the two set-ups), so ints, strings and booleans must be
equal and floats agree to `RTOL` = 1e-6 relative (`ATOL` = 1e-9 absolute, for values near zero): a margin
for a harmless change of summation order, nothing more. Between the two JAX versions the floats differ
by up to 2 % relative (the smoke runs train zoos and encoders for a few epochs, which amplifies rounding
differences; ints and strings agree), hence a file per version. Under a JAX version without a file the
comparison skips the test (called last, after the test's other checks); a different CPU could also change
the rounding (only this project's CPU machine was measured).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pytest

FOLDER = os.path.join(os.path.dirname(__file__), "data", "experiment_smoke_results")
VOLATILE = frozenset({"timings_s", "files", "seconds", "epoch_time_s", "samples_per_s", "generation_seconds"})
RTOL = 1e-6
ATOL = 1e-9


def numeric_content(obj: Any) -> Any:
  """`obj` (a JSON value) without the keys of `VOLATILE`, at any depth."""
  if isinstance(obj, dict):
    return {k: numeric_content(v) for k, v in obj.items() if k not in VOLATILE}
  if isinstance(obj, list):
    return [numeric_content(v) for v in obj]
  return obj


def differences(actual: Any, expected: Any, path: str = "") -> list[str]:
  """Where two JSON values differ: floats beyond RTOL / ATOL, anything else not equal."""
  if isinstance(expected, dict) and isinstance(actual, dict):
    out = [f"{path}.{k}: missing" for k in expected if k not in actual]
    out += [f"{path}.{k}: not in the stored values" for k in actual if k not in expected]
    for k in expected:
      if k in actual:
        out += differences(actual[k], expected[k], f"{path}.{k}")
    return out
  if isinstance(expected, list) and isinstance(actual, list):
    if len(actual) != len(expected):
      return [f"{path}: {len(actual)} items, stored {len(expected)}"]
    return [d for i, (a, e) in enumerate(zip(actual, expected)) for d in differences(a, e, f"{path}[{i}]")]
  if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
    if math.isclose(actual, expected, rel_tol=RTOL, abs_tol=ATOL):
      return []
    return [f"{path}: {actual!r}, stored {expected!r}"]
  if type(actual) is type(expected) and actual == expected:
    return []
  return [f"{path}: {actual!r}, stored {expected!r}"]


def stored(name: str) -> dict[str, Any] | None:
  """The stored record of run `name` for the running JAX minor version, or None if none was recorded."""
  import jax
  path = os.path.join(FOLDER, f"{name}.jax-{'.'.join(jax.__version__.split('.')[:2])}.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


RECORD_ENV = "WSL_JAX_RECORD_SMOKE"


def _path(name: str) -> str:
  import jax
  return os.path.join(FOLDER, f"{name}.jax-{'.'.join(jax.__version__.split('.')[:2])}.json")


def record_values(name: str, results: Any, reason: str) -> None:
  """Store `results` as run `name`'s values for the running JAX version (after a deliberate change of
  behaviour; `reason` says which, and is kept in the file beside the previous reasons)."""
  import platform

  import jax
  from experiments import common
  from wsl_jax.outputs import atomic_write_text
  previous = stored(name) or {}
  rerecorded = list(previous.get("rerecorded", [])) + [
      {"reason": reason, "python": platform.python_version(), "jax": jax.__version__}]
  atomic_write_text(_path(name), json.dumps({
      "recorded_with": previous.get("recorded_with"), "rerecorded": rerecorded,
      "results": numeric_content(json.loads(json.dumps(common.to_jsonable(results))))}, indent=1))


def check(name: str, results: Any) -> None:
  """Assert that `results` (a results.json, read back or as returned) holds run `name`'s stored values.
  Call it last in a test: without stored values for this JAX version it skips the test.

  After a deliberate change of behaviour, `WSL_JAX_RECORD_SMOKE="<why>" pytest ...` stores the new values
  instead (only those that differ), and the reason with them; `git diff` then shows what moved."""
  reason = os.environ.get(RECORD_ENV)
  if reason:
    record = stored(name)
    from experiments import common
    actual = numeric_content(json.loads(json.dumps(common.to_jsonable(results))))
    if record is None or differences(actual, record["results"]):
      record_values(name, results, reason)
    return
  record = stored(name)
  if record is None:
    import jax
    pytest.skip(f"no stored smoke values of {name} for jax {jax.__version__} (see tests/smoke_results.py)")
  from experiments import common
  actual = numeric_content(json.loads(json.dumps(common.to_jsonable(results))))
  diff = differences(actual, record["results"])
  assert not diff, f"{name}: {len(diff)} values differ from the stored ones:\n" + "\n".join(diff[:20])
