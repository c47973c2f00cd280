"""Calibration metrics as plain functions of probabilities and labels.

- ECE (Naeini et al. 2015; Guo et al. 2017) with equal-width bins over (0, 1], a confidence of
  exactly 1.0 in the last bin, or equal-mass ("adaptive") bins (Nixon et al. 2019);
- MCE, the largest bin gap (Naeini et al. 2015);
- classwise ECE over every class probability (Kull et al. 2019);
- the multi-class Brier score (Brier 1950): mean squared distance to the one-hot label;
- AURC, the area under the selective risk-coverage curve (Geifman et al. 2018).

Plain functions of tensors only (no nnopt imports), so any module can use them.
"""

from __future__ import annotations

from typing import Literal

import torch

Scheme = Literal["width", "mass"]


def check_probs(probs: torch.Tensor, name: str) -> torch.Tensor:
    """``probs`` as float64, or a ValueError when it is not a matrix of probability rows."""
    if probs.dim() != 2:
        raise ValueError(f"{name} takes an (examples, classes) matrix, got shape "
                         f"{tuple(probs.shape)}")
    p = probs.double()
    if p.min() < 0 or p.max() > 1 or not torch.allclose(p.sum(1), torch.ones(len(p),
                                                                           dtype=p.dtype),
                                                        atol=1e-3):
        raise ValueError(f"{name} takes probabilities (rows in [0, 1] summing to 1), not "
                         "logits: apply softmax first")
    return p


def check_logits(logits: torch.Tensor, name: str) -> None:
    """A ValueError when every row already looks like a probability vector."""
    if logits.dim() == 2 and len(logits) and logits.min() >= 0 and logits.max() <= 1 and \
            torch.allclose(logits.double().sum(1), torch.ones(len(logits), dtype=torch.double),
                           atol=1e-6):
        raise ValueError(f"{name} takes logits, but every row is a probability vector; pass "
                         "the logits (or log-probabilities) instead")


def bin_index(conf: torch.Tensor, bins: int, scheme: Scheme = "width") -> torch.Tensor:
    """Bin of each confidence: equal-width bins (lo, hi] over (0, 1] with 1.0 in the last bin,
    or equal-mass bins of (as nearly as possible) equal counts in confidence order."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if scheme == "width":
        return torch.clamp(torch.ceil(conf * bins).long() - 1, 0, bins - 1)
    if scheme == "mass":
        order = torch.argsort(conf, stable=True)
        idx = torch.empty(len(conf), dtype=torch.long)
        for b, chunk in enumerate(torch.tensor_split(order, bins)):
            idx[chunk] = b
        return idx
    raise ValueError(f"unknown binning scheme '{scheme}'; choose width or mass")


def _gaps(conf: torch.Tensor, hit: torch.Tensor, bins: int, scheme: Scheme
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per non-empty bin: share of examples and |accuracy - confidence|."""
    idx = bin_index(conf, bins, scheme)
    n = torch.bincount(idx, minlength=bins).double()
    conf_sum = torch.zeros(bins, dtype=torch.double).index_add_(0, idx, conf)
    hit_sum = torch.zeros(bins, dtype=torch.double).index_add_(0, idx, hit)
    keep = n > 0
    return n[keep] / len(conf), (hit_sum[keep] - conf_sum[keep]).abs() / n[keep]


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15
                     ) -> dict[str, list[float]]:
    """Per equal-width bin: its upper edge, example count, mean confidence and accuracy (the
    data of a reliability diagram; empty bins have count 0 and no confidence/accuracy)."""
    p = check_probs(probs, "reliability_bins")
    conf, pred = p.max(1)
    idx = bin_index(conf, bins, "width")
    n = torch.bincount(idx, minlength=bins).double()
    c = torch.zeros(bins, dtype=torch.double).index_add_(0, idx, conf)
    a = torch.zeros(bins, dtype=torch.double).index_add_(0, idx, (pred == labels).double())
    safe = n.clamp(min=1)
    return {"upper": [(b + 1) / bins for b in range(bins)], "count": n.tolist(),
            "confidence": (c / safe).tolist(), "accuracy": (a / safe).tolist()}


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15, *,
                               scheme: Scheme = "width") -> float:
    """Sample-weighted mean over bins of |accuracy - mean confidence| of the top class."""
    p = check_probs(probs, "expected_calibration_error")
    conf, pred = p.max(1)
    weight, gap = _gaps(conf, (pred == labels).double(), bins, scheme)
    return float((weight * gap).sum())


def max_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15, *,
                          scheme: Scheme = "width") -> float:
    """Largest |accuracy - mean confidence| over the non-empty bins."""
    p = check_probs(probs, "max_calibration_error")
    conf, pred = p.max(1)
    return float(_gaps(conf, (pred == labels).double(), bins, scheme)[1].max())


def classwise_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15
                                ) -> float:
    """Mean over classes k of the ECE of p_k against the event y == k (equal-width bins)."""
    p = check_probs(probs, "classwise_calibration_error")
    total = 0.0
    for k in range(p.shape[1]):
        weight, gap = _gaps(p[:, k], (labels == k).double(), bins, "width")
        total += float((weight * gap).sum())
    return total / p.shape[1]


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over examples of sum_k (p_k - 1[y = k])^2 (0 is perfect, 2 the worst)."""
    p = check_probs(probs, "brier_score")
    onehot = torch.nn.functional.one_hot(labels, p.shape[1]).double()
    return float(((p - onehot) ** 2).sum(1).mean())


def aurc(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean selective risk over coverages 1/n .. n/n, accepting examples by falling confidence
    (ties keep their input order)."""
    p = check_probs(probs, "aurc")
    conf, pred = p.max(1)
    order = torch.argsort(-conf, stable=True)
    errors = (pred[order] != labels[order]).double().cumsum(0)
    return float((errors / torch.arange(1, len(conf) + 1, dtype=torch.double)).mean())
