"""A network's embedding (the input of its classifier, the last Linear layer), and embedding
fidelity: how close a compressed encoder's embeddings stay to the reference's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.core.compute import placed
from nnopt.core.errors import NnoptError


def mean_cosine(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Mean cosine similarity between matching rows."""
    return F.cosine_similarity(reference.double(), approx.double(), dim=1).mean().item()


def neighbour_agreement(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Share of rows whose nearest other row (by cosine) is the same under both embeddings."""
    def nearest(e: torch.Tensor) -> torch.Tensor:
        e = F.normalize(e.double(), dim=1)
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(1)

    return (nearest(reference) == nearest(approx)).double().mean().item()


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


def embed(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Embeddings of all of ``x`` in eval mode, computed on the compute device and returned
    on the CPU; the model's mode and device are restored."""
    was = model.training
    model.eval()
    try:
        with placed(model) as dev, torch.inference_mode():
            return torch.cat([embed_batch(model, x[i:i + batch_size].to(dev)).cpu()
                              for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)
