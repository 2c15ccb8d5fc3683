"""Evaluation: `probe` (ridge and linear probes, R², Kendall τ), `baselines` (W, s(W), kernel PCA,
UMAP), `evaluate` (the paper's protocols on a zoo), `paper_results` (the paper's numbers) and
`report` (tables and plots).

Named `evaluation`, not `eval`: `from wsl_jax import eval` would shadow the builtin.
"""
