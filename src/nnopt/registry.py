"""One generic Registry: every step, model, dataset and metric is registered by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from nnopt.errors import RecipeError, unknown_choice


@dataclass(frozen=True)
class Entry:
    """A registered object: its name, the callable, its config class and extra metadata."""

    name: str
    fn: Callable[..., Any]
    config: type[BaseModel] | None
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.fn.__doc__ or "").strip()

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else ""


class Registry:
    """Maps names to callables of one kind ('step', 'model', 'dataset', 'metric')."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, config: type[BaseModel] | None = None, **meta: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``fn`` under ``name`` with its pydantic ``config`` class."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, fn, config, self.kind, dict(meta))
            return fn

        return wrap

    def get(self, name: str) -> Entry:
        """Return the entry for ``name``; an unknown name raises with the valid choices."""
        _load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            raise RecipeError(unknown_choice(self.kind, name, self._entries)) from None

    def names(self) -> list[str]:
        _load_builtins()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        _load_builtins()
        return name in self._entries


STEPS = Registry("step")
MODELS = Registry("model")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
REGISTRIES = {"step": STEPS, "model": MODELS, "dataset": DATASETS, "metric": METRICS}

_loaded = False


def _load_builtins() -> None:
    """Import the modules whose decorators fill the registries (once, lazily)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import nnopt.compress  # noqa: F401
    import nnopt.data  # noqa: F401
    import nnopt.measure  # noqa: F401
    import nnopt.models  # noqa: F401
    import nnopt.search  # noqa: F401
    import nnopt.learn  # noqa: F401
    import nnopt.train  # noqa: F401
    import nnopt.trust  # noqa: F401


def find(name: str) -> Entry:
    """Look a name up in every registry (for ``nnopt explain``)."""
    hits = [r._entries[name] for r in REGISTRIES.values() if name in r]
    if not hits:
        every = [n for r in REGISTRIES.values() for n in r.names()]
        raise RecipeError(unknown_choice("name", name, every))
    return hits[0]
