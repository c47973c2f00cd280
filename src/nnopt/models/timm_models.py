"""timm models by name (Wightman, PyTorch Image Models): ``model: {timm: NAME, kwargs: {...}}``,
randomly initialised offline, or from pretrained weights in a local safetensors file.

timm's models need nothing of torchvision, but ``import timm`` reaches for it: a frozen
BatchNorm class at layer level and the transforms and datasets of its data pipeline. Where
torchvision is not importable (its PyPI builds do not load beside a CPU build of torch), timm is
imported with a stand-in for those names (nnopt's own FrozenBatchNorm2d; placeholders that
refuse to be used for the rest), removed from ``sys.modules`` as soon as timm is in, so that no
other library mistakes it for torchvision.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from nnopt.core.config import PATH
from nnopt.core.errors import DataError, NnoptError, RecipeError
from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig, read_weights, weightless

# kwargs a recipe (or a model folder's spec, which is data) may not pass to timm.create_model:
# each would load a file through pickle or reach the network
REFUSED = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path",
           "cache_dir", "features_only", "scriptable", "exportable", "no_jit")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (torchvision's semantics)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0),
                            ("running_var", 1.0)):
            self.register_buffer(name, torch.full((num_features,), value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


class _Absent(type):
    """A placeholder for a torchvision name timm's data pipeline binds at import: any
    attribute is another placeholder (enum members in module-level tables), calling one says
    what is missing."""

    def __getattr__(cls, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(f"{cls.__name__}.{name}", (), {})

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise NnoptError(f"torchvision's {cls.__name__} is not available here: nnopt uses timm's "
                         "models, not its data pipeline")


class _StandIn(ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "FrozenBatchNorm2d":
            return FrozenBatchNorm2d
        return _Absent(name, (), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            if isinstance(sys.modules[name], _StandIn):
                del sys.modules[name]


def import_timm() -> ModuleType:
    """timm, imported (once) with the torchvision stand-in when torchvision is not here."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    if importlib.util.find_spec("timm") is None:
        raise NnoptError("timm models need the timm package: pip install --no-deps timm (it "
                         "declares torchvision, which nnopt does not need and whose PyPI builds "
                         "do not load beside a CPU build of torch; timm's own needs come with "
                         "nnopt[hf])")
    usable = importlib.util.find_spec("torchvision") is not None
    if usable:
        try:
            import torchvision  # noqa: F401
        except Exception:  # noqa: BLE001  (a torchvision that does not load: the stand-in)
            usable = False
            for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
                del sys.modules[name]
    with contextlib.nullcontext() if usable else _torchvision_stand_in():
        import timm
    return timm


class TimmConfig(ModelConfig):
    name: Literal["timm"] = "timm"
    timm: str = Field(..., pattern=r"^[A-Za-z0-9_.]{1,100}$",
                      description="a timm model name (timm.list_models()), e.g. "
                      "mobilenetv3_small_100, resnet18, efficientnet_b0")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="options of "
                                   "timm.create_model (e.g. drop_rate: 0.1); the model's "
                                   "classes and input channels come from the data")
    weights: str | None = Field(None, json_schema_extra=PATH, description="pretrained weights: "
                                "a local .safetensors file of this model (the classifier, and "
                                "the stem when the input channels differ, are re-initialised "
                                "or adapted)")

    @field_validator("kwargs")
    @classmethod
    def _safe_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(kwargs) & set(REFUSED))
        if bad:
            raise ValueError(f"kwargs may not set {', '.join(bad)} (pretrained weights come "
                             "from a local safetensors file: weights: PATH)")
        for key, value in kwargs.items():
            if not _plain(value):
                raise ValueError(f"kwargs.{key} must be a number, string, boolean or a list of "
                                 "them")
        return kwargs


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _load_weights(net: nn.Module, path: str, timm: ModuleType) -> None:
    """Weights from a safetensors file; the tensors whose shape differs (the classifier for
    another class count) keep their fresh values, a stem for other input channels is adapted."""
    file = Path(path)
    if file.suffix != ".safetensors":
        raise DataError(f"timm weights {file}: give a .safetensors file (nnopt never unpickles "
                        "a checkpoint; convert it once with safetensors.torch.save_file)")
    if not file.is_file():
        raise DataError(f"timm weights {file} not found")
    state = read_weights(file)
    own = net.state_dict()
    matched = {}
    for key, value in state.items():
        if key not in own:
            continue
        if value.shape == own[key].shape:
            matched[key] = value
        elif value.dim() == 4 and value.shape[0] == own[key].shape[0] and \
                value.shape[2:] == own[key].shape[2:]:  # stem conv, other input channels
            matched[key] = timm.models.adapt_input_conv(own[key].shape[1], value)
    if not matched:
        raise DataError(f"timm weights {file} share no tensor with this model; is it a "
                        "checkpoint of another architecture?")
    net.load_state_dict(matched, strict=False)


@MODELS.register("timm", config=TimmConfig, initial=("weights",))
def timm_model(cfg: TimmConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A timm model by name for images (C, H, W): random weights, or a local pretrained file."""
    if len(input_shape) != 3:
        raise DataError(f"timm models take images (C, H, W); the data gives input shape "
                        f"{tuple(input_shape)}")
    timm = import_timm()
    if cfg.timm not in timm.list_models():
        close = timm.list_models(f"*{cfg.timm[:12]}*")[:5]
        raise RecipeError(f"unknown timm model '{cfg.timm}'"
                          + (f"; close: {', '.join(close)}" if close else "")
                          + " (timm.list_models() lists them)")
    try:
        net = timm.create_model(cfg.timm, pretrained=False, num_classes=num_classes,
                                in_chans=input_shape[0], **cfg.kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise RecipeError(f"timm model '{cfg.timm}' with kwargs {cfg.kwargs}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
                          ) from None
    if cfg.weights and not weightless():
        _load_weights(net, cfg.weights, timm)
    return net

