"""Registered calibration metrics on a stage's test predictions."""

from __future__ import annotations

import torch

from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement
from nnopt.measure.calibration import (
    aurc,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    max_calibration_error,
)
from nnopt.measure.quantity import SCORE_LOW


def _probs(m: Measurement) -> torch.Tensor:
    return m.logits.double().softmax(1)


@METRICS.register("ece_adaptive", produces=["ece_adaptive"], quantity=SCORE_LOW)
def ece_adaptive(m: Measurement) -> dict[str, float]:
    """ECE with 15 equal-mass bins on the test split."""
    return {"ece_adaptive": expected_calibration_error(_probs(m), m.labels, scheme="mass")}


@METRICS.register("mce", produces=["mce"], quantity=SCORE_LOW)
def mce(m: Measurement) -> dict[str, float]:
    """Maximum calibration error (15 equal-width bins) on the test split."""
    return {"mce": max_calibration_error(_probs(m), m.labels)}


@METRICS.register("classwise_ece", produces=["classwise_ece"], quantity=SCORE_LOW)
def classwise_ece(m: Measurement) -> dict[str, float]:
    """Classwise ECE (15 equal-width bins, mean over classes) on the test split."""
    return {"classwise_ece": classwise_calibration_error(_probs(m), m.labels)}


@METRICS.register("brier", produces=["brier"], quantity=SCORE_LOW)
def brier(m: Measurement) -> dict[str, float]:
    """Multi-class Brier score on the test split."""
    return {"brier": brier_score(_probs(m), m.labels)}


@METRICS.register("aurc", produces=["aurc"], quantity=SCORE_LOW)
def aurc_metric(m: Measurement) -> dict[str, float]:
    """Area under the risk-coverage curve (selective prediction) on the test split."""
    return {"aurc": aurc(_probs(m), m.labels)}
