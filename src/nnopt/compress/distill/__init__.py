"""Knowledge distillation: logit, hint (FitNets) and attention-transfer losses as a TrainingTask."""
