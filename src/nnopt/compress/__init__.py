"""Model reduction and deployment: pruning, quantization, distillation, low-rank factorization,
weight sharing and fusion."""

from nnopt.compress import cluster, distill, fuse, lowrank, prune, quantize  # noqa: F401  (registers their steps)
