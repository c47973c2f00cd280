"""A target: a place a model ships to, where latency is measured."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import Field, model_validator

from nnopt.core.config import NAME, Strict

Runtime = Literal["torch", "onnxruntime", "openvino", "executorch"]
GPU_RUNTIMES = ("torch", "onnxruntime")


class Target(Strict):
    """Where the model will run; latency is measured here, never inferred from MACs."""

    name: str = Field(pattern=NAME)
    runtime: Runtime = Field("torch", description="the runtime a PyTorch stage is timed on here")
    runtimes: list[Runtime] | None = Field(
        None, min_length=1, description="the runtimes this place can run, which a deploying "
        "stage may choose from (default: what `runtime` implies: a PyTorch server (runtime "
        "torch) can run every runtime, a target of onnxruntime, openvino or executorch that "
        "runtime alone; e.g. [onnxruntime, executorch] for a phone that ships either)")
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="cuda: a GPU target (torch or onnxruntime; skipped with one line where "
        "no CUDA device is present)")
    tensorrt: bool = Field(False, description="cuda + onnxruntime: ONNX Runtime's TensorRT "
                           "execution provider first, where the build has it")
    compile: bool = Field(False, description="torch: time the model under torch.compile")
    batch_size: int = Field(1, ge=1, le=65_536)
    threads: int = Field(1, ge=1, le=1024)
    warmup: int = Field(10, ge=0, le=100_000, description="untimed calls before timing")
    repeats: int = Field(50, ge=5, le=1_000_000, description="minimum timed calls")
    min_seconds: float = Field(0.5, ge=0, le=3600,
                               description="timing one model alone: keep timing until this much time "
                               "passed; side by side: blocks of a tenth of it per round")
    sparse: bool = Field(False, description="run Linear layers as CSR sparse matrices (torch only)")

    @property
    def allowed(self) -> list[str]:
        """The runtimes this target can run: ``runtimes``, else what ``runtime`` implies."""
        if self.runtimes is not None:
            return list(self.runtimes)
        if self.runtime != "torch":
            return [self.runtime]
        return list(GPU_RUNTIMES) if self.device == "cuda" else list(typing.get_args(Runtime))

    def allows(self, runtime: str) -> bool:
        return runtime in self.allowed

    @model_validator(mode="after")
    def _sparse_needs_torch(self) -> Target:
        if self.sparse and self.runtime != "torch":
            raise ValueError("sparse kernels exist only for runtime 'torch' (onnxruntime has none "
                             "on CPU)")
        if self.device == "cuda" and not set(self.runtimes or [self.runtime]) <= set(GPU_RUNTIMES):
            raise ValueError("a cuda target runs torch or onnxruntime (OpenVINO and ExecuTorch "
                             "targets are CPU targets here)")
        if self.compile and self.runtime != "torch":
            raise ValueError("compile (torch.compile) applies to runtime 'torch'")
        if self.tensorrt and (self.device != "cuda" or self.runtime != "onnxruntime"):
            raise ValueError("tensorrt needs device: cuda and runtime: onnxruntime")
        if self.runtimes is not None and self.runtime not in self.runtimes:
            raise ValueError(f"runtime '{self.runtime}' is not among this target's runtimes "
                             f"{self.runtimes}")
        return self
