"""The base class of deployed artifacts: a model whose forward runs the file that ships (an ONNX
graph on ONNX Runtime, a torch.ao int8 graph), so every metric measures what a user deploys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.core.errors import NnoptError


class Artifact(nn.Module):
    """A deployed model of a stage. Subclasses set ``runtime`` and ``spec`` and write their own
    file (``save_to``); PyTorch-level counts (MACs, non-zeros) do not apply to them."""

    runtime = "torch"  # the only runtime that can run it
    label = "deployed artifact"  # what messages call it
    artifact = True
    spec: dict[str, Any]

    def param_count(self) -> int:
        """The number of weights the file stores."""
        raise NotImplementedError

    def save_to(self, folder: Path) -> Path:
        """Write the artifact's file and spec into ``folder``; return the file's path."""
        raise NotImplementedError

    def exported_onnx(self) -> bytes | None:
        """The ONNX graph this artifact runs, if it runs one (exported as is)."""
        return None

    def runner(self, example: torch.Tensor, threads: int) -> Callable[[], object] | None:
        """A no-argument callable running one batch on the artifact's own runtime with
        ``threads`` threads, where that runtime is not ONNX Runtime or PyTorch (None: the
        caller runs ``exported_onnx()`` or the module itself)."""
        return None

    def with_calibration(self, head: nn.Module, record: dict[str, Any],
                         num_classes: int) -> Artifact:
        """A copy that applies the fitted calibration ``head`` to its logits, recorded in its
        spec as ``calibration`` (so it reloads calibrated)."""
        raise NnoptError(f"calibrate cannot append a map to this {self.label}")

    def calibrated_already(self) -> None:
        if self.spec.get("calibration"):
            raise NnoptError(f"this {self.label} is already calibrated; calibrate the stage "
                             "before it instead (from: <stage>)")
