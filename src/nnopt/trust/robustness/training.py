"""Adversarial training as TrainingTasks: PGD-AT (Madry et al. 2018) trains on PGD examples of
each batch; TRADES (Zhang et al. 2019) trains on clean cross-entropy plus beta times the KL
divergence between the clean and the adversarial prediction, with the adversarial point chosen
to maximise that KL. Any fit() gets it through ``task: {name: adversarial, ...}``.

Attack points are generated with the model in eval mode (batch-norm statistics frozen), then the
loss is taken in training mode.
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
from nnopt.trust.robustness.attacks import pgd, project


class AdversarialConfig(Strict):
    """The attack each training batch is perturbed with."""

    name: Literal["adversarial"] = "adversarial"
    method: Literal["pgd", "trades"] = Field("pgd", description="pgd (Madry) or trades")
    eps: float = Field(0.1, gt=0, le=1, description="L-inf budget, inputs in [0, 1]")
    steps: int = Field(7, ge=1, le=10_000, description="attack iterations per batch")
    alpha: float | None = Field(None, gt=0, description="attack step (default 2.5 eps / steps)")
    beta: float = Field(6.0, ge=0, description="trades: weight of the robustness KL term")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="pgd: smoothing of the "
                                   "cross-entropy on adversarial examples")

    def describe(self) -> str:
        return f"{self.method} (eps {self.eps:g})"


class _Modes:
    """Eval mode for attack generation; the previous mode back afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was)


class AdversarialTask(TrainingTask):
    def __init__(self, cfg: AdversarialConfig, label_smoothing: float = 0.0) -> None:
        self.cfg, self.smoothing = cfg, label_smoothing
        self.alpha = cfg.alpha if cfg.alpha is not None else 2.5 * cfg.eps / cfg.steps
        self.calls = 0

    def _pgd(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return pgd(model, x, y, self.cfg.eps, steps=self.cfg.steps, alpha=self.alpha,
                   seed=self.calls)

    def _trades_point(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Maximise KL(p(x) || p(x')) over the eps-ball, from x + 0.001 N(0, 1)."""
        with torch.no_grad():
            p_clean = model(x).softmax(1)
        g = torch.Generator().manual_seed(self.calls)
        self.calls += 1
        x_adv = (x + 0.001 * torch.randn(x.shape, generator=g).to(x)).clamp(0, 1)
        for _ in range(self.cfg.steps):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                kl = F.kl_div(model(x_adv).log_softmax(1), p_clean, reduction="sum")
                (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = project(x_adv.detach() + self.alpha * grad.sign(), x, self.cfg.eps, "linf")
        return x_adv.detach()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        with _Modes(model):
            x_adv = self._pgd(model, x, y) if self.cfg.method == "pgd" else \
                self._trades_point(model, x)
        if self.cfg.method == "pgd":
            out = model(x_adv)
            return {"loss": F.cross_entropy(out, y, label_smoothing=self.smoothing),
                    "output": out}
        clean = model(x)
        robust = F.kl_div(model(x_adv).log_softmax(1), clean.softmax(1), reduction="batchmean")
        return {"loss": F.cross_entropy(clean, y, label_smoothing=self.smoothing)
                + self.cfg.beta * robust, "output": clean}


@TASKS.register("adversarial", config=AdversarialConfig)
def adversarial(cfg: AdversarialConfig, setting: TaskSetting) -> TrainingTask:
    """Train on adversarial examples of each batch: PGD-AT (Madry et al.) or TRADES."""
    return AdversarialTask(cfg, cfg.label_smoothing)
