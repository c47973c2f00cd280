"""Model reduction and deployment: pruning, quantization, distillation, low-rank factorization,
weight sharing and fusion."""
