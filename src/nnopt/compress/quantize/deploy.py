"""Which deployment is fastest on a target, and why: the runtime effect (PyTorch fp32 -> ONNX
Runtime fp32) kept apart from the precision effect (fp32 -> int8 on the same runtime)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from nnopt.measure.base import Measurement
from nnopt.measure.latency import measure_target
from nnopt.measure.target import Target

FAST = {"warmup": 5, "repeats": 30, "min_seconds": 0.3}
MARGIN = 1.05  # int8 must be >= 5% faster than fp32 on the same runtime to count as faster


def latency_on(model: nn.Module, data: Any, target: Target, runtime: str) -> float:
    """Median ms of ``model`` at ``target``'s batch and threads on ``runtime``."""
    t = target.model_copy(update={"runtime": runtime, "sparse": False, **FAST})
    with tempfile.TemporaryDirectory() as tmp:
        return measure_target(Measurement(model, data, [t], Path(tmp)), t)["median_ms"]


def effects(torch_fp32: nn.Module, ort_fp32: nn.Module, ort_int8: nn.Module, data: Any,
            targets: list[Target]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per target: the three latencies, the two effects, and warnings where int8 is not faster."""
    rows, warns = [], []
    for t in targets:
        a = latency_on(torch_fp32, data, t, "torch")
        b = latency_on(ort_fp32, data, t, "onnxruntime")
        c = latency_on(ort_int8, data, t, "onnxruntime")
        row = {"target": t.name, "batch_size": t.batch_size, "threads": t.threads,
               "torch_fp32_ms": a, "ort_fp32_ms": b, "ort_int8_ms": c,
               "runtime_effect": a / b, "precision_effect": b / c, "total": a / c,
               "int8_faster": b >= c * MARGIN}
        rows.append(row)
        if not row["int8_faster"]:
            warns.append(f"int8 is not faster than fp32 on onnxruntime at '{t.name}' (batch "
                         f"{t.batch_size}, {t.threads} thread(s)): {c:.3f} ms vs {b:.3f} ms; the "
                         f"{a / b:.2f}x over PyTorch is the runtime's, not int8's")
    return rows, warns
