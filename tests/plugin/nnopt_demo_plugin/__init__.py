"""A demo plugin: importing this module registers one model, one dataset, one step and one
metric with nnopt (its entry point names the module)."""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from nnopt.core.config import Strict
from nnopt.core.registry import DATASETS, METRICS, MODELS, STEPS
from nnopt.data.base import DataConfig, DataSplits, make_splits
from nnopt.models.base import ModelConfig


class StripesConfig(DataConfig):
    name: Literal["stripes"] = "stripes"
    size: int = Field(400, ge=20, description="examples in all")


@DATASETS.register("stripes", config=StripesConfig)
def stripes(cfg: StripesConfig) -> DataSplits:
    """Two classes of 1x8x8 images: horizontal or vertical stripes, with noise."""
    rng = np.random.default_rng(cfg.split_seed)
    y = rng.integers(0, 2, cfg.size)
    x = rng.normal(0, 0.3, (cfg.size, 1, 8, 8)).astype(np.float32)
    x[y == 0, :, ::2, :] += 1.0
    x[y == 1, :, :, ::2] += 1.0
    cut = cfg.size * 3 // 4
    return make_splits("stripes", cfg, x[:cut], y[:cut], x[cut:], y[cut:],
                       class_names=["horizontal", "vertical"])


class TinyNetConfig(ModelConfig):
    name: Literal["tinynet"] = "tinynet"
    hidden: int = Field(16, ge=1, le=4096)


@MODELS.register("tinynet", config=TinyNetConfig, tiny={"hidden": 4})
def tinynet(cfg: TinyNetConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A one-hidden-layer perceptron from the demo plugin."""
    size = int(np.prod(input_shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(size, cfg.hidden), nn.ReLU(),
                         nn.Linear(cfg.hidden, num_classes))


class ScaleConfig(Strict):
    factor: float = Field(2.0, gt=0, description="multiplies the last layer's weights")


@STEPS.register("scale_logits", config=ScaleConfig, tiny={})
def scale_logits(model: nn.Module, cfg: ScaleConfig, ctx) -> nn.Module:
    """Multiply the last Linear layer by a factor (sharper or softer predictions)."""
    out = copy.deepcopy(model)
    last = [m for m in out.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(cfg.factor)
        last.bias.mul_(cfg.factor)
    ctx.record("scale_logits", {"factor": cfg.factor})
    return out


@METRICS.register("mean_confidence", produces=["mean_confidence"])
def mean_confidence(m) -> dict[str, float]:
    """The mean of the top softmax probability on the test split."""
    return {"mean_confidence": m.logits.softmax(1).max(1).values.mean().item()}
