"""Prediction quality on the test split: accuracy and negative log-likelihood."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnopt.measure.base import Measurement
from nnopt.registry import METRICS


def accuracy_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of examples whose arg-max class is the label."""
    return (logits.argmax(1) == labels).double().mean().item()


def nll_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood (cross-entropy, natural log) of the labels."""
    return F.cross_entropy(logits.double(), labels).item()


@METRICS.register("accuracy", produces=["accuracy"])
def accuracy(m: Measurement) -> dict[str, float]:
    """Top-1 accuracy on the test split."""
    return {"accuracy": accuracy_score(m.logits, m.labels)}


@METRICS.register("nll", produces=["nll"])
def nll(m: Measurement) -> dict[str, float]:
    """Negative log-likelihood (mean cross-entropy in nats) on the test split."""
    return {"nll": nll_score(m.logits, m.labels)}
