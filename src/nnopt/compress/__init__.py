"""Model reduction and deployment: pruning, quantization (export, int8, deployment choice)."""

from nnopt.compress import prune, quantize  # noqa: F401  (registers their steps)
