"""The ``lottery`` step: iterative magnitude pruning with weight rewinding (Frankle & Carbin 2019;
rewinding to an early iterate as in Frankle et al. 2020), with the random re-initialisation control.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from nnopt.compress.prune import masks as M
from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.train.callbacks import Callback, FitState
from nnopt.train.fit import TrainConfig, evaluate


class LotteryConfig(Strict):
    """Rounds of train - prune - rewind; the last ticket is the stage's model."""

    rounds: int = Field(5, ge=1, description="pruning rounds after the dense training")
    rate: float = Field(0.2, gt=0, lt=1, description="share of the remaining weights pruned per round")
    rewind_epoch: int = Field(1, ge=0, description="epoch whose weights tickets restart from "
                              "(0: the original initialisation)")
    scope: str = Field("global", pattern="^(global|layer)$")
    exclude: list[str] = Field(default_factory=list, description="layer names not to prune")
    control: bool = Field(True, description="also train a random re-initialisation with the same "
                          "masks every round")
    train: TrainConfig = Field(default_factory=TrainConfig, description="training of every round")


class _Rewind(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch, self.state = epoch, None

    def on_epoch_end(self, state: FitState) -> None:
        if state.epoch + 1 == self.epoch:
            self.state = copy.deepcopy(state.model.state_dict())


def _reinit(model: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()


@STEPS.register("lottery", config=LotteryConfig,
                tiny={"rounds": 1, "rewind_epoch": 0, "train": {"epochs": 1, "batch_size": 32}})
def lottery(model: nn.Module, cfg: LotteryConfig, ctx: RunContext) -> nn.Module:
    """Find a winning ticket: train, prune the smallest weights, rewind, retrain; repeat."""
    if cfg.rewind_epoch > cfg.train.epochs:
        raise NnoptError(f"rewind_epoch {cfg.rewind_epoch} is past the {cfg.train.epochs} "
                         "training epochs")
    data = ctx.data
    net = copy.deepcopy(model)
    rewind = _Rewind(cfg.rewind_epoch)
    start = copy.deepcopy(net.state_dict())

    def train(m: nn.Module, extra: list[Any], tag: str):  # noqa: ANN202
        return ctx.fit(m, cfg.train, extra=extra, stage=f"{ctx.stage}/{tag}", record="none")

    train(net, [rewind], "dense")
    rewound = rewind.state if cfg.rewind_epoch else start
    names = list(M.prunable_weights(net, cfg.exclude))
    dense_acc = evaluate(net, data.test)["accuracy"]
    rows: list[dict[str, float]] = [{"round": 0, "remaining": 1.0, "ticket_test_accuracy": dense_acc,
                                     "ticket_val_accuracy": evaluate(net, data.val)["accuracy"]}]
    masks: M.Masks = {}
    for r in range(1, cfg.rounds + 1):
        amount = 1.0 - (1.0 - cfg.rate) ** r
        weights = M.prunable_weights(net, cfg.exclude)
        masks = M.magnitude_masks(weights, amount, cfg.scope)  # pruned weights are zero: go first
        ticket = copy.deepcopy(net)
        ticket.load_state_dict(rewound)
        M.apply_masks(ticket, masks)
        train(ticket, [M.KeepMasks(masks)], f"round{r}")
        row = {"round": r, "remaining": 1.0 - M.global_sparsity(ticket, names),
               "ticket_test_accuracy": evaluate(ticket, data.test)["accuracy"],
               "ticket_val_accuracy": evaluate(ticket, data.val)["accuracy"]}
        if cfg.control:
            rand = copy.deepcopy(ticket)
            _reinit(rand, ctx.seed + 1000 + r)
            M.apply_masks(rand, masks)
            train(rand, [M.KeepMasks(masks)], f"random{r}")
            row["random_test_accuracy"] = evaluate(rand, data.test)["accuracy"]
        rows.append(row)
        ctx.log.info("lottery round %d: %.1f%% of weights left, ticket %.4f", r,
                     100 * row["remaining"], row["ticket_test_accuracy"])
        net = ticket
    M.mark_sparse(net, masks, "unstructured")
    ctx.record("lottery", {"rows": rows, "rate": cfg.rate, "rewind_epoch": cfg.rewind_epoch})
    ctx.record("sparsity", M.sparsity(net, names))
    return net
