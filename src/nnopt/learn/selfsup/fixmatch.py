"""FixMatch (Sohn et al. 2020): semi-supervised fine-tuning with the unlabelled images. Each
step adds ``ratio`` x batch unlabelled images to the labelled batch; the model's prediction on
a weak view of each (flip, small shift) is its pseudo-label when the top probability reaches
``threshold``, and a strong view of the same image (crop, jitter, erasing, noise) is trained
to predict it:

    loss = CE(f(weak(x_l)), y_l) + weight * mean_u[ 1{max p_u >= t} CE(f(strong(u)), argmax p_u) ]
    p_u = softmax(f(weak(u))), no gradient through p_u

The three views go through the network in one batch, so batch norm sees them together (as in
the reference implementation). The unlabelled images never contribute their labels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from nnopt.core.config import Strict
from nnopt.core.registry import TASKS
from nnopt.learn.selfsup.augment import AugmentConfig, augment
from nnopt.train.task import TrainingTask


def _weak() -> AugmentConfig:
    return AugmentConfig(crop=None, flip=0.5, translate=0.125, jitter=0.0)


def _strong() -> AugmentConfig:
    return AugmentConfig(crop=(0.4, 1.0), flip=0.5, translate=0.125, jitter=0.4, noise=0.05,
                         erase=0.5, erase_area=(0.02, 0.25))


class FixmatchConfig(Strict):
    """Consistency of strong views with confident pseudo-labels of weak views."""

    ratio: int = Field(3, ge=1, description="unlabelled images per labelled one in a step "
                       "(the paper's mu: 7)")
    threshold: float = Field(0.95, gt=0, le=1, description="confidence a pseudo-label needs")
    weight: float = Field(1.0, gt=0, description="weight of the unlabelled term (lambda_u)")
    weak: AugmentConfig = Field(default_factory=_weak, description="view that makes the "
                                "pseudo-label (and the labelled view)")
    strong: AugmentConfig = Field(default_factory=_strong, description="view trained to "
                                  "match it")


def fixmatch_loss(logits_l: torch.Tensor, y: torch.Tensor, logits_weak: torch.Tensor,
                  logits_strong: torch.Tensor, threshold: float, weight: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, mask of the unlabelled examples whose pseudo-label passed the threshold)."""
    prob = logits_weak.detach().softmax(1)
    conf, pseudo = prob.max(1)
    mask = (conf >= threshold).float()
    unl = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
    return F.cross_entropy(logits_l, y) + weight * unl, mask


class FixmatchTask(TrainingTask):
    """Labelled cross-entropy plus FixMatch's unlabelled consistency term (see module doc)."""

    data_parallel = False  # under several processes it runs replicated on each
    data_parallel_why = "it draws its unlabelled batch itself"

    def __init__(self, cfg: FixmatchConfig, unlabelled: torch.Tensor, seed: int) -> None:
        self.cfg, self.pool = cfg, unlabelled
        self.gen = torch.Generator().manual_seed(seed)
        self.rates: list[float] = []  # per step: share of pseudo-labels that passed

    def mask_rate(self, last: int | None = None) -> float:
        """Share of confident pseudo-labels over the ``last`` steps (default: all)."""
        rates = self.rates[-last:] if last else self.rates
        return sum(rates) / max(len(rates), 1)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        cfg, n = self.cfg, len(x)
        u = self.pool[torch.randint(len(self.pool), (cfg.ratio * n,), generator=self.gen)].to(x)
        views = torch.cat([augment(x, cfg.weak, self.gen), augment(u, cfg.weak, self.gen),
                           augment(u, cfg.strong, self.gen)])
        out = model(views)
        m = len(u)
        loss, mask = fixmatch_loss(out[:n], y, out[n:n + m], out[n + m:], cfg.threshold,
                                   cfg.weight)
        self.rates.append(float(mask.mean()))
        return {"loss": loss, "output": out[:n]}


# chosen by its step, not by a `task:` block (it needs what the step builds)
TASKS.add("fixmatch", FixmatchTask, built_by="the finetune step (method: fixmatch)")
