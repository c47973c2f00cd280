"""One Registry mechanism for everything nnopt looks up by name.

Steps, models, datasets, metrics, report sections, saved-model formats, spec transforms,
training tasks, search strategies, executors, corruptions and classical heads each have a
Registry. Registration is complete before the first lookup: any lookup first imports the
built-in manifest (``nnopt.manifest``, which lists every module that registers something) and
then every plugin of the ``nnopt.plugins`` entry-point group. So ``run``, ``report``,
``list``, ``explain`` and a notebook all see the same registry, whatever they imported first.

The manifest is named here, not imported: the core floor imports no floor above it.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from pydantic import BaseModel

from nnopt.core.errors import NnoptError, RecipeError, first_line, unknown_choice

MANIFEST = "nnopt.manifest"  # the module that imports every built-in registration
PLUGIN_GROUP = "nnopt.plugins"  # entry points: 'name = package.module' (imported) or ':function'

log = logging.getLogger("nnopt")


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

    @property
    def origin(self) -> str:
        """The module that registered it (a plugin's package shows here)."""
        return str(getattr(self.fn, "__module__", "") or "")


class Registry:
    """Maps names to callables of one kind; entries keep their registration order."""

    def __init__(self, kind: str, plural: str | None = None, *, listed: bool = True) -> None:
        self.kind = kind
        self.plural = plural or kind + "s"
        self.listed = listed  # shown by `nnopt list` and `nnopt explain`
        self._entries: dict[str, Entry] = {}
        REGISTRIES[self.plural] = self

    def register(
        self, name: str, *, config: type[BaseModel] | None = None, **meta: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``fn`` under ``name`` with its pydantic ``config`` class."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, fn, config=config, **meta)
            return fn

        return wrap

    def add(self, name: str, fn: Callable[..., Any], *, config: type[BaseModel] | None = None,
            **meta: Any) -> None:
        """Register ``fn`` under ``name`` (the non-decorator form)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice (by "
                             f"{self._entries[name].origin} and {fn.__module__})")
        self._entries[name] = Entry(name, fn, config, self.kind, dict(meta))

    def get(self, name: str) -> Entry:
        """Return the entry for ``name``; an unknown name raises with the valid choices."""
        load_all()
        if not isinstance(name, str) or name not in self._entries:
            shown = name if isinstance(name, str) else repr(name)[:40]
            raise RecipeError(unknown_choice(self.kind, shown, self.names()))
        return self._entries[name]

    def names(self) -> list[str]:
        load_all()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Every entry, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def in_order(self) -> Iterator[Entry]:
        """Every entry in registration order (the manifest's order, then plugins')."""
        load_all()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered; a value that is not a string (a list in a recipe,
        say) is not a name, so never registered."""
        load_all()
        return isinstance(name, str) and name in self._entries


REGISTRIES: dict[str, Registry] = {}
STEPS = Registry("step")
MODELS = Registry("model")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
TASKS = Registry("task")  # training objectives, chosen by a training config's `task:` block
SECTIONS = Registry("section", listed=False)  # report sections, rendered in this order
FORMATS = Registry("format", listed=False)  # saved-model formats: spec['format'] -> loader
TRANSFORMS = Registry("transform", listed=False)  # spec transforms re-applied on load
STRATEGIES = Registry("strategy", "strategies")  # search strategies
EXECUTORS = Registry("executor")  # where trials and sweep variants run
CORRUPTIONS = Registry("corruption")  # common corruptions of the robustness metric
HEADS = Registry("head")  # post-hoc calibration heads
CLASSIFIERS = Registry("classifier")  # classical heads of hybrid models (scikit-learn)
COMMANDS = Registry("command", listed=False)  # the subcommands of `nnopt`
RECORDS = Registry("record")  # typed stage records: the schema of results.json's details

_state = {"loaded": False, "loading": False}
PLUGINS: list[str] = []  # the entry points loaded, for `nnopt list`


def load_all() -> None:
    """Import the built-in manifest, then every plugin (once). Registration done inside an
    import of the manifest itself is allowed (the flag is set before importing)."""
    if _state["loaded"] or _state["loading"]:
        return
    _state["loading"] = True
    try:
        importlib.import_module(MANIFEST)
        for ep in _entry_points():
            _load_plugin(ep)
        _state["loaded"] = True
    finally:
        _state["loading"] = False


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name)


def _load_plugin(ep: metadata.EntryPoint) -> None:
    """A plugin names a module (its decorators register) or a function called with no
    arguments. One that fails to import is one line naming it, not a traceback."""
    try:
        obj = ep.load()
        if callable(obj) and not inspect.ismodule(obj):
            obj()
    except SystemExit as exc:  # a plugin may not end nnopt: its exit is its failure
        raise NnoptError(f"plugin '{ep.name}' ({ep.value}) called sys.exit({exc.code!r}) while "
                         "loading; fix or uninstall it") from None
    except Exception as exc:  # a plugin is someone else's code: any failure is theirs
        raise NnoptError(f"plugin '{ep.name}' ({ep.value}) failed to load: "
                         f"{type(exc).__name__}: {first_line(exc, '')}") from exc
    PLUGINS.append(f"{ep.name} = {ep.value}")


def find(name: str, also: Iterable[str] = ()) -> list[Entry]:
    """Every listed entry called ``name`` (for ``nnopt explain``); an unknown name lists the
    valid ones, ``also`` (names the caller knows besides the registries) among them."""
    hits = [r._entries[name] for r in REGISTRIES.values() if r.listed and name in r]
    if not hits:
        every = sorted({n for r in REGISTRIES.values() if r.listed for n in r.names()} | set(also))
        raise RecipeError(unknown_choice("name", name, every))
    return hits
