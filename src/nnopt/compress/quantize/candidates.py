"""The deployments the ``quantize`` step compares: ONNX Runtime (fp32, int8 static/dynamic,
fp16), PyTorch (torch.ao int8, bf16/fp16 casts), OpenVINO (fp32, NNCF int8, QDQ int8 read by
OpenVINO, bf16 where the CPU has it) and ExecuTorch with XNNPACK (fp32, int8), each only where a
target can run its runtime and its package is installed (else one line says which extra)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnopt.compress.quantize import executorch as et
from nnopt.compress.quantize import torch_int8
from nnopt.compress.quantize.cast import onnx_fp16, torch_cast
from nnopt.compress.quantize.onnx_model import OnnxModel
from nnopt.compress.quantize.openvino import from_onnx_bytes, nncf_int8
from nnopt.compress.quantize.ort import integer_ops, quantize_onnx
from nnopt.compress.quantize.torch_int8 import TorchInt8Model
from nnopt.measure.openvino_rt import has_bf16
from nnopt.measure.runtimes import unavailable
from nnopt.measure.target import Target

ORT = ["ort-static", "ort-dynamic", "ort-fp16"]
TORCH = ["torch-static", "torch-dynamic", "torch-bf16", "torch-fp16"]
OPENVINO = ["openvino-fp32", "openvino-int8", "openvino-qdq", "openvino-bf16"]
EXECUTORCH = ["executorch-fp32", "executorch-int8"]
METHODS = ORT + TORCH + OPENVINO + EXECUTORCH


def runtime_of_method(name: str) -> str:
    return {"ort": "onnxruntime", "torch": "torch"}.get(name.split("-")[0], name.split("-")[0])


def auto_methods(targets: list[Target]) -> tuple[list[str], list[str]]:
    """The methods ``auto`` compares on these targets, and one line per runtime left out
    (no target runs it, or its extra is missing)."""
    names, notes = [], []
    gpu = any(t.device == "cuda" and not unavailable("torch", "cuda") for t in targets)
    for runtime, methods in (("onnxruntime", ORT), ("torch", TORCH), ("openvino", OPENVINO),
                             ("executorch", EXECUTORCH)):
        if runtime not in ("onnxruntime", "torch") and \
                not any(t.allows(runtime) and t.device == "cpu" for t in targets):
            continue  # no target could ship it: not worth building
        why = unavailable(runtime)
        if why:
            notes.append(f"{runtime} deployments were not tried: {why}")
            continue
        names += [m for m in methods if (m != "torch-fp16" or gpu)
                  and (m != "openvino-bf16" or has_bf16())]
    return names, notes


def build(names: list[str], model: nn.Module, fp32: bytes, calib: torch.Tensor,
          ort_options: dict[str, Any], *, validation: Any = None,
          fp32_accuracy: float | None = None, tolerance: float | None = None
          ) -> dict[str, nn.Module]:
    """Every named deployment but ExecuTorch's (built per batch size: ``executorch_at``);
    PyTorch-side ones only when ``model`` still is a PyTorch model."""
    base = {"source": getattr(model, "spec", {}), "runtime": "onnxruntime"}
    out: dict[str, nn.Module] = {}
    for name in names:
        if name.startswith("executorch-"):
            continue
        if name == "ort-fp16":
            out[name] = OnnxModel(onnx_fp16(fp32), {**base, "precision": "fp16",
                                                    "quantization": {"method": name}})
        elif name.startswith("torch-") and isinstance(model, OnnxModel):
            continue  # an ONNX artifact has no PyTorch graph to quantize or cast
        elif name in ("torch-bf16", "torch-fp16"):
            out[name] = torch_cast(model, name.split("-")[1])
        elif name.startswith("torch-"):
            spec = {"source": getattr(model, "spec", {}), "runtime": "torch", "precision": "int8",
                    "quantization": {"method": name, "engine": torch_int8.engine(),
                                     **({"calibration_size": len(calib)}
                                        if name == "torch-static" else {})}}
            out[name] = TorchInt8Model(torch_int8.build(model, name, calib), spec)
        elif name.startswith("ort-"):
            out[name] = _ort_int8(name, fp32, calib, base, ort_options)
        elif name in ("openvino-fp32", "openvino-bf16"):
            out[name] = from_onnx_bytes(fp32, _ov_spec(model, base),
                                        "bf16" if name == "openvino-bf16" else "fp32")
        elif name == "openvino-qdq":
            qdq = out.get("ort-static") or _ort_int8("ort-static", fp32, calib, base, ort_options)
            ov = from_onnx_bytes(qdq.onnx_bytes, _ov_spec(model, base), "int8")
            ov.spec["quantization"] = {"method": name, "from": "ONNX Runtime static QDQ",
                                       **qdq.spec["quantization"]}
            out[name] = ov
        elif name == "openvino-int8":
            ov32 = out.get("openvino-fp32") or from_onnx_bytes(fp32, _ov_spec(model, base))
            out[name] = nncf_int8(ov32, calib, validation=validation,
                                  fp32_accuracy=fp32_accuracy, max_drop=tolerance)
    return out


def executorch_at(names: list[str], model: nn.Module | None, batch_size: int,
                  example: torch.Tensor, calib: torch.Tensor) -> dict[str, nn.Module]:
    """The ExecuTorch programs among ``names`` at one batch size (none without a PyTorch
    model: ExecuTorch lowers from PyTorch)."""
    if model is None or isinstance(model, OnnxModel):
        return {}
    spec = {"source": getattr(model, "spec", {})}
    return {name: et.build(model, batch_size, example, spec,
                           calib if name == "executorch-int8" else None)
            for name in names if name.startswith("executorch-")}


def _ov_spec(model: nn.Module, base: dict[str, Any]) -> dict[str, Any]:
    params = sum(p.numel() for p in model.parameters()) if not isinstance(model, OnnxModel) \
        else model.param_count()
    return {**base, "params": params}


def _ort_int8(name: str, fp32: bytes, calib: torch.Tensor, base: dict[str, Any],
              o: dict[str, Any]) -> OnnxModel:
    q = {"method": name, "weight_type": o["weight_type"], "per_channel": o["per_channel"],
         "reduce_range": o["reduce_range"]}
    if name == "ort-static":
        q.update(calibrate_method=o["calibrate_method"], calibration_size=len(calib))
        if o["calibrate_method"] == "percentile":
            q["percentile"] = o["percentile"]
    blob = quantize_onnx(fp32, mode="static" if name == "ort-static" else "dynamic",
                         weight_type=o["weight_type"], per_channel=o["per_channel"],
                         reduce_range=o["reduce_range"], calibration=calib,
                         calibrate_method=o["calibrate_method"], percentile=o["percentile"])
    return OnnxModel(blob, {**base, "precision": "int8", "quantization": q,
                            "integer_ops": integer_ops(blob, as_run=False),
                            "integer_ops_as_run": integer_ops(blob)})
