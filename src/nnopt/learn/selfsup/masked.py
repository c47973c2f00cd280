"""Masked / denoising auto-encoding: a random share of input patches (image blocks, or signal
segments) is blanked, Gaussian noise is added, and a decoder reconstructs the clean input from
the encoder's embedding; the loss is the mean squared error on the masked positions (plus a
small weight on the visible ones), in the spirit of MAE (He et al. 2022) and denoising
auto-encoders (Vincent et al. 2008) for networks that are not transformers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nnopt.core.registry import TASKS
from nnopt.learn.selfsup.embedding import classifier, embed_batch
from nnopt.train.task import TrainingTask


def patch_mask(shape: torch.Size, patch: int, ratio: float, g: torch.Generator) -> torch.Tensor:
    """1 where the input is blanked: whole patches (patch x patch, or patch samples) per example."""
    n, sizes = shape[0], shape[2:]
    grid = [math.ceil(s / patch) for s in sizes]
    m = (torch.rand(n, 1, *grid, generator=g) < ratio).float()
    for d in range(len(sizes)):
        m = m.repeat_interleave(patch, dim=2 + d)
    return m[(slice(None), slice(None), *[slice(0, s) for s in sizes])].expand(shape)


class MaskedTask(TrainingTask):
    """Masked / denoising auto-encoding: reconstruct blanked, noised input patches."""

    def __init__(self, input_shape: tuple[int, ...], mask_ratio: float, patch: int,
                 noise: float, hidden: int, seed: int, visible_weight: float = 0.1) -> None:
        self.shape, self.ratio, self.patch = tuple(input_shape), mask_ratio, patch
        self.noise, self.hidden, self.visible_weight = noise, hidden, visible_weight
        self.gen = torch.Generator().manual_seed(seed)
        self.decoder: nn.Module | None = None

    def setup(self, model: nn.Module) -> list[nn.Module]:
        self.decoder = nn.Sequential(nn.Linear(classifier(model).in_features, self.hidden),
                                     nn.ReLU(), nn.Linear(self.hidden, math.prod(self.shape)))
        return [self.decoder]

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        assert self.decoder is not None, "setup() was not called"
        dec = self.decoder
        mask = patch_mask(x.shape, self.patch, self.ratio, self.gen).to(x)
        noisy = x * (1 - mask)
        if self.noise:
            noisy = noisy + self.noise * torch.randn(x.shape, generator=self.gen).to(x) * (1 - mask)
        recon = dec(embed_batch(model, noisy)).view(x.shape)
        err = (recon - x) ** 2
        masked = (err * mask).sum() / mask.sum().clamp_min(1)
        visible = (err * (1 - mask)).sum() / (1 - mask).sum().clamp_min(1)
        return {"loss": masked + self.visible_weight * visible}


# chosen by its step, not by a `task:` block (it needs what the step builds)
TASKS.add("masked", MaskedTask, built_by="the pretrain step (method: masked)")
