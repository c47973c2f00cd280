"""A tiny Vision Transformer (Dosovitskiy et al. 2021): patch embedding, pre-norm blocks, CLS."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig
from nnopt.models.lenet import _image


class VitConfig(ModelConfig):
    name: Literal["vit"] = "vit"
    patch_size: int = Field(7, ge=1, description="must divide the image height and width")
    dim: int = Field(64, ge=1)
    depth: int = Field(4, ge=1, le=128)
    heads: int = Field(4, ge=1, description="must divide dim")
    mlp_ratio: float = Field(2.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection (num_heads is read by pruning tools)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"heads ({num_heads}) must divide dim ({dim})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = max(1, int(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, cfg: VitConfig, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        c, h, w = _image(input_shape)
        p = cfg.patch_size
        if h % p or w % p:
            raise ValueError(f"patch_size {p} does not divide the {h}x{w} image")
        self.patch = nn.Conv2d(c, cfg.dim, p, p)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.randn(1, (h // p) * (w // p) + 1, cfg.dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                      for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


@MODELS.register("vit", config=VitConfig, tiny={"dim": 8, "depth": 1, "heads": 2, "patch_size": 4},
                 inputs="image")
def vit(cfg: VitConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Tiny ViT for small images: 7x7 patches of a 28x28 image give 16 tokens plus CLS."""
    return ViT(cfg, input_shape, num_classes)
