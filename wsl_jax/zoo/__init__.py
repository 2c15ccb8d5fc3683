"""Model zoos: generation (vmapped training), presets, storage.

  python -m wsl_jax.zoo generate --preset tetris_seed --out zoos/tetris_seed
  zoo = wsl_jax.zoo.load("zoos/tetris_seed")
  zoo = wsl_jax.zoo.load_any("downloads/mnist_cnn_zoo")   # any public format (docs/public_zoos.md)
"""

from wsl_jax.zoo.core import Split, Zoo, split_models
from wsl_jax.zoo.formats import FORMATS, detect_format, load_any, source_split
from wsl_jax.zoo.generate import generate
from wsl_jax.zoo.hsg import export_hsg
from wsl_jax.zoo.io import ZooFormatError, load, save
from wsl_jax.zoo.presets import PRESETS, ZooPreset, build_hparams
from wsl_jax.zoo import cnn_presets  # noqa: E402,F401  (registers the CNN presets into PRESETS)
from wsl_jax.zoo.torchfile import TorchFileError

__all__ = ["FORMATS", "PRESETS", "Split", "TorchFileError", "Zoo", "ZooFormatError", "ZooPreset", "build_hparams",
           "detect_format", "export_hsg", "generate", "load", "load_any", "save", "source_split", "split_models"]
