"""Prediction quality on the test split: accuracy, negative log-likelihood, calibration (ECE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement
from nnopt.measure.calibration import check_logits, expected_calibration_error, reliability_bins
from nnopt.measure.quantity import FRACTION, NATS, SCORE_LOW

__all__ = ["accuracy_score", "expected_calibration_error", "nll_score"]


def accuracy_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of examples whose arg-max class is the label."""
    return (logits.argmax(1) == labels).double().mean().item()


def nll_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood (cross-entropy, natural log) of the labels, from logits."""
    check_logits(logits, "nll_score")
    return F.cross_entropy(logits.double(), labels).item()


@METRICS.register("accuracy", produces=["accuracy"], quantity=FRACTION)
def accuracy(m: Measurement) -> dict[str, float]:
    """Top-1 accuracy on the test split."""
    return {"accuracy": accuracy_score(m.logits, m.labels)}


@METRICS.register("nll", produces=["nll"], quantity=NATS)
def nll(m: Measurement) -> dict[str, float]:
    """Negative log-likelihood (mean cross-entropy in nats) on the test split."""
    return {"nll": nll_score(m.logits, m.labels)}


@METRICS.register("ece", produces=["ece"], quantity=SCORE_LOW)
def ece(m: Measurement) -> dict[str, float]:
    """Expected calibration error (15 equal-width bins) of the softmax on the test split."""
    probs = m.logits.double().softmax(1)
    m.details["reliability"] = reliability_bins(probs, m.labels)
    return {"ece": expected_calibration_error(probs, m.labels)}
