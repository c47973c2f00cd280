"""int8 that stays in PyTorch: FX graph-mode static quantization (conv and linear on the x86
backend's int8 kernels) and dynamic quantization of Linear layers, through ``torch.ao``.

``torch.ao.quantization`` is deprecated upstream (PT2E moved to torchao, whose int8 has no fast
kernel on the project's CPUs), so it is used behind a version guard with a clear error when it is
gone. The artifact saves its int8 weights, scales and zero points as safetensors and rebuilds
the quantized graph without pickle.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from nnopt.core.environment import environ_kept
from nnopt.core.errors import ModelFileError, NnoptError, first_line
from nnopt.core.fileio import atomic_write_bytes, atomic_write_json
from nnopt.core.registry import FORMATS
from nnopt.models.artifact import Artifact
from nnopt.models.saving import build_from_spec, head_from_record, read_checked

FILE = "model.safetensors"


def _ao():  # noqa: ANN202
    try:
        from torch.ao.quantization import get_default_qconfig_mapping, quantize_dynamic
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError as exc:
        raise NnoptError(f"torch {torch.__version__} lacks torch.ao quantization ({exc}); use "
                         "method ort-static") from None
    return get_default_qconfig_mapping, prepare_fx, convert_fx, quantize_dynamic


@functools.cache
def engine() -> str:
    """The quantized kernel engine this torch build has (x86 first; found once)."""
    engines = torch.backends.quantized.supported_engines
    for e in ("x86", "fbgemm", "onednn", "qnnpack"):
        if e in engines:
            return e
    raise NnoptError(f"no quantized engine in this torch build (supported: {engines})")


@contextlib.contextmanager
def quantized_engine(name: str | None = None) -> Iterator[str]:
    """Run under torch's quantized kernel engine ``name`` (default: ``engine()``), restoring the
    caller's engine afterwards (nnopt leaves global torch settings as it found them)."""
    before = torch.backends.quantized.engine
    name = name or engine()
    if before == name:  # the common case (every timed call of an int8 model): nothing to do
        yield name
        return
    torch.backends.quantized.engine = name
    try:
        yield name
    finally:
        torch.backends.quantized.engine = before


def build(float_model: nn.Module, method: str, calibration: torch.Tensor,
          batch_size: int = 64) -> nn.Module:
    """The quantized PyTorch module (an FX GraphModule for static, a module for dynamic)."""
    qconfig_mapping, prepare_fx, convert_fx, quantize_dynamic = _ao()
    model = copy.deepcopy(float_model).eval()
    with environ_kept(), quantized_engine() as name, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "torch-dynamic":
            return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        prepared = prepare_fx(model, qconfig_mapping(name), example_inputs=(calibration[:1],))
        with torch.inference_mode():
            for i in range(0, len(calibration), batch_size):
                prepared(calibration[i:i + batch_size])
        return convert_fx(prepared)


def _state(q: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor a quantized graph needs: int8 weights, their scales/zero points, biases,
    output scales/zero points and the graph's input-quantization constants."""
    out: dict[str, torch.Tensor] = {}
    for name, m in q.named_modules():
        if hasattr(m, "weight") and callable(m.weight) and hasattr(m, "set_weight_bias"):
            w = m.weight()
            out[f"{name}.w_int"] = w.int_repr().contiguous()
            if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                out[f"{name}.w_scales"] = w.q_per_channel_scales().float().contiguous()
                out[f"{name}.w_zps"] = w.q_per_channel_zero_points().contiguous()
                out[f"{name}.w_axis"] = torch.tensor(w.q_per_channel_axis())
            else:
                out[f"{name}.w_scales"] = torch.tensor([w.q_scale()], dtype=torch.float32)
                out[f"{name}.w_zps"] = torch.tensor([w.q_zero_point()])
            if m.bias() is not None:
                out[f"{name}.bias"] = m.bias().detach().contiguous()
            if hasattr(m, "scale") and not callable(m.scale):
                out[f"{name}.out_scale"] = torch.tensor([float(m.scale)])
                out[f"{name}.out_zp"] = torch.tensor([int(m.zero_point)])
    for name, value in vars(q).items():
        if isinstance(value, torch.Tensor) and name.startswith("_"):
            out[f"graph.{name}"] = value.detach().clone().contiguous()
    for name, buf in q.named_buffers():
        out[f"buffer.{name}"] = buf.detach().clone().contiguous()
    for name, p in q.named_parameters():  # layers left in float (e.g. convs under dynamic)
        out[f"param.{name}"] = p.detach().clone().contiguous()
    return out


def _load_state(q: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    modules = dict(q.named_modules())
    for key in [k for k in tensors if k.endswith(".w_int")]:
        name = key[: -len(".w_int")]
        m = modules[name]
        w_int, scales, zps = tensors[key], tensors[f"{name}.w_scales"], tensors[f"{name}.w_zps"]
        if f"{name}.w_axis" in tensors:
            w = torch._make_per_channel_quantized_tensor(
                w_int, scales.double(), zps.long(), int(tensors[f"{name}.w_axis"]))
        else:
            w = torch._make_per_tensor_quantized_tensor(w_int, float(scales[0]), int(zps[0]))
        m.set_weight_bias(w, tensors.get(f"{name}.bias"))
        if f"{name}.out_scale" in tensors:
            m.scale = float(tensors[f"{name}.out_scale"][0])
            m.zero_point = int(tensors[f"{name}.out_zp"][0])
    for key, value in tensors.items():
        if key.startswith("graph."):
            setattr(q, key[len("graph."):], value)
    bufs, params = dict(q.named_buffers()), dict(q.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            if key.startswith("buffer."):
                bufs[key[len("buffer."):]].copy_(value)
            elif key.startswith("param."):
                params[key[len("param."):]].copy_(value)


class TorchInt8Model(Artifact):
    """A torch.ao int8 model as a stage artifact (PyTorch runtime only)."""

    runtime = "torch"
    label = "int8 model"

    def __init__(self, qmodel: nn.Module, spec: dict[str, Any],
                 head: nn.Module | None = None) -> None:
        super().__init__()
        self.qmodel = qmodel
        self.spec = spec
        self.head = head  # a float calibration map on the int8 model's logits (spec: calibration)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with quantized_engine():
            out = self.qmodel(x)
        return out if self.head is None else self.head(out)

    def param_count(self) -> int:
        return int(sum(v.numel() for k, v in _state(self.qmodel).items()
                       if k.endswith((".w_int", ".bias")) or k.startswith("param.")))

    def with_calibration(self, head: nn.Module, record: dict[str, Any],
                         num_classes: int) -> TorchInt8Model:
        self.calibrated_already()
        out = copy.deepcopy(self)
        out.head = head
        out.spec = {**out.spec, "calibration": record}
        return out

    def save_to(self, folder: Path) -> Path:
        head = {} if self.head is None else {
            f"head.{k}": v.detach().contiguous() for k, v in self.head.state_dict().items()}
        blob = st_save({**_state(self.qmodel), **head})
        atomic_write_bytes(folder / FILE, blob)
        atomic_write_json(folder / "spec.json", {
            **self.spec, "format": "nnopt-torch-int8",
            "weights_sha256": hashlib.sha256(blob).hexdigest()})
        return folder / FILE


def load_torch_int8(folder: Path, spec: dict[str, Any], trust: tuple[str, ...] = ()
                    ) -> TorchInt8Model:
    """Rebuild the quantized graph from the float architecture (its spec is data, checked like
    a model folder's; ``trust`` lists the factories vouched for), then load the int8 tensors."""
    path = folder / FILE
    blob = read_checked(folder, FILE, spec)
    try:
        tensors = st_load(blob)
    except Exception as exc:  # noqa: BLE001  (safetensors raises its own error type)
        raise ModelFileError(f"{path} is corrupt: {exc}") from None
    source = spec.get("source")
    method = (spec.get("quantization") or {}).get("method")
    if method not in ("torch-static", "torch-dynamic"):
        raise ModelFileError(f"{folder}: invalid spec: unknown int8 method {str(method)[:30]!r}")
    # every float weight becomes one int8 byte; biases and folded BN stay within the slack
    float_model = build_from_spec(source, trust=trust, source=str(folder),
                                  budget=4 * len(blob) + 2 ** 20)
    calib = torch.zeros(2, *source["input_shape"])
    head = None
    try:
        q = build(float_model, method, calib)
        if spec.get("calibration"):
            head = head_from_record(spec["calibration"], source["num_classes"])
            head.load_state_dict({k[len("head."):]: v for k, v in tensors.items()
                                  if k.startswith("head.")})
        _load_state(q, {k: v for k, v in tensors.items() if not k.startswith("head.")})
    except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise ModelFileError(f"{folder}: int8 tensors do not match the spec: "
                             f"{first_line(exc)}") from None
    return TorchInt8Model(q, {k: v for k, v in spec.items() if k != "weights_sha256"}, head)


FORMATS.add("nnopt-torch-int8", load_torch_int8)
