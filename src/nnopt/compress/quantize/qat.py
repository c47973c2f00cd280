"""Quantization-aware training (Jacob et al. 2018): Linear/Conv layers wrapped so that training
sees their weights at ``w_bits`` (per channel, max-abs or LSQ learned step) and their inputs at
``a_bits`` (asymmetric uint8, ranges tracked during training). Weight-only low-bit is ``a_bits:
null``; mixed precision gives every layer its own bit width under a size budget.

In eval mode the wrappers use PyTorch's fake-quantize operators, which export to ONNX
QuantizeLinear/DequantizeLinear; for deployment, ``snap_for_deploy`` bakes the quantized weights
into plain layers and the ``quantize`` step turns that into real int8 ONNX Runtime kernels.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.compress.quantize.fake_quant import (
    act_qparams,
    fake_quant,
    lsq_fake_quant,
    qrange,
    weight_scale,
)

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


class QuantLayer(nn.Module):
    """A Linear or Conv layer with fake-quantized weights (and inputs)."""

    def __init__(self, layer: nn.Module, w_bits: int, a_bits: int | None, per_channel: bool,
                 lsq: bool, momentum: float = 0.1) -> None:
        super().__init__()
        self.layer, self.w_bits, self.a_bits = layer, w_bits, a_bits
        self.per_channel, self.lsq, self.momentum = per_channel, lsq, momentum
        scale = weight_scale(layer.weight, w_bits, per_channel)
        if lsq:
            self.w_scale = nn.Parameter(scale.clone())
        else:
            self.register_buffer("w_scale", scale.clone())
        self.register_buffer("a_lo", torch.tensor(float("inf")))
        self.register_buffer("a_hi", torch.tensor(float("-inf")))

    def quantized_weight(self) -> torch.Tensor:
        qmin, qmax = qrange(self.w_bits, True)
        w = self.layer.weight
        if self.lsq:
            return lsq_fake_quant(w, self.w_scale.abs().clamp_min(1e-12), qmin, qmax)
        scale = weight_scale(w, self.w_bits, self.per_channel)
        if self.training:
            self.w_scale.copy_(scale)
        return fake_quant(w, scale, 0.0, qmin, qmax)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        if self.a_bits is None:
            return x
        if self.training:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                first = not torch.isfinite(self.a_lo)
                m = 1.0 if first else self.momentum
                self.a_lo.copy_(lo if first else (1 - m) * self.a_lo + m * lo)
                self.a_hi.copy_(hi if first else (1 - m) * self.a_hi + m * hi)
        if not torch.isfinite(self.a_lo):
            return x  # never calibrated: no range yet
        scale, zp = act_qparams(self.a_lo, self.a_hi, self.a_bits)
        if self.training:
            return fake_quant(x, scale, zp, *qrange(self.a_bits, False))
        qmin, qmax = qrange(self.a_bits, False)
        return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), qmin, qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act(x)
        w = self.quantized_weight()
        if not self.training:  # exports as int8 Q/DQ: the b-bit codes fit in int8 exactly
            s = self.w_scale.detach().abs().clamp_min(1e-12) if self.lsq else \
                weight_scale(self.layer.weight, self.w_bits, self.per_channel)
            if s.numel() > 1:
                w = torch.fake_quantize_per_channel_affine(
                    w, s, torch.zeros(s.numel(), dtype=torch.int32, device=w.device), 0,
                    -128, 127)
            else:
                w = torch.fake_quantize_per_tensor_affine(w, float(s), 0, -128, 127)
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return F.linear(x, w, layer.bias)
        return layer._conv_forward(x, w, layer.bias)


def plan(model: nn.Module, w_bits: int, a_bits: int | None, per_channel: bool, lsq: bool,
         exclude: list[str] | tuple[str, ...] = (), per_layer: dict[str, int] | None = None
         ) -> dict[str, dict[str, Any]]:
    """Which layers get which quantizer (JSON-serialisable: it goes into the model's spec)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LAYERS) and not any(name == e or name.startswith(e + ".")
                                             for e in exclude):
            bits = (per_layer or {}).get(name, w_bits)
            out[name] = {"w_bits": int(bits), "a_bits": a_bits, "per_channel": per_channel,
                         "lsq": lsq}
    return out


def apply_plan(model: nn.Module, layers: dict[str, dict[str, Any]]) -> nn.Module:
    """Wrap the planned layers in place (also how a saved QAT model is rebuilt)."""
    modules = dict(model.named_modules())
    for name, opts in layers.items():
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, QuantLayer(modules[name], **opts))
    return model


def snap_for_deploy(model: nn.Module) -> nn.Module:
    """A copy with every QuantLayer replaced by its plain layer holding the quantized weights."""
    model = copy.deepcopy(model).eval()
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, QuantLayer):
                layer = child.layer
                with torch.no_grad():
                    layer.weight.copy_(child.quantized_weight())
                setattr(m, child_name, layer)
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict):
        model.spec = {**spec, "transforms": [t for t in spec.get("transforms", [])
                                             if t.get("kind") != "qat"],
                      "snapped_from_qat": True}
    return model


def has_qat(model: nn.Module) -> bool:
    return any(isinstance(m, QuantLayer) for m in model.modules())


def weight_bits_bytes(layers: dict[str, dict[str, Any]], model: nn.Module) -> float:
    """Bytes the quantized weights take when packed at their bit widths (codes only)."""
    modules = dict(model.named_modules())
    total = 0.0
    for name, opts in layers.items():
        m = modules[name]
        layer = m.layer if isinstance(m, QuantLayer) else m
        total += layer.weight.numel() * opts["w_bits"] / 8
    return total
