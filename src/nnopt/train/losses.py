"""Classification losses robust to label noise, as plain functions of (logits, labels) returning
the per-example loss, and mixup (Zhang et al. 2018):

- ``gce``: generalized cross-entropy (Zhang & Sabuncu 2018), (1 - p_y^q) / q; q -> 0 is the
  cross-entropy, q = 1 the MAE.
- ``sce``: symmetric cross-entropy (Wang et al. 2019), alpha CE + beta RCE with the reverse
  cross-entropy -sum_k p_k log y_k, log 0 taken as ``a`` (= -4), so RCE = -a (1 - p_y).
- ``bootstrap_soft`` / ``bootstrap_hard`` (Reed et al. 2015): cross-entropy to the target
  beta y + (1 - beta) p, with p the prediction (soft, kept in the graph as in the paper) or its
  one-hot arg-max (hard).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from nnopt.core.config import Strict

LossName = Literal["ce", "gce", "sce", "bootstrap_soft", "bootstrap_hard"]


class LossConfig(Strict):
    """The classification loss and its parameters."""

    name: LossName = Field("ce", description="ce, gce, sce, bootstrap_soft or bootstrap_hard")
    q: float = Field(0.7, gt=0, le=1, description="gce exponent")
    alpha: float = Field(0.1, ge=0, description="sce: weight of the cross-entropy")
    beta: float = Field(1.0, ge=0, description="sce: weight of the reverse cross-entropy")
    a: float = Field(-4.0, lt=0, description="sce: the value taken for log 0")
    bootstrap: float | None = Field(None, gt=0, le=1, description="bootstrap: weight of the "
                                    "given label (default 0.95 soft, 0.8 hard, as in the paper)")


def gce(logits: torch.Tensor, y: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    p_y = logits.softmax(1).gather(1, y[:, None])[:, 0]
    return (1 - p_y.clamp_min(1e-12) ** q) / q


def sce(logits: torch.Tensor, y: torch.Tensor, alpha: float = 0.1, beta: float = 1.0,
        a: float = -4.0) -> torch.Tensor:
    p_y = logits.softmax(1).gather(1, y[:, None])[:, 0]
    return alpha * F.cross_entropy(logits, y, reduction="none") + beta * (-a) * (1 - p_y)


def bootstrap(logits: torch.Tensor, y: torch.Tensor, beta: float, hard: bool) -> torch.Tensor:
    log_p = logits.log_softmax(1)
    given = F.one_hot(y, logits.shape[1]).to(log_p.dtype)
    own = F.one_hot(log_p.argmax(1), logits.shape[1]).to(log_p.dtype) if hard else log_p.exp()
    return -((beta * given + (1 - beta) * own) * log_p).sum(1)


def per_example(cfg: LossConfig, logits: torch.Tensor, y: torch.Tensor,
                label_smoothing: float = 0.0) -> torch.Tensor:
    """The configured loss of each example."""
    if cfg.name == "ce":
        return F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)
    if label_smoothing:
        raise ValueError(f"label_smoothing applies to the ce loss, not to {cfg.name}")
    if cfg.name == "gce":
        return gce(logits, y, cfg.q)
    if cfg.name == "sce":
        return sce(logits, y, cfg.alpha, cfg.beta, cfg.a)
    hard = cfg.name == "bootstrap_hard"
    beta = cfg.bootstrap if cfg.bootstrap is not None else (0.8 if hard else 0.95)
    return bootstrap(logits, y, beta, hard)


def mixup_batch(x: torch.Tensor, alpha: float, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Inputs mixed with a shuffled copy: (mixed x, the permutation, lambda ~ Beta(a, a))."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(x), generator=generator)
    return lam * x + (1 - lam) * x[perm], perm, lam
