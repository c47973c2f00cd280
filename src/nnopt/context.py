"""RunContext: what a step may use besides its model and config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
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
    final_dir: Path | None = None  # where out_dir is moved when the run succeeds
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

    def warn(self, *messages: str) -> None:
        """Attach warnings to the current stage (shown by the CLI and in the report)."""
        self.details.setdefault("warnings", []).extend(messages)
        for m in messages:
            self.log.warning("%s: %s", self.stage, m)

    def example(self, batch_size: int) -> torch.Tensor:
        """A batch of real test inputs of the requested size (for timing and export)."""
        from nnopt.measure.base import example_batch

        return example_batch(self.data.test.x, batch_size)

    def callbacks(self, model: nn.Module | None = None, monitor: bool = True) -> list[Any]:
        """Callbacks every fit() in this run gets: the progress bar when the CLI asks for it,
        mask keeping when ``model`` was pruned in an earlier stage (its zeros stay zero), and,
        when the training labels were corrupted on purpose and ``monitor`` is on, the noisy-label
        monitor (memorisation and clean test accuracy per epoch, the last epoch's figures)."""
        from nnopt.train.callbacks import ProgressBar

        out: list[Any] = [ProgressBar()] if self.progress else []
        if monitor and self.data.train.y_clean is not None:
            from nnopt.train.noise_monitor import NoiseMonitor

            out.append(NoiseMonitor(self.data.train, self.data))
        sparse = (getattr(model, "spec", None) or {}).get("sparsity")
        if sparse:
            from nnopt.compress.prune.masks import KeepMasks, masks_from_zeros

            out.append(KeepMasks(masks_from_zeros(model, sparse["params"])))
        return out
