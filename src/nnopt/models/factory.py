"""Models from outside the zoo: a user factory function, or a model nnopt saved earlier."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import Field
from torch import nn

from nnopt.core.config import FACTORY, PATH
from nnopt.core.errors import RecipeError, first_line
from nnopt.core.registry import MODELS
from nnopt.models.base import ModelConfig
from nnopt.models.saving import load_model


class FactoryConfig(ModelConfig):
    name: Literal["factory"] = "factory"
    factory: str = Field(..., pattern=FACTORY,
                         description="'package.module:function' or 'path/to/file.py:function' "
                         "returning an nn.Module; a relative path, or a module beside the "
                         "recipe, is found from the recipe's folder")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments")


class SavedConfig(ModelConfig):
    name: Literal["saved"] = "saved"
    path: str = Field(..., json_schema_extra=PATH,
                      description="folder of a model nnopt saved (model.safetensors + spec.json)")


# a model section's key that names its kind without 'name': {timm: NAME}, {hf: {...}}, ...
SHORTCUTS = {"factory": "factory", "path": "saved", "timm": "timm", "hf": "hf"}


def model_section(raw: Any) -> Any:
    """A model section with its 'name' filled in from a shortcut key: ``{factory:
    'pkg.mod:fn'}``, ``{path: DIR}`` (a saved model), ``{timm: NAME}``, ``{hf: ...}``."""
    if isinstance(raw, dict) and "name" not in raw:
        for key, name in SHORTCUTS.items():
            if key in raw:
                return {"name": name, **raw}
    return raw


def is_file_ref(ref: str) -> bool:
    """Whether a factory reference names a file ('path/to/file.py:function')."""
    return ref.rpartition(":")[0].endswith(".py")


def anchor_factory(ref: str, base: Path) -> str:
    """A recipe's factory reference as it runs from any folder: a file path made absolute from
    the recipe's folder ``base``; a module that does not import from here but lies in that
    folder ('my_model:build' beside the recipe) turned into that file's absolute path."""
    where, _, attr = ref.rpartition(":")
    if is_file_ref(ref):
        path = Path(where).expanduser()
        return f"{path if path.is_absolute() else (base / path).resolve()}:{attr}"
    try:
        found = importlib.util.find_spec(where) is not None
    except (ImportError, ValueError):  # a parent package that does not import
        found = False
    beside = base / (where.replace(".", "/") + ".py")
    return f"{beside.resolve()}:{attr}" if not found and beside.is_file() else ref


def _import_file(ref: str) -> ModuleType:
    path = Path(ref.rpartition(":")[0]).expanduser().absolute()
    if not path.is_file():
        raise RecipeError(f"model factory '{ref}': no file {path}")
    name = "nnopt_factory_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RecipeError(f"model factory '{ref}': {path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before it runs, as an import does (dataclasses need it)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001  (the user's code: its failure is theirs to fix)
        del sys.modules[name]
        first = first_line(exc, default="")
        raise RecipeError(f"model factory '{ref}': importing {path} raised "
                          f"{type(exc).__name__}{': ' + first if first else ''}") from None
    return module


def resolve_factory(ref: str) -> Any:
    """Import 'package.module:function' or 'path/to/file.py:function'; a bad reference raises
    RecipeError (a missing file with its absolute path)."""
    module_name, _, attr = ref.rpartition(":")
    if is_file_ref(ref):
        obj: Any = _import_file(ref)
        module_name = str(Path(module_name).expanduser().absolute())
    else:
        try:
            obj = importlib.import_module(module_name)
        except ImportError as exc:
            raise RecipeError(f"model factory '{ref}': cannot import {module_name}: {exc} (a "
                              "module beside the recipe, or a file path "
                              "'path/to/file.py:function', is found from any folder)") from None
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
