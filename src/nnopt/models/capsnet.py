"""Capsule network (Sabour, Frosst & Hinton 2017): a convolution, primary capsules, class
capsules by dynamic routing-by-agreement, the margin loss and a reconstruction decoder.

A capsule is a vector whose length is the probability that its entity is present (``squash``
keeps lengths in [0, 1)) and whose direction is the entity's pose. The model's output is the
one-vs-rest logit of each class capsule's length, log(l / (1 - l)): the argmax is the paper's
(the longest capsule) and softmax-based metrics (NLL, ECE) see a proper score. Training with
``fit()`` uses the paper's loss (``CapsuleTask``: margin loss + 0.0005 x the reconstruction's
sum of squared errors, the decoder fed the true class's capsule) unless the recipe asks for
another loss.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from nnopt.core.registry import MODELS, TASKS
from nnopt.core.task import TrainingTask
from nnopt.models.base import ModelConfig
from nnopt.models.lenet import _image


class CapsNetConfig(ModelConfig):
    name: Literal["capsnet"] = "capsnet"
    conv_channels: int = Field(64, ge=1, description="channels of the first convolution "
                               "(the paper: 256)")
    kernel_size: int = Field(9, ge=1, description="of the convolution and the primary capsules")
    primary_types: int = Field(8, ge=1, description="primary capsule types (the paper: 32)")
    primary_dim: int = Field(8, ge=1, description="length of a primary capsule")
    class_dim: int = Field(16, ge=1, description="length of a class capsule")
    routing_iterations: int = Field(3, ge=1, le=100)
    decoder: list[int] = Field(default_factory=lambda: [512, 1024],
                               description="hidden widths of the reconstruction decoder "
                               "([]: no decoder, no reconstruction loss)")
    reconstruction_weight: float = Field(0.0005, ge=0.0, description="weight of the summed "
                                         "squared reconstruction error in the loss")
    m_plus: float = Field(0.9, gt=0, le=1)
    m_minus: float = Field(0.1, ge=0, lt=1)
    down_weight: float = Field(0.5, ge=0, description="lambda: weight of absent classes")


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """v = |s|^2 / (1 + |s|^2) * s / |s|: the direction of s, the length squashed into [0, 1)."""
    n2 = (s * s).sum(dim, keepdim=True)
    return s * (n2 / (1 + n2)) / torch.sqrt(n2 + eps)


def route(u_hat: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic routing-by-agreement (Procedure 1 of the paper).

    ``u_hat`` (batch, inputs, outputs, dim): each input capsule's prediction of each output
    capsule. Returns the output capsules v (batch, outputs, dim) and the final coupling
    coefficients c (batch, inputs, outputs), a softmax over the outputs for each input.
    """
    logits = torch.zeros(u_hat.shape[:3], dtype=u_hat.dtype, device=u_hat.device)
    for it in range(iterations):
        c = logits.softmax(dim=2)
        v = squash((c.unsqueeze(-1) * u_hat).sum(1))
        if it < iterations - 1:
            logits = logits + (u_hat * v.unsqueeze(1)).sum(-1)
    return v, c


def margin_loss(lengths: torch.Tensor, y: torch.Tensor, m_plus: float = 0.9,
                m_minus: float = 0.1, down_weight: float = 0.5) -> torch.Tensor:
    """Eq. 4: sum over classes of T max(0, m+ - |v|)^2 + lambda (1 - T) max(0, |v| - m-)^2,
    averaged over the batch."""
    t = nn.functional.one_hot(y, lengths.shape[1]).to(lengths.dtype)
    present = t * (m_plus - lengths).clamp_min(0) ** 2
    absent = down_weight * (1 - t) * (lengths - m_minus).clamp_min(0) ** 2
    return (present + absent).sum(1).mean()


class CapsNet(nn.Module):
    def __init__(self, cfg: CapsNetConfig, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        c, h, w = _image(input_shape)
        k = cfg.kernel_size
        self.cfg = cfg
        self.conv = nn.Sequential(nn.Conv2d(c, cfg.conv_channels, k), nn.ReLU())
        self.primary = nn.Conv2d(cfg.conv_channels, cfg.primary_types * cfg.primary_dim, k,
                                 stride=2)
        gh, gw = (h - k + 1 - k) // 2 + 1, (w - k + 1 - k) // 2 + 1
        if gh < 1 or gw < 1:
            raise ValueError(f"kernel_size {k} leaves no primary capsules on {h}x{w} inputs "
                             f"(two {k}x{k} convolutions need at least {2 * k - 1} pixels)")
        self.n_primary = cfg.primary_types * gh * gw
        # one transformation matrix per (primary capsule, class): u_hat = W u
        self.weight = nn.Parameter(
            0.01 * torch.randn(self.n_primary, num_classes, cfg.class_dim, cfg.primary_dim))
        self.decoder: nn.Module | None = None
        if cfg.decoder:
            layers: list[nn.Module] = []
            n = num_classes * cfg.class_dim
            for width in cfg.decoder:
                layers += [nn.Linear(n, width), nn.ReLU()]
                n = width
            layers += [nn.Linear(n, c * h * w), nn.Sigmoid()]
            self.decoder = nn.Sequential(*layers)
        self.image_shape = (c, h, w)

    def capsules(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class capsules (batch, classes, class_dim) and coupling coefficients."""
        b = x.shape[0]
        p = self.primary(self.conv(x))  # (b, types * dim, gh, gw)
        cfg = self.cfg
        p = p.view(b, cfg.primary_types, cfg.primary_dim, -1).permute(0, 1, 3, 2)
        u = squash(p.reshape(b, self.n_primary, cfg.primary_dim))
        u_hat = torch.einsum("ijdk,bik->bijd", self.weight, u)
        return route(u_hat, cfg.routing_iterations)

    def reconstruct(self, v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The decoder's image from the capsules with all but class y masked out."""
        assert self.decoder is not None
        mask = nn.functional.one_hot(y, v.shape[1]).to(v.dtype).unsqueeze(-1)
        return self.decoder((v * mask).flatten(1)).view(-1, *self.image_shape)

    @staticmethod
    def to_logits(v: torch.Tensor) -> torch.Tensor:
        p = v.norm(dim=-1).clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_logits(self.capsules(x)[0])

    def training_task(self) -> TrainingTask:
        return CapsuleTask(self.cfg)


class CapsuleTask(TrainingTask):
    """The paper's loss: margin loss on the class capsules' lengths plus the weighted summed
    squared error of the reconstruction from the true class's capsule (the raw image, before
    the model's normalisation, as the decoder ends in a sigmoid)."""

    def __init__(self, cfg: CapsNetConfig) -> None:
        self.cfg = cfg

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        net: CapsNet = model.net  # type: ignore[assignment]
        v, _ = net.capsules(model.normalize(x))  # type: ignore[operator]
        cfg = self.cfg
        loss = margin_loss(v.norm(dim=-1), y, cfg.m_plus, cfg.m_minus, cfg.down_weight)
        if net.decoder is not None and cfg.reconstruction_weight:
            err = (net.reconstruct(v, y) - x) ** 2
            loss = loss + cfg.reconstruction_weight * err.flatten(1).sum(1).mean()
        return {"loss": loss, "output": net.to_logits(v)}


@MODELS.register("capsnet", config=CapsNetConfig, inputs="image",
                 tiny={"conv_channels": 4, "kernel_size": 3, "primary_types": 2,
                       "primary_dim": 4, "class_dim": 4, "decoder": [8]})
def capsnet(cfg: CapsNetConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Capsule network with dynamic routing; margin + reconstruction loss when trained."""
    return CapsNet(cfg, input_shape, num_classes)


# chosen by its step, not by a `task:` block (it needs what the step builds)
TASKS.add("capsule_margin", CapsuleTask, built_by="the capsnet model (its own loss)")
