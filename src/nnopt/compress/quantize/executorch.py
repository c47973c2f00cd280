"""A deployed ExecuTorch program (XNNPACK delegate, ``.pte``) as an nn.Module of the run.

A program has one batch size (the target's): its forward runs padded chunks of that batch
through ExecuTorch's Python runtime, so accuracy, NLL and ECE are the program's own. While the
run holds it, it keeps how it was built, so ``calibrate`` can lower it again with the map
appended; a program reloaded from disk cannot take a map (ExecuTorch has no graph editing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.core.errors import ModelFileError, NnoptError, first_line
from nnopt.core.fileio import atomic_write_bytes, atomic_write_json
from nnopt.core.registry import FORMATS
from nnopt.measure.executorch_rt import et_runner, load, lower
from nnopt.models.artifact import Artifact
from nnopt.models.saving import read_checked

PTE = "model.pte"


class ExecuTorchModel(Artifact):
    """Runs a ``.pte`` program; ``spec['batch_size']`` is the batch it was built for."""

    runtime = "executorch"
    label = "ExecuTorch program"

    def __init__(self, pte: bytes, spec: dict[str, Any],
                 rebuild: Callable[[nn.Module], bytes] | None = None) -> None:
        super().__init__()
        self.pte, self.spec, self.rebuild = pte, spec, rebuild
        self._method: Any = None

    @property
    def batch(self) -> int:
        return int(self.spec["batch_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._method is None:
            self._method = load(self.pte)
        b, outs = self.batch, []
        for i in range(0, len(x), b):
            chunk = x[i:i + b].float()
            n = len(chunk)
            if n < b:  # pad the last chunk with its own first row; padding rows are dropped
                chunk = torch.cat([chunk, chunk[:1].expand(b - n, *chunk.shape[1:])])
            outs.append(self._method.execute([chunk.contiguous()])[0][:n].clone())
        return torch.cat(outs)

    def runner(self, example: torch.Tensor, threads: int) -> Callable[[], object]:
        if len(example) == self.batch:
            return et_runner(self.pte, example, threads)
        return lambda: self(example)  # another batch runs as chunks of the program's

    def __deepcopy__(self, memo: dict) -> ExecuTorchModel:
        return ExecuTorchModel(self.pte, dict(self.spec), self.rebuild)

    def __getstate__(self) -> dict:
        raise TypeError("ExecuTorchModel is saved with save_model(), never pickled")

    def param_count(self) -> int:
        return int(self.spec.get("params", 0))

    def with_calibration(self, head: nn.Module, record: dict[str, Any],
                         num_classes: int) -> ExecuTorchModel:
        """The program lowered again from its PyTorch source with ``head`` after it."""
        self.calibrated_already()
        if self.rebuild is None:
            raise NnoptError("a reloaded ExecuTorch program cannot take a calibration map "
                             "(ExecuTorch has no graph editing); calibrate the PyTorch stage "
                             "before quantize instead")
        return ExecuTorchModel(self.rebuild(head), {**self.spec, "calibration": record})

    def save_to(self, folder: Path) -> Path:
        atomic_write_bytes(folder / PTE, self.pte)
        atomic_write_json(folder / "spec.json", {
            **self.spec, "format": "nnopt-executorch",
            "weights_sha256": hashlib.sha256(self.pte).hexdigest()})
        return folder / PTE


def load_executorch(folder: Path, spec: dict[str, Any], trust: tuple[str, ...] = ()
                    ) -> ExecuTorchModel:
    """An ExecuTorch program (a flatbuffer the runtime verifies; ``trust`` is unused)."""
    b, n = spec.get("batch_size"), spec.get("params", 0)
    if type(b) is not int or not 1 <= b <= 65_536 or type(n) is not int:
        raise ModelFileError(f"{folder}: invalid spec: an ExecuTorch program needs its "
                             "'batch_size' (a positive integer) and 'params' an integer")
    pte = read_checked(folder, PTE, spec)
    try:
        load(pte)
    except NnoptError:
        raise
    except Exception as exc:  # noqa: BLE001  (the runtime raises RuntimeError for bad programs)
        raise ModelFileError(f"{folder / PTE} is corrupt: {first_line(exc)}") from None
    return ExecuTorchModel(pte, {k: v for k, v in spec.items() if k != "weights_sha256"})


FORMATS.add("nnopt-executorch", load_executorch)


class _Calibrated(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build(model: nn.Module, batch_size: int, example: torch.Tensor, spec: dict[str, Any],
          calibration: torch.Tensor | None = None) -> ExecuTorchModel:
    """``model`` lowered to XNNPACK at ``batch_size``: fp32, or int8 (PT2E XNNPACK quantizer)
    with activation ranges from ``calibration``."""
    ex = example[:1].expand(batch_size, *example.shape[1:]).contiguous()
    params = sum(p.numel() for p in model.parameters())
    precision = "fp32" if calibration is None else "int8"

    def rebuild(head: nn.Module) -> bytes:
        return lower(_Calibrated(model, head), ex, calibration)

    q = {} if calibration is None else {
        "quantization": {"method": "executorch-int8", "quantizer": "XNNPACKQuantizer "
                         "(symmetric, per-channel weights)", "calibration_size": len(calibration)}}
    return ExecuTorchModel(lower(model, ex, calibration),
                           {**spec, "runtime": "executorch", "precision": precision,
                            "batch_size": batch_size, "params": params, "delegate": "xnnpack",
                            **q}, rebuild)
