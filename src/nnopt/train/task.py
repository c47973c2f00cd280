"""The default training objective, ``task: {name: classify}``: cross-entropy with optional label
smoothing, a noise-robust loss, or mixup. Other objectives register in ``TASKS`` where they
live (adversarial training in trust/, co-teaching and ELR in learn/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from nnopt.core.config import Strict
from nnopt.core.registry import TASKS
from nnopt.core.task import TrainingTask
from nnopt.train.losses import LossConfig, mixup_batch, per_example


@dataclass(frozen=True)
class TaskSetting:
    """What a task builder may need besides its config: the training length and data size."""

    epochs: int
    batch_size: int
    examples: int
    seed: int
    stage: str


class ClassifyConfig(Strict):
    """Cross-entropy (or a noise-robust loss) on the model's logits."""

    name: Literal["classify"] = "classify"
    loss: LossConfig = Field(default_factory=LossConfig, description="the classification "
                             "loss: ce, or a noise-robust gce, sce, bootstrap_soft/hard")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="ce only (Szegedy et al. 2016)")
    mixup: float | None = Field(None, gt=0, description="mixup with Beta(a, a) mixing weights")

    @model_validator(mode="after")
    def _smoothing_with_ce(self) -> ClassifyConfig:
        if self.label_smoothing and self.loss.name != "ce":
            raise ValueError(f"label_smoothing applies to the ce loss, not to {self.loss.name}")
        return self

    def describe(self) -> str:
        parts = [self.loss.name.replace("_", " ") if self.loss.name != "ce" else "cross-entropy"]
        if self.loss.name == "gce":
            parts[0] += f" q={self.loss.q:g}"
        if self.label_smoothing:
            parts.append(f"label smoothing {self.label_smoothing:g}")
        if self.mixup:
            parts.append(f"mixup {self.mixup:g}")
        return " + ".join(parts)


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


@TASKS.register("classify", config=ClassifyConfig)
def classify(cfg: ClassifyConfig, setting: TaskSetting) -> TrainingTask:
    """Cross-entropy, label smoothing, a noise-robust loss (gce, sce, bootstrap) or mixup."""
    return ClassificationTask(label_smoothing=cfg.label_smoothing, loss=cfg.loss, mixup=cfg.mixup)
