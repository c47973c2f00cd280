"""The ``darts`` step: differentiable architecture search (Liu et al. 2019) on a cell space.
Every edge of the cells is a softmax(alpha)-weighted mix of all candidate operations; network
weights train on one half of the training split and the architecture weights alpha on the other
half, alternately (the paper's first-order approximation). The genotype keeps, per node, the two
strongest incoming edges with their strongest non-zero operation; that network (model
``darts``) is retrained from scratch and becomes the stage's model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn
from tqdm import tqdm

from nnopt.context import RunContext
from nnopt.core.config import BatchSize, Epochs, Strict
from nnopt.core.errors import NnoptError, TrainingError, unknown_choice
from nnopt.core.registry import STEPS
from nnopt.models import build_model
from nnopt.models.base import Normalize
from nnopt.models.darts import OPS, CellNetwork, DartsConfig
from nnopt.train.fit import TrainConfig, batches


class MixedOp(nn.Module):
    """sum_o softmax(alpha)_o * o(x) over the candidate operations of one edge."""

    def __init__(self, ops: list[str], c: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(OPS[o](c, stride, False) for o in ops)
        self.index = 0  # the edge's row in the cell type's alpha matrix, set by the supernet

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        w = weights[self.index]
        return sum(wi * op(x) for wi, op in zip(w, self.ops))  # type: ignore[return-value]


class Supernet(nn.Module):
    """The relaxed network: every edge a MixedOp; alpha for normal and for reduction cells."""

    def __init__(self, in_ch: int, ops: list[str], channels: int, cells: int, nodes: int,
                 num_classes: int) -> None:
        super().__init__()
        self.op_names, self.nodes = ops, nodes
        self.net = CellNetwork(in_ch, channels, cells, nodes, num_classes,
                               lambda red, c: lambda node, j, s: MixedOp(ops, c, s),
                               affine=False)
        edges = sum(n + 2 for n in range(nodes))
        for cell in self.net.cells:
            for i, key in enumerate(cell.edges):  # the same (node, input) order in every cell
                cell.edges[key].index = i
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(edges, len(ops)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(edges, len(ops)))

    def alphas(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def weights(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (F.softmax(self.alpha_normal, dim=-1), F.softmax(self.alpha_reduce, dim=-1))
        return self.net.classifier(self.net.features(x, w))

    def genotype(self) -> dict[str, list[tuple[str, int]]]:
        """Per node: the two incoming edges whose best non-zero operation weighs most."""
        out = {}
        for kind, alpha in (("normal", self.alpha_normal), ("reduce", self.alpha_reduce)):
            w = F.softmax(alpha.detach(), dim=-1)
            gene, row = [], 0
            for node in range(self.nodes):
                rows = w[row:row + node + 2]
                best = []
                for j in range(node + 2):
                    scored = [(float(rows[j, k]), self.op_names[k])
                              for k in range(len(self.op_names)) if self.op_names[k] != "zero"]
                    best.append((*max(scored), j))
                for _, op, j in sorted(best, reverse=True)[:2]:
                    gene.append((op, j))
                row += node + 2
            out[kind] = gene
        return out


class DartsSearchConfig(Strict):
    """The cell space, the bi-level search, and the retraining of the derived network."""

    ops: list[str] = Field(default_factory=lambda: ["zero", "skip", "sep3", "dil3", "max3",
                                                    "avg3"],
                           description="candidate operations on every edge")
    channels: int = Field(8, ge=2)
    cells: int = Field(3, ge=1, le=12)
    nodes: int = Field(3, ge=1, le=6)
    epochs: Epochs = Field(3, description="search epochs over the weight half")
    batch_size: BatchSize = Field(64, ge=2)
    lr: float = Field(0.003, gt=0, description="Adam learning rate of the weights")
    alpha_lr: float = Field(0.0006, gt=0, description="Adam learning rate of alpha")
    alpha_weight_decay: float = Field(0.001, ge=0)
    limit: int | None = Field(10_000, ge=2, description="training examples the search uses "
                              "(split in two halves; null: all)")
    retrain: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=5))

    @field_validator("ops")
    @classmethod
    def _ops(cls, ops: list[str]) -> list[str]:
        for o in ops:
            if o not in OPS:
                raise ValueError(unknown_choice("DARTS operation", o, OPS))
        if not [o for o in ops if o != "zero"]:
            raise ValueError("ops needs at least one operation besides 'zero'")
        return ops


def search(cfg: DartsSearchConfig, ctx: RunContext) -> tuple[Supernet, list[dict[str, Any]]]:
    """Alternate weight steps (half A) and alpha steps (half B); history per epoch."""
    data = ctx.data
    if len(data.input_shape) != 3:
        raise NnoptError(f"darts searches image cells; inputs here are {data.input_shape}")
    gen = torch.Generator().manual_seed(ctx.seed)
    n = min(cfg.limit or len(data.train), len(data.train))
    idx = torch.randperm(len(data.train), generator=gen)[:n]
    half_a, half_b = data.train.take(idx[:n // 2]), data.train.take(idx[n // 2:])
    torch.manual_seed(ctx.seed)
    net = Supernet(data.input_shape[0], cfg.ops, cfg.channels, cfg.cells, cfg.nodes,
                   data.num_classes)
    norm = _normalize(data)
    opt_w = torch.optim.Adam(net.weights(), lr=cfg.lr)
    opt_a = torch.optim.Adam(net.alphas(), lr=cfg.alpha_lr, betas=(0.5, 0.999),
                             weight_decay=cfg.alpha_weight_decay)
    steps = cfg.epochs * max(1, len(half_a) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_w, steps)
    history = []
    bar = _bar(ctx, cfg.epochs)
    for epoch in range(cfg.epochs):
        net.train()
        b_batches = iter(batches(len(half_b), cfg.batch_size, gen))
        total, count = 0.0, 0
        for ia in batches(len(half_a), cfg.batch_size, gen):
            ib = next(b_batches, None)
            if ib is None:
                b_batches = iter(batches(len(half_b), cfg.batch_size, gen))
                ib = next(b_batches)
            opt_a.zero_grad()  # architecture step on half B (first-order)
            F.cross_entropy(net(norm(half_b.x[ib])), half_b.y[ib]).backward()
            opt_a.step()
            opt_w.zero_grad()  # weight step on half A
            loss = F.cross_entropy(net(norm(half_a.x[ia])), half_a.y[ia])
            if not torch.isfinite(loss):
                raise TrainingError(f"stage '{ctx.stage}': DARTS search loss is {loss.item()} "
                                    f"at epoch {epoch + 1}; lower lr or alpha_lr")
            loss.backward()
            nn.utils.clip_grad_norm_(net.weights(), 5.0)
            opt_w.step()
            sched.step()
            total, count = total + loss.item(), count + 1
        net.eval()
        with torch.no_grad():
            val = data.val if len(data.val) else half_b
            correct = sum(int((net(norm(val.x[i:i + 500])).argmax(1) == val.y[i:i + 500]).sum())
                          for i in range(0, min(len(val), 2000), 500))
        history.append({"epoch": epoch + 1, "train_loss": total / max(count, 1),
                        "supernet_val_accuracy": correct / min(len(val), 2000),
                        "alpha_normal": F.softmax(net.alpha_normal, -1).tolist(),
                        "alpha_reduce": F.softmax(net.alpha_reduce, -1).tolist(),
                        "genotype": net.genotype()})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / max(count, 1):.3f}")
    if bar is not None:
        bar.close()
    return net, history


def _normalize(data: Any) -> nn.Module:
    if data.mean and data.std:
        return Normalize(data.mean, data.std, len(data.input_shape) - 1)
    return nn.Identity()


def _bar(ctx: RunContext, total: int) -> Any:
    if not ctx.progress:
        return None
    return tqdm(total=total, desc=f"{ctx.stage} search", leave=False)


@STEPS.register("darts", config=DartsSearchConfig,
                tiny={"ops": ["zero", "skip", "sep3", "max3"], "channels": 2, "cells": 2,
                      "nodes": 2, "epochs": 1, "batch_size": 16, "limit": 64,
                      "retrain": {"epochs": 1, "batch_size": 16}})
def darts_step(model: nn.Module, cfg: DartsSearchConfig, ctx: RunContext) -> nn.Module:
    """Differentiable architecture search on a cell space; the derived network retrained."""
    net, history = search(cfg, ctx)
    genotype = net.genotype()
    derived = DartsConfig(channels=cfg.channels, cells=cfg.cells, nodes=cfg.nodes, **genotype)
    out = build_model(derived, ctx.data.input_shape, ctx.data.num_classes, ctx.data.mean,
                      ctx.data.std)
    ctx.fit(out, cfg.retrain)
    ctx.record("darts", {"ops": cfg.ops, "genotype": genotype, "search": history,
                         "search_examples": min(cfg.limit or len(ctx.data.train),
                                                len(ctx.data.train)),
                         "supernet_params": sum(p.numel() for p in net.weights())})
    return out
