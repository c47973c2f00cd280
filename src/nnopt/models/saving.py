"""Save and reload models as safetensors weights plus a JSON spec; never through pickle."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from nnopt.core.compute import seed_everything
from nnopt.core.environment import memory_bytes
from nnopt.core.errors import ModelFileError, NnoptError, first_line, unknown_choice
from nnopt.core.fileio import atomic_write_bytes, atomic_write_json, read_inside
from nnopt.core.registry import FORMATS, HEADS, MODELS, TRANSFORMS
from nnopt.models.artifact import Artifact
from nnopt.models.base import build_model
from nnopt.models.structure import apply_structure, capture_structure, check_structure

WEIGHTS, SPEC = "model.safetensors", "spec.json"

# Module-level rewrites (e.g. QAT wrappers) that a spec lists under "transforms" are registered
# in TRANSFORMS: each kind's function re-applies its rewrite to a freshly built model before the
# weights are loaded. Files of other formats (ONNX, torch int8, the entropy-coded .nnc) are read
# by the loader registered in FORMATS under the spec's "format" (or the file's suffix).
MODEL_FORMAT = "nnopt-model"


def record_int(transform: dict[str, Any], key: str, low: int, high: int,
               default: int | None = None) -> int:
    """An integer a transform record holds (a spec is data: checked before it sizes anything)."""
    value = transform.get(key, default)
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"transform '{transform.get('kind')}': {key} must be an integer in "
                         f"{low}..{high}, got {str(value)[:30]}")
    return value


def head_from_record(record: dict[str, Any], num_classes: int) -> nn.Module:
    """An unfitted post-hoc calibration head of the kind a spec records ({"method", "size"}),
    looked up in HEADS (the heads live with calibration; a spec is data, checked first)."""
    method, size = record.get("method"), record.get("size")
    if not isinstance(method, str) or method not in HEADS:
        raise ValueError(f"unknown calibration head {str(method)[:30]!r}")
    if size is not None and (type(size) is not int or not 1 <= size <= 100_000):
        raise ValueError(f"calibration head size must be an integer in 1..100000, got "
                         f"{str(size)[:30]}")
    return HEADS.get(method).fn(num_classes, *([size] if size is not None else []))


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as independent contiguous tensors (safetensors refuses shared storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_model(model: nn.Module, folder: str | Path) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/spec.json`` atomically; return the weights path."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict):
        raise NnoptError("only models built by nnopt (with a spec) can be saved")
    folder = Path(folder)
    if isinstance(model, Artifact):  # a deployed artifact (e.g. ONNX) saves its own file
        return model.save_to(folder)
    spec = {k: v for k, v in spec.items() if k != "structure"}
    structure = capture_structure(model, build_from_spec(spec, trust=vouched(spec)))
    if structure is not None:
        spec["structure"] = structure
    blob = st_save(state_tensors(model))
    atomic_write_bytes(folder / WEIGHTS, blob)
    atomic_write_json(folder / SPEC, {**spec, "weights_sha256": hashlib.sha256(blob).hexdigest()})
    if spec.get("weight_sharing"):  # also the entropy-coded Deep Compression file
        FORMATS.get("nnc").meta["write"](model, folder)
    return folder / WEIGHTS


def artifact_files(main: Path) -> list[Path]:
    """Every file that ships with the model whose main file ``save_model`` returned: a PyTorch
    model's weights and the spec that rebuilds it; for an artifact (ONNX, OpenVINO IR,
    ExecuTorch program, torch.ao int8), every file of the folder it was saved into (its spec,
    an IR's model.bin beside model.xml, an ONNX graph's external data)."""
    if main.name == WEIGHTS:
        return [f for f in (main, main.parent / SPEC) if f.is_file()]
    return sorted(f for f in main.parent.iterdir() if f.is_file() and not f.is_symlink())


def files_size(files: Iterable[Path]) -> int:
    """Bytes on disk of ``files`` together (their sizes, as ``ls -l`` shows them)."""
    return sum(f.stat().st_size for f in files)


def untrusted(source: str, ref: str) -> ModelFileError:
    """The error for a model folder whose architecture comes from code nobody vouched for."""
    return ModelFileError(
        f"{source} was built by the factory '{ref}', code that a model folder cannot vouch "
        f"for (loading runs no code a folder names); if you trust '{ref}', say so: "
        f"'trust: [\"{ref}\"]' in the recipe, '--trust {ref}' on the command line, or "
        f"load_model(path, trust=[\"{ref}\"])")


def vouched(spec: dict[str, Any]) -> tuple[str, ...]:
    """The factory of a model built in this process (its code already ran under the caller's
    trust), so that rebuilding an in-memory model's architecture needs no new vouching."""
    ref = (spec.get("model") or {}).get("factory")
    return (ref,) if isinstance(ref, str) else ()


def build_from_spec(spec: dict[str, Any], *, trust: Iterable[str] = (), source: str = "spec",
                    expect: dict[str, tuple[int, ...]] | None = None,
                    budget: int | None = None) -> nn.Module:
    """The architecture a spec describes, with fresh weights (structure applied if recorded).

    A spec is data: it runs no code but nnopt's own, unless it names a factory listed in
    ``trust``. ``expect`` (the tensor shapes of the weights file) or ``budget`` (an upper bound
    on the elements) is checked on a weightless build first, so a spec cannot make nnopt
    allocate more than its file holds.
    """
    check_spec(spec, source)
    entry = MODELS.get(spec["model"]["name"])
    vouch = entry.meta.get("vouch")
    if vouch is not None and spec["model"].get(vouch) not in set(trust):
        raise untrusted(source, str(spec["model"].get(vouch)))
    try:
        if (expect is not None or budget is not None) and vouch is None:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pretrained weights copied into meta: no-ops
                shapes = {k: tuple(v.shape) for k, v in _build(spec).state_dict().items()}
            if expect is not None and shapes != expect:
                odd = sorted(set(shapes) ^ set(expect)) or [
                    k for k in shapes if shapes[k] != expect[k]]
                raise ModelFileError(f"{source}: weights do not match the spec (first "
                                     f"difference: {odd[0]})")
            total = sum(math.prod(s) for s in shapes.values())
            if budget is not None and total > budget:
                raise ModelFileError(f"{source}: the spec describes {total:,} weights, more "
                                     f"than its file can hold")
        return _build(spec)
    except ModelFileError:
        raise
    except (NnoptError, ValidationError, KeyError, TypeError, ValueError, IndexError,
            AttributeError, RuntimeError, NotImplementedError) as exc:
        if isinstance(exc, ValidationError):
            e = exc.errors()[0]
            first = f"model.{'.'.join(map(str, e['loc']))}: {e['msg']}"
        elif isinstance(exc, KeyError):
            first = f"unknown or missing key {str(exc)[:60]}"
        else:
            first = first_line(exc)
        raise ModelFileError(f"{source}: the spec does not describe a model nnopt can build: "
                             f"{first}") from None


def _build(spec: dict[str, Any]) -> nn.Module:
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
        TRANSFORMS.get(kind).fn(model, transform)
    if spec.get("structure"):
        apply_structure(model, spec["structure"])
    return model


MAX_INPUT = 2 ** 26      # elements of one input
MAX_CLASSES = 1_000_000


def check_spec(spec: Any, source: str) -> None:
    """The fields every spec needs, with their types and sane ranges (one line if not)."""
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{source}: invalid spec: {what}")

    if not isinstance(spec, dict):
        raise bad("not a JSON object")
    model = spec.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise bad("'model' must be an object with a 'name'")
    if model["name"] not in MODELS:
        raise bad(unknown_choice("model", model["name"], MODELS.names()))
    if MODELS.get(model["name"]).meta.get("loads"):
        raise bad(f"a spec cannot point at another saved model ('{model['name']}')")
    shape = spec.get("input_shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4
            and all(type(d) is int and 1 <= d <= MAX_INPUT for d in shape)
            and math.prod(shape) <= MAX_INPUT):
        raise bad(f"'input_shape' must list 1 to 4 positive sizes of at most {MAX_INPUT:,} "
                  f"elements in all (got {str(shape)[:60]})")
    n = spec.get("num_classes")
    if type(n) is not int or not 1 <= n <= MAX_CLASSES:
        raise bad(f"'num_classes' must be an integer in 1..{MAX_CLASSES:,} (got {str(n)[:30]})")
    norm = spec.get("normalize")
    if norm is not None:
        ok = isinstance(norm, dict) and all(
            isinstance(norm.get(k), list) and len(norm[k]) == shape[0]
            and all(type(v) in (int, float) and math.isfinite(v) for v in norm[k])
            for k in ("mean", "std"))
        if not ok or any(v <= 0 for v in norm["std"]):
            raise bad(f"'normalize' needs finite 'mean' and positive 'std' lists of "
                      f"{shape[0]} value(s), one per input channel")
    transforms = spec.get("transforms", [])
    if not isinstance(transforms, list) or not all(isinstance(t, dict) for t in transforms):
        raise bad("'transforms' must be a list of objects")
    if spec.get("structure") is not None:
        check_structure(spec["structure"], bad)


def fresh_model(model: nn.Module, seed: int, step: str) -> nn.Module:
    """The incoming model's architecture with fresh weights drawn from ``seed`` (ensemble
    members, cross-validation folds); ``step`` names the caller in the error for a model whose
    architecture is no longer the recipe's."""
    spec = model.spec
    if spec.get("structure") or spec.get("transforms"):
        raise NnoptError(f"{step} starts models from fresh weights of the recipe's architecture, "
                         "which this model no longer has (it was pruned or rewritten); put "
                         f"{step} before the compression stages")
    seed_everything(seed)
    return build_from_spec(spec, trust=vouched(spec))


MAX_SPEC_BYTES = 64 * 2 ** 20


def read_spec(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / SPEC
    if not path.is_file():
        raise ModelFileError(f"no saved model in {folder}: {SPEC} is missing")
    try:
        spec = json.loads(read_inside(path, Path(folder), MAX_SPEC_BYTES, "model spec",
                                      ModelFileError))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path} is corrupt: {str(exc)[:120]}") from None
    fmt = spec.get("format") if isinstance(spec, dict) else None
    if not isinstance(fmt, str) or not (fmt == MODEL_FORMAT or fmt in FORMATS):
        raise ModelFileError(f"{path} is not an nnopt model spec")
    return spec


def read_checked(folder: Path, name: str, spec: dict[str, Any]) -> bytes:
    """The bytes of a saved model's file, checked against the SHA-256 its spec records."""
    path = folder / name
    if not path.is_file():
        raise ModelFileError(f"no saved model in {folder}: {name} is missing")
    blob = read_inside(path, folder, memory_bytes() // 2, "model file", ModelFileError)
    if spec.get("weights_sha256") not in (None, hashlib.sha256(blob).hexdigest()):
        raise ModelFileError(f"{path} is corrupt: its SHA-256 does not match {SPEC}")
    return blob


def load_model(folder: str | Path, *, trust: Iterable[str] = ()) -> nn.Module:
    """Rebuild the model from its spec and load its safetensors weights (eval mode); a
    Deep Compression ``.nnc`` file is decoded instead.

    A model folder is data: loading it runs no code that it names. A model built by a user's
    factory reloads only when ``trust`` lists that factory ('module:function').
    """
    folder = Path(folder)
    trust = tuple(trust)
    if folder.is_file() and folder.suffix[1:] in FORMATS:  # a single-file format (.nnc)
        return FORMATS.get(folder.suffix[1:]).fn(folder, None, trust=trust).eval()
    spec = read_spec(folder)
    if spec["format"] != MODEL_FORMAT:  # a deployed artifact: its format's loader reads it
        return FORMATS.get(spec["format"]).fn(folder, spec, trust=trust).eval()
    blob = read_checked(folder, WEIGHTS, spec)
    path = folder / WEIGHTS
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path} is corrupt: {exc}") from None
    model = build_from_spec(spec, trust=trust, source=str(folder),
                            expect={k: tuple(v.shape) for k, v in tensors.items()})
    try:
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{folder}: weights do not match the spec: "
                             f"{first_line(exc)}") from None
    return model.eval()
