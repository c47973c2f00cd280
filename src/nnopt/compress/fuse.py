"""The ``fuse`` step: fold each BatchNorm into the conv or linear layer that feeds it.

y = gamma (W x + b - mean) / sqrt(var + eps) + beta becomes W' x + b' with
W' = W gamma / sqrt(var + eps) and b' = (b - mean) gamma / sqrt(var + eps) + beta, computed in
float64 and stored in the layer's dtype (Jacob et al. 2018, section 3.2). Activation fusion
(conv + ReLU) is left to the runtimes that have fused kernels: ONNX Runtime's graph optimizer
and the int8 paths of ``quantize``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.fx
from pydantic import Field
from torch import nn

from nnopt.context import RunContext
from nnopt.core.compute import predict
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.record import Record, record
from nnopt.core.registry import STEPS, TRANSFORMS
from nnopt.measure.base import is_artifact
from nnopt.models.structure import replace_module
from nnopt.report.model import StageRecord
from nnopt.report.render import Doc, register_section

LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class FuseConfig(Strict):
    """Which batch norms to fold, and how closely outputs must agree afterwards."""

    exclude: list[str] = Field(default_factory=list, description="BatchNorm names left alone")
    tolerance: float = Field(1e-4, gt=0, description="largest allowed output difference "
                             "(absolute, on validation logits) before the step fails")


def fold_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, batchnorm) pairs where the norm's only input is the layer's output and the layer
    feeds nothing else, found by tracing the model with torch.fx."""
    modules = dict(model.named_modules())
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001  (tracing fails on data-dependent control flow)
        raise NnoptError(f"fuse cannot trace this model with torch.fx: "
                         f"{str(exc).splitlines()[0]}") from None
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), NORMS):
            continue
        prev = node.args[0] if node.args else None
        if (isinstance(prev, torch.fx.Node) and prev.op == "call_module"
                and isinstance(modules.get(prev.target), LAYERS) and len(prev.users) == 1
                and modules[node.target].track_running_stats):
            pairs.append((prev.target, node.target))
    return pairs


@torch.no_grad()
def fold(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``layer`` with ``bn`` (in eval mode) folded into its weight and bias."""
    fused = copy.deepcopy(layer)
    dtype = layer.weight.dtype
    w = layer.weight.double()
    scale = (bn.weight.double() if bn.affine else torch.ones_like(bn.running_var.double())) \
        / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() if bn.affine else torch.zeros_like(scale)
    b = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
    # Linear (out, in) and conv (out, in/groups, *kernel) weights both scale along dim 0
    w_new = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    fused.weight = nn.Parameter(w_new.to(dtype))
    fused.bias = nn.Parameter(((b - bn.running_mean.double()) * scale + shift).to(dtype))
    return fused


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    for layer_name, bn_name in transform["pairs"]:
        layer = model.get_submodule(layer_name)
        if layer.bias is None:
            out = layer.weight.shape[0]
            layer.bias = nn.Parameter(torch.zeros(out, dtype=layer.weight.dtype))
        replace_module(model, bn_name, nn.Identity())


TRANSFORMS.add("fuse", _reapply)


@STEPS.register("fuse", config=FuseConfig, tiny={})
def fuse(model: nn.Module, cfg: FuseConfig, ctx: RunContext) -> nn.Module:
    """Fold BatchNorm into the preceding conv/linear; outputs are checked to stay equal."""
    if is_artifact(model):
        raise NnoptError("fuse takes a PyTorch model, not a deployed artifact (ONNX Runtime "
                         "folds batch norms itself)")
    source = model
    model = copy.deepcopy(model).eval()
    pairs = [(layer, bn) for layer, bn in fold_pairs(model) if bn not in cfg.exclude]
    if not pairs:
        ctx.warn("no BatchNorm follows a conv or linear layer here: nothing to fold")
    for layer_name, bn_name in pairs:
        replace_module(model, layer_name, fold(model.get_submodule(layer_name),
                                               model.get_submodule(bn_name)))
        replace_module(model, bn_name, nn.Identity())
    model.spec = {**model.spec, "transforms": [*model.spec.get("transforms", []),
                                               {"kind": "fuse", "pairs": [list(p) for p in pairs]}]}
    x = ctx.data.val.x[:512] if len(ctx.data.val) else ctx.data.train.x[:512]
    before, after = predict(source, x), predict(model, x)
    diff = (before - after).abs().max().item()
    ctx.record(FusionRecord(pairs=[list(p) for p in pairs], max_abs_output_diff=diff,
                            checked_examples=len(x)))
    if diff > cfg.tolerance:
        raise NnoptError(f"folding changed the outputs by {diff:.3g} (> tolerance "
                         f"{cfg.tolerance:g}); exclude the offending BatchNorm")
    return model


@record
class FusionRecord(Record):
    """The folded (layer, BatchNorm) pairs and the largest change of an output they caused on
    the checked examples (validation split)."""

    KEY = "fusion"
    pairs: list[list[str]]
    max_abs_output_diff: float
    checked_examples: int


@register_section
def fusion_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    found = [(lab, FusionRecord.of(s.details)) for lab, s in zip(labels, records)]
    rows = [[lab, str(len(f.pairs)), f"{f.max_abs_output_diff:.2e}", str(f.checked_examples)]
            for lab, f in found if f is not None]
    if rows:
        doc.h2("Fusion")
        doc.p("BatchNorm layers folded into the conv/linear before them; the outputs of the "
              "fused model are compared with the input model's on validation examples. The "
              "latency change is in the latency table.")
        doc.table(["stage", "folded BatchNorms", "max |output difference|", "examples checked"],
                  rows)
