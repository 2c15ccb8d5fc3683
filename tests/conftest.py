"""Test configuration: strict JAX settings, 4 virtual CPU devices, and a persistent compile cache."""

import os

# Several virtual CPU devices for the sharding tests; must be set before JAX initialises its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_debug_key_reuse", True)
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tetris_zoo():
  """A small TETRIS-SEED zoo (128 models x 76 checkpoints), generated once per test session."""
  from wsl_jax import zoo
  return zoo.generate("tetris_seed", num_models=128, progress=False)


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
  """A zoo cache folder for the experiments' smoke runs, shared by the tests of one session."""
  return str(tmp_path_factory.mktemp("zoos"))


@pytest.fixture
def no_setup_jax(monkeypatch):
  """Experiments keep the JAX set-up of the test session (4 virtual devices, its own compile cache)."""
  from experiments import common
  monkeypatch.setattr(common, "setup_jax", lambda: None)
