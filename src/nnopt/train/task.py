"""TrainingTask: what the loss is. Techniques that change the loss subclass it."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.train.losses import LossConfig, mixup_batch, per_example


class TrainingTask:
    """Turns a batch into ``{"loss": scalar, "output": logits}``; subclasses change the loss.

    ``setup(model)`` may return extra modules whose parameters train alongside the model
    (e.g. distillation adapters); ``teardown()`` runs when fit() ends, even on an error
    (e.g. to remove hooks). ``index`` holds the batch's positions in the training split, for
    tasks that keep per-example state (cached teacher outputs, per-sample losses).
    """

    def setup(self, model: nn.Module) -> list[nn.Module]:
        return []

    def teardown(self) -> None:
        return None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        raise NotImplementedError


class ClassificationTask(TrainingTask):
    """Cross-entropy on the model's logits, with optional label smoothing (Szegedy et al. 2016),
    or a noise-robust loss (``loss``), optionally on mixup batches (``mixup`` = Beta alpha)."""

    def __init__(self, *, label_smoothing: float = 0.0, loss: Any = None,
                 mixup: float | None = None) -> None:
        self.label_smoothing = label_smoothing
        self.loss = loss if loss is not None else LossConfig()
        self.mixup = mixup
        if self.loss.name != "ce" and label_smoothing:
            raise ValueError(f"label_smoothing applies to the ce loss, not to {self.loss.name}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        if self.mixup:
            mixed, perm, lam = mixup_batch(x, self.mixup)
            out = model(mixed)
            loss = (lam * per_example(self.loss, out, y, self.label_smoothing)
                    + (1 - lam) * per_example(self.loss, out, y[perm], self.label_smoothing))
            return {"loss": loss.mean(), "output": out}
        out = model(x)
        if self.loss.name == "ce":  # the fused kernel
            return {"loss": F.cross_entropy(out, y, label_smoothing=self.label_smoothing),
                    "output": out}
        return {"loss": per_example(self.loss, out, y).mean(), "output": out}
