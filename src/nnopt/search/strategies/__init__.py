"""Search strategies behind one ask/tell interface: ``ask()`` proposes an architecture,
``tell(arch, losses)`` reports its objective values (signed so that lower is better; None for a
failed trial). Several trials may be asked before any is told (parallel executors)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from nnopt.errors import NnoptError, unknown_choice
from nnopt.search.space import MacroSpace


class Strategy(Protocol):
    name: str

    def ask(self) -> dict[str, Any]: ...

    def tell(self, arch: dict[str, Any], losses: list[float] | None) -> None: ...


def _random(space: MacroSpace, objectives: int, seed: int, options: dict[str, Any],
            store: Path | None) -> Strategy:
    from nnopt.search.strategies.random_search import RandomSearch

    return RandomSearch(space, seed)


def _evolution(space: MacroSpace, objectives: int, seed: int, options: dict[str, Any],
               store: Path | None) -> Strategy:
    from nnopt.search.strategies.evolution import RegularizedEvolution

    return RegularizedEvolution(space, seed, population=options["population"],
                                sample=options["sample"])


def _optuna(sampler: str) -> Callable[..., Strategy]:
    def make(space: MacroSpace, objectives: int, seed: int, options: dict[str, Any],
             store: Path | None) -> Strategy:
        from nnopt.search.strategies.optuna_samplers import OptunaStrategy

        return OptunaStrategy(space, objectives, seed, sampler, store,
                              population=options["population"])

    return make


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": _random, "evolution": _evolution, "tpe": _optuna("tpe"),
    "nsga2": _optuna("nsga2")}


def make_strategy(name: str, space: MacroSpace, objectives: int, seed: int,
                  options: dict[str, Any], store: Path | None = None) -> Strategy:
    """The strategy registered as ``name``; an unknown name lists the valid ones."""
    if name not in STRATEGIES:
        raise NnoptError(unknown_choice("search strategy", name, STRATEGIES))
    if name == "tpe" and objectives > 1:
        raise NnoptError("strategy 'tpe' optimises one objective; for several use 'nsga2' "
                         "(or 'random' / 'evolution')")
    return STRATEGIES[name](space, objectives, seed, options, store)
