"""TrainingTask: what the loss of a training step is. The interface lives on the core floor so
that a model may define its own loss next to itself (a capsule network's margin loss); the
objectives users choose are registered in ``TASKS`` by the floors that implement them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TrainingTask:
    """Turns a batch into ``{"loss": scalar, "output": logits}``; subclasses change the loss.

    ``setup(model)`` may return extra modules whose parameters train alongside the model
    (e.g. distillation adapters; fit() moves them to the compute device); ``teardown()`` runs
    when fit() ends, even on an error (e.g. to remove hooks). ``index`` holds the batch's
    positions in the training split, for tasks that keep per-example state (cached teacher
    outputs, per-sample losses).
    """

    data_parallel = True  # whether shards of a batch on several processes, with gradients
    # averaged, equal the whole batch in one (False: the task runs replicated on every process)

    def setup(self, model: nn.Module) -> list[nn.Module]:
        return []

    def teardown(self) -> None:
        return None

    def to(self, device: torch.device) -> None:
        """Move what the task holds besides the trained modules (a frozen teacher, cached
        tensors) to ``device``: fit() calls it with the compute device before ``setup`` and
        with the model's home device after ``teardown``."""
        return None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        raise NotImplementedError
