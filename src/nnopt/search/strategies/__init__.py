"""Search strategies behind one ask/tell interface: ``ask()`` proposes an architecture,
``tell(arch, losses)`` reports its objective values (signed so that lower is better; None for a
failed trial). Several trials may be asked before any is told (parallel executors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from nnopt.core.errors import NnoptError, unknown_choice
from nnopt.core.registry import STRATEGIES
from nnopt.search.space import MacroSpace
from nnopt.search.strategies.evolution import RegularizedEvolution
from nnopt.search.strategies.optuna_samplers import OptunaStrategy
from nnopt.search.strategies.random_search import RandomSearch


class Strategy(Protocol):
    name: str

    def ask(self) -> dict[str, Any]: ...

    def tell(self, arch: dict[str, Any], losses: list[float] | None) -> None: ...


@STRATEGIES.register("random")
def _random(space: MacroSpace, objectives: int, seed: int, options: dict[str, Any],
            store: Path | None) -> Strategy:
    """Uniform samples of the space (the baseline every strategy must beat)."""
    return RandomSearch(space, seed)


@STRATEGIES.register("evolution")
def _evolution(space: MacroSpace, objectives: int, seed: int, options: dict[str, Any],
               store: Path | None) -> Strategy:
    """Regularized evolution (Real et al. 2019): tournament, mutate, retire the oldest."""
    return RegularizedEvolution(space, seed, population=options["population"],
                                sample=options["sample"])


def _optuna(sampler: str, doc: str) -> None:
    def make(space: MacroSpace, objectives: int, seed: int, options: dict[str, Any],
             store: Path | None) -> Strategy:
        return OptunaStrategy(space, objectives, seed, sampler, store,
                              population=options["population"])

    make.__doc__ = doc
    STRATEGIES.add(sampler, make)


_optuna("tpe", "Optuna's tree-structured Parzen estimator (one objective).")
_optuna("nsga2", "Optuna's NSGA-II (Deb et al. 2002): several objectives, a Pareto front.")


def make_strategy(name: str, space: MacroSpace, objectives: int, seed: int,
                  options: dict[str, Any], store: Path | None = None) -> Strategy:
    """The strategy registered as ``name``; an unknown name lists the valid ones."""
    if name not in STRATEGIES:
        raise NnoptError(unknown_choice("search strategy", name, STRATEGIES.names()))
    if name == "tpe" and objectives > 1:
        raise NnoptError("strategy 'tpe' optimises one objective; for several use 'nsga2' "
                         "(or 'random' / 'evolution')")
    return STRATEGIES.get(name).fn(space, objectives, seed, options, store)
