"""Non-parametric post-hoc calibration, one class against the rest, then renormalised
(Zadrozny & Elkan 2002): histogram binning (equal-mass bins, each mapped to its validation
accuracy) and isotonic regression (scikit-learn's fit, a monotone piecewise-linear map).

The fitted maps live in buffers and are applied with comparisons and gathers, so the calibrated
model still saves as safetensors and exports to ONNX. Unlike temperature scaling they can change
the arg-max (so the accuracy), and the report shows it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnopt.core.extras import require

EPS = 1e-6


def _take(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """table[k, idx[n, k]] for every example n and class k, by a one-hot product (broadcasts
    over a dynamic batch in ONNX, unlike an expanded gather)."""
    positions = torch.arange(table.shape[1], device=idx.device)
    return ((idx[:, :, None] == positions).to(table.dtype) * table[None]).sum(-1)


def _normalised_log(q: torch.Tensor) -> torch.Tensor:
    q = q.clamp_min(EPS)
    return torch.log(q / q.sum(1, keepdim=True))


class HistogramBinning(nn.Module):
    """Per class: ``edges`` (bins - 1 inner boundaries) and ``values`` (bins)."""

    def __init__(self, num_classes: int, bins: int = 15) -> None:
        super().__init__()
        self.register_buffer("edges", torch.zeros(num_classes, bins - 1))
        self.register_buffer("values", torch.zeros(num_classes, bins))

    def map(self, p: torch.Tensor) -> torch.Tensor:
        """Each class's probability mapped to its bin's validation accuracy (not renormalised)."""
        idx = (p[:, :, None] > self.edges[None]).sum(-1)  # bin index per example and class
        return _take(self.values, idx)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return _normalised_log(self.map(logits.softmax(1)))

    @torch.no_grad()
    def fit(self, logits: torch.Tensor, labels: torch.Tensor) -> HistogramBinning:
        p = logits.double().softmax(1).numpy()
        bins = self.values.shape[1]
        for k in range(p.shape[1]):
            pk, yk = p[:, k], (labels.numpy() == k).astype(np.float64)
            edges = np.quantile(pk, np.linspace(0, 1, bins + 1)[1:-1])
            idx = (pk[:, None] > edges[None]).sum(1)
            values = np.array([yk[idx == b].mean() if (idx == b).any() else np.nan
                               for b in range(bins)])
            centers = np.array([pk[idx == b].mean() if (idx == b).any() else np.nan
                                for b in range(bins)])
            values = np.where(np.isnan(values), centers, values)  # empty bin: identity
            values = np.where(np.isnan(values), 0.0, values)
            self.edges[k] = torch.from_numpy(edges)
            self.values[k] = torch.from_numpy(values)
        return self


class IsotonicCalibration(nn.Module):
    """Per class: ``knots`` x-positions and their y-values; linear between, flat outside."""

    def __init__(self, num_classes: int, knots: int = 2) -> None:
        super().__init__()
        self.register_buffer("xs", torch.zeros(num_classes, knots))
        self.register_buffer("ys", torch.zeros(num_classes, knots))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return _normalised_log(self.map(logits.softmax(1)))

    def map(self, p: torch.Tensor) -> torch.Tensor:
        """Each class's probability through its isotonic map (not renormalised)."""
        m = self.xs.shape[1]
        hi = (p[:, :, None] >= self.xs[None]).sum(-1).clamp(1, m - 1)
        x0, x1 = _take(self.xs, hi - 1), _take(self.xs, hi)
        y0, y1 = _take(self.ys, hi - 1), _take(self.ys, hi)
        t = ((p - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
        return y0 + t * (y1 - y0)


def fit_isotonic(logits: torch.Tensor, labels: torch.Tensor) -> IsotonicCalibration:
    """scikit-learn's isotonic regression per class, stored as padded knot tables."""
    require("sklearn", "isotonic calibration")
    from sklearn.isotonic import IsotonicRegression

    p = logits.double().softmax(1).numpy()
    tables = []
    for k in range(p.shape[1]):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(p[:, k], (labels.numpy() == k).astype(np.float64))
        tables.append((iso.X_thresholds_, iso.y_thresholds_))
    m = max(2, max(len(x) for x, _ in tables))
    head = IsotonicCalibration(p.shape[1], m)
    for k, (x, y) in enumerate(tables):
        if len(x) == 1:
            x, y = np.array([x[0], x[0]]), np.array([y[0], y[0]])
        pad = m - len(x)  # repeat the last knot: a zero-width segment changes nothing
        head.xs[k] = torch.from_numpy(np.concatenate([x, np.full(pad, x[-1])]))
        head.ys[k] = torch.from_numpy(np.concatenate([y, np.full(pad, y[-1])]))
    return head
