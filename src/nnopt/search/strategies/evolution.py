"""Regularized (aging) evolution (Real et al. 2019, "Regularized Evolution for Image Classifier
Architecture Search"): a population of the most recent ``population`` trials; each new
architecture mutates the best of ``sample`` members drawn at random; the oldest member dies,
whatever its fitness. With several objectives, "best" is the lowest Pareto rank within the
sample, ties broken by the first objective."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from nnopt.search.pareto import pareto_ranks
from nnopt.search.space import MacroSpace


class RegularizedEvolution:
    name = "evolution"

    def __init__(self, space: MacroSpace, seed: int, population: int = 10, sample: int = 3
                 ) -> None:
        self.space, self.rng = space, random.Random(seed)
        self.population_size, self.sample_size = population, min(sample, population)
        self.population: deque[tuple[dict[str, Any], list[float]]] = deque(maxlen=population)
        self.asked = 0
        self.seen: set[str] = set()

    def ask(self) -> dict[str, Any]:
        self.asked += 1
        if self.asked <= self.population_size or len(self.population) < self.sample_size:
            arch = self.space.sample(self.rng)  # the initial population is random
            for _ in range(100):
                if self.space.key(arch) not in self.seen or len(self.seen) >= self.space.size:
                    break
                arch = self.space.sample(self.rng)
        else:
            members = self.rng.sample(list(self.population), self.sample_size)
            ranks = pareto_ranks([m[1] for m in members])
            parent = min(zip(ranks, members), key=lambda t: (t[0], t[1][1][0]))[1][0]
            arch = self.space.mutate(parent, self.rng)
            for _ in range(20):  # prefer a child not tried yet
                if self.space.key(arch) not in self.seen:
                    break
                arch = self.space.mutate(parent, self.rng)
        self.seen.add(self.space.key(arch))
        return arch

    def tell(self, arch: dict[str, Any], losses: list[float] | None) -> None:
        self.seen.add(self.space.key(arch))
        if losses is not None:  # a failed trial never joins the population
            self.population.append((dict(arch), list(losses)))
