"""A deployed OpenVINO artifact (IR .xml + .bin) as an nn.Module of the run, and OpenVINO's
int8 paths: NNCF post-training quantization of the IR (with NNCF's accuracy-aware mode when the
plain one breaks the accuracy budget), or OpenVINO reading ONNX Runtime's QDQ int8 graph.

Its forward runs OpenVINO's CPU plugin, so accuracy, NLL and ECE are the runtime's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnopt.compress.quantize.onnx_head import head_onnx
from nnopt.core.errors import ModelFileError, NnoptError, first_line
from nnopt.core.fileio import atomic_write_bytes, atomic_write_json
from nnopt.core.registry import FORMATS
from nnopt.measure.openvino_rt import compile_ir, core, openvino, ov_runner, read_ir, to_ir
from nnopt.models.artifact import Artifact
from nnopt.models.saving import read_checked
from nnopt.train.fit import evaluate

XML, BIN = "model.xml", "model.bin"


class OpenVinoModel(Artifact):
    """Runs OpenVINO IR on CPU; ``spec['inference_precision']`` is the precision the plugin is
    asked to compute in (f32 or bf16)."""

    runtime = "openvino"
    label = "OpenVINO artifact"

    def __init__(self, xml: bytes, weights: bytes, spec: dict[str, Any], threads: int = 1) -> None:
        super().__init__()
        self.xml, self.weights, self.spec, self.threads = xml, weights, spec, threads
        self._model: Any = None
        self._compiled: Any = None

    @property
    def hint(self) -> str:
        return self.spec.get("inference_precision", "f32")

    def ov_model(self) -> Any:
        if self._model is None:
            self._model = read_ir(self.xml, self.weights)
        return self._model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled is None:
            self._compiled = compile_ir(self.ov_model(), self.threads, self.hint)
        out = self._compiled(np.ascontiguousarray(x.float().numpy()))[0]
        return torch.from_numpy(np.array(out))

    def runner(self, example: torch.Tensor, threads: int) -> Callable[[], object]:
        return ov_runner(self.ov_model(), example, threads, self.hint)

    def __deepcopy__(self, memo: dict) -> OpenVinoModel:
        return OpenVinoModel(self.xml, self.weights, dict(self.spec), self.threads)

    def __getstate__(self) -> dict:
        raise TypeError("OpenVinoModel is saved with save_model(), never pickled")

    def param_count(self) -> int:
        return int(self.spec.get("params", 0))

    def with_calibration(self, head: nn.Module, record: dict[str, Any],
                         num_classes: int) -> OpenVinoModel:
        """The IR with the calibration head's graph on its logits (one IR still)."""
        self.calibrated_already()
        body = self.ov_model().clone()
        tail = core().read_model(model=head_onnx(head, num_classes))
        result = body.get_results()[0]  # the head goes between the logits and their Result
        tail.get_parameters()[0].output(0).replace(result.input_value(0))
        result.input(0).replace_source_output(tail.get_results()[0].input_value(0))
        body.validate_nodes_and_infer_types()
        out = body
        xml, weights = to_ir(out)
        return OpenVinoModel(xml, weights, {**self.spec, "calibration": record}, self.threads)

    def save_to(self, folder: Path) -> Path:
        atomic_write_bytes(folder / BIN, self.weights)
        atomic_write_bytes(folder / XML, self.xml)
        atomic_write_json(folder / "spec.json", {
            **self.spec, "format": "nnopt-openvino",
            "xml_sha256": hashlib.sha256(self.xml).hexdigest(),
            "weights_sha256": hashlib.sha256(self.weights).hexdigest()})
        return folder / XML


def load_openvino(folder: Path, spec: dict[str, Any], trust: tuple[str, ...] = ()
                  ) -> OpenVinoModel:
    """An OpenVINO IR artifact (XML and weights are data; ``trust`` is unused)."""
    if spec.get("inference_precision", "f32") not in ("f32", "bf16") or \
            not isinstance(spec.get("params", 0), int) or isinstance(spec.get("params"), bool):
        raise ModelFileError(f"{folder}: invalid spec: 'inference_precision' must be f32 or "
                             "bf16 and 'params' an integer")
    weights = read_checked(folder, BIN, spec)
    xml = read_checked(folder, XML, {"weights_sha256": spec.get("xml_sha256")})
    try:
        read_ir(xml, weights)
    except NnoptError:
        raise
    except Exception as exc:  # noqa: BLE001  (OpenVINO raises RuntimeError for bad IR)
        raise ModelFileError(f"{folder / XML} is corrupt: {first_line(exc)}") from None
    keep = {k: v for k, v in spec.items() if k not in ("weights_sha256", "xml_sha256")}
    return OpenVinoModel(xml, weights, keep)


FORMATS.add("nnopt-openvino", load_openvino)


def from_onnx_bytes(onnx_bytes: bytes, spec: dict[str, Any], precision: str = "fp32"
                    ) -> OpenVinoModel:
    """An ONNX graph (fp32, or ONNX Runtime's QDQ int8) read by OpenVINO; ``precision`` bf16
    asks the CPU plugin to compute in bf16."""
    xml, weights = to_ir(core().read_model(model=onnx_bytes))
    hint = "bf16" if precision == "bf16" else "f32"
    return OpenVinoModel(xml, weights, {**spec, "runtime": "openvino", "precision": precision,
                                        "inference_precision": hint})


def _batches(x: torch.Tensor, size: int = 1) -> list[np.ndarray]:
    return [np.ascontiguousarray(x[i:i + size].numpy()) for i in range(0, len(x), size)]


def nncf_int8(fp32: OpenVinoModel, calibration: torch.Tensor, *, validation: Any = None,
              fp32_accuracy: float | None = None, max_drop: float | None = None
              ) -> OpenVinoModel:
    """NNCF post-training int8 of the IR (activation ranges from ``calibration``, one image per
    item); when its validation accuracy falls more than ``max_drop`` below ``fp32_accuracy``,
    NNCF's accuracy-aware mode runs instead, keeping the layers that cost most in float."""
    openvino()
    import nncf

    nncf.set_log_level(logging.ERROR)
    data = nncf.Dataset(_batches(calibration))
    n = len(calibration)
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars print to stdout
        model = nncf.quantize(fp32.ov_model(), data, subset_size=n)
    mode = "post-training"
    candidate = OpenVinoModel(*to_ir(model), {**fp32.spec, "precision": "int8",
                                              "inference_precision": "f32"})
    record: dict[str, Any] = {"method": "nncf", "calibration_size": n, "mode": mode}
    if validation is not None and max_drop is not None and fp32_accuracy is not None:
        acc = evaluate(candidate, validation)["accuracy"]
        record["plain_validation_accuracy"] = acc
        if fp32_accuracy - acc > max_drop:
            items = list(zip(_batches(validation.x, 256), validation.y.split(256), strict=True))
            with contextlib.redirect_stdout(io.StringIO()):
                model = nncf.quantize_with_accuracy_control(
                    fp32.ov_model(), data, nncf.Dataset(items, lambda item: item[0]),
                    validation_fn=_validate, max_drop=max_drop,
                    drop_type=nncf.DropType.ABSOLUTE, subset_size=n)
            record["mode"] = f"accuracy-aware (plain int8 lost {100 * (fp32_accuracy - acc):.2f} pt)"
            candidate = OpenVinoModel(*to_ir(model), candidate.spec)
    candidate.spec = {**candidate.spec, "quantization": record}
    return candidate


def _validate(compiled: Any, items: Any) -> float:
    """NNCF's validation function: accuracy of a compiled model over (inputs, labels) items."""
    hits = total = 0
    for x, y in items:
        out = compiled(x)[0]
        hits += int((np.asarray(out).argmax(1) == y.numpy()).sum())
        total += len(y)
    return hits / max(1, total)
