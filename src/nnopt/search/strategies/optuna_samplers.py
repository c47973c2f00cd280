"""Optuna's samplers as strategies: TPE (Bergstra et al. 2011) for one objective and NSGA-II
(Deb et al. 2002) for several. The study lives in Optuna's JournalStorage on a file (its
writes take a file lock, so several worker processes may share it, unlike plain SQLite); nnopt's
own trial store stays the record a resumed search is rebuilt from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nnopt.core.extras import require
from nnopt.search.space import MacroSpace


def _primitive(values: list[Any]) -> bool:
    return all(v is None or isinstance(v, (bool, int, float, str)) for v in values)


class OptunaStrategy:
    def __init__(self, space: MacroSpace, objectives: int, seed: int, sampler: str,
                 store: Path | None, population: int = 10) -> None:
        optuna = require("optuna", "the tpe and nsga2 strategies")
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(logging.WARNING)
        self.name = sampler
        self.space = space
        if sampler == "tpe":
            samp: Any = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, population))
        else:
            samp = optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
        storage: Any = None
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
            journal = store / "optuna.journal"
            journal.unlink(missing_ok=True)  # rebuilt from nnopt's trial store (see restore)
            storage = JournalStorage(JournalFileBackend(str(journal)))
        self.study = optuna.create_study(directions=["minimize"] * objectives, sampler=samp,
                                         storage=storage, study_name="nnopt-search")
        # a list of architectures becomes the index of its value: Optuna wants primitives
        self.dists = {k: optuna.distributions.CategoricalDistribution(
            v if _primitive(v) else list(range(len(v)))) for k, v in space.choices.items()}
        self.pending: dict[str, list[int]] = {}
        self.known: dict[str, list[float] | None] = {}  # measured architectures

    def _arch(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: (params[k] if _primitive(v) else v[params[k]])
                for k, v in self.space.choices.items()}

    def _params(self, arch: dict[str, Any]) -> dict[str, Any]:
        return {k: (arch[k] if _primitive(v) else v.index(arch[k]))
                for k, v in self.space.choices.items()}

    def ask(self) -> dict[str, Any]:
        """A new architecture: one the study proposes again after it was measured is told its
        known values at once (it costs nothing), and the sampler asked again (up to 50 times;
        Optuna's samplers repeat categorical points often)."""
        for _ in range(50):
            trial = self.study.ask(self.dists)
            arch = self._arch(trial.params)
            key = self.space.key(arch)
            if key not in self.known or len(self.known) >= self.space.size:
                break
            self.study.tell(trial, self.known[key], state=self._state(self.known[key]))
        self.pending.setdefault(key, []).append(trial.number)
        return arch

    @staticmethod
    def _state(losses: list[float] | None) -> Any:
        import optuna

        return optuna.trial.TrialState.COMPLETE if losses is not None else \
            optuna.trial.TrialState.FAIL

    def tell(self, arch: dict[str, Any], losses: list[float] | None) -> None:
        import optuna

        self.known[self.space.key(arch)] = losses
        waiting = self.pending.get(self.space.key(arch))
        state = self._state(losses)
        if waiting:  # a trial this study asked for
            self.study.tell(waiting.pop(0), losses, state=state)
            return
        # a stored trial of an interrupted search: added to the study as finished
        self.study.add_trial(optuna.trial.create_trial(
            params=self._params(arch), distributions=self.dists, values=losses, state=state))
