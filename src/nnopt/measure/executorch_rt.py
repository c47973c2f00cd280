"""ExecuTorch with the XNNPACK delegate, the runtime PyTorch ships to phones: a model exported
with ``torch.export`` at a fixed batch, lowered to XNNPACK (fp32, or int8 through the PT2E
XNNPACK quantizer) into one ``.pte`` program, and run through ExecuTorch's Python runtime.

A program is built for one batch size (ExecuTorch's memory plan is static; a dynamic batch was
refused above 15 images here), so a target gets a program at its own batch and evaluation runs
padded chunks of it. Batch norms are folded into their convolutions before export.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import nn

from nnopt.core.environment import native_stderr_silenced
from nnopt.core.extras import require
from nnopt.measure.base import example_batch


@cache
def executorch() -> Any:
    """The executorch package (the 'executorch' extra), without torchao's log noise."""
    for name in ("torchao", "torch.utils._pytree", "executorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return require("executorch", "the executorch runtime")


def _fold(model: nn.Module) -> nn.Module:
    """A copy with batch norms folded into the convolutions before them (XNNPACK's own fusion
    pass failed on some exported graphs here)."""
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    try:
        return fuse(model)
    except Exception:  # noqa: BLE001  (a model FX cannot trace is exported as it is)
        return model


def lower(model: nn.Module, example: torch.Tensor,
          calibration: torch.Tensor | None = None) -> bytes:
    """The ``.pte`` program of ``model`` at ``example``'s shape: fp32, or int8 (per-channel
    symmetric weights, static activations from ``calibration``) when calibration is given."""
    executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model = _fold(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's pytree deprecation notes
        graph = torch.export.export(model, (example,))
        if calibration is not None:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = XNNPACKQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True))
            prepared = prepare_pt2e(graph.module(), quantizer)
            b = len(example)  # whole batches only; too few images are repeated to one batch
            calibration = example_batch(calibration, max(b, len(calibration) // b * b))
            for i in range(0, len(calibration), b):
                prepared(calibration[i:i + b])
            graph = torch.export.export(convert_pt2e(prepared), (example,))
        program = to_edge_transform_and_lower(graph, partitioner=[XnnpackPartitioner()])
        return bytes(program.to_executorch().buffer)


@cache
def _portable_lib() -> Any:
    executorch()
    from executorch.extension.pybindings import portable_lib

    return portable_lib


# resets of XNNPACK's process-wide thread pool, and its size once nnopt has set it
_POOL: dict[str, int | None] = {"generation": 0, "threads": None}


def set_threads(threads: int) -> None:
    """Size XNNPACK's process-wide thread pool. A reset frees the pool that loaded methods
    point into (using one afterwards corrupted the heap here), so every ``Loaded`` reloads
    its method when the pool changed since it loaded."""
    if _POOL["threads"] == threads:  # known: no call into the runtime on the timed path
        return
    portable_lib = _portable_lib()
    if portable_lib._threadpool_get_thread_count() != threads:
        with native_stderr_silenced():  # "Resetting threadpool" on native stderr
            portable_lib._unsafe_reset_threadpool(threads)
        _POOL["generation"] += 1
    _POOL["threads"] = threads


class Loaded:
    """A loaded program and its ``forward`` method, run with ``threads`` threads (None: the
    pool as it is); it reloads after a pool reset, and keeps its program alive (a method whose
    program was collected crashed the process here)."""

    def __init__(self, pte: bytes, threads: int | None = None) -> None:
        executorch()
        self.pte, self.threads = pte, threads
        self.generation = -1
        self.program: Any = None
        self.method: Any = None

    def _ready(self) -> None:
        if self.threads is not None:
            set_threads(self.threads)
        if self.generation != _POOL["generation"]:
            from executorch.runtime import Runtime

            self.method = None
            with native_stderr_silenced():
                self.program = Runtime.get().load_program(self.pte)
                self.method = self.program.load_method("forward")
            self.generation = _POOL["generation"]

    def execute(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        self._ready()
        return self.method.execute(inputs)


def load(pte: bytes, threads: int | None = None) -> Loaded:
    """The program's ``forward``, loaded now (bytes are data: the runtime verifies them)."""
    out = Loaded(pte, threads)
    out._ready()
    return out


def et_runner(pte: bytes, example: torch.Tensor, threads: int) -> Callable[[], object]:
    """A no-argument callable running one inference of ``example`` (the program's batch)."""
    method = load(pte, threads)
    inputs = [example.contiguous()]
    return lambda: method.execute(inputs)
