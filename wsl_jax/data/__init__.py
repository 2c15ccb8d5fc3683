"""Data sets zoos are trained on, one registry: `load(name)`, `available()`, `register(name, loader)`.

`datasets` holds the registry and the generated / embedded sets (tetris, digits); `image_data`
registers the file-backed image sets (MNIST, Fashion-MNIST, CIFAR-10, SVHN) on first use.
"""

from wsl_jax.data.datasets import Dataset, available, load, register

__all__ = ["Dataset", "available", "load", "register"]
