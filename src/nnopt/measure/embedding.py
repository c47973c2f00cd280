"""Embedding fidelity: how close a compressed encoder's embeddings stay to the reference's."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
