"""The ``quantize`` step: post-training int8 with ONNX Runtime's kernels, or a choice between
deployments by measured latency (``method: auto``), with the runtime effect kept apart from the
precision effect on every target."""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import Field
from torch import nn

from nnopt.compress.quantize import torch_int8
from nnopt.compress.quantize.cast import onnx_fp16, torch_cast
from nnopt.compress.quantize.deploy import effects, latency_on
from nnopt.compress.quantize.export import equivalence, onnx_bytes
from nnopt.compress.quantize.mixed import weight_sqnr
from nnopt.compress.quantize.onnx_model import OnnxModel
from nnopt.compress.quantize.ort import choose_weight_type, integer_ops, quantize_onnx
from nnopt.compress.quantize.qat import has_qat, snap_for_deploy
from nnopt.compress.quantize.torch_int8 import TorchInt8Model
from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.models.artifact import Artifact
from nnopt.train.fit import evaluate

ROUNDS = 3  # alternating measurement rounds per candidate deployment
AUTO = ["ort-static", "ort-dynamic", "torch-static", "torch-dynamic", "ort-fp16", "torch-bf16"]


class QuantizeConfig(Strict):
    """How to quantize, how to estimate ranges, and how to choose a deployment."""

    method: Literal["auto", "ort-static", "ort-dynamic", "torch-static", "torch-dynamic",
                    "ort-fp16", "torch-bf16", "torch-fp16"] = Field(
        "auto", description="auto: measure fp32/int8/half deployments (ONNX Runtime and "
        "PyTorch) on the target, keep the fastest within tolerance")
    per_channel: bool = Field(True, description="one scale per output channel of the weights")
    weight_type: Literal["auto", "int8", "uint8"] = Field(
        "auto", description="auto: int8 where the CPU has VNNI, else uint8")
    reduce_range: bool = Field(False, description="7-bit weights (another fix for non-VNNI CPUs)")
    calibrate_method: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: float = Field(99.999, gt=50, le=100, description="for calibrate_method percentile")
    calibration_size: int = Field(512, ge=1, description="training images for range estimation")
    target: str | None = Field(None, description="auto: the target to be fast on (default: first)")
    tolerance: float = Field(0.005, ge=0, description="auto: largest validation accuracy loss")
    compare: bool = Field(True, description="measure runtime vs precision effect on every target")


def _candidates(model: nn.Module, cfg: QuantizeConfig, ctx: RunContext, fp32: bytes,
                wtype: str) -> dict[str, nn.Module]:
    """The deployments to compare (one unless ``method: auto``); PyTorch-side ones only when
    the input still is a PyTorch model."""
    calib = ctx.data.train.x[:cfg.calibration_size]
    common = {"weight_type": wtype, "per_channel": cfg.per_channel,
              "reduce_range": cfg.reduce_range}
    base = {"source": getattr(model, "spec", {}), "runtime": "onnxruntime"}
    out: dict[str, nn.Module] = {}
    for name in AUTO if cfg.method == "auto" else [cfg.method]:
        if name == "ort-fp16":
            out[name] = OnnxModel(onnx_fp16(fp32), {**base, "precision": "fp16",
                                                    "quantization": {"method": name}})
            continue
        if name.startswith("torch-") and isinstance(model, OnnxModel):
            continue  # an ONNX artifact has no PyTorch graph to quantize or cast
        if name in ("torch-bf16", "torch-fp16"):
            out[name] = torch_cast(model, name.split("-")[1])
            continue
        if name.startswith("torch-"):
            spec = {"source": getattr(model, "spec", {}), "runtime": "torch", "precision": "int8",
                    "quantization": {"method": name, "engine": torch_int8.engine(),
                                     **({"calibration_size": len(calib)}
                                        if name == "torch-static" else {})}}
            out[name] = TorchInt8Model(torch_int8.build(model, name, calib), spec)
            continue
        q = {"method": name, **common}
        if name == "ort-static":
            q.update(calibrate_method=cfg.calibrate_method, calibration_size=len(calib))
            if cfg.calibrate_method == "percentile":
                q["percentile"] = cfg.percentile
        blob = quantize_onnx(fp32, mode="static" if name == "ort-static" else "dynamic",
                             weight_type=wtype, per_channel=cfg.per_channel,
                             reduce_range=cfg.reduce_range, calibration=calib,
                             calibrate_method=cfg.calibrate_method, percentile=cfg.percentile)
        out[name] = OnnxModel(blob, {**base, "precision": "int8", "quantization": q,
                                     "integer_ops": integer_ops(blob, as_run=False),
                                     "integer_ops_as_run": integer_ops(blob)})
    return out


@STEPS.register("quantize", config=QuantizeConfig,
                tiny={"method": "ort-static", "calibration_size": 32})
def quantize(model: nn.Module, cfg: QuantizeConfig, ctx: RunContext) -> nn.Module:
    """Quantize to int8 for ONNX Runtime (static QDQ or dynamic) and measure what it bought."""
    if isinstance(model, OnnxModel) and model.spec.get("precision") != "fp32" or \
            isinstance(model, Artifact) and not isinstance(model, OnnxModel):
        raise NnoptError("the model is already quantized or cast; quantize a PyTorch or fp32 "
                         "ONNX model")
    torch_model = next((m for m in [model, *reversed(ctx.models.values())]
                        if not isinstance(m, OnnxModel)), None)  # the PyTorch source, if any
    if has_qat(model):  # QAT: deploy the learned quantized weights as real int8
        model = snap_for_deploy(model)
        torch_model = model
    fp32_bytes = onnx_bytes(model, ctx.example(1))
    if torch_model is not None:
        ctx.record("weight_sqnr_int8", weight_sqnr(torch_model, 8, cfg.per_channel))
    fp32 = OnnxModel(fp32_bytes, {"source": getattr(model, "spec", {}), "precision": "fp32",
                                  "runtime": "onnxruntime"})
    wtype, why = choose_weight_type(cfg.weight_type)
    cands = _candidates(model, cfg, ctx, fp32_bytes, wtype)
    val = ctx.data.val
    acc = {"fp32": evaluate(fp32, val)["accuracy"]}
    acc.update({k: evaluate(v, val)["accuracy"] for k, v in cands.items()})
    chosen, table = next(iter(cands)), []
    if cfg.method == "auto":
        chosen, table = _choose(cfg, ctx, torch_model, fp32, cands, acc)
    out = {"onnxruntime-fp32": fp32, "torch-fp32": model}.get(chosen) or cands[chosen]
    if chosen.endswith("fp32"):
        ctx.warn(f"no int8 deployment beat {chosen} on the target; the stage keeps fp32")
    ctx.record("quantization", {"chosen": chosen, "weight_type": wtype, "weight_type_reason": why,
                                "validation_accuracy": acc, "candidates": table,
                                **({k: out.spec.get(k) for k in ("integer_ops",
                                                                 "integer_ops_as_run")}
                                   if isinstance(out, OnnxModel) else {})})
    ctx.record("export", equivalence(fp32, out, ctx.data.test.x[:2000]))
    onnx_int8 = [v for v in cands.values()
                 if isinstance(v, OnnxModel) and v.spec.get("precision") == "int8"]
    if cfg.compare and torch_model is not None and ctx.targets and onnx_int8:
        int8 = out if out in onnx_int8 else onnx_int8[0]
        rows, warns = effects(torch_model, fp32, int8, ctx.data, ctx.targets)
        ctx.record("deployment", rows)
        ctx.warn(*warns)
    return out


def _choose(cfg: QuantizeConfig, ctx: RunContext, torch_model: nn.Module | None,
            fp32: OnnxModel, cands: dict[str, OnnxModel], acc: dict[str, float]
            ) -> tuple[str, list[dict[str, Any]]]:
    """The fastest deployment on the target among those within tolerance of fp32 accuracy."""
    if not ctx.targets:
        raise NnoptError("method 'auto' measures deployments on a target; the recipe has none")
    target = next((t for t in ctx.targets if t.name == (cfg.target or ctx.targets[0].name)), None)
    if target is None:
        raise NnoptError(f"quantize target '{cfg.target}' is not a recipe target; targets: "
                         + ", ".join(t.name for t in ctx.targets))
    options: dict[str, tuple[nn.Module, str, float]] = {
        "onnxruntime-fp32": (fp32, "onnxruntime", acc["fp32"])}
    if torch_model is not None:
        options["torch-fp32"] = (torch_model, "torch", acc["fp32"])
    options.update({k: (v, "torch" if k.startswith("torch-") else "onnxruntime", acc[k])
                    for k, v in cands.items()})
    times: dict[str, list[float]] = {name: [] for name in options}
    for _ in range(ROUNDS):  # alternate candidates so that machine noise hits all alike
        for name, (m, runtime, _a) in options.items():
            times[name].append(latency_on(m, ctx.data, target, runtime))
    table = [{"deployment": name, "target": target.name,
              "latency_ms": statistics.median(times[name]), "validation_accuracy": a,
              "eligible": acc["fp32"] - a <= cfg.tolerance}
             for name, (_m, _r, a) in options.items()]
    eligible = [r for r in table if r["eligible"]]
    best = min(eligible, key=lambda r: r["latency_ms"])
    return best["deployment"], table
