"""Prediction quality on the test split: accuracy, negative log-likelihood, calibration (ECE)."""

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


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15
                               ) -> float:
    """ECE (Naeini et al. 2015; Guo et al. 2017): bin by confidence into ``bins`` equal-width
    bins over (0, 1] (a confidence of exactly 1.0 falls in the last bin), then the
    sample-weighted mean |accuracy - confidence| over the bins."""
    if probs.dim() != 2 or not torch.allclose(probs.sum(1), torch.ones(len(probs),
                                                                       dtype=probs.dtype),
                                              atol=1e-3) or probs.min() < 0:
        raise ValueError("expected_calibration_error takes probabilities (rows summing to 1), "
                         "not logits: apply softmax first")
    conf, pred = probs.double().max(1)
    correct = (pred == labels).double()
    idx = torch.clamp(torch.ceil(conf * bins).long() - 1, 0, bins - 1)
    ece = torch.zeros((), dtype=torch.double)
    for b in range(bins):
        in_bin = idx == b
        if in_bin.any():
            ece += in_bin.double().mean() * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return ece.item()


@METRICS.register("ece", produces=["ece"])
def ece(m: Measurement) -> dict[str, float]:
    """Expected calibration error (15 equal-width bins) of the softmax on the test split."""
    return {"ece": expected_calibration_error(m.logits.double().softmax(1), m.labels)}


@METRICS.register("accuracy", produces=["accuracy"])
def accuracy(m: Measurement) -> dict[str, float]:
    """Top-1 accuracy on the test split."""
    return {"accuracy": accuracy_score(m.logits, m.labels)}


@METRICS.register("nll", produces=["nll"])
def nll(m: Measurement) -> dict[str, float]:
    """Negative log-likelihood (mean cross-entropy in nats) on the test split."""
    return {"nll": nll_score(m.logits, m.labels)}
