"""Post-hoc calibration heads fitted on validation logits by minimising the NLL: temperature
scaling (one T), vector scaling (per-class scale and bias) and matrix scaling (a K x K affine
map) (Guo et al. 2017). The head is appended to the network, so the calibrated model is a plain
PyTorch model that saves, reloads and exports to ONNX like any other."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.core.registry import HEADS
from nnopt.trust.calibration.binning import HistogramBinning, IsotonicCalibration, fit_isotonic

Method = Literal["temperature", "vector", "matrix", "histogram", "isotonic"]


class Temperature(nn.Module):
    """logits / T with T = exp(log_t) > 0; the arg-max (so the accuracy) is unchanged."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.log_t = nn.Parameter(torch.zeros(()))

    @property
    def temperature(self) -> float:
        return float(self.log_t.detach().exp())

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.log_t.exp()


class VectorScaling(nn.Module):
    """logits * w + b, one scale and bias per class."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_classes))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.weight + self.bias


class MatrixScaling(nn.Linear):
    """W logits + b with W initialised to the identity."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes, num_classes)
        with torch.no_grad():
            self.weight.copy_(torch.eye(num_classes))
            self.bias.zero_()


for _name, _cls in {"temperature": Temperature, "vector": VectorScaling, "matrix": MatrixScaling,
                    "histogram": HistogramBinning, "isotonic": IsotonicCalibration}.items():
    HEADS.add(_name, _cls)


def head_size(head: nn.Module) -> int | None:
    """The table size a binning head was built with (None for the parametric heads)."""
    if isinstance(head, HistogramBinning):
        return head.values.shape[1]
    if isinstance(head, IsotonicCalibration):
        return head.xs.shape[1]
    return None


def fit_head(method: Method, logits: torch.Tensor, labels: torch.Tensor, *,
             max_iter: int = 200, l2: float = 0.0, bins: int = 15) -> nn.Module:
    """A calibration head fitted on (validation) logits and labels: the scaling heads by L-BFGS
    on the NLL (``l2`` pulls a matrix or vector head towards the identity, Kull et al. 2019's
    off-diagonal idea, simplified), the binning heads by their own fit."""
    if method not in HEADS:
        raise ValueError(f"unknown calibration method '{method}'; choose "
                         + ", ".join(HEADS.names()))
    if method == "histogram":
        return HistogramBinning(logits.shape[1], bins).fit(logits, labels)
    if method == "isotonic":
        return fit_isotonic(logits, labels)
    head = HEADS.get(method).fn(logits.shape[1]).double()
    init = {k: v.detach().clone() for k, v in head.state_dict().items()}
    logits = logits.detach().double()
    opt = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=max_iter,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(logits), labels)
        if l2 and method != "temperature":
            loss = loss + l2 * sum(((p - init[n]) ** 2).sum() for n, p in head.named_parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return head.float()
