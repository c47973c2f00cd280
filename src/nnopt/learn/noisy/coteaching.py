"""Co-teaching (Han et al. 2018): two networks of the same architecture train side by side; on
every batch each keeps its small-loss share of the examples and the *other* network learns from
them, so each filters the noisy labels the other would memorise.

The forget rate follows the paper's code: it rises linearly from 0 to ``forget_rate``
(to the power ``exponent``) over the first ``num_gradual`` epochs, then stays. The stage's model
is the first network; the peer starts from different (seeded) weights and is dropped at the end.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from nnopt.core.config import Strict
from nnopt.core.registry import TASKS
from nnopt.core.task import TrainingTask
from nnopt.train.task import TaskSetting


class CoteachingConfig(Strict):
    """The share of each batch to drop and how fast to get there."""

    name: Literal["coteaching"] = "coteaching"
    forget_rate: float = Field(0.2, ge=0, lt=1, description="share of each batch dropped once "
                               "the schedule has risen (set it to the noise rate estimate)")
    num_gradual: int = Field(10, ge=1, description="epochs over which the rate rises")
    exponent: float = Field(1.0, gt=0, description="the schedule's end value is "
                            "forget_rate ** exponent")

    def describe(self) -> str:
        return f"co-teaching (forget {self.forget_rate:g})"


def forget_schedule(cfg: CoteachingConfig, epochs: int) -> list[float]:
    """The forget rate of each epoch (0-based): linspace(0, forget_rate ** exponent,
    num_gradual) for the first epochs, forget_rate after."""
    out = [cfg.forget_rate] * epochs
    top = cfg.forget_rate ** cfg.exponent
    for e in range(min(cfg.num_gradual, epochs)):
        out[e] = top * e / (cfg.num_gradual - 1) if cfg.num_gradual > 1 else top
    return out


def reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every layer's parameters reset from ``seed``."""
    peer = copy.deepcopy(model)
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        for m in peer.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    finally:
        torch.set_rng_state(state)
    return peer


class CoteachingTask(TrainingTask):
    data_parallel = False  # under several processes it runs replicated on each
    data_parallel_why = "it picks the small-loss examples within each whole batch"

    def __init__(self, cfg: CoteachingConfig, epochs: int, examples_per_epoch: int,
                 seed: int = 0) -> None:
        self.cfg, self.schedule = cfg, forget_schedule(cfg, epochs)
        self.per_epoch, self.seed = examples_per_epoch, seed
        self.seen = 0
        self.peer: nn.Module | None = None

    def setup(self, model: nn.Module) -> list[nn.Module]:
        self.peer = reinitialised(model, self.seed + 1).train()
        return [self.peer]

    def teardown(self) -> None:
        self.peer = None

    @property
    def epoch(self) -> int:
        return min(self.seen // max(self.per_epoch, 1), len(self.schedule) - 1)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        assert self.peer is not None, "setup() was not called"
        self.peer.train(model.training)
        rate = self.schedule[self.epoch]
        self.seen += len(y)
        out1, out2 = model(x), self.peer(x)
        loss1 = F.cross_entropy(out1, y, reduction="none")
        loss2 = F.cross_entropy(out2, y, reduction="none")
        keep = max(1, round((1 - rate) * len(y)))
        small1 = torch.argsort(loss1.detach())[:keep]  # what network 1 trusts
        small2 = torch.argsort(loss2.detach())[:keep]
        # each network learns from the examples its peer trusts
        loss = loss1[small2].mean() + loss2[small1].mean()
        return {"loss": loss, "output": out1, "forget_rate": rate}


@TASKS.register("coteaching", config=CoteachingConfig)
def coteaching_task(cfg: CoteachingConfig, setting: TaskSetting) -> TrainingTask:
    """Co-teaching (Han et al. 2018): two networks exchange their small-loss examples."""
    bs = setting.batch_size
    n = setting.examples
    return CoteachingTask(cfg, setting.epochs, n - (1 if n % bs == 1 and n > 1 else 0), setting.seed)
