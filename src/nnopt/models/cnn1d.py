"""A 1-D CNN for sequences such as MNIST-1D (Greydanus 2020 uses 3 strided conv layers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from nnopt.core.registry import MODELS
from nnopt.models.base import Act, ModelConfig, activation, flat_features


class Cnn1dConfig(ModelConfig):
    name: Literal["cnn1d"] = "cnn1d"
    width: int = Field(32, ge=1, description="channels of every conv layer")
    depth: int = Field(3, ge=1, le=6, description="number of conv layers")
    kernel_size: int = Field(5, ge=1, le=1024)
    stride: int = Field(2, ge=1)
    batch_norm: bool = True
    activation: str = Act


@MODELS.register("cnn1d", config=Cnn1dConfig, tiny={"width": 4, "depth": 2}, inputs="sequence")
def cnn1d(cfg: Cnn1dConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Strided 1-D convolutions then a linear classifier, for (C, L) inputs."""
    if len(input_shape) != 2:
        raise ValueError(f"needs sequence inputs (C, L), got input shape {input_shape}")
    layers: list[nn.Module] = []
    ch = input_shape[0]
    for _ in range(cfg.depth):
        layers.append(nn.Conv1d(ch, cfg.width, cfg.kernel_size, cfg.stride,
                                cfg.kernel_size // 2, bias=not cfg.batch_norm))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(cfg.width))
        layers.append(activation(cfg.activation))
        ch = cfg.width
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    return nn.Sequential(features, nn.Linear(flat_features(features, input_shape), num_classes))
