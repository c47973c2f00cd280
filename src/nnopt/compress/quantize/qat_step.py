"""The ``qat`` step: quantization-aware fine-tuning at uniform or mixed weight bit widths."""

from __future__ import annotations

import copy

import torch
from pydantic import Field, model_validator
from torch import nn

from nnopt.compress.distill.step import distillation_task
from nnopt.compress.distill.task import DistillConfig
from nnopt.compress.quantize.fake_quant import sqnr_db
from nnopt.compress.quantize.mixed import assign_bits, layer_bits_sensitivity
from nnopt.compress.quantize.onnx_model import OnnxModel
from nnopt.compress.quantize.qat import QuantLayer, apply_plan, plan, weight_bits_bytes
from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS, TRANSFORMS
from nnopt.train.fit import TrainConfig, label_smoothing


class QatConfig(Strict):
    """Bit widths, quantizer kind, mixed-precision budget and the fine-tuning."""

    w_bits: int = Field(8, ge=2, le=8, description="weight bits (uniform)")
    a_bits: int | None = Field(8, ge=2, le=8, description="input activation bits (null: "
                               "weight-only quantization)")
    per_channel: bool = True
    lsq: bool = Field(False, description="learn the weight step size (LSQ) instead of max-abs")
    per_layer_bits: dict[str, int] | None = Field(None, description="weight bits per layer name")
    mixed_budget: float | None = Field(None, ge=1, le=8, description="choose per-layer bits so "
                                       "that the mean bits per weight stay within this")
    bits_choices: list[int] = Field(default_factory=lambda: [2, 3, 4, 6, 8])
    exclude: list[str] = Field(default_factory=list, description="layers kept in float")
    finetune: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-4))
    distill: DistillConfig | None = Field(None, description="fine-tune with a teacher's soft "
                                          "targets (e.g. the float baseline)")

    @model_validator(mode="after")
    def _one_way(self) -> QatConfig:
        if self.mixed_budget and self.per_layer_bits:
            raise ValueError("give per_layer_bits or mixed_budget, not both")
        if any(not 2 <= b <= 8 for b in self.bits_choices):
            raise ValueError("bits_choices must lie in 2..8")
        return self


def _reapply(model: nn.Module, transform: dict) -> None:
    apply_plan(model, transform["layers"])


TRANSFORMS.add("qat", _reapply)


@STEPS.register("qat", config=QatConfig,
                tiny={"w_bits": 4, "finetune": {"epochs": 1, "batch_size": 32}})
def qat(model: nn.Module, cfg: QatConfig, ctx: RunContext) -> nn.Module:
    """Fine-tune with fake-quantized weights and activations (straight-through estimator)."""
    if isinstance(model, OnnxModel) or any(isinstance(m, QuantLayer) for m in model.modules()):
        raise NnoptError("qat takes a float PyTorch model (not an ONNX artifact or a QAT model)")
    model = copy.deepcopy(model)
    per_layer = cfg.per_layer_bits
    if cfg.mixed_budget:
        sens = layer_bits_sensitivity(model, ctx.data.val, cfg.bits_choices, cfg.exclude,
                                      cfg.per_channel)
        per_layer = assign_bits(sens, cfg.mixed_budget, cfg.bits_choices)
        ctx.record("mixed_precision", {"budget_bits": cfg.mixed_budget, "assigned": per_layer,
                                       "sensitivity": sens})
    layers = plan(model, cfg.w_bits, cfg.a_bits, cfg.per_channel, cfg.lsq, cfg.exclude,
                  per_layer)
    if per_layer:
        unknown = sorted(set(per_layer) - set(layers))
        if unknown:
            raise NnoptError(f"per_layer_bits names unknown layers: {', '.join(unknown)}; "
                             f"layers: {', '.join(layers)}")
    apply_plan(model, layers)
    model.spec = {**model.spec, "transforms": [*model.spec.get("transforms", []),
                                               {"kind": "qat", "layers": layers}]}
    task = None
    if cfg.distill:
        task = distillation_task(cfg.distill, ctx, label_smoothing(cfg.finetune))
    ctx.fit(model, cfg.finetune, task=task)
    model.eval()
    rows = {}
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            with torch.no_grad():
                rows[name] = {"w_bits": m.w_bits, "a_bits": m.a_bits,
                              "sqnr_db": sqnr_db(m.layer.weight, m.quantized_weight())}
    ctx.record("qat", {"layers": rows, "packed_weight_bytes": weight_bits_bytes(layers, model),
                       "mean_w_bits": sum(r["w_bits"] * dict(model.named_modules())[n].layer
                                          .weight.numel() for n, r in rows.items())
                       / max(1, sum(dict(model.named_modules())[n].layer.weight.numel()
                                    for n in rows))})
    return model
