"""The ``train`` step: fit a copy of the model on the training split, select on validation."""

from __future__ import annotations

import copy

from torch import nn

from nnopt.context import RunContext
from nnopt.core.registry import STEPS
from nnopt.train.fit import TrainConfig


@STEPS.register("train", config=TrainConfig, tiny={"epochs": 1, "batch_size": 32})
def train(model: nn.Module, cfg: TrainConfig, ctx: RunContext) -> nn.Module:
    """Train with the config's task (cross-entropy by default); keep the best-validation weights
    (never selected on test)."""
    model = copy.deepcopy(model)
    if cfg.batch_size > len(ctx.data.train):
        ctx.warn(f"batch_size {cfg.batch_size} exceeds the {len(ctx.data.train)} training "
                 "examples: every epoch is one full-batch step")
    ctx.fit(model, cfg)
    return model
