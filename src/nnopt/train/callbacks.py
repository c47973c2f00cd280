"""Callbacks: what happens at training events (checkpoints, early stopping, progress, ...)."""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm


@dataclass
class FitState:
    """What callbacks can see and change during ``fit()``."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    stage: str
    epochs: int
    batches_per_epoch: int
    epoch: int = 0
    step: int = 0
    batch_loss: float = math.nan
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


class Callback:
    """Base class; override the events you need. All hooks receive the FitState."""

    def on_fit_start(self, state: FitState) -> None: ...
    def on_epoch_start(self, state: FitState) -> None: ...
    def on_batch_end(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState) -> None: ...
    def on_fit_end(self, state: FitState) -> None: ...


class BestCheckpoint(Callback):
    """Keep the weights of the epoch with the best validation ``monitor``; restore them at the end."""

    def __init__(self, monitor: str = "val_accuracy", mode: str = "max") -> None:
        self.monitor, self.sign = monitor, (1.0 if mode == "max" else -1.0)
        self.best = -math.inf
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch = -1

    def on_epoch_end(self, state: FitState) -> None:
        value = state.last.get(self.monitor)
        if state.epoch < state.notes.get("select_from_epoch", 0):
            return  # e.g. a pruning schedule has not reached its final sparsity yet
        if value is not None and self.sign * value > self.best:
            self.best, self.epoch = self.sign * value, state.epoch
            self.state = copy.deepcopy(state.model.state_dict())

    def on_fit_end(self, state: FitState) -> None:
        if self.state is not None:
            state.model.load_state_dict(self.state)
            state.notes["best_epoch"] = self.epoch + 1
            state.notes[f"best_{self.monitor}"] = self.sign * self.best


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, patience: int, monitor: str = "val_accuracy", mode: str = "max",
                 min_delta: float = 0.0) -> None:
        self.patience, self.monitor, self.min_delta = patience, monitor, min_delta
        self.sign = 1.0 if mode == "max" else -1.0
        self.best, self.bad = -math.inf, 0

    def on_epoch_end(self, state: FitState) -> None:
        value = state.last.get(self.monitor)
        if value is None:
            return
        if self.sign * value > self.best + self.min_delta:
            self.best, self.bad = self.sign * value, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                state.stop = True
                state.notes["stopped_early_at_epoch"] = state.epoch + 1


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr with the running loss; the CLI attaches it."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_epoch_start(self, state: FitState) -> None:
        tty = sys.stderr.isatty()  # in a log file, a line every 30 s instead of 10 a second
        self.bar = tqdm(total=state.batches_per_epoch, leave=True, dynamic_ncols=True,
                        mininterval=0.2 if tty else 30.0,
                        desc=f"{state.stage} {state.epoch + 1}/{state.epochs}")

    def on_batch_end(self, state: FitState) -> None:
        self.bar.update(1)
        if state.step % 20 == 0:
            self.bar.set_postfix(loss=f"{state.batch_loss:.4f}", refresh=False)

    def on_epoch_end(self, state: FitState) -> None:
        if self.bar is not None:
            last = state.last
            shown = {k: f"{last[k]:.4f}" for k in ("val_accuracy", "knn_accuracy",
                                                    "probe_accuracy", "test_accuracy")
                     if k in last}
            if shown:
                self.bar.set_postfix(loss=f"{last['train_loss']:.4f}", **shown)
            self.bar.close()
            self.bar = None


class PhaseBar:
    """A tqdm bar for a long phase that is not training (evaluation, attacks, timing):
    ``bar(done, total)`` moves it (the total may grow); it closes when done reaches total."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: Any = None

    def __call__(self, done: int, total: int, note: str = "") -> None:
        if self.bar is None:
            tty = sys.stderr.isatty()
            self.bar = tqdm(total=total, leave=True, dynamic_ncols=True, desc=self.desc,
                            mininterval=0.2 if tty else 30.0)
        if self.bar.total != total:
            self.bar.total = total
        if note:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()
