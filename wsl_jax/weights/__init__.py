"""Weights: `layout` (a flat weight vector's layers, offsets and permutation structure) and `nets`
(the zoo architectures as pure functions of flat weights).
"""
