"""The ``finetune`` step: learning from few labels. A seeded, class-balanced subset of the
training split keeps its labels (a share or a count); the model then either gets a linear probe
(a logistic regression on its frozen embeddings, installed as its classifier) or is fine-tuned
end to end, optionally on augmented views or semi-supervised (``fixmatch``: all training inputs,
without their labels, through FixMatch's consistency term). Applied to the untrained
model (``from: input``) it is training from scratch on the same labels, the baseline every
self-supervised route is compared with.

No validation split is used: with a few hundred labels, a validation split of thousands of
labels would be more supervision than the training set, so the last epoch is kept.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from nnopt.context import RunContext
from nnopt.core.config import Seed, Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.learn.selfsup.augment import AugmentConfig, augment
from nnopt.learn.selfsup.embedding import ProbeConfig, classifier, embed, linear_probe
from nnopt.learn.selfsup.fixmatch import FixmatchConfig, FixmatchTask
from nnopt.measure.base import is_artifact
from nnopt.train.fit import TrainConfig
from nnopt.train.task import ClassificationTask


class FinetuneConfig(Strict):
    """How many labels, chosen how, and probe or full fine-tuning."""

    labels: float = Field(0.01, gt=0, description="labelled examples: a share of the training "
                          "split (<= 1) or a count (> 1)")
    balanced: bool = Field(True, description="the same number of labels per class")
    label_seed: Seed | None = Field(None, description="seed of the labelled subset (default: "
                                   "the run's seed)")
    mode: Literal["full", "probe"] = Field("full", description="full: train every layer; "
                                           "probe: a linear classifier on frozen embeddings")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="probe mode")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=30, select_best=False),
                               description="full mode (last epoch kept: no validation)")
    encoder_lr: float = Field(1.0, gt=0, description="full mode: the learning rate of every "
                              "layer but the classifier, as a multiple of train.lr (below 1: "
                              "the pre-trained encoder moves slower than its new classifier)")
    augment: AugmentConfig | None = Field(None, description="full mode: a random view of "
                                          "each labelled example per step (off if unset)")
    fixmatch: FixmatchConfig | None = Field(None, description="full mode: semi-supervised "
                                            "fine-tuning, FixMatch on the training inputs "
                                            "without their labels (off if unset)")

    @model_validator(mode="after")
    def _one_view(self) -> FinetuneConfig:
        if self.fixmatch is not None and self.augment is not None:
            raise ValueError("fixmatch makes the labelled view itself (fixmatch.weak); remove "
                             "augment")
        if self.mode == "probe" and (self.fixmatch is not None or self.augment is not None):
            raise ValueError("augment and fixmatch apply to mode 'full', not to the probe")
        return self


class AugmentedTask(ClassificationTask):
    """Cross-entropy on a fresh seeded augmentation of every batch."""

    def __init__(self, cfg: AugmentConfig, seed: int) -> None:
        super().__init__()
        self.aug, self.gen = cfg, torch.Generator().manual_seed(seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, object]:
        return super().__call__(model, augment(x, self.aug, self.gen), y, index)


def labelled_subset(y: torch.Tensor, count: int, classes: int, balanced: bool, seed: int
                    ) -> torch.Tensor:
    """Indices of ``count`` examples: a seeded draw, the same number per class if balanced."""
    gen = torch.Generator().manual_seed(seed)
    if not balanced:
        return torch.randperm(len(y), generator=gen)[:count].sort().values
    per = [count // classes + (1 if c < count % classes else 0) for c in range(classes)]
    picks = []
    for c in range(classes):
        of_c = (y == c).nonzero()[:, 0]
        if len(of_c) < per[c]:
            raise NnoptError(f"finetune: class {c} has {len(of_c)} training examples, fewer "
                             f"than the {per[c]} a balanced subset of {count} needs")
        picks.append(of_c[torch.randperm(len(of_c), generator=gen)[:per[c]]])
    return torch.cat(picks).sort().values


@STEPS.register("finetune", config=FinetuneConfig,
                tiny={"labels": 20, "probe": {"epochs": 5},
                      "train": {"epochs": 1, "batch_size": 8, "select_best": False}})
def finetune(model: nn.Module, cfg: FinetuneConfig, ctx: RunContext) -> nn.Module:
    """Train on a few labels: a linear probe on frozen embeddings, or full fine-tuning."""
    if is_artifact(model):
        raise NnoptError("finetune trains PyTorch models; put it before export/quantize")
    train, classes = ctx.data.train, ctx.data.num_classes
    count = round(cfg.labels * len(train)) if cfg.labels <= 1 else int(cfg.labels)
    if not classes <= count <= len(train):
        raise NnoptError(f"finetune: labels {cfg.labels:g} means {count} examples; it must be "
                         f"between {classes} (one per class) and {len(train)}")
    seed = ctx.seed if cfg.label_seed is None else cfg.label_seed
    subset = train.take(labelled_subset(train.y, count, classes, cfg.balanced, seed))
    out = copy.deepcopy(model)
    info: dict[str, object] = {"mode": cfg.mode, "labels": count, "balanced": cfg.balanced,
                               "label_seed": seed}
    if cfg.mode == "probe":
        w, b = linear_probe(embed(out, subset.x), subset.y, classes, cfg.probe, seed)
        head = classifier(out)
        if head.bias is None:
            raise NnoptError("finetune probe: the classifier has no bias to hold the probe's")
        with torch.no_grad():
            head.weight.copy_(w)
            head.bias.copy_(b)
        info["probe"] = cfg.probe.model_dump()
    else:
        task: ClassificationTask | FixmatchTask | None = None
        if cfg.fixmatch is not None:  # the pool is every training input, its labels unread
            task = FixmatchTask(cfg.fixmatch, train.x, seed)
        elif cfg.augment is not None:
            task = AugmentedTask(cfg.augment, seed)
        scale = None
        if cfg.encoder_lr != 1.0:
            head = set(classifier(out).parameters())
            scale = {p: cfg.encoder_lr for p in out.parameters() if p not in head}
        state = ctx.fit(out, cfg.train, task=task, train=subset, val=False, lr_scale=scale)
        info["train"] = {"epochs": cfg.train.epochs, "lr": cfg.train.lr,
                         "encoder_lr": cfg.encoder_lr, "batch_size": cfg.train.batch_size,
                         "precision": cfg.train.precision,
                         "augment": cfg.augment.model_dump() if cfg.augment else None}
        if isinstance(task, FixmatchTask):
            info["fixmatch"] = {**cfg.fixmatch.model_dump(), "unlabelled": len(train),
                                "mask_rate_last_epoch": task.mask_rate(state.batches_per_epoch)}
    ctx.record("finetune", info)
    return out
