"""Half precision: a PyTorch model cast to bf16/fp16 (a rewrite its spec records, so it reloads),
and an ONNX Runtime model converted to fp16 (keeping fp32 inputs and outputs)."""

from __future__ import annotations

import copy

import onnx
import torch
from torch import nn

from nnopt.errors import NnoptError
from nnopt.models.saving import TRANSFORMS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _apply(model: nn.Module, transform: dict) -> None:
    dtype = DTYPES[transform["dtype"]]
    model.to(dtype)
    model.compute_dtype = dtype
    model.artifact = True  # PyTorch-only: no ONNX export of a half-precision graph here


TRANSFORMS["cast"] = _apply


def torch_cast(model: nn.Module, dtype: str) -> nn.Module:
    """A copy computing in ``dtype`` (inputs cast in, outputs cast back to fp32)."""
    if not hasattr(model, "spec") or not hasattr(model, "normalize"):
        raise NnoptError("precision casts need an nnopt model (built from the zoo or a factory)")
    model = copy.deepcopy(model).eval()
    transform = {"kind": "cast", "dtype": dtype}
    _apply(model, transform)
    model.spec = {**model.spec, "transforms": [*model.spec.get("transforms", []), transform]}
    return model


def onnx_fp16(fp32: bytes) -> bytes:
    """The graph with fp16 weights and compute, fp32 at its inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(onnx.load_from_string(fp32),
                                    keep_io_types=True).SerializeToString()
