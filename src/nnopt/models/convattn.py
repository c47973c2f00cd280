"""A convolution + self-attention hybrid: a convolutional stem extracts local features and
downsamples (the inductive bias small data needs), then transformer blocks attend globally
over the feature map's positions (as in BoTNet and CoAtNet's late attention stages); the
tokens are averaged and classified."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig
from nnopt.models.lenet import _image
from nnopt.models.vit import Block


class ConvAttnConfig(ModelConfig):
    name: Literal["convattn"] = "convattn"
    width: int = Field(32, ge=1, description="channels of the first conv stage; doubled per "
                       "stage; the last stage's width is the attention dimension")
    stages: int = Field(2, ge=1, le=4, description="conv stages, each halving the resolution")
    depth: int = Field(2, ge=1, le=128, description="transformer blocks after the stem")
    heads: int = Field(4, ge=1, description="must divide the attention dimension")
    mlp_ratio: float = Field(2.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class ConvAttn(nn.Module):
    def __init__(self, cfg: ConvAttnConfig, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        c, h, w = _image(input_shape)
        if min(h, w) < 2 ** cfg.stages:
            raise ValueError(f"{cfg.stages} stages pool {h}x{w} inputs below 1x1")
        layers: list[nn.Module] = []
        ch = c
        for s in range(cfg.stages):
            out = cfg.width * 2 ** s
            layers += [nn.Conv2d(ch, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(), nn.MaxPool2d(2)]
            ch = out
        self.stem = nn.Sequential(*layers)
        if ch % cfg.heads:
            raise ValueError(f"heads ({cfg.heads}) must divide the attention dimension {ch} "
                             f"(width x 2^(stages-1))")
        tokens = (h // 2 ** cfg.stages) * (w // 2 ** cfg.stages)
        self.pos = nn.Parameter(torch.randn(1, tokens, ch) * 0.02)
        self.blocks = nn.Sequential(*[Block(ch, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                      for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(ch)
        self.head = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(tokens)).mean(1))


@MODELS.register("convattn", config=ConvAttnConfig, inputs="image",
                 tiny={"width": 4, "stages": 2, "depth": 1, "heads": 2})
def convattn(cfg: ConvAttnConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Conv stem + transformer blocks over the feature map (a conv/attention hybrid)."""
    return ConvAttn(cfg, input_shape, num_classes)
