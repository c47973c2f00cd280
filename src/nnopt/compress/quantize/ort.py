"""Post-training int8 quantization with ONNX Runtime's real kernels: dynamic (weights int8,
activations quantized on the fly) and static QDQ (activation ranges estimated on a calibration
subset by min-max, percentile or entropy), per-tensor or per-channel.

Signed int8 weights need VNNI to be exact on x86: without it, ONNX Runtime's u8s8 kernels can
saturate (measured on this project's AVX2 machines: relative error ~0.1). The weight type is
chosen from the CPU's flags unless the recipe names one, and the choice is recorded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from nnopt.core.environment import cpu_flags, onnxruntime


def has_vnni() -> bool:
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_flags()))


def choose_weight_type(requested: str) -> tuple[str, str]:
    """('int8' or 'uint8', reason): signed where VNNI makes it exact, else unsigned."""
    if requested != "auto":
        return requested, "set in the recipe"
    if has_vnni():
        return "int8", "CPU has VNNI: signed int8 weights run exactly"
    return "uint8", "CPU lacks VNNI: unsigned weights avoid u8s8 saturation"


class _Reader:
    """Feeds calibration batches to ONNX Runtime's calibrator."""

    def __init__(self, name: str, x: torch.Tensor, batch_size: int) -> None:
        self.batches = iter([{name: np.ascontiguousarray(x[i:i + batch_size].numpy())}
                             for i in range(0, len(x), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)

    def rewind(self) -> None:  # pragma: no cover  (not used by one-pass calibrators)
        pass


def _qtype(name: str):  # noqa: ANN202
    onnxruntime()  # telemetry off before its first import
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def quantize_onnx(fp32: bytes, *, mode: str, weight_type: str, per_channel: bool,
                  reduce_range: bool, calibration: torch.Tensor | None = None,
                  calibrate_method: str = "minmax", percentile: float = 99.999,
                  batch_size: int = 64) -> bytes:
    """Quantize an fp32 ONNX model's bytes; return the int8 model's bytes."""
    onnxruntime()  # telemetry off before its first import
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001  (pre-processing is an optimisation, not a need)
            pre = src
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(dst), per_channel=per_channel,
                             reduce_range=reduce_range, weight_type=_qtype(weight_type))
        else:
            assert calibration is not None
            name = onnx.load(str(pre)).graph.input[0].name
            method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                      "entropy": CalibrationMethod.Entropy}[calibrate_method]
            extra: dict[str, Any] = {}
            if calibrate_method == "percentile":
                extra["CalibPercentile"] = percentile
            quantize_static(str(pre), str(dst), _Reader(name, calibration, batch_size),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=_qtype(weight_type), calibrate_method=method,
                            extra_options=extra)
        return dst.read_bytes()


def integer_ops(onnx_bytes: bytes, *, as_run: bool = True) -> dict[str, int]:
    """Counts of quantized operators; ``as_run``: in the graph ONNX Runtime actually executes
    after its optimiser has fused Q/DQ pairs into integer kernels (QLinearConv, ...)."""
    if as_run:
        ort = onnxruntime()
        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
            opts.log_severity_level = 3
            ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
            onnx_bytes = (Path(tmp) / "opt.onnx").read_bytes()
    ops: dict[str, int] = {}
    for node in onnx.load_from_string(onnx_bytes).graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                            "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear",
                            "DynamicQuantizeMatMul", "QGemm", "QLinearAdd", "QLinearMul",
                            "QLinearGlobalAveragePool", "QLinearSoftmax", "MatMulIntegerToFloat",
                            "DynamicQuantizeLSTM", "QAttention", "QEmbedLayerNormalization"):
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops
