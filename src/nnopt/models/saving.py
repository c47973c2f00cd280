"""Save and reload models as safetensors weights plus a JSON spec; never through pickle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from nnopt.errors import ModelFileError, NnoptError
from nnopt.fileio import atomic_write_bytes, atomic_write_json
from nnopt.models.structure import apply_structure, capture_structure

WEIGHTS, SPEC = "model.safetensors", "spec.json"

# Module-level rewrites (e.g. QAT wrappers) that a spec lists under "transforms": each kind's
# function re-applies its rewrite to a freshly built model before the weights are loaded.
TRANSFORMS: dict[str, Callable[[nn.Module, dict[str, Any]], None]] = {}


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as independent contiguous tensors (safetensors refuses shared storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_model(model: nn.Module, folder: str | Path) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/spec.json`` atomically; return the weights path."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict):
        raise NnoptError("only models built by nnopt (with a spec) can be saved")
    folder = Path(folder)
    if hasattr(model, "save_to"):  # a deployed artifact (e.g. ONNX) saves its own file
        return model.save_to(folder)
    spec = {k: v for k, v in spec.items() if k != "structure"}
    structure = capture_structure(model, build_from_spec(spec))
    if structure is not None:
        spec["structure"] = structure
    blob = st_save(state_tensors(model))
    atomic_write_bytes(folder / WEIGHTS, blob)
    atomic_write_json(folder / SPEC, {**spec, "weights_sha256": hashlib.sha256(blob).hexdigest()})
    if spec.get("weight_sharing"):  # also the entropy-coded Deep Compression file
        from nnopt.compress.cluster.codec import write_encoded

        write_encoded(model, folder)
    return folder / WEIGHTS


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The architecture a spec describes, with fresh weights (structure applied if recorded)."""
    from nnopt.models.base import build_model
    from nnopt.registry import MODELS

    cfg = MODELS.get(spec["model"]["name"]).config.model_validate(spec["model"])
    norm = spec.get("normalize") or {}
    model = build_model(cfg, spec["input_shape"], spec["num_classes"], norm.get("mean"),
                        norm.get("std"))
    model.spec = {**model.spec, **{k: v for k, v in spec.items()
                                   if k not in model.spec and k != "weights_sha256"}}
    for transform in spec.get("transforms", []):  # module rewrites first: structure names
        kind = transform.get("kind")                # refer to the rewritten modules
        if kind not in TRANSFORMS:
            raise ModelFileError(f"the spec needs transform '{kind}', which this nnopt lacks")
        TRANSFORMS[kind](model, transform)
    if spec.get("structure"):
        apply_structure(model, spec["structure"])
    return model


def fresh_model(model: nn.Module, seed: int, step: str) -> nn.Module:
    """The incoming model's architecture with fresh weights drawn from ``seed`` (ensemble
    members, cross-validation folds); ``step`` names the caller in the error for a model whose
    architecture is no longer the recipe's."""
    from nnopt.train.fit import seed_everything

    spec = model.spec
    if spec.get("structure") or spec.get("transforms"):
        raise NnoptError(f"{step} starts models from fresh weights of the recipe's architecture, "
                         "which this model no longer has (it was pruned or rewritten); put "
                         f"{step} before the compression stages")
    seed_everything(seed)
    return build_from_spec(spec)


def read_spec(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / SPEC
    if not path.is_file():
        raise ModelFileError(f"no saved model in {folder}: {SPEC} is missing")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is corrupt: {exc}") from None
    if not isinstance(spec, dict) or spec.get("format") not in ("nnopt-model", "nnopt-onnx",
                                                                "nnopt-torch-int8"):
        raise ModelFileError(f"{path} is not an nnopt model spec")
    return spec


def read_checked(folder: Path, name: str, spec: dict[str, Any]) -> bytes:
    """The bytes of a saved model's file, checked against the SHA-256 its spec records."""
    path = folder / name
    if not path.is_file():
        raise ModelFileError(f"no saved model in {folder}: {name} is missing")
    blob = path.read_bytes()
    if spec.get("weights_sha256") not in (None, hashlib.sha256(blob).hexdigest()):
        raise ModelFileError(f"{path} is corrupt: its SHA-256 does not match {SPEC}")
    return blob


def load_model(folder: str | Path) -> nn.Module:
    """Rebuild the model from its spec and load its safetensors weights (eval mode); a
    Deep Compression ``.nnc`` file is decoded instead."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".nnc":
        from nnopt.compress.cluster.codec import load_encoded

        return load_encoded(folder)
    spec = read_spec(folder)
    if spec.get("format") == "nnopt-onnx":
        from nnopt.compress.quantize.onnx_model import load_onnx_model

        return load_onnx_model(folder, spec)
    if spec.get("format") == "nnopt-torch-int8":
        from nnopt.compress.quantize.torch_int8 import load_torch_int8

        return load_torch_int8(folder, spec).eval()
    blob = read_checked(folder, WEIGHTS, spec)
    path = folder / WEIGHTS
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path} is corrupt: {exc}") from None
    try:
        model = build_from_spec(spec)
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{folder}: weights do not match the spec: {first}") from None
    return model.eval()
