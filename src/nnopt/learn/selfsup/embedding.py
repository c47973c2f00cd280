"""A network's embedding (the input of its last Linear layer, the classifier) and the ways to
judge it without fine-tuning: k-NN (Wu et al. 2018: k = 200, cosine similarity, votes weighted
by exp(s / 0.07)), a linear probe on frozen features, and the collapse check (the std of the
L2-normalised embedding per dimension, times sqrt(dim): about 1 for spread-out embeddings,
0 when every input maps to the same point; Chen & He 2021)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from nnopt.errors import NnoptError
from nnopt.recipe import Epochs, Strict


def classifier(model: nn.Module) -> nn.Linear:
    """The last Linear layer of ``model`` (its classifier)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise NnoptError(f"{type(model).__name__} has no Linear classifier whose input could "
                         "serve as the embedding")
    return last


@contextmanager
def capture(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """While open, every forward of ``model`` stores its classifier's input in ``box['z']``."""
    box: dict[str, torch.Tensor] = {}
    handle = classifier(model).register_forward_pre_hook(
        lambda _m, args: box.__setitem__("z", args[0]))
    try:
        yield box
    finally:
        handle.remove()


def embed_batch(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Embeddings of one batch in the model's current mode (gradients flow)."""
    with capture(model) as box:
        model(x)
    return box["z"].flatten(1)


@torch.inference_mode()
def embed(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Embeddings of all of ``x`` in eval mode; the model's mode is restored."""
    was = model.training
    model.eval()
    try:
        return torch.cat([embed_batch(model, x[i:i + batch_size])
                          for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)


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
