"""The ``export`` step: the model as an ONNX Runtime fp32 artifact, checked against PyTorch."""

from __future__ import annotations

import io
import warnings
from typing import Any

import torch
from pydantic import Field
from torch import nn

from nnopt.compress.quantize.onnx_model import OnnxModel
from nnopt.context import RunContext
from nnopt.core.compute import predict
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.measure.base import check_exportable


class ExportConfig(Strict):
    """ONNX export options."""

    opset: int = Field(17, ge=13, le=21)
    check_size: int = Field(10_000, ge=1, description="test images on which outputs are compared")
    tolerance: float = Field(1e-3, gt=0, description="largest allowed |logit difference|")


def onnx_bytes(model: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
    """The model as one self-contained ONNX graph with a dynamic batch axis."""
    if isinstance(model, OnnxModel):
        return model.onnx_bytes
    check_exportable(model)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buf, dynamo=False, input_names=["input"],
                          output_names=["logits"], opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


def equivalence(reference: nn.Module, deployed: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Largest |logit difference| and top-1 agreement of two models on ``x``."""
    a, b = predict(reference, x), predict(deployed, x, batch_size=1000)
    return {"max_abs_diff": (a - b).abs().max().item(),
            "top1_agreement": (a.argmax(1) == b.argmax(1)).double().mean().item(),
            "images": len(x)}


@STEPS.register("export", config=ExportConfig, tiny={"check_size": 16})
def export(model: nn.Module, cfg: ExportConfig, ctx: RunContext) -> nn.Module:
    """Export to ONNX (fp32) for ONNX Runtime and check its outputs against PyTorch."""
    if isinstance(model, OnnxModel):
        raise NnoptError("the model is already an ONNX artifact; 'export' takes a PyTorch model")
    blob = onnx_bytes(model, ctx.example(1), cfg.opset)
    deployed = OnnxModel(blob, {"source": model.spec, "precision": "fp32",
                                "runtime": "onnxruntime", "opset": cfg.opset})
    check = equivalence(model, deployed, ctx.data.test.x[:cfg.check_size])
    ctx.record("export", check)
    if check["max_abs_diff"] > cfg.tolerance:
        ctx.warn(f"ONNX outputs differ from PyTorch by up to {check['max_abs_diff']:.2e} "
                 f"(> {cfg.tolerance:g}); top-1 agreement {100 * check['top1_agreement']:.2f}%")
    return deployed
