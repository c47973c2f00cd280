"""TrainingTask: what the loss is. Techniques that change the loss subclass it."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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
    """Cross-entropy on the model's logits, with optional label smoothing (Szegedy et al. 2016)."""

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        out = model(x)
        return {"loss": F.cross_entropy(out, y, label_smoothing=self.label_smoothing),
                "output": out}
