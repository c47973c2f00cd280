"""RunContext: what a step may use besides its model and config."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from nnopt.core.record import Record
from nnopt.core.task import TrainingTask
from nnopt.data.base import DataSplits, Split
from nnopt.measure.base import example_batch
from nnopt.measure.noise_monitor import NoiseMonitor
from nnopt.measure.target import Target
from nnopt.recipe import ResolvedRecipe
from nnopt.train.callbacks import FitState, PhaseBar, ProgressBar
from nnopt.train.fit import TrainConfig, fit
from nnopt.train.masks import KeepMasks, masks_from_zeros
from nnopt.train.tracking import TrackEpochs, Tracker


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
    tracker: Tracker | None = None  # MLflow / TensorBoard, when the recipe asks (process 0)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("nnopt"))

    @property
    def targets(self) -> list[Target]:
        return self.recipe.recipe.targets

    @property
    def baseline(self) -> nn.Module | None:
        """The first stage's model (e.g. the trained baseline), a natural teacher."""
        return next(iter(self.models.values()), None)

    def record(self, key: str | Record, value: Any = None) -> None:
        """Attach a typed record (``ctx.record(PruningRecord(...))``) or a detail by key
        (training history, pre-flight table, ...) to the current stage."""
        if isinstance(key, Record):
            self.details[key.KEY] = key.to_json()
        else:
            self.details[key] = value

    def warn(self, *messages: str) -> None:
        """Attach warnings to the current stage (shown by the CLI and in the report)."""
        self.details.setdefault("warnings", []).extend(messages)
        for m in messages:
            self.log.warning("%s: %s", self.stage, m)

    def progress_bar(self, desc: str) -> PhaseBar | None:
        """A progress bar for a long phase of the stage (None when the CLI shows none)."""
        return PhaseBar(desc) if self.progress else None

    def example(self, batch_size: int) -> torch.Tensor:
        """A batch of real test inputs of the requested size (for timing and export)."""
        return example_batch(self.data.test.x, batch_size)

    def callbacks(self, model: nn.Module | None = None, monitor: bool = True) -> list[Any]:
        """Callbacks every fit() in this run gets: the progress bar when the CLI asks for it,
        mask keeping when ``model`` was pruned in an earlier stage (its zeros stay zero), and,
        when the training labels were corrupted on purpose and ``monitor`` is on, the noisy-label
        monitor (memorisation and clean test accuracy per epoch, the last epoch's figures)."""
        out: list[Any] = [ProgressBar()] if self.progress else []
        if self.tracker is not None:
            out.append(TrackEpochs(self.tracker))
        if monitor and self.data.train.y_clean is not None:
            out.append(NoiseMonitor(self.data.train, self.data))
        sparse = (getattr(model, "spec", None) or {}).get("sparsity")
        if sparse:
            out.append(KeepMasks(masks_from_zeros(model, sparse["params"])))
        return out

    def fit(self, model: nn.Module, config: TrainConfig, *, task: TrainingTask | None = None,
            train: Split | None = None, val: Split | None | bool = True,
            callbacks: list[Any] | None = None, extra: Sequence[Any] = (),
            stage: str | None = None, seed: int | None = None,
            lr_scale: Mapping[nn.Parameter, float] | None = None,
            record: Literal["all", "history", "none"] = "all") -> FitState:
        """A stage's training, the one way every step trains: ``fit()`` on this run's training
        split (or ``train``), selecting on its validation split (``val=False``: none), with the
        run's callbacks for ``model`` (or ``callbacks``) plus ``extra``, the stage's name and
        the run's seed; then the history (and the objective's notes) recorded for the report."""
        state = fit(model, self.data.train if train is None else train, config=config,
                    val=self.data.val if val is True else (val or None), task=task,
                    callbacks=(self.callbacks(model) if callbacks is None else callbacks)
                    + list(extra), stage=stage or self.stage,
                    seed=self.seed if seed is None else seed, lr_scale=lr_scale)
        if record in ("all", "history"):
            self.record("history", state.history)
        if record == "all":
            self.record("training", state.notes)
        return state
