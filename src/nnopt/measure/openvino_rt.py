"""OpenVINO on CPU: an ONNX graph read into OpenVINO's model, kept as IR (.xml + .bin bytes),
compiled with pinned threads and one stream, at a fixed batch for timing.

OpenVINO's CPU plugin may compute an "fp32" model in bf16 on CPUs that have it unless told not
to; nnopt states the inference precision it asks for (``f32`` or ``bf16``) and records it, so a
precision change is never hidden in a runtime change.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnopt.core.environment import cpu_flags
from nnopt.core.extras import require


@contextlib.contextmanager
def _telemetry_off() -> Iterator[None]:
    """While OpenVINO and NNCF are first imported: their telemetry (which writes an id file
    under ~/intel at ``import openvino``) declines in CI and is a stub under NNCF_CI; both
    variables are set for the imports only and the caller's environment is given back."""
    before = {k: os.environ.get(k) for k in ("CI", "NNCF_CI")}
    os.environ.update({"CI": "true", "NNCF_CI": "1"})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@cache
def openvino() -> Any:
    """The openvino module (the 'openvino' extra), imported with NNCF beside it (when
    installed) so that neither writes outside nnopt's folders."""
    with _telemetry_off():
        ov = require("openvino", "the openvino runtime")
        with contextlib.suppress(ImportError):
            import nncf  # noqa: F401  (its telemetry decides at import)
    return ov


@cache
def core() -> Any:
    return openvino().Core()


def has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 bf16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def to_ir(model: Any) -> tuple[bytes, bytes]:
    """An OpenVINO model serialized as IR (xml, weights) bytes."""
    ov = openvino()
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


def read_ir(xml: bytes, weights: bytes) -> Any:
    """An OpenVINO model from IR bytes (data only: no code runs)."""
    ov = openvino()
    return core().read_model(model=xml, weights=ov.Tensor(np.frombuffer(weights, np.uint8)))


def compile_ir(model: Any, threads: int, precision: str = "f32",
               shape: tuple[int, ...] | None = None) -> Any:
    """The model compiled for CPU with ``threads`` threads, one stream, latency hint, and the
    inference precision asked for; reshaped to ``shape`` first (a static shape runs faster)."""
    if shape is not None:
        model = model.clone()
        model.reshape({model.inputs[0].get_any_name(): list(shape)})
    return core().compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision, "ENABLE_CPU_PINNING": False})


def ov_runner(model: Any, example: torch.Tensor, threads: int, precision: str = "f32"
              ) -> Callable[[], object]:
    """A no-argument callable running one inference of ``example`` (its shape compiled in)."""
    compiled = compile_ir(model, threads, precision, tuple(example.shape))
    request = compiled.create_infer_request()
    feed = {0: np.ascontiguousarray(example.numpy())}
    return lambda: request.infer(feed, share_inputs=True, share_outputs=True)
