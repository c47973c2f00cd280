"""Random search (Bergstra & Bengio 2012): architectures drawn uniformly, the baseline every
other strategy must beat at equal budget."""

from __future__ import annotations

import random
from typing import Any

from nnopt.search.space import MacroSpace


class RandomSearch:
    """Uniform draws; an architecture already proposed is redrawn while unseen ones remain."""

    name = "random"

    def __init__(self, space: MacroSpace, seed: int) -> None:
        self.space, self.rng = space, random.Random(seed)
        self.seen: set[str] = set()

    def ask(self) -> dict[str, Any]:
        arch = self.space.sample(self.rng)
        for _ in range(100):
            if self.space.key(arch) not in self.seen or len(self.seen) >= self.space.size:
                break
            arch = self.space.sample(self.rng)
        self.seen.add(self.space.key(arch))
        return arch

    def tell(self, arch: dict[str, Any], losses: list[float] | None) -> None:
        self.seen.add(self.space.key(arch))
