"""Model zoos: generation (vmapped training), presets, storage.

  python -m wsl_jax.zoo generate --preset tetris_seed --out zoos/tetris_seed
  zoo = wsl_jax.zoo.load("zoos/tetris_seed")
"""

from wsl_jax.zoo.core import Split, Zoo, split_models
from wsl_jax.zoo.generate import generate
from wsl_jax.zoo.io import ZooFormatError, load, save
from wsl_jax.zoo.presets import PRESETS, ZooPreset, build_hparams

__all__ = ["PRESETS", "Split", "Zoo", "ZooFormatError", "ZooPreset", "build_hparams", "generate", "load",
           "save", "split_models"]
