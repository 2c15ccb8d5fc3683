"""Hyper-representations (self-supervised learning on weights): `augment` (function-preserving
permutations, erasing, noise; usable on its own), `tokenize`, `models` (encoder-decoder),
`losses`, `configs` (`TrainConfig` and its presets) and `train` (the trainer, `fit`, `embed`).

Named `hyperrep`, not `ssl`: `wsl_jax.ssl` would read as the standard library's `ssl` wherever
it is imported by its leaf name (`from wsl_jax import ssl`), and shadow it outright if
`wsl_jax/` ever lands on sys.path (running a file of the package as a script).
"""
