"""Record and re-apply a model's shapes, so that a structurally pruned model rebuilds from its spec.

A saved spec names the registered architecture and its config; pruning then shrinks layers. The
difference (tensor shapes and the size attributes of layers) is stored as ``spec["structure"]``
and applied to a freshly built model before its weights are loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# size attributes that layers read in forward() or repr; tuples are stored as lists
SIZE_ATTRS = ("in_channels", "out_channels", "in_features", "out_features", "num_features",
              "normalized_shape", "num_heads", "head_dim", "num_channels", "num_groups",
              "embed_dim", "heads", "num_attention_heads", "all_head_size", "groups")


def _attrs(module: nn.Module) -> dict[str, Any]:
    out = {}
    for a in SIZE_ATTRS:
        v = getattr(module, a, None)
        if isinstance(v, (int, tuple)) and not isinstance(v, bool):
            out[a] = list(v) if isinstance(v, tuple) else v
    return out


def capture_structure(model: nn.Module, reference: nn.Module) -> dict[str, Any] | None:
    """Shapes and size attributes where ``model`` differs from ``reference`` (None if nowhere)."""
    ref_state = reference.state_dict()
    tensors = {k: list(v.shape) for k, v in model.state_dict().items()
               if k not in ref_state or tuple(ref_state[k].shape) != tuple(v.shape)}
    ref_modules = dict(reference.named_modules())
    attrs = {}
    for name, module in model.named_modules():
        mine = _attrs(module)
        theirs = _attrs(ref_modules[name]) if name in ref_modules else {}
        diff = {k: v for k, v in mine.items() if theirs.get(k) != v}
        if diff:
            attrs[name] = diff
    if not tensors and not attrs:
        return None
    return {"tensors": tensors, "attrs": attrs}


def check_structure(structure: Any, bad: Callable[[str], Exception]) -> None:
    """Raise ``bad(reason)`` unless ``structure`` has the form capture_structure writes:
    {"tensors": {name: [sizes]}, "attrs": {module: {size attribute: int or [ints]}}}."""
    if not isinstance(structure, dict) or set(structure) - {"tensors", "attrs"}:
        raise bad("'structure' must be an object with 'tensors' and 'attrs'")
    tensors, attrs = structure.get("tensors", {}), structure.get("attrs", {})
    if not isinstance(tensors, dict) or not isinstance(attrs, dict):
        raise bad("'structure' tensors and attrs must be objects")
    for name, shape in tensors.items():
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(type(d) is int and 0 <= d <= 2 ** 31 for d in shape)):
            raise bad(f"structure tensor '{name}' needs a list of sizes, got {str(shape)[:40]}")
    for name, values in attrs.items():
        if not isinstance(values, dict):
            raise bad(f"structure attrs of '{name}' must be an object")
        for k, v in values.items():
            ok = type(v) is int or (isinstance(v, list) and all(type(x) is int for x in v))
            if k not in SIZE_ATTRS or not ok:
                raise bad(f"structure attr '{name}.{k}' is not a size attribute nnopt records")


def apply_structure(model: nn.Module, structure: dict[str, Any]) -> nn.Module:
    """Resize ``model`` in place to the recorded shapes (values are then loaded from weights)."""
    modules = dict(model.named_modules())

    def module(name: str) -> nn.Module:
        if name not in modules:
            raise ValueError(f"structure names module '{name}', which the model lacks")
        return modules[name]

    for name, attrs in structure.get("attrs", {}).items():
        module_ = module(name)
        for k, v in attrs.items():
            setattr(module_, k, tuple(v) if isinstance(v, list) else v)
    for key, shape in structure.get("tensors", {}).items():
        owner_name, _, attr = key.rpartition(".")
        owner = module(owner_name)
        old = owner._parameters.get(attr, owner._buffers.get(attr))
        if old is None:
            raise ValueError(f"structure names tensor '{key}', which the model lacks")
        new = torch.empty(shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            owner._buffers[attr] = new
    return model


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` (dotted path) is."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
