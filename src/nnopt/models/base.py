"""What every model shares: the config base, input normalisation inside the model, the builder."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from nnopt.core.config import Strict
from nnopt.core.errors import DataError
from nnopt.core.fileio import regular_file
from nnopt.core.registry import MODELS
from nnopt.data.base import DataSplits


class ModelConfig(Strict):
    """Options every model shares."""

    name: str


class Normalize(nn.Module):
    """(x - mean) / std per channel, inside the model so attacks and exports see raw inputs."""

    def __init__(self, mean: list[float], std: list[float], spatial_dims: int) -> None:
        super().__init__()
        view = (1, len(mean)) + (1,) * spatial_dims
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(view))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(view))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NnoptModel(nn.Module):
    """A registered network behind its input normalisation; ``spec`` rebuilds it without pickle."""

    def __init__(self, net: nn.Module, normalize: Normalize | None, spec: dict[str, Any]) -> None:
        super().__init__()
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.net = net
        self.spec = spec

    compute_dtype: torch.dtype | None = None  # set by a precision cast (fp16/bf16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype is not None:
            return self.net(self.normalize(x.to(self.compute_dtype))).float()
        return self.net(self.normalize(x))


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...] | list[int], num_classes: int,
                mean: list[float] | None = None, std: list[float] | None = None, *,
                trust: tuple[str, ...] = ()) -> NnoptModel:
    """Build a registered model for inputs of ``input_shape`` (C, ...) and ``num_classes``;
    ``trust`` lists the factories a saved model may have been built by."""
    entry = MODELS.get(cfg.name)
    if entry.meta.get("loads"):  # a saved model brings its own normalisation and spec
        return entry.fn(cfg, tuple(input_shape), num_classes, trust=trust)
    net = entry.fn(cfg, tuple(input_shape), num_classes)
    wants_norm = entry.meta.get("normalize", True)  # token ids are not normalised
    norm = Normalize(mean, std, len(input_shape) - 1) if mean and std and wants_norm else None
    spec = {
        "format": "nnopt-model",
        "version": 1,
        "model": model_record(cfg, num_classes),
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "normalize": {"mean": list(mean), "std": list(std)} if norm is not None else None,
    }
    return NnoptModel(net, norm, spec)


def model_record(cfg: ModelConfig, num_classes: int) -> dict[str, Any]:
    """The model section a spec records: the architecture alone. Fields that only initialise
    (a local pretrained file) are left out, and a model read from a folder records the config
    it was built from, so that a reload takes the saved weights and reads no other file."""
    entry = MODELS.get(cfg.name)
    if "spec" in entry.meta:
        return entry.meta["spec"](cfg, num_classes)
    return cfg.model_dump(mode="json", exclude=set(entry.meta.get("initial", ())))


def weightless() -> bool:
    """Whether models are being built on PyTorch's meta device (a size check): no weights are
    read then."""
    return torch.empty(0).device.type == "meta"


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a pretrained safetensors file; an unreadable one is one line."""
    real = regular_file(file, "weights file", DataError)
    try:
        return load_file(str(real))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{file} is not a readable safetensors file: {str(exc)[:100]}") from None


def weightless_count(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int
                     ) -> int | None:
    """Parameters and buffers of the model ``cfg`` describes, counted on a build on PyTorch's
    meta device (no memory, no weights); None for a model that loads or runs the user's code,
    or that cannot be built without data."""
    entry = MODELS.get(cfg.name)
    if entry.meta.get("loads") or entry.meta.get("vouch"):
        return None
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretrained weights copied into meta: no-ops
            model = entry.fn(cfg, tuple(input_shape), num_classes)
        return sum(t.numel() for t in model.state_dict().values())
    except Exception:  # noqa: BLE001  (the real build reports what is wrong with the config)
        return None


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "gelu": nn.GELU(), "tanh": nn.Tanh(), "silu": nn.SiLU()}[name]


def flat_features(body: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Number of features ``body`` produces for one input (found by a dry run)."""
    with torch.no_grad():
        return int(body(torch.zeros(1, *input_shape)).flatten(1).shape[1])


Act = Field("relu", pattern="^(relu|gelu|tanh|silu)$", description="relu, gelu, tanh or silu")


def check_fits(model: nn.Module, data: DataSplits, model_name: str) -> None:
    """A dry forward on two real inputs: a model/data mismatch fails here with a clear message."""
    x = data.train.x[:2]
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except (RuntimeError, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"model '{model_name}' does not fit dataset '{data.name}' (input shape "
                        f"{tuple(data.input_shape)}): {first}") from None
    if out.dim() != 2 or out.shape[1] != data.num_classes:
        raise DataError(f"model '{model_name}' returns shape {tuple(out.shape[1:])} per input but "
                        f"dataset '{data.name}' has {data.num_classes} classes")
