"""Model zoos: generation (vmapped training), presets, storage.

  python -m wsl_jax.zoo generate --preset tetris_seed --out zoos/tetris_seed
  zoo = wsl_jax.zoo.load("zoos/tetris_seed")
"""

from wsl_jax.zoo.core import Split, Zoo, split_models

__all__ = ["Split", "Zoo", "split_models"]
