"""CIFAR-style ResNets (He et al. 2016, section 4.2): depth 6n+2 with three stages of basic blocks."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig
from nnopt.models.lenet import _image


class ResnetConfig(ModelConfig):
    name: Literal["resnet"] = "resnet"
    depth: int = Field(20, ge=8, le=1202, description="6n+2: 20, 32, 44, 56, 110 (8 for tests)")
    width: float = Field(1.0, gt=0, description="width multiplier on the 16-32-64 channels")

    @field_validator("depth")
    @classmethod
    def _six_n_plus_two(cls, v: int) -> int:
        if v < 8 or (v - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 20, 32, 44, 56, 110), got {v}")
        return v


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, in_ch: int, depth: int, width: float, num_classes: int) -> None:
        super().__init__()
        n = (depth - 2) // 6
        widths = [max(1, round(c * width)) for c in (16, 32, 64)]
        self.stem = nn.Sequential(nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = widths[0]
        for i, cout in enumerate(widths):
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


@MODELS.register("resnet", config=ResnetConfig, tiny={"depth": 8, "width": 0.25}, inputs="image")
def resnet(cfg: ResnetConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """CIFAR-style ResNet-20/32/56 with a width multiplier; works on 28x28 grey images too."""
    c, _, _ = _image(input_shape)
    return ResNet(c, cfg.depth, cfg.width, num_classes)
