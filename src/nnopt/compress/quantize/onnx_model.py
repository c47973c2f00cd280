"""A deployed ONNX artifact (fp32 export or int8 quantized) as an nn.Module of the run.

Its forward runs ONNX Runtime, so every metric measures the artifact that ships, not a
simulation. It is saved as ``model.onnx`` plus ``spec.json``; it runs only on the onnxruntime
runtime (PyTorch-only metrics such as MACs are absent for it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx.external_data_helper import (
    _get_all_tensors,
    load_external_data_for_tensor,
    uses_external_data,
)
from torch import nn

from nnopt.compress.quantize.onnx_head import append_head
from nnopt.core.errors import ModelFileError, first_line
from nnopt.core.fileio import atomic_write_bytes, atomic_write_json
from nnopt.core.registry import FORMATS
from nnopt.measure.runtimes import ort_session
from nnopt.models.artifact import Artifact
from nnopt.models.saving import read_checked

ONNX_FILE = "model.onnx"


class OnnxModel(Artifact):
    """Runs an ONNX graph with ONNX Runtime on CPU; ``spec`` says where it came from."""

    runtime = "onnxruntime"
    label = "ONNX artifact"

    def __init__(self, onnx_bytes: bytes, spec: dict[str, Any], threads: int = 1) -> None:
        super().__init__()
        self.onnx_bytes = onnx_bytes
        self.spec = spec
        self.threads = threads
        self._session: Any = None

    def session(self, threads: int | None = None):  # -> onnxruntime.InferenceSession

        if threads is not None and threads != self.threads:
            return ort_session(self.onnx_bytes, threads)
        if self._session is None:
            self._session = ort_session(self.onnx_bytes, self.threads)
        return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sess = self.session()
        out = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x.numpy())})[0]
        return torch.from_numpy(out)

    def __deepcopy__(self, memo: dict) -> OnnxModel:
        return OnnxModel(self.onnx_bytes, dict(self.spec), self.threads)

    def __getstate__(self) -> dict:
        raise TypeError("OnnxModel is saved with save_model(), never pickled")

    def param_count(self) -> int:
        """Elements of the graph's weight initializers (quantization scales and zero points
        excluded)."""
        graph = onnx.load_from_string(self.onnx_bytes).graph
        return int(sum(np.prod(t.dims) for t in graph.initializer
                       if not t.name.endswith(("_scale", "_zero_point")) and len(t.dims) > 0))

    def exported_onnx(self) -> bytes:
        return self.onnx_bytes

    def with_calibration(self, head: nn.Module, record: dict[str, Any],
                         num_classes: int) -> OnnxModel:
        self.calibrated_already()
        return OnnxModel(append_head(self.onnx_bytes, head, num_classes),
                         {**self.spec, "calibration": record}, self.threads)

    def save_to(self, folder: Path) -> Path:
        atomic_write_bytes(folder / ONNX_FILE, self.onnx_bytes)
        atomic_write_json(folder / "spec.json", {
            **self.spec, "format": "nnopt-onnx",
            "weights_sha256": hashlib.sha256(self.onnx_bytes).hexdigest()})
        return folder / ONNX_FILE


def with_external_data(proto: onnx.ModelProto, folder: Path, source: str) -> bool:
    """Read the tensors ``proto`` keeps in external files into it, from ``folder`` only (never
    relative to the working directory, never outside the folder); True if there were any."""
    root = Path(os.path.realpath(folder))
    found = False
    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        found = True
        where = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = Path(os.path.realpath(root / where))
        if not where or Path(where).is_absolute() or root not in target.parents \
                or not target.is_file():
            raise ModelFileError(f"{source}: tensor '{tensor.name}' keeps its data in "
                                 f"'{where}', which is not a file inside {folder}")
        load_external_data_for_tensor(tensor, str(root))
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return found


def load_onnx_model(folder: Path, spec: dict[str, Any], trust: tuple[str, ...] = ()) -> OnnxModel:
    """An exported ONNX artifact (no code runs: ``trust`` is unused, as for every ONNX file)."""
    path = folder / ONNX_FILE
    blob = read_checked(folder, ONNX_FILE, spec)
    try:
        proto = onnx.load_from_string(blob)
        if with_external_data(proto, folder, str(path)):
            blob = proto.SerializeToString()
        onnx.checker.check_model(proto)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001  (onnx raises several types for bad files)
        raise ModelFileError(f"{path} is corrupt: {first_line(exc)}") from None
    return OnnxModel(blob, {k: v for k, v in spec.items() if k != "weights_sha256"})


FORMATS.add("nnopt-onnx", load_onnx_model)
