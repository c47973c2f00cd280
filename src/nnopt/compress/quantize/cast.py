"""Half precision: a PyTorch model cast to bf16/fp16 (a rewrite its spec records, so it reloads),
and an ONNX Runtime model converted to fp16 (keeping fp32 inputs and outputs)."""

from __future__ import annotations

import copy

import onnx
import torch
from torch import nn

from nnopt.core.environment import onnxruntime
from nnopt.core.errors import NnoptError
from nnopt.core.registry import TRANSFORMS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _apply(model: nn.Module, transform: dict) -> None:
    dtype = DTYPES[transform["dtype"]]
    model.to(dtype)
    model.compute_dtype = dtype
    model.artifact = True  # PyTorch-only: no ONNX export of a half-precision graph here


TRANSFORMS.add("cast", _apply)


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
    onnxruntime()  # telemetry off before its first import
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(fp32), keep_io_types=True)
    _topological_sort(model.graph)  # the converter appends its input casts at the end
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so that every node comes after the producers of its inputs."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progress = [n for n in pending if all(i in ready for i in n.input)]
        if not progress:
            raise ValueError("the ONNX graph has a cycle or a missing input")
        for n in progress:
            ordered.append(n)
            ready.update(n.output)
        pending = [n for n in pending if n not in progress]
    del graph.node[:]
    graph.node.extend(ordered)
