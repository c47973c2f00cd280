"""Mixed precision: per-layer sensitivity to weight bit width (validation accuracy with that layer
alone quantized, and its weight SQNR), then bit widths chosen greedily under a size budget
(in the spirit of HAWQ's budgeted assignment, with measured accuracy as the sensitivity)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from nnopt.compress.quantize.fake_quant import dequantize, qrange, quantize, sqnr_db, weight_scale
from nnopt.compress.quantize.qat import LAYERS
from nnopt.data.base import Split
from nnopt.train.fit import evaluate


def quantized_weight(w: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    s = weight_scale(w, bits, per_channel)
    return dequantize(quantize(w.detach(), s, 0.0, *qrange(bits, True)), s, 0.0)


def weight_sqnr(model: nn.Module, bits: int, per_channel: bool = True) -> dict[str, float]:
    """Per layer, the SQNR (dB) of its weights quantized symmetrically at ``bits``."""
    return {n: sqnr_db(m.weight.detach(), quantized_weight(m.weight, bits, per_channel))
            for n, m in model.named_modules() if isinstance(m, LAYERS)}


def layer_bits_sensitivity(model: nn.Module, val: Split, bits: list[int],
                           exclude: list[str] | tuple[str, ...] = (), per_channel: bool = True
                           ) -> dict[str, Any]:
    """For each layer and bit width: validation accuracy with only that layer quantized, and
    the weight SQNR (dB)."""
    base = evaluate(model, val)["accuracy"]
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LAYERS)
              and not any(n == e or n.startswith(e + ".") for e in exclude)}
    table: dict[str, dict[str, Any]] = {}
    for name, layer in layers.items():
        rows = {}
        for b in bits:
            trial = copy.deepcopy(model)
            w = dict(trial.named_modules())[name].weight
            q = quantized_weight(w, b, per_channel)
            with torch.no_grad():
                w.copy_(q)
            rows[b] = {"accuracy": evaluate(trial, val)["accuracy"],
                       "sqnr_db": sqnr_db(layer.weight.detach(), q)}
        table[name] = {"params": layer.weight.numel(), "bits": rows}
    return {"base_accuracy": base, "layers": table}


def assign_bits(sens: dict[str, Any], budget_bits: float, bits: list[int]) -> dict[str, int]:
    """Start every layer at the widest width; while the mean bits per weight exceed the budget,
    narrow the layer whose next step loses the least accuracy per bit saved."""
    bits = sorted(bits)
    layers = sens["layers"]
    assign = {n: bits[-1] for n in layers}
    total = sum(v["params"] for v in layers.values())

    def mean_bits() -> float:
        return sum(layers[n]["params"] * b for n, b in assign.items()) / total

    while mean_bits() > budget_bits + 1e-9:
        best, best_cost = None, None
        for n, b in assign.items():
            i = bits.index(b)
            if i == 0:
                continue
            nb = bits[i - 1]
            loss = layers[n]["bits"][b]["accuracy"] - layers[n]["bits"][nb]["accuracy"]
            saved = layers[n]["params"] * (b - nb)
            cost = max(loss, 0.0) / saved
            if best_cost is None or cost < best_cost:
                best, best_cost = n, cost
        if best is None:
            break
        assign[best] = bits[bits.index(assign[best]) - 1]
    return assign
