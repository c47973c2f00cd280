"""Multi-layer perceptrons, LeNet-300-100 (LeCun et al. 1998) by default."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from torch import nn

from nnopt.core.registry import MODELS
from nnopt.models.base import Act, ModelConfig, activation


class MlpConfig(ModelConfig):
    name: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [300, 100],
                              description="hidden layer widths ([300, 100] is LeNet-300-100)")
    activation: str = Act
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    batch_norm: bool = False


@MODELS.register("mlp", config=MlpConfig, tiny={"hidden": [16]})
def mlp(cfg: MlpConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Fully connected network on flattened inputs; defaults to LeNet-300-100."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in cfg.hidden:
        layers.append(nn.Linear(width, h))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(activation(cfg.activation))
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
