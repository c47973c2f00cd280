"""Deep ensembles (Lakshminarayanan et al. 2017): N copies of the architecture trained from
different seeds; the ensemble predicts the average of their probabilities.

The ensemble is one ordinary nnopt model (its ``net`` holds the members), so it saves as
safetensors plus a spec transform, reloads without pickle, exports to ONNX and is measured like
any other stage: its size and latency are those of all N members, stated honestly.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import METRICS, STEPS, TRANSFORMS
from nnopt.measure.base import Measurement, is_nnopt_model
from nnopt.measure.calibration import expected_calibration_error
from nnopt.measure.quantity import FRACTION, NATS, SCORE_LOW
from nnopt.models.saving import fresh_model, record_int
from nnopt.train.fit import TrainConfig, evaluate
from nnopt.trust.uncertainty import log_mean_softmax, sample_logits
from nnopt.trust.uncertainty.records import EnsembleRecord


class EnsembleNet(nn.Module):
    """Members' logits -> log of their mean softmax (so softmax of the output is the average)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def sample_logits(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(h) for m in self.members])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return log_mean_softmax(self.sample_logits(h))


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    members = record_int(transform, "members", 1, 64)
    model.net = EnsembleNet([copy.deepcopy(model.net) for _ in range(members)])


TRANSFORMS.add("ensemble", _reapply)


class EnsembleConfig(Strict):
    """How many members and how each is trained."""

    members: int = Field(5, ge=2, le=64, description="number of independently trained members")
    train: TrainConfig = Field(default_factory=TrainConfig,
                               description="training of every member (seeded seed, seed+1, ...)")
    keep_incoming: bool = Field(False, description="use the incoming (trained) model as member "
                                "0 and train only the others")


@STEPS.register("ensemble", config=EnsembleConfig,
                tiny={"members": 2, "train": {"epochs": 1, "batch_size": 32}})
def ensemble(model: nn.Module, cfg: EnsembleConfig, ctx: RunContext) -> nn.Module:
    """Train N members of the incoming architecture from fresh seeded weights; average them."""
    if not is_nnopt_model(model):
        raise NnoptError("ensemble trains PyTorch members; put it before export/quantize")
    spec = model.spec
    members, rows = [], []
    for i in range(cfg.members):
        seed = ctx.seed + i
        if i == 0 and cfg.keep_incoming:
            member = copy.deepcopy(model)
            note = "incoming model"
        else:
            member = fresh_model(model, seed, "ensemble")
            state = ctx.fit(member, cfg.train, stage=f"{ctx.stage} member {i}", seed=seed,
                            record="none")
            note = f"seed {seed}, {len(state.history)} epochs"
        rows.append({"member": i, "trained": note,
                     **({f"val_{k}": v for k, v in evaluate(member, ctx.data.val).items()}
                        if len(ctx.data.val) else {})})
        members.append(member.net)
        ctx.log.info("%s: member %d/%d trained", ctx.stage, i + 1, cfg.members)
    out = copy.deepcopy(model)
    out.net = EnsembleNet(members)
    out.spec = {**spec, "transforms": [{"kind": "ensemble", "members": cfg.members}]}
    ctx.record(EnsembleRecord(members=rows))
    return out


def member_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """(members, examples, classes) logits of an ensemble model, else None."""
    if isinstance(getattr(model, "net", None), EnsembleNet):
        return sample_logits(model, x)
    return None


@METRICS.register("members", produces=["accuracy_best_member", "nll_best_member",
                                       "ece_best_member"],
                  quantities={"accuracy_best_member": FRACTION, "nll_best_member": NATS,
                              "ece_best_member": SCORE_LOW})
def members(m: Measurement) -> dict[str, float]:
    """For an ensemble: each member's test accuracy, NLL and ECE (details) and the best member's
    value of each (the member that is best on that metric)."""
    logits = member_logits(m.model, m.data.test.x)
    if logits is None:
        return {}
    y, rows = m.labels, []
    for i, z in enumerate(logits.double()):
        rows.append({"member": i, "accuracy": (z.argmax(1) == y).double().mean().item(),
                     "nll": torch.nn.functional.cross_entropy(z, y).item(),
                     "ece": expected_calibration_error(z.softmax(1), y)})
    m.details["members"] = rows
    return {"accuracy_best_member": max(r["accuracy"] for r in rows),
            "nll_best_member": min(r["nll"] for r in rows),
            "ece_best_member": min(r["ece"] for r in rows)}
