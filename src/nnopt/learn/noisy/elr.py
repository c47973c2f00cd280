"""Early-learning regularisation (ELR, Liu et al. 2020): networks fit the clean labels before
they memorise the wrong ones, so a running average of each example's own early predictions is
a better target than its given label. The loss adds, to cross-entropy,

    lambda * log(1 - <p_i, t_i>),    t_i <- beta t_i + (1 - beta) p_i / sum(p_i)

per example i, with p the softmax clamped to [1e-4, 1 - 1e-4] and t the target kept (detached)
for every training example. Minimising log(1 - <p, t>) pulls p towards t, so the target's early
answer outweighs a wrong label's pull. The paper's values for CIFAR-10 are the defaults.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from nnopt.core.config import Strict
from nnopt.core.registry import TASKS
from nnopt.core.task import TrainingTask
from nnopt.train.task import TaskSetting


class ElrConfig(Strict):
    """Weight of the regulariser and the momentum of the per-example target."""

    name: Literal["elr"] = "elr"
    lam: float = Field(3.0, gt=0, description="weight of log(1 - <p, t>)")
    beta: float = Field(0.7, ge=0, lt=1, description="momentum of the target average")

    def describe(self) -> str:
        return f"ELR (lambda {self.lam:g}, beta {self.beta:g})"


def elr_penalty(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log(1 - <p, t>) per example (p clamped as in the paper)."""
    return torch.log(1 - (p * target).sum(1))


class ElrTask(TrainingTask):
    """Cross-entropy plus ELR; keeps one target row per training example (index required)."""

    data_parallel = False  # under several processes it runs replicated on each
    data_parallel_why = "it keeps a per-example target memory"

    def __init__(self, cfg: ElrConfig, examples: int) -> None:
        self.cfg, self.examples = cfg, examples
        self.target: torch.Tensor | None = None

    def teardown(self) -> None:
        self.target = None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        if index is None:
            raise ValueError("ELR keeps a target per training example: fit() must pass index")
        out = model(x)
        if self.target is None:
            self.target = torch.zeros(self.examples, out.shape[1], device=out.device)
        p = out.softmax(1).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.target[index] = (self.cfg.beta * self.target[index]
                                  + (1 - self.cfg.beta) * p / p.sum(1, keepdim=True))
        loss = F.cross_entropy(out, y) + self.cfg.lam * elr_penalty(p, self.target[index]).mean()
        return {"loss": loss, "output": out}


@TASKS.register("elr", config=ElrConfig)
def elr_task(cfg: ElrConfig, setting: TaskSetting) -> TrainingTask:
    """Early-learning regularisation (Liu et al. 2020) towards running-average predictions."""
    return ElrTask(cfg, setting.examples)
