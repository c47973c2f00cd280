"""A target: a place a model ships to, where latency is measured."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from nnopt.core.config import NAME, Strict


class Target(Strict):
    """Where the model will run; latency is measured here, never inferred from MACs."""

    name: str = Field(pattern=NAME)
    runtime: Literal["torch", "onnxruntime"] = Field(
        "torch", description="the runtime a PyTorch stage is timed on here")
    runtimes: list[Literal["torch", "onnxruntime"]] | None = Field(
        None, min_length=1, description="the runtimes this place can run, which a deploying "
        "stage may choose from (default: all; e.g. [onnxruntime] for a board that ships ONNX "
        "Runtime only)")
    batch_size: int = Field(1, ge=1, le=65_536)
    threads: int = Field(1, ge=1, le=1024)
    warmup: int = Field(10, ge=0, le=100_000, description="untimed calls before timing")
    repeats: int = Field(50, ge=5, le=1_000_000, description="minimum timed calls")
    min_seconds: float = Field(0.5, ge=0, le=3600,
                               description="timing one model alone: keep timing until this much time "
                               "passed; side by side: blocks of a tenth of it per round")
    sparse: bool = Field(False, description="run Linear layers as CSR sparse matrices (torch only)")

    def allows(self, runtime: str) -> bool:
        return self.runtimes is None or runtime in self.runtimes

    @model_validator(mode="after")
    def _sparse_needs_torch(self) -> Target:
        if self.sparse and self.runtime != "torch":
            raise ValueError("sparse kernels exist only for runtime 'torch' (onnxruntime has none "
                             "on CPU)")
        if self.runtimes is not None and self.runtime not in self.runtimes:
            raise ValueError(f"runtime '{self.runtime}' is not among this target's runtimes "
                             f"{self.runtimes}")
        return self
