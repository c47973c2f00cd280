"""Measurement: what a metric sees of one stage (its model, data, targets, saved file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.core.compute import predict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import METRICS
from nnopt.data.base import DataSplits
from nnopt.measure.embedding import embed
from nnopt.measure.target import Target
from nnopt.models.artifact import Artifact
from nnopt.models.base import NnoptModel


@dataclass
class Measurement:
    """One stage's model under measurement; test-set logits are computed once and shared."""

    model: nn.Module
    data: DataSplits
    targets: list[Target]
    work_dir: Path
    weights_path: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # validated metric_options by metric
    reference: nn.Module | None = None  # the run's first model (e.g. the fp32 baseline)
    parent: nn.Module | None = None  # the float (PyTorch) model this stage descends from
    parent_name: str = "the parent stage"  # which stage that float model is
    note: Any = None  # note(text): a long metric says what it is doing (e.g. which attack)

    def option(self, metric: str) -> Any:
        """The validated options of ``metric`` (its config's defaults if the recipe gives none)."""
        if metric in self.options:
            return self.options[metric]
        return METRICS.get(metric).config()

    @cached_property
    def logits(self) -> torch.Tensor:
        return predict(self.model, self.data.test.x)

    @cached_property
    def embedding(self) -> torch.Tensor:
        """Test-split embeddings (the classifier's input), computed once for every metric."""
        return embed(self.model, self.data.test.x)

    @property
    def labels(self) -> torch.Tensor:
        return self.data.test.y

    def example(self, batch_size: int) -> torch.Tensor:
        """A batch of real test inputs of the requested size (repeated if the split is small)."""
        return example_batch(self.data.test.x, batch_size)


def runtime_of(model: nn.Module) -> str:
    """'torch' for ordinary modules; deployed artifacts (ONNX) name their own runtime."""
    return model.runtime if isinstance(model, Artifact) else "torch"


def is_nnopt_model(model: nn.Module) -> bool:
    """A PyTorch model built by nnopt (normalisation + ``net`` + spec) that a step may rewrite:
    not a deployed artifact, not a bare module."""
    return isinstance(model, NnoptModel)


def is_artifact(model: nn.Module) -> bool:
    """A deployed artifact (ONNX file, torch int8 graph): PyTorch-level counts do not apply."""
    return isinstance(model, Artifact)


def is_stochastic(model: nn.Module) -> bool:
    """A model whose predictions average random passes (MC dropout, Bayesian layers): it runs
    seeded in PyTorch, and has no ONNX form that would repeat its predictions."""
    return any(getattr(m, "stochastic", False) for m in model.modules())


def check_exportable(model: nn.Module) -> None:
    """Raise a clear error for a model that must not be exported to ONNX."""
    if is_stochastic(model):
        raise NnoptError("this model averages random passes (MC dropout or Bayesian layers); "
                         "ONNX Runtime's random ops are not seeded like PyTorch, so its "
                         "predictions would not repeat: deploy it with PyTorch")


def example_batch(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first ``batch_size`` rows of ``x``, repeated if ``x`` is shorter."""
    reps = -(-batch_size // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size].contiguous()
