"""Appending a fitted calibration head to a deployed ONNX graph, so the re-calibrated artifact is
still one ONNX file that ONNX Runtime runs (int8 body, float head)."""

from __future__ import annotations

import io
import warnings

import onnx
import onnx.compose
import torch
from torch import nn

PREFIX = "calibration/"


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in graph.output:
        if value.name == old:
            value.name = new


def head_onnx(head: nn.Module, num_classes: int, opset: int = 17) -> bytes:
    """The calibration head alone as an ONNX graph (input ``in``, output ``out``, any batch)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(head.eval(), (torch.zeros(2, num_classes),), buf, dynamo=False,
                          input_names=["in"], output_names=["out"], opset_version=opset,
                          dynamic_axes={"in": {0: "batch"}, "out": {0: "batch"}})
    return buf.getvalue()


def append_head(onnx_bytes: bytes, head: nn.Module, num_classes: int) -> bytes:
    """The graph of ``onnx_bytes`` followed by ``head`` on its first output; the new output keeps
    the old output's name (the uncalibrated logits are renamed inside the graph)."""
    main = onnx.load_from_string(onnx_bytes)
    opset = next(o.version for o in main.opset_import if o.domain in ("", "ai.onnx"))
    tail = onnx.compose.add_prefix(onnx.load_from_string(head_onnx(head, num_classes, opset)),
                                   PREFIX)
    tail.ir_version = main.ir_version
    # the head's opset imports must equal the body's for merge_models
    del tail.opset_import[:]
    tail.opset_import.extend(main.opset_import)
    out_name = main.graph.output[0].name
    _rename(main.graph, out_name, f"{PREFIX}uncalibrated_{out_name}")
    merged = onnx.compose.merge_models(main, tail,
                                       io_map=[(f"{PREFIX}uncalibrated_{out_name}", f"{PREFIX}in")])
    _rename(merged.graph, f"{PREFIX}out", out_name)
    onnx.checker.check_model(merged)
    return merged.SerializeToString()
