"""The ``quantize`` step: post-training int8 with ONNX Runtime's kernels, or a choice between
deployments by measured latency (``method: auto``), with the runtime effect kept apart from the
precision effect on every target."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import nn

from nnopt.compress.quantize.candidates import (
    auto_methods,
    build,
    executorch_at,
    runtime_of_method,
)
from nnopt.compress.quantize.deploy import (
    ORT_FP32,
    TORCH_FP32,
    Option,
    choose,
    effect_pairs,
    effects,
    option_table,
    runnable,
    time_options,
)
from nnopt.compress.quantize.export import equivalence, onnx_bytes
from nnopt.compress.quantize.mixed import weight_sqnr
from nnopt.compress.quantize.onnx_model import OnnxModel
from nnopt.compress.quantize.ort import choose_weight_type
from nnopt.compress.quantize.qat import has_qat, snap_for_deploy
from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.measure.base import runtime_of
from nnopt.measure.runtimes import unavailable
from nnopt.models.artifact import Artifact
from nnopt.models.deployed import Deployed
from nnopt.train.fit import evaluate


class QuantizeConfig(Strict):
    """How to quantize, how to estimate ranges, and how to choose a deployment."""

    method: Literal["auto", "ort-static", "ort-dynamic", "ort-fp16", "torch-static",
                    "torch-dynamic", "torch-bf16", "torch-fp16", "openvino-fp32",
                    "openvino-int8", "openvino-qdq", "openvino-bf16", "executorch-fp32",
                    "executorch-int8"] = Field(
        "auto", description="auto: time fp32/int8/half deployments on every runtime a target "
        "can run (ONNX Runtime, PyTorch, OpenVINO, ExecuTorch) side by side on every target; "
        "each target gets the fastest it can run within tolerance")
    per_channel: bool = Field(True, description="one scale per output channel of the weights")
    weight_type: Literal["auto", "int8", "uint8"] = Field(
        "auto", description="ONNX Runtime: int8 where the CPU has VNNI, else uint8")
    reduce_range: bool = Field(False, description="7-bit weights (another fix for non-VNNI CPUs)")
    calibrate_method: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: float = Field(99.999, gt=50, le=100, description="for calibrate_method percentile")
    calibration_size: int = Field(512, ge=1, description="training images for range estimation")
    target: str | None = Field(None, description="the target whose deployment the stage's "
                               "accuracy, calibration and size are measured on (default: first)")
    tolerance: float = Field(0.005, ge=0, description="auto: largest validation accuracy loss "
                             "(a fraction: 0.005 = 0.5 pt); also the budget of NNCF's "
                             "accuracy-aware mode")
    accuracy_control: bool = Field(True, description="openvino-int8: when plain NNCF int8 loses "
                                   "more than tolerance on validation, run NNCF's "
                                   "accuracy-aware quantization instead")
    compare: bool = Field(True, description="measure runtime vs precision effect on every target")


def _options(model: nn.Module, torch_model: nn.Module | None, fp32: OnnxModel,
             cands: dict[str, nn.Module], acc: dict[str, float]) -> dict[str, Option]:
    """fp32 on both runtimes, then every candidate, with runtime, precision and accuracy."""
    out = {ORT_FP32: Option(fp32, "onnxruntime", "fp32", acc["fp32"])}
    if torch_model is not None:  # the incoming model, or the PyTorch stage it was exported from
        source = torch_model if isinstance(model, OnnxModel) else model
        out = {TORCH_FP32: Option(source, "torch", "fp32", acc["fp32"]), **out}
    for k, v in cands.items():
        out[k] = Option(v, runtime_of(v), precision_of(v), acc[k])
    return out


def precision_of(model: nn.Module) -> str:
    """A deployment's precision: its spec's, else a PyTorch cast's dtype (bf16, fp16)."""
    spec = getattr(model, "spec", {}) or {}
    casts = [t["dtype"] for t in spec.get("transforms", []) if t.get("kind") == "cast"]
    return spec.get("precision") or (casts[-1] if casts else "int8")


@STEPS.register("quantize", config=QuantizeConfig,
                tiny={"method": "ort-static", "calibration_size": 32})
def quantize(model: nn.Module, cfg: QuantizeConfig, ctx: RunContext) -> nn.Module:
    """Quantize to int8 (ONNX Runtime, torch.ao, OpenVINO/NNCF, ExecuTorch/XNNPACK) or cast to
    half, and deploy per target: with ``method: auto`` each target gets the fastest option it
    can run within the accuracy tolerance, timed side by side there; a named method is deployed
    to every target that can run it. The runtime effect is kept apart from the precision
    effect, runtime by runtime."""
    if isinstance(model, OnnxModel) and model.spec.get("precision") != "fp32" or \
            isinstance(model, Artifact) and not isinstance(model, OnnxModel):
        raise NnoptError("the model is already quantized or cast; quantize a PyTorch or fp32 "
                         "ONNX model")
    if cfg.target and cfg.target not in {t.name for t in ctx.targets}:
        raise NnoptError(f"quantize target '{cfg.target}' is not a recipe target; targets: "
                         + (", ".join(t.name for t in ctx.targets) or "none"))
    if cfg.method == "auto" and not ctx.targets:
        raise NnoptError("method 'auto' measures deployments on the recipe's targets; the "
                         "recipe has none")
    if cfg.method != "auto" and (why := unavailable(runtime_of_method(cfg.method))):
        raise NnoptError(f"quantize method '{cfg.method}': {why}")
    torch_model = next((m for m in [model, *reversed(ctx.models.values())]
                        if not isinstance(m, Artifact)), None)  # the PyTorch source, if any
    if has_qat(model):  # QAT: deploy the learned quantized weights as real int8
        model = snap_for_deploy(model)
        torch_model = model
    if cfg.method.startswith("executorch-") and (isinstance(model, OnnxModel)):
        raise NnoptError("ExecuTorch lowers a PyTorch model; this stage's input is an ONNX "
                         "artifact (quantize the PyTorch stage instead: from: <stage>)")
    fp32_bytes = onnx_bytes(model, ctx.example(1))
    if torch_model is not None:
        ctx.record("weight_sqnr_int8", weight_sqnr(torch_model, 8, cfg.per_channel))
    fp32 = OnnxModel(fp32_bytes, {"source": getattr(model, "spec", {}), "precision": "fp32",
                                  "runtime": "onnxruntime"})
    wtype, why = choose_weight_type(cfg.weight_type)
    names, notes = auto_methods(ctx.targets) if cfg.method == "auto" else ([cfg.method], [])
    ctx.warn(*notes)
    val = ctx.data.val
    calib = ctx.data.train.x[:cfg.calibration_size]
    acc = {"fp32": evaluate(fp32, val)["accuracy"]}
    ort = {"weight_type": wtype, "per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range,
           "calibrate_method": cfg.calibrate_method, "percentile": cfg.percentile}
    cands = build(names, model, fp32_bytes, calib, ort, validation=val, fp32_accuracy=acc["fp32"],
                  tolerance=cfg.tolerance if cfg.accuracy_control else None)
    acc.update({k: evaluate(v, val)["accuracy"] for k, v in cands.items()})
    if not ctx.targets:
        if cfg.method.startswith("executorch-"):
            raise NnoptError("an ExecuTorch program is built at a target's batch size; the "
                             "recipe has no targets")
        out = cands[cfg.method]
        ctx.record("quantization", _record(cfg, wtype, why, acc, {}, {}, out))
        ctx.record("export", equivalence(fp32, out, ctx.data.test.x[:2000]))
        return out
    options = _options(model, torch_model, fp32, cands, acc)
    chosen, choices, tables, rows, warns = {}, {}, {}, [], []
    programs: dict[int, dict[str, Option]] = {}  # ExecuTorch programs by batch size
    for target in ctx.targets:
        b = target.batch_size
        if b not in programs and any(n.startswith("executorch-") for n in names) and \
                target.allows("executorch") and target.device == "cpu":
            progs = executorch_at(names, torch_model, b, ctx.example(1), calib)
            programs[b] = {k: Option(v, "executorch", v.spec["precision"],
                                     evaluate(v, val)["accuracy"]) for k, v in progs.items()}
            acc.update({f"{k}@b{b}": o.accuracy for k, o in programs[b].items()})
        here = runnable({**options, **programs.get(b, {})}, target)
        if not here:
            why = unavailable(target.runtime, target.device) or "nothing this stage built runs here"
            choices[target.name] = {"reason": why}
            ctx.warn(f"no deployment for target '{target.name}': {why}")
            continue
        timing = time_options(here, ctx.data.test.x, target, ctx.progress_bar(
            f"{ctx.stage}: time {len(here)} deployments on {target.name}"))
        if cfg.method == "auto":
            name, reason, tables[target.name] = choose(here, timing, target, cfg.tolerance,
                                                       acc["fp32"])
        else:
            name = cfg.method
            tables[target.name] = option_table(here, timing, target, 1.0, acc["fp32"])
            reason = f"method '{name}' as the recipe asks"
            if name not in here or not target.allows(here[name].runtime):
                name, reason = None, (f"'{cfg.method}' runs on {runtime_of_method(cfg.method)},"
                                      f" which target '{target.name}' cannot run")
        if name is None:
            choices[target.name] = {"reason": reason}
            ctx.warn(f"no deployment for target '{target.name}': {reason}")
        else:
            o = here[name]
            chosen[target.name] = o.model
            choices[target.name] = {"deployment": name, "runtime": o.runtime,
                                    "precision": o.precision, "reason": reason,
                                    "validation_accuracy": o.accuracy}
            if cfg.method == "auto" and o.precision != "int8":
                ctx.warn(f"auto deployed {o.precision} ({name}) on '{target.name}', not int8: "
                         f"{reason}")
        if cfg.compare and TORCH_FP32 in here:
            mine = [effects(timing, target, q, fp, here[q].runtime)
                    for fp, q in effect_pairs(here, timing)]
            rows += mine
            slow = [f"{r['runtime']} {r['precision_effect']:.2f}x" for r in mine
                    if not r["int8_faster"]]
            if slow:
                warns.append(f"int8 is not faster than fp32 at '{target.name}' (batch "
                             f"{target.batch_size}, {target.threads} thread(s)) on: "
                             f"{', '.join(slow)} (paired int8 speed-up over the same "
                             "runtime's fp32); any gain there is the runtime's, not int8's")
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
