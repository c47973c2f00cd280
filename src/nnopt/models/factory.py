"""Models from outside the zoo: a user factory function, or a model nnopt saved earlier."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Literal

from pydantic import Field
from torch import nn

from nnopt.core.config import FACTORY
from nnopt.core.errors import RecipeError, first_line
from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig
from nnopt.models.saving import load_model


class FactoryConfig(ModelConfig):
    name: Literal["factory"] = "factory"
    factory: str = Field(..., pattern=FACTORY,
                         description="'package.module:function' returning an nn.Module")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments")


class SavedConfig(ModelConfig):
    name: Literal["saved"] = "saved"
    path: str = Field(..., description="folder of a model nnopt saved (model.safetensors + spec.json)")


def resolve_factory(ref: str) -> Any:
    """Import 'package.module:function'; a bad reference raises RecipeError."""
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RecipeError(f"model factory '{ref}': cannot import {module_name}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RecipeError(f"model factory '{ref}': {module_name} has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RecipeError(f"model factory '{ref}' is not callable")
    return obj


@MODELS.register("factory", config=FactoryConfig, vouch="factory")
def factory(cfg: FactoryConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The user's own model: ``factory(**kwargs)``, given input_shape/num_classes if it takes them."""
    fn = resolve_factory(cfg.factory)
    kwargs = dict(cfg.kwargs)
    params = inspect.signature(fn).parameters
    for key, value in (("input_shape", input_shape), ("num_classes", num_classes)):
        if key in params and key not in kwargs:
            kwargs[key] = value
    try:
        model = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001  (the user's code: its failure is theirs to fix)
        first = first_line(exc, default="")
        raise RecipeError(f"model factory '{cfg.factory}' raised {type(exc).__name__}"
                          f"{': ' + first if first else ''}") from exc
    if not isinstance(model, nn.Module):
        raise RecipeError(f"model factory '{cfg.factory}' returned {type(model).__name__}, "
                          "not an nn.Module")
    return model


@MODELS.register("saved", config=SavedConfig, loads=True)
def saved(cfg: SavedConfig, input_shape: tuple[int, ...], num_classes: int, *,
          trust: tuple[str, ...] = ()) -> nn.Module:
    """A model nnopt saved before (``models/<stage>`` of a run), reloaded without pickle and
    without running any code the folder names (a factory's model needs the recipe's trust)."""
    return load_model(cfg.path, trust=trust)
