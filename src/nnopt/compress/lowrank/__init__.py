"""Low-rank factorization: truncated SVD of Linear layers, Tucker-2 / channel / spatial for convs."""

from nnopt.compress.lowrank import report, step  # noqa: F401  (registration)
