"""LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling, as commonly trained today."""

from __future__ import annotations

from typing import Literal

from torch import nn

from nnopt.core.registry import MODELS
from nnopt.models.base import Act, ModelConfig, activation, flat_features


class Lenet5Config(ModelConfig):
    name: Literal["lenet5"] = "lenet5"
    activation: str = Act


@MODELS.register("lenet5", config=Lenet5Config, tiny={}, inputs="image")
def lenet5(cfg: Lenet5Config, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-5: conv 6 (5x5) - pool - conv 16 (5x5) - pool - fc 120 - fc 84 - classes."""
    c, h, _ = _image(input_shape)
    pad = 2 if h <= 28 else 0  # 28x28 padded to the 32x32 of the paper
    features = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=pad), activation(cfg.activation), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=0 if h >= 16 else 2), activation(cfg.activation),
        nn.MaxPool2d(2), nn.Flatten())
    n = flat_features(features, input_shape)
    return nn.Sequential(features, nn.Linear(n, 120), activation(cfg.activation),
                         nn.Linear(120, 84), activation(cfg.activation), nn.Linear(84, num_classes))


def _image(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"needs image inputs (C, H, W), got input shape {input_shape}")
    return input_shape  # type: ignore[return-value]
