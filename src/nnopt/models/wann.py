"""Weight-agnostic neural network (Gaier & Ha 2019): a feed-forward topology whose every
connection carries one shared weight, each node with its own activation.

The topology is data (the model config), so a found network is saved like any model: the
spec holds the genome, the safetensors file the shared weight. Node names: ``i<k>`` the k-th
input feature (the flattened, normalised input), ``bias`` a constant 1, ``h<id>`` hidden nodes
(listed in an order where every connection goes forward), ``o<k>`` the k-th output (a logit).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig

ACTIVATIONS = {  # the paper's set
    "linear": lambda z: z,
    "step": lambda z: (z > 0).to(z.dtype),
    "sin": torch.sin,
    "cos": torch.cos,
    "gauss": lambda z: torch.exp(-z * z / 2),
    "tanh": torch.tanh,
    "sigmoid": lambda z: torch.sigmoid(z),
    "inverse": lambda z: -z,
    "abs": torch.abs,
    "relu": torch.relu,
}


class WannNode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=0)
    activation: str

    @model_validator(mode="after")
    def _known(self) -> WannNode:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose "
                             f"{', '.join(ACTIVATIONS)}")
        return self


class WannConfig(ModelConfig):
    name: Literal["wann"] = "wann"
    hidden: list[WannNode] = Field(default_factory=list, description="hidden nodes in "
                                   "evaluation order (every connection goes forward)")
    output_activations: list[str] | None = Field(None, description="one per output "
                                                 "(default: linear)")
    connections: list[tuple[str, str]] = Field(default_factory=list, description="[source, "
                                               "destination] pairs, e.g. [i12, h3], [h3, o0]")
    weight: float = Field(1.0, description="the shared weight (the saved value wins)")

    @model_validator(mode="after")
    def _acyclic(self) -> WannConfig:
        order = {f"h{n.id}": k for k, n in enumerate(self.hidden)}
        if len(order) != len(self.hidden):
            raise ValueError("hidden node ids repeat")
        for src, dst in self.connections:
            if position(src, order) >= position(dst, order):
                raise ValueError(f"connection {src} -> {dst} does not go forward (sources are "
                                 "inputs, bias or an earlier hidden node; outputs only receive)")
        if len(set(map(tuple, self.connections))) != len(self.connections):
            raise ValueError("a connection is listed twice")
        bad = [a for a in self.output_activations or [] if a not in ACTIVATIONS]
        if bad:
            raise ValueError(f"unknown activation {bad[0]!r}; choose {', '.join(ACTIVATIONS)}")
        return self


def position(node: str, order: dict[str, int]) -> float:
    """Where a node is evaluated: inputs and bias first, hidden nodes in order, outputs last."""
    if node == "bias" or _numbered(node, "i") is not None:
        return -1.0
    if node in order:
        return float(order[node])
    if _numbered(node, "o") is not None:
        return math.inf
    raise ValueError(f"unknown node {node!r}: use i<k>, bias, h<id> (a listed hidden node) or "
                     "o<k>")


def _numbered(node: str, prefix: str) -> int | None:
    rest = node[len(prefix):]
    return int(rest) if node.startswith(prefix) and rest.isdigit() else None


class Wann(nn.Module):
    """Evaluates the genome node by node; ``weights`` may hold one shared weight per example
    (a weight sweep as one batch)."""

    def __init__(self, cfg: WannConfig, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.n_in = math.prod(input_shape)
        outs = cfg.output_activations or ["linear"] * num_classes
        if len(outs) != num_classes:
            raise ValueError(f"output_activations has {len(outs)} entries for {num_classes} "
                             "classes")
        for src, dst in cfg.connections:
            for node, n, kind in ((src, self.n_in, "i"), (dst, num_classes, "o")):
                k = _numbered(node, kind)
                if k is not None and k >= n:
                    raise ValueError(f"node {node} does not exist: the data has {n} "
                                     f"{'inputs' if kind == 'i' else 'outputs'}")
        self.weight = nn.Parameter(torch.tensor(float(cfg.weight)))
        index = {f"i{k}": k for k in range(self.n_in)} | {"bias": self.n_in}
        for k, node in enumerate(cfg.hidden):
            index[f"h{node.id}"] = self.n_in + 1 + k
        incoming: dict[str, list[int]] = {}
        for src, dst in cfg.connections:
            incoming.setdefault(dst, []).append(index[src])
        # (column the node writes, columns it sums, activation), hidden nodes then outputs
        self.plan = [(f"h{n.id}", incoming.get(f"h{n.id}", []), n.activation)
                     for n in cfg.hidden]
        self.outputs = [(f"o{k}", incoming.get(f"o{k}", []), a) for k, a in enumerate(outs)]

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        w = (self.weight if weights is None else weights.reshape(-1)).to(x.dtype)
        cols = list(x.unbind(1)) + [torch.ones_like(x[:, 0])]

        def node(srcs: list[int], act: str) -> torch.Tensor:
            z = torch.stack([cols[s] for s in srcs], 1).sum(1) if srcs else \
                torch.zeros_like(x[:, 0])
            return ACTIVATIONS[act](w * z)

        for _, srcs, act in self.plan:
            cols.append(node(srcs, act))
        return torch.stack([node(srcs, act) for _, srcs, act in self.outputs], 1)


@MODELS.register("wann", config=WannConfig,
                 tiny={"hidden": [{"id": 0, "activation": "tanh"}],
                       "connections": [["i0", "h0"], ["h0", "o0"], ["bias", "o1"]]})
def wann(cfg: WannConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Weight-agnostic network: a searched topology with one shared weight (step ``wann``)."""
    return Wann(cfg, input_shape, num_classes)
