"""wsl_jax: self-supervised hyper-representations of neural-network weights, in JAX/Flax."""

__version__ = "0.1.0"
