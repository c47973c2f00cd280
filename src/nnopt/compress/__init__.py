"""Model reduction: pruning (and, in later issues, quantization, distillation, factorization)."""

from nnopt.compress import prune  # noqa: F401  (registers the prune and lottery steps)
