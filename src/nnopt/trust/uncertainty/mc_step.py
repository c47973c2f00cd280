"""The ``mc_dropout`` step: a model that keeps dropout active at inference and predicts the mean
of T stochastic passes, saved and reloaded like any other (a spec transform).

It can add dropout to a model without any (before the classifier, or before every Linear layer)
and fine-tune it so the network learns to work with it; without fine-tuning, the added dropout
only perturbs a network that never saw it.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS, TRANSFORMS
from nnopt.measure.base import is_nnopt_model
from nnopt.models.saving import record_int
from nnopt.models.structure import replace_module
from nnopt.train.fit import TrainConfig
from nnopt.trust.uncertainty import log_mean_softmax
from nnopt.trust.uncertainty.mc_dropout import DROPOUT, SAMPLES, has_dropout, mc_logits
from nnopt.trust.uncertainty.records import McDropoutRecord


class MCDropoutNet(nn.Module):
    """Runs ``net`` T times with its dropout layers in training mode (the rest in eval mode) and
    returns the log of the mean softmax. Each forward call is seeded, so predictions repeat."""

    stochastic = True

    def __init__(self, net: nn.Module, samples: int = SAMPLES, seed: int = 0) -> None:
        super().__init__()
        self.net, self.samples, self.seed = net, samples, seed

    def sample_logits(self, h: torch.Tensor) -> torch.Tensor:
        return mc_logits(self.net, h, self.samples, seed=self.seed, batch_size=max(len(h), 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.training:  # fine-tuning: one ordinary stochastic pass
            return self.net(h)
        return log_mean_softmax(self.sample_logits(h))


def add_dropout(net: nn.Module, p: float, where: str) -> list[str]:
    """Insert Dropout(p) before the last Linear layer ("classifier") or before every Linear
    layer but the input one ("linear"); return the names of the layers it now precedes."""
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NnoptError("mc_dropout.add found no Linear layer to put dropout before")
    chosen = linears[-1:] if where == "classifier" else linears[1:] or linears[-1:]
    for name in chosen:
        replace_module(net, name, nn.Sequential(nn.Dropout(p), net.get_submodule(name)))
    return chosen


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    for name in transform.get("added", []):
        replace_module(model.net, name,
                       nn.Sequential(nn.Dropout(transform["p"]), model.net.get_submodule(name)))
    model.net = MCDropoutNet(model.net, record_int(transform, "samples", 1, 1000),
                             record_int(transform, "seed", 0, 2 ** 62, default=0))


TRANSFORMS.add("mc_dropout", _reapply)


class McDropoutConfig(Strict):
    """Samples at inference, and dropout to add where the model has none."""

    samples: int = Field(SAMPLES, ge=2, le=1000, description="stochastic passes averaged")
    add: float | None = Field(None, gt=0, lt=1, description="insert dropout with this rate "
                              "(required for a model without dropout)")
    where: Literal["classifier", "linear"] = Field("classifier", description="before the last "
                                                   "Linear layer, or before every Linear but the first")
    finetune: TrainConfig | None = Field(None, description="train with the dropout in place "
                                         "(recommended after adding it)")


@STEPS.register("mc_dropout", config=McDropoutConfig, tiny={"samples": 3})
def mc_dropout_step(model: nn.Module, cfg: McDropoutConfig, ctx: RunContext) -> nn.Module:
    """Make inference average T dropout samples (adding dropout first if asked)."""
    if not is_nnopt_model(model):
        raise NnoptError("mc_dropout needs a PyTorch model; put it before export/quantize")
    if any(t.get("kind") == "mc_dropout" for t in model.spec.get("transforms", [])):
        raise NnoptError("this model already averages MC-dropout samples")
    out = copy.deepcopy(model)
    added: list[str] = []
    if cfg.add is not None:
        added = add_dropout(out.net, cfg.add, cfg.where)
    elif not has_dropout(out):
        raise NnoptError("the model has no dropout layer; set mc_dropout.add (e.g. 0.2) to add "
                         "one, and finetune so the network learns with it")
    if cfg.finetune is not None:
        ctx.fit(out, cfg.finetune, record="history")
    out.net = MCDropoutNet(out.net, cfg.samples, ctx.seed)
    transform = {"kind": "mc_dropout", "samples": cfg.samples, "seed": ctx.seed,
                 **({"added": added, "p": cfg.add} if added else {})}
    out.spec = {**out.spec, "transforms": [*out.spec.get("transforms", []), transform]}
    rates = sorted({m.p for m in out.modules() if isinstance(m, DROPOUT)})
    ctx.record(McDropoutRecord(samples=cfg.samples, dropout_rates=rates, added_before=added,
                               finetuned=cfg.finetune is not None))
    return out
