"""The config base class and the constrained types every config shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base for every config: unknown fields are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# A seed: what torch, NumPy and Python's random all accept (after the offsets steps add).
Seed = Annotated[int, Field(ge=0, lt=2 ** 62)]
# Training epochs: above this a value can only be a typo (a year of CPU time per epoch count).
Epochs = Annotated[int, Field(ge=1, le=100_000)]
# A batch size: above this no batch fits in memory.
BatchSize = Annotated[int, Field(ge=1, le=2 ** 20)]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$"  # a name that is never a path
# 'package.module:function', or 'path/to/file.py:function'
FACTORY = r"^([\w.]+|[^:\n]+\.py):[\w.]+$"
# the json_schema_extra of a config field that holds a path: a relative one in a recipe file
# resolves from the recipe's folder (anchor_paths)
PATH = {"recipe_path": True}


def path_or(*names: str) -> dict[str, Any]:
    """The marker of a field that holds a path or one of ``names`` (never anchored)."""
    return {"recipe_path": True, "names": list(names)}


def path_fields(obj: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...],
                                                                      BaseModel, str]]:
    """(location, config, field name) of every path field set in ``obj``, a config (or a list
    or dict of them), nested configs included."""
    if isinstance(obj, BaseModel):
        for name, info in type(obj).model_fields.items():
            value = getattr(obj, name, None)
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("recipe_path") and isinstance(value, str) \
                    and value not in extra.get("names", ()):
                yield loc + (name,), obj, name
            else:
                yield from path_fields(value, loc + (name,))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from path_fields(v, loc + (i,))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from path_fields(v, loc + (k,))


def anchor_paths(obj: Any, base: Path) -> None:
    """Every relative path field of ``obj`` made absolute from ``base`` (a recipe's folder),
    ``~`` expanded: a recipe means the same files from whatever folder it is run."""
    for _, cfg, name in list(path_fields(obj)):
        path = Path(getattr(cfg, name)).expanduser()
        if not path.is_absolute():
            setattr(cfg, name, str((base / path).resolve()))
