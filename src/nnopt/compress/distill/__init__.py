"""Knowledge distillation: logit, hint (FitNets) and attention-transfer losses as a TrainingTask."""

from nnopt.compress.distill import report, step  # noqa: F401  (registration)
