"""A network's embedding (the input of its last Linear layer, the classifier) and the ways to
judge it without fine-tuning: k-NN (Wu et al. 2018: k = 200, cosine similarity, votes weighted
by exp(s / 0.07)), a linear probe on frozen features, and the collapse check (the std of the
L2-normalised embedding per dimension, times sqrt(dim): about 1 for spread-out embeddings,
0 when every input maps to the same point; Chen & He 2021)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from nnopt.core.config import Epochs, Strict
from nnopt.measure.embedding import capture, classifier, embed, embed_batch  # noqa: F401


def knn_predict(train_z: torch.Tensor, train_y: torch.Tensor, z: torch.Tensor, classes: int,
                k: int = 200, temperature: float = 0.07, chunk: int = 1000) -> torch.Tensor:
    """Class of each row of ``z`` by a weighted vote of its k most cosine-similar training rows."""
    bank = F.normalize(train_z.float(), dim=1)
    k = min(k, len(bank))
    out = []
    for i in range(0, len(z), chunk):
        sim = F.normalize(z[i:i + chunk].float(), dim=1) @ bank.T
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), classes).scatter_add_(1, train_y[idx],
                                                           (top / temperature).exp())
        out.append(votes.argmax(1))
    return torch.cat(out)


def embedding_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of the L2-normalised embeddings, times sqrt(dim)."""
    zn = F.normalize(z.double(), dim=1)
    return float(zn.std(0).mean() * math.sqrt(z.shape[1]))


class ProbeConfig(Strict):
    """Multinomial logistic regression on standardised frozen embeddings (full batch)."""

    lr: float = Field(0.01, gt=0, description="Adam learning rate")
    epochs: Epochs = Field(300, description="full-batch steps")
    weight_decay: float = Field(1e-4, ge=0)


def linear_probe(z: torch.Tensor, y: torch.Tensor, classes: int, cfg: ProbeConfig,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a linear classifier of raw embeddings (the standardisation folded in).

    A dimension constant on the labelled examples (e.g. a unit that never fires on them) says
    nothing about their classes: its weight is zero, so that it cannot blow up on new inputs."""
    z = z.float()
    mean, std = z.mean(0), z.std(0)
    live = std > 1e-4 * std.max().clamp_min(1e-12)
    std = torch.where(live, std, torch.ones_like(std))
    zs = (z - mean) / std * live
    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(classes, z.shape[1], generator=gen) * 0.01).requires_grad_()
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.AdamW([w, b], lr=cfg.lr, weight_decay=cfg.weight_decay)
    with torch.enable_grad():
        for _ in range(cfg.epochs):
            opt.zero_grad()
            F.cross_entropy(zs @ w.T + b, y).backward()
            opt.step()
    w = w.detach() * live
    return w / std, b.detach() - (w / std) @ mean
