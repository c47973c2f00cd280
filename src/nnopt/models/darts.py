"""DARTS cells (Liu et al. 2019, "DARTS: Differentiable Architecture Search"): a cell takes the
two previous cells' outputs, builds ``nodes`` intermediate nodes, each the sum of operations on
earlier states, and outputs their concatenation. The search (``nnopt.search.darts``) relaxes
every edge into a softmax-weighted mix of all operations; the derived network registered here
as ``darts`` keeps two edges per node with one operation each (its genotype), so it is built,
saved and reloaded from its config like any other model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from nnopt.core.errors import unknown_choice
from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig
from nnopt.models.lenet import _image


class Zero(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride] * 0.0


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset stride-2 1x1 convolutions (keeps all pixels)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], dim=1))


def _relu_conv_bn(c: int, k: int, stride: int, affine: bool, dilation: int = 1,
                  separable: bool = False) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    if separable:
        convs: list[nn.Module] = [nn.Conv2d(c, c, k, stride, pad, dilation=dilation, groups=c,
                                            bias=False), nn.Conv2d(c, c, 1, bias=False)]
    else:
        convs = [nn.Conv2d(c, c, k, stride, pad, dilation=dilation, bias=False)]
    return nn.Sequential(nn.ReLU(), *convs, nn.BatchNorm2d(c, affine=affine))


OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "zero": lambda c, s, a: Zero(s),
    "skip": lambda c, s, a: nn.Identity() if s == 1 else FactorizedReduce(c, c, a),
    "conv3": lambda c, s, a: _relu_conv_bn(c, 3, s, a),
    "sep3": lambda c, s, a: _relu_conv_bn(c, 3, s, a, separable=True),
    "sep5": lambda c, s, a: _relu_conv_bn(c, 5, s, a, separable=True),
    "dil3": lambda c, s, a: _relu_conv_bn(c, 3, s, a, dilation=2, separable=True),
    "max3": lambda c, s, a: nn.MaxPool2d(3, s, 1),
    "avg3": lambda c, s, a: nn.AvgPool2d(3, s, 1, count_include_pad=False),
}


def reduction_cells(cells: int) -> set[int]:
    """Cells that halve the resolution (and double the channels): at 1/3 and 2/3 of the depth."""
    return {cells // 3, 2 * cells // 3} - {0} if cells >= 3 else ({1} if cells == 2 else set())


class Cell(nn.Module):
    """A cell whose every node sums ``edge(j)(state_j)`` over its incoming edges. ``edges`` maps
    (node, input state) to the module on that edge; states 0 and 1 are the cell's inputs."""

    def __init__(self, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool, nodes: int, make_edge: Callable[[int, int, int],
                                                                     nn.Module | None],
                 affine: bool = True) -> None:
        super().__init__()
        self.reduction, self.nodes = reduction, nodes
        self.pre0 = FactorizedReduce(c_prev_prev, c, affine) if reduction_prev else \
            nn.Sequential(nn.ReLU(), nn.Conv2d(c_prev_prev, c, 1, bias=False),
                          nn.BatchNorm2d(c, affine=affine))
        self.pre1 = nn.Sequential(nn.ReLU(), nn.Conv2d(c_prev, c, 1, bias=False),
                                  nn.BatchNorm2d(c, affine=affine))
        self.edges = nn.ModuleDict()
        for node in range(nodes):
            for j in range(node + 2):
                stride = 2 if reduction and j < 2 else 1
                edge = make_edge(node, j, stride)
                if edge is not None:
                    self.edges[f"{node}_{j}"] = edge

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, *weights: torch.Tensor
                ) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(self.nodes):
            total = 0
            for j in range(node + 2):
                key = f"{node}_{j}"
                if key in self.edges:
                    edge = self.edges[key]
                    total = total + (edge(states[j], *weights) if weights else edge(states[j]))
            states.append(total)  # type: ignore[arg-type]
        return torch.cat(states[2:], dim=1)


class CellNetwork(nn.Module):
    """Stem convolution, ``cells`` cells (reductions at 1/3 and 2/3), pooling, classifier."""

    def __init__(self, in_ch: int, channels: int, cells: int, nodes: int, num_classes: int,
                 make_edge: Callable[[bool, int], Callable[[int, int, int], nn.Module | None]],
                 affine: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, 3 * channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(3 * channels))
        reductions = reduction_cells(cells)
        c_pp, c_p, c = 3 * channels, 3 * channels, channels
        self.cells = nn.ModuleList()
        red_prev = False
        for i in range(cells):
            red = i in reductions
            if red:
                c *= 2
            self.cells.append(Cell(c_pp, c_p, c, red, red_prev, nodes, make_edge(red, c),
                                   affine))
            c_pp, c_p, red_prev = c_p, nodes * c, red
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def features(self, x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            w = () if weights is None else (weights[1] if cell.reduction else weights[0],)
            s0, s1 = s1, cell(s0, s1, *w)
        return self.pool(s1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DartsConfig(ModelConfig):
    name: Literal["darts"] = "darts"
    channels: int = Field(8, ge=2, description="channels of the first cells (doubled at each "
                          "reduction)")
    cells: int = Field(3, ge=1, le=12)
    nodes: int = Field(3, ge=1, le=6, description="intermediate nodes per cell")
    normal: list[tuple[str, int]] = Field(
        default_factory=lambda: [("sep3", 0), ("sep3", 1), ("skip", 0), ("sep3", 1),
                                 ("skip", 0), ("sep3", 1)],
        description="genotype of normal cells: two (operation, input state) per node")
    reduce: list[tuple[str, int]] = Field(
        default_factory=lambda: [("max3", 0), ("max3", 1), ("skip", 2), ("max3", 0),
                                 ("skip", 2), ("max3", 0)],
        description="genotype of reduction cells")

    @field_validator("normal", "reduce")
    @classmethod
    def _genotype(cls, g: list[tuple[str, int]]) -> list[tuple[str, int]]:
        for op, j in g:
            if op not in OPS or op == "zero":
                raise ValueError(unknown_choice("DARTS operation", op, set(OPS) - {"zero"}))
        for i in range(0, len(g), 2):
            for op, j in g[i:i + 2]:
                if not 0 <= j < i // 2 + 2:
                    raise ValueError(f"node {i // 2} may take states 0..{i // 2 + 1}, not {j}")
        return g


def genotype_edges(genotype: list[tuple[str, int]], c: int
                   ) -> Callable[[int, int, int], nn.Module | None]:
    chosen: dict[tuple[int, int], list[str]] = {}
    for i, (op, j) in enumerate(genotype):
        chosen.setdefault((i // 2, j), []).append(op)

    def make(node: int, j: int, stride: int) -> nn.Module | None:
        ops = chosen.get((node, j))
        if not ops:
            return None
        mods = [OPS[o](c, stride, True) for o in ops]
        return mods[0] if len(mods) == 1 else SumOps(mods)

    return make


class SumOps(nn.Module):
    """Two operations a genotype put on the same edge, summed."""

    def __init__(self, mods: list[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(op(x) for op in self.ops)  # type: ignore[return-value]


@MODELS.register("darts", config=DartsConfig, tiny={"channels": 2, "cells": 2, "nodes": 2,
                                                    "normal": [["sep3", 0], ["skip", 1],
                                                               ["conv3", 2], ["skip", 0]],
                                                    "reduce": [["max3", 0], ["avg3", 1],
                                                               ["skip", 2], ["max3", 1]]},
                 inputs="image")
def darts(cfg: DartsConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A network of DARTS cells with a fixed genotype (the result of a DARTS search)."""
    c, h, w = _image(input_shape)
    if len(cfg.normal) != 2 * cfg.nodes or len(cfg.reduce) != 2 * cfg.nodes:
        raise ValueError(f"a genotype has two (operation, input) pairs per node: "
                         f"{2 * cfg.nodes} for {cfg.nodes} nodes")

    return CellNetwork(c, cfg.channels, cfg.cells, cfg.nodes, num_classes,
                       lambda red, ch: genotype_edges(cfg.reduce if red else cfg.normal, ch))
