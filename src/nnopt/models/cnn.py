"""A plain VGG-style CNN: stages of conv-BN-ReLU blocks, each stage pooling and doubling width."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from nnopt.core.registry import MODELS
from nnopt.models.base import Act, ModelConfig, activation, flat_features
from nnopt.models.lenet import _image


class CnnConfig(ModelConfig):
    name: Literal["cnn"] = "cnn"
    width: int = Field(32, ge=1, description="channels of the first stage; doubled per stage")
    depth: int = Field(2, ge=1, le=6, description="number of stages (each halves the resolution)")
    convs_per_stage: int = Field(1, ge=1, le=4)
    kernel_size: int = Field(3, ge=1, le=64)
    batch_norm: bool = True
    activation: str = Act
    hidden: int = Field(128, ge=0, description="width of the hidden fc layer (0: none)")
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout before the classifier")
    head: Literal["flatten", "avgpool"] = "flatten"
    pool_last: bool = Field(True, description="max-pool after the last stage too (false with "
                            "head avgpool: the global average sees the whole last feature map)")


@MODELS.register("cnn", config=CnnConfig, tiny={"width": 4, "hidden": 8}, inputs="image")
def cnn(cfg: CnnConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """VGG-style CNN whose width, depth and kernel size are recipe options."""
    c, h, w = _image(input_shape)
    if min(h, w) < 2 ** cfg.depth:
        raise ValueError(f"depth {cfg.depth} pools {h}x{w} inputs below 1x1")
    layers: list[nn.Module] = []
    ch = c
    for stage in range(cfg.depth):
        out = cfg.width * 2 ** stage
        for _ in range(cfg.convs_per_stage):
            layers += [nn.Conv2d(ch, out, cfg.kernel_size, padding=cfg.kernel_size // 2,
                                 bias=not cfg.batch_norm)]
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(activation(cfg.activation))
            ch = out
        if stage < cfg.depth - 1 or cfg.pool_last:
            layers.append(nn.MaxPool2d(2))
    if cfg.head == "avgpool":
        layers.append(nn.AdaptiveAvgPool2d(1))
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    n = flat_features(features, input_shape)
    head: list[nn.Module] = []
    if cfg.hidden:
        head += [nn.Linear(n, cfg.hidden), activation(cfg.activation)]
        n = cfg.hidden
    if cfg.dropout:
        head.append(nn.Dropout(cfg.dropout))
    head.append(nn.Linear(n, num_classes))
    return nn.Sequential(features, *head)
