"""RunContext: what a step may use besides its model and config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from nnopt.data.base import DataSplits
from nnopt.recipe import ResolvedRecipe, Target


@dataclass
class RunContext:
    """Data splits, earlier stages' models, targets, seed, output folder and logger of one run."""

    recipe: ResolvedRecipe
    data: DataSplits
    out_dir: Path
    seed: int = 0
    progress: bool = False
    stage: str = ""
    models: dict[str, nn.Module] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("nnopt"))

    @property
    def targets(self) -> list[Target]:
        return self.recipe.recipe.targets

    @property
    def baseline(self) -> nn.Module | None:
        """The first stage's model (e.g. the trained baseline), a natural teacher."""
        return next(iter(self.models.values()), None)

    def record(self, key: str, value: Any) -> None:
        """Attach a detail (training history, pre-flight table, ...) to the current stage."""
        self.details[key] = value

    def callbacks(self) -> list[Any]:
        """Callbacks every fit() in this run gets (the progress bar when the CLI asks for it)."""
        from nnopt.train.callbacks import ProgressBar

        return [ProgressBar()] if self.progress else []
