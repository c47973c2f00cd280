"""The ``quantize`` step: post-training int8 with ONNX Runtime's kernels, or a choice between
deployments by measured latency (``method: auto``), with the runtime effect kept apart from the
precision effect on every target."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import nn

from nnopt.compress.quantize import torch_int8
from nnopt.compress.quantize.cast import onnx_fp16, torch_cast
from nnopt.compress.quantize.deploy import (
    ORT_FP32,
    TORCH_FP32,
    Option,
    choose,
    effects,
    option_table,
    time_options,
)
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
from nnopt.models.deployed import Deployed
from nnopt.train.fit import evaluate

AUTO = ["ort-static", "ort-dynamic", "torch-static", "torch-dynamic", "ort-fp16", "torch-bf16"]


class QuantizeConfig(Strict):
    """How to quantize, how to estimate ranges, and how to choose a deployment."""

    method: Literal["auto", "ort-static", "ort-dynamic", "torch-static", "torch-dynamic",
                    "ort-fp16", "torch-bf16", "torch-fp16"] = Field(
        "auto", description="auto: time fp32/int8/half deployments (ONNX Runtime and PyTorch) "
        "side by side on every target; each target gets the fastest it can run within "
        "tolerance")
    per_channel: bool = Field(True, description="one scale per output channel of the weights")
    weight_type: Literal["auto", "int8", "uint8"] = Field(
        "auto", description="auto: int8 where the CPU has VNNI, else uint8")
    reduce_range: bool = Field(False, description="7-bit weights (another fix for non-VNNI CPUs)")
    calibrate_method: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: float = Field(99.999, gt=50, le=100, description="for calibrate_method percentile")
    calibration_size: int = Field(512, ge=1, description="training images for range estimation")
    target: str | None = Field(None, description="the target whose deployment the stage's "
                               "accuracy, calibration and size are measured on (default: first)")
    tolerance: float = Field(0.005, ge=0, description="auto: largest validation accuracy loss "
                             "(a fraction: 0.005 = 0.5 pt)")
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


def _options(model: nn.Module, torch_model: nn.Module | None, fp32: OnnxModel,
             cands: dict[str, nn.Module], acc: dict[str, float]) -> dict[str, Option]:
    """fp32 on both runtimes, then every candidate, with runtime, precision and accuracy."""
    out = {ORT_FP32: Option(fp32, "onnxruntime", "fp32", acc["fp32"])}
    if torch_model is not None:  # the incoming model, or the PyTorch stage it was exported from
        source = torch_model if isinstance(model, OnnxModel) else model
        out = {TORCH_FP32: Option(source, "torch", "fp32", acc["fp32"]), **out}
    for k, v in cands.items():
        runtime = "torch" if k.startswith("torch-") else "onnxruntime"
        out[k] = Option(v, runtime, v.spec.get("precision") or "int8", acc[k])
    return out


@STEPS.register("quantize", config=QuantizeConfig,
                tiny={"method": "ort-static", "calibration_size": 32})
def quantize(model: nn.Module, cfg: QuantizeConfig, ctx: RunContext) -> nn.Module:
    """Quantize to int8 (ONNX Runtime static QDQ or dynamic, torch.ao) or cast to half, and
    deploy per target: with ``method: auto`` each target gets the fastest option it can run
    within the accuracy tolerance, timed side by side there; a named method is deployed to every
    target that can run it. The runtime effect is kept apart from the precision effect."""
    if isinstance(model, OnnxModel) and model.spec.get("precision") != "fp32" or \
            isinstance(model, Artifact) and not isinstance(model, OnnxModel):
        raise NnoptError("the model is already quantized or cast; quantize a PyTorch or fp32 "
                         "ONNX model")
    if cfg.target and cfg.target not in {t.name for t in ctx.targets}:
        raise NnoptError(f"quantize target '{cfg.target}' is not a recipe target; targets: "
                         + (", ".join(t.name for t in ctx.targets) or "none"))
    torch_model = next((m for m in [model, *reversed(ctx.models.values())]
                        if not isinstance(m, Artifact)), None)  # the PyTorch source, if any
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
    if not ctx.targets:
        if cfg.method == "auto":
            raise NnoptError("method 'auto' measures deployments on the recipe's targets; the "
                             "recipe has none")
        out = cands[cfg.method]
        ctx.record("quantization", _record(cfg, wtype, why, acc, {}, {}, out))
        ctx.record("export", equivalence(fp32, out, ctx.data.test.x[:2000]))
        return out
    options = _options(model, torch_model, fp32, cands, acc)
    chosen, choices, tables, rows, warns = {}, {}, {}, [], []
    int8 = next((k for k in ("ort-static", "ort-dynamic") if k in options), None)
    for target in ctx.targets:
        timing = time_options(options, ctx.data.test.x, target, ctx.progress_bar(
            f"{ctx.stage}: time {len(options)} deployments on {target.name}"))
        if cfg.method == "auto":
            name, reason, tables[target.name] = choose(options, timing, target, cfg.tolerance,
                                                       acc["fp32"])
        else:
            name = cfg.method
            tables[target.name] = option_table(options, timing, target, 1.0, acc["fp32"])
            o = options[name]
            reason = f"method '{name}' as the recipe asks"
            if not target.allows(o.runtime):
                name, reason = None, (f"'{cfg.method}' runs on {o.runtime}, which target "
                                      f"'{target.name}' cannot run")
        if name is None:
            choices[target.name] = {"reason": reason}
            ctx.warn(f"no deployment for target '{target.name}': {reason}")
        else:
            o = options[name]
            chosen[target.name] = o.model
            choices[target.name] = {"deployment": name, "runtime": o.runtime,
                                    "precision": o.precision, "reason": reason,
                                    "validation_accuracy": o.accuracy}
            if cfg.method == "auto" and o.precision != "int8":
                ctx.warn(f"auto deployed {o.precision} ({name}) on '{target.name}', not int8: "
                         f"{reason}")
        if cfg.compare and int8 and TORCH_FP32 in options:
            row, warn = effects(timing, target, int8)
            rows.append(row)
            warns += [warn] if warn else []
    if not chosen:
        raise NnoptError("no target can run any deployment of this quantize stage: "
                         + "; ".join(f"{t}: {c['reason']}" for t, c in choices.items()))
    primary = cfg.target if cfg.target in chosen else next(iter(chosen))
    if primary != (cfg.target or ctx.targets[0].name):
        ctx.warn(f"the stage's accuracy and size are those of '{primary}''s deployment: "
                 f"'{cfg.target or ctx.targets[0].name}' has none")
    out = Deployed(chosen, choices, primary)
    ctx.record("quantization", _record(cfg, wtype, why, acc, choices, tables, out.main))
    ctx.record("export", equivalence(fp32, out.main, ctx.data.test.x[:2000]))
    if rows:
        ctx.record("deployment", rows)
        ctx.warn(*warns)
    return out


def _record(cfg: QuantizeConfig, wtype: str, why: str, acc: dict[str, float],
            choices: dict[str, Any], tables: dict[str, Any], main: nn.Module) -> dict[str, Any]:
    spec = main.spec if isinstance(main, OnnxModel) else {}
    return {"method": cfg.method, "chosen": {t: c.get("deployment") for t, c in choices.items()},
            "weight_type": wtype, "weight_type_reason": why, "validation_accuracy": acc,
            "candidates": tables,
            **{k: spec.get(k) for k in ("integer_ops", "integer_ops_as_run") if k in spec}}
