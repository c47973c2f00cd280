"""The ``pretrain`` step: self-supervised training of a network's encoder on the training
inputs alone (their labels are hidden from the loss). The encoder is everything before the
classifier; the method's heads (projector, predictor, decoder) train alongside and are dropped.
The classifier stays untrained: ``finetune`` (a linear probe or full fine-tuning on a few labels)
comes next, and the ``knn`` metric judges the embedding meanwhile.

Every ``monitor_every`` epochs a monitor embeds a labelled subset of the training split and the
validation split and records k-NN and linear-probe accuracy and the collapse check, for the
report's curve; it never changes the training.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.data.base import Split
from nnopt.learn.selfsup.augment import AugmentConfig
from nnopt.learn.selfsup.embedding import (
    ProbeConfig,
    classifier,
    embed,
    embedding_std,
    knn_predict,
    linear_probe,
)
from nnopt.learn.selfsup.masked import MaskedTask
from nnopt.learn.selfsup.simclr import SimclrTask
from nnopt.learn.selfsup.simsiam import SimsiamTask
from nnopt.measure.base import is_artifact
from nnopt.train.callbacks import Callback, FitState
from nnopt.train.fit import TrainConfig
from nnopt.train.task import TrainingTask


class PretrainConfig(Strict):
    """The self-supervised method, its settings, the optimisation and the monitor."""

    method: Literal["simclr", "simsiam", "masked"] = Field(
        "simclr", description="simclr (NT-Xent), simsiam (no negatives) or masked "
        "(masked/denoising auto-encoding)")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=20, batch_size=256),
                               description="epochs, batch, optimiser, schedule")
    augment: AugmentConfig = Field(default_factory=AugmentConfig,
                                   description="how a view is made (simclr, simsiam)")
    temperature: float = Field(0.5, gt=0, description="simclr: NT-Xent temperature")
    local_views: int = Field(0, ge=0, description="simclr: extra views of small crops "
                             "(multi-crop, Caron et al. 2020), each paired with both main views")
    local_crop: tuple[float, float] = Field((0.1, 0.4), description="simclr: the share of the "
                                            "area a local view keeps (its other augmentations "
                                            "are the main views')")
    proj_dim: int = Field(128, ge=2, description="simclr/simsiam: projection size")
    proj_hidden: int | None = Field(None, ge=1, description="simclr/simsiam: width of the "
                                    "projector's hidden layers (null: the embedding's size, at "
                                    "least proj_dim)")
    proj_layers: int = Field(2, ge=1, le=4, description="simclr/simsiam: linear layers in the "
                             "projector (1: a linear projection)")
    mask_ratio: float = Field(0.5, gt=0, lt=1, description="masked: share of patches blanked")
    patch: int = Field(4, ge=1, description="masked: patch side (samples for 1-D)")
    noise: float = Field(0.1, ge=0, description="masked: std of the added noise")
    decoder_hidden: int = Field(512, ge=1, description="masked: decoder width")
    monitor_every: int = Field(1, ge=0, description="epochs between k-NN / probe checks (0: off)")
    monitor_labels: int = Field(5000, ge=10, description="labelled training examples the "
                                "monitor's k-NN bank and probe use")
    monitor_probe: ProbeConfig = Field(default_factory=lambda: ProbeConfig(epochs=100))

    @model_validator(mode="after")
    def _local_views_are_simclr(self) -> PretrainConfig:
        if self.local_views and self.method != "simclr":
            raise ValueError(f"local_views (multi-crop) applies to method simclr, not to "
                             f"{self.method}")
        return self


def make_task(cfg: PretrainConfig, input_shape: tuple[int, ...], seed: int) -> TrainingTask:
    if cfg.method == "simclr":
        local = cfg.augment.model_copy(update={"crop": cfg.local_crop})
        return SimclrTask(cfg.augment, cfg.temperature, cfg.proj_dim, seed,
                          local_views=cfg.local_views, local_augment=local,
                          proj_hidden=cfg.proj_hidden, proj_layers=cfg.proj_layers)
    if cfg.method == "simsiam":
        return SimsiamTask(cfg.augment, cfg.proj_dim, seed, cfg.proj_hidden, cfg.proj_layers)
    return MaskedTask(input_shape, cfg.mask_ratio, cfg.patch, cfg.noise, cfg.decoder_hidden, seed)


class EmbeddingMonitor(Callback):
    """k-NN and linear-probe accuracy on the validation split, and the collapse check."""

    def __init__(self, bank: Split, val: Split, classes: int, cfg: PretrainConfig) -> None:
        self.bank, self.val, self.classes, self.cfg = bank, val, classes, cfg

    def scores(self, model: nn.Module) -> dict[str, float]:
        zb, zv = embed(model, self.bank.x), embed(model, self.val.x)
        knn = knn_predict(zb, self.bank.y, zv, self.classes)
        w, b = linear_probe(zb, self.bank.y, self.classes, self.cfg.monitor_probe)
        probe = (zv.float() @ w.T + b).argmax(1)
        return {"knn_accuracy": (knn == self.val.y).double().mean().item(),
                "probe_accuracy": (probe == self.val.y).double().mean().item(),
                "embedding_std": embedding_std(zv)}

    def on_epoch_end(self, state: FitState) -> None:
        if (state.epoch + 1) % self.cfg.monitor_every == 0 or state.epoch + 1 == state.epochs:
            state.last.update(self.scores(state.model))


@STEPS.register("pretrain", config=PretrainConfig,
                tiny={"train": {"epochs": 1, "batch_size": 32}, "proj_dim": 8,
                      "decoder_hidden": 8, "monitor_labels": 20})
def pretrain(model: nn.Module, cfg: PretrainConfig, ctx: RunContext) -> nn.Module:
    """Self-supervised pre-training of the encoder on the training inputs (labels unused)."""
    if is_artifact(model):
        raise NnoptError("pretrain trains PyTorch models; put it before export/quantize")
    classifier(model)  # a clear error for a network without a classifier to split at
    if cfg.method != "masked" and len(ctx.data.input_shape) not in (2, 3):
        raise NnoptError(f"{cfg.method} augments images (C, H, W) or signals (C, L); this "
                         f"dataset's inputs are {ctx.data.input_shape}: use method 'masked'")
    out = copy.deepcopy(model)
    train = ctx.data.train
    unlabeled = Split(train.x, torch.zeros_like(train.y))  # the loss never sees a label
    callbacks = list(ctx.callbacks(out, monitor=False))
    if cfg.monitor_every and len(ctx.data.val):
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(ctx.seed))
        # first, so that the progress bar shows its figures
        callbacks.insert(0, EmbeddingMonitor(train.take(idx[:cfg.monitor_labels]),
                                             ctx.data.val, ctx.data.num_classes, cfg))
    task = make_task(cfg, ctx.data.input_shape, ctx.seed)
    state = ctx.fit(out, cfg.train, task=task, train=unlabeled, val=False, callbacks=callbacks,
                    record="history")
    ctx.record("pretrain", {"method": cfg.method, "examples": len(train),
                            "epochs": len(state.history), "precision": cfg.train.precision,
                            **({} if cfg.method == "masked" else {"views": 2 + cfg.local_views}),
                            "monitor_labels": min(cfg.monitor_labels, len(train)),
                            "monitor_probe": cfg.monitor_probe.model_dump(),
                            **{k: state.last[k] for k in ("knn_accuracy", "probe_accuracy",
                                                          "embedding_std") if k in state.last}})
    if state.last.get("embedding_std", 1.0) < 0.1:
        ctx.warn(f"the embedding collapsed (std {state.last['embedding_std']:.3f} of the "
                 "normalised embedding x sqrt(dim); about 1 is healthy): lower the learning "
                 "rate or strengthen the augmentations")
    return out
