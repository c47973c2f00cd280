"""Runtimes a target can name: PyTorch eager (CPU or CUDA) and ONNX Runtime (CPU, or its CUDA
and TensorRT execution providers), each with its thread count; OpenVINO and ExecuTorch live in
``openvino_rt`` and ``executorch_rt``."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnopt.core.environment import onnxruntime
from nnopt.core.errors import NnoptError
from nnopt.measure.base import check_exportable
from nnopt.models.artifact import Artifact

RUNTIMES = ("torch", "onnxruntime", "openvino", "executorch")
EXTRA = {"openvino": ("openvino", "openvino"), "executorch": ("executorch", "executorch")}


def unavailable(runtime: str, device: str = "cpu") -> str:
    """Why ``runtime`` on ``device`` cannot run here ('' when it can): no CUDA device, or the
    runtime's optional package is missing (one line naming the extra)."""
    if device == "cuda" and not torch.cuda.is_available():
        return "a cuda target, and this machine has no CUDA device (torch.cuda.is_available() " \
               "is False)"
    if device == "cuda" and runtime == "onnxruntime" and \
            "CUDAExecutionProvider" not in onnxruntime().get_available_providers():
        return "this onnxruntime has no CUDAExecutionProvider: pip install 'nnopt[gpu]'"
    if runtime in EXTRA:
        module, extra = EXTRA[runtime]
        if importlib.util.find_spec(module) is None:
            return f"the {runtime} runtime is not installed: pip install 'nnopt[{extra}]'"
    return ""


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor,
                opset: int = 17) -> Path:
    """Export ``model`` to one self-contained ONNX file with a dynamic batch axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx = model.exported_onnx() if isinstance(model, Artifact) else None
    if onnx is not None:  # already an ONNX artifact
        path.write_bytes(onnx)
        return path
    check_exportable(model)
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def providers(device: str = "cpu", tensorrt: bool = False) -> list[str]:
    """ONNX Runtime's execution providers for a device, best first, as this build has them."""
    if device != "cuda":
        return ["CPUExecutionProvider"]
    have = onnxruntime().get_available_providers()
    wanted = (["TensorrtExecutionProvider"] if tensorrt else []) + ["CUDAExecutionProvider"]
    return [p for p in wanted if p in have] + ["CPUExecutionProvider"]


def ort_session(path: str | Path | bytes, threads: int, device: str = "cpu",
                tensorrt: bool = False):  # -> onnxruntime.InferenceSession
    """A session with ``threads`` intra-op threads that do not spin-wait, from a file or the
    model's bytes, on the CPU or (``device`` cuda) CUDA / TensorRT execution providers."""
    ort = onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # no spin-waiting: an idle ONNX Runtime pool that spins keeps burning the cores after each
    # call and slowed whatever ran next by up to 2x here (FACTS.md), so side-by-side timings lied
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, opts, providers=providers(device, tensorrt))


def torch_runner(model: nn.Module, example: torch.Tensor, device: str = "cpu",
                 compile: bool = False) -> Callable[[], object]:
    """A no-argument callable running one inference forward in PyTorch (eager, or under
    ``torch.compile``); on CUDA each call waits for the GPU to finish."""
    model = model.eval()
    if device == "cuda":
        model, example = copy.deepcopy(model).to("cuda"), example.to("cuda")  # the run's stays
    if compile:
        model = torch.compile(model)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> object:
        with torch.inference_mode():
            out = model(example)
        sync()
        return out

    return run


def onnx_runner(onnx_path: str | Path | bytes, example: torch.Tensor, threads: int,
                device: str = "cpu", tensorrt: bool = False) -> Callable[[], object]:
    """A no-argument callable running one ONNX Runtime inference on ``example`` (its outputs
    come back to the host, so a GPU call is complete when it returns)."""
    sess = ort_session(onnx_path, threads, device, tensorrt)
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(example.numpy())}
    return lambda: sess.run(None, feed)


def check_runtime(name: str) -> None:
    if name not in RUNTIMES:
        raise NnoptError(f"unknown runtime '{name}'; valid choices: {', '.join(RUNTIMES)}")
