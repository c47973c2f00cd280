"""One ``fit()`` for every technique: a TrainingTask says what the loss is, Callbacks act at events."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from nnopt.data.base import Split
from nnopt.errors import TrainingError
from nnopt.recipe import BatchSize, Epochs, Strict
from nnopt.train.adversarial import AdversarialConfig, AdversarialTask
from nnopt.train.callbacks import BestCheckpoint, Callback, EarlyStopping, FitState
from nnopt.train.coteaching import CoteachingConfig, CoteachingTask
from nnopt.train.elr import ElrConfig, ElrTask
from nnopt.train.losses import LossConfig
from nnopt.train.task import ClassificationTask, TrainingTask


class TrainConfig(Strict):
    """How to train: epochs, batches, optimiser, schedule, checkpoint selection."""

    epochs: Epochs = 5
    batch_size: BatchSize = 128
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    nesterov: bool = Field(False, description="sgd only")
    schedule: Literal["none", "cosine", "step"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up before the schedule")
    step_size: int = Field(10, ge=1, description="epochs between lr drops (schedule: step)")
    gamma: float = Field(0.1, gt=0, le=1, description="lr factor per drop (schedule: step)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm")
    select_best: bool = Field(True, description="restore the weights of the best validation epoch")
    early_stopping: int | None = Field(None, ge=1, description="patience in epochs (off if unset)")
    eval_batch_size: BatchSize = 1000
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: the forward pass "
                                               "under bfloat16 autocast (weights, gradients "
                                               "and optimiser stay fp32)")
    channels_last: bool = Field(False, description="train convolutions in channels-last "
                                "memory format (faster on CPUs, above all with bf16); the "
                                "weights return to the default format after training")
    adversarial: AdversarialConfig | None = Field(None, description="train on adversarial "
                                                  "examples: PGD-AT or TRADES")
    loss: LossConfig = Field(default_factory=LossConfig, description="the classification "
                             "loss: ce, or a noise-robust gce, sce, bootstrap_soft/hard")
    mixup: float | None = Field(None, gt=0, description="mixup with Beta(a, a) mixing weights")
    coteaching: CoteachingConfig | None = Field(None, description="train a peer network and "
                                                "exchange small-loss examples (noisy labels)")
    elr: ElrConfig | None = Field(None, description="early-learning regularisation towards each "
                                  "example's running-average prediction (noisy labels)")

    @model_validator(mode="after")
    def _smoothing_with_ce(self) -> TrainConfig:
        if self.label_smoothing and self.loss.name != "ce":
            raise ValueError(f"label_smoothing applies to the ce loss, not to {self.loss.name}")
        return self


def objective(cfg: TrainConfig) -> str:
    """A short name of what a TrainConfig optimises (for reports): the loss and its options."""
    if cfg.coteaching is not None:
        return f"co-teaching (forget {cfg.coteaching.forget_rate:g})"
    if cfg.elr is not None:
        return f"ELR (lambda {cfg.elr.lam:g}, beta {cfg.elr.beta:g})"
    if cfg.adversarial is not None:
        return f"{cfg.adversarial.method} (eps {cfg.adversarial.eps:g})"
    parts = [cfg.loss.name.replace("_", " ") if cfg.loss.name != "ce" else "cross-entropy"]
    if cfg.loss.name == "gce":
        parts[0] += f" q={cfg.loss.q:g}"
    if cfg.label_smoothing:
        parts.append(f"label smoothing {cfg.label_smoothing:g}")
    if cfg.mixup:
        parts.append(f"mixup {cfg.mixup:g}")
    return " + ".join(parts)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a run repeats exactly on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches over a permutation (sequential if no generator); a last batch of 1 is dropped."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        if len(idx) > 1 or n == 1:
            yield idx


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` in eval mode for all of ``x``; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, split: Split, batch_size: int = 1000) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``split``."""
    logits = predict(model, split.x, batch_size)
    return {"accuracy": (logits.argmax(1) == split.y).float().mean().item(),
            "loss": F.cross_entropy(logits, split.y).item()}


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig,
                   lr_scale: Mapping[nn.Parameter, float] | None = None) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` over ``params``; ``lr_scale`` gives some parameters a multiple
    of cfg.lr (one parameter group per multiple, the cfg.lr group first)."""
    scale = lr_scale or {}
    factors = sorted({scale.get(p, 1.0) for p in params}, key=lambda f: (f != 1.0, f))
    groups = [{"params": [p for p in params if scale.get(p, 1.0) == f], "lr": cfg.lr * f}
              for f in factors]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: linear warm-up, then cosine to zero or step decay."""
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "cosine":
            t = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
        if cfg.schedule == "step":
            return cfg.gamma ** (step // (cfg.step_size * steps_per_epoch))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fit(model: nn.Module, train: Split, *, config: TrainConfig, val: Split | None = None,
        task: TrainingTask | None = None, callbacks: Sequence[Callback] = (),
        stage: str = "train", seed: int = 0,
        lr_scale: Mapping[nn.Parameter, float] | None = None) -> FitState:
    """Train ``model`` in place; return the FitState with per-epoch history and notes.
    ``lr_scale`` trains the parameters it names at a multiple of config.lr (discriminative
    learning rates: a pre-trained encoder slower than a new classifier).

    A non-finite loss stops training with a TrainingError naming the stage, epoch and batch.
    """
    seed_everything(seed)
    task = task if task is not None else model_task(model, config)
    named = type(task).__name__ if task is not None else objective(config)
    task = make_task(config, task, len(train), stage, seed)
    extra = task.setup(model)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D weights only; the same Parameters
    try:
        state = _fit(model, train, config, val, task, extra, callbacks, stage, seed, lr_scale)
        state.notes["objective"] = named
        return state
    finally:
        if config.channels_last:
            model.to(memory_format=torch.contiguous_format)
        task.teardown()


def model_task(model: nn.Module, config: TrainConfig) -> TrainingTask | None:
    """The loss a model is defined with (a capsule network's margin loss), when the config
    asks for plain cross-entropy and nothing that replaces the loss."""
    own = getattr(getattr(model, "net", model), "training_task", None)
    plain = config.loss.name == "ce" and not config.mixup and not config.label_smoothing
    special = any(getattr(config, k) is not None for k in ("coteaching", "elr", "adversarial"))
    return own() if callable(own) and plain and not special else None


def make_task(config: TrainConfig, task: TrainingTask | None, examples: int, stage: str,
              seed: int) -> TrainingTask:
    """The TrainingTask a config asks for; a task that replaces the loss (co-teaching, ELR,
    adversarial training) cannot be combined with another one."""
    special = [k for k in ("coteaching", "elr", "adversarial") if getattr(config, k) is not None]
    if len(special) + (task is not None) > 1:
        other = type(task).__name__ if task is not None else special[1]
        raise TrainingError(f"stage '{stage}': {special[0]} replaces the loss, so it cannot be "
                            f"combined with {other}")
    plain = config.loss.name == "ce" and not config.mixup and not config.label_smoothing
    if special and special[0] != "adversarial" and not plain:
        raise TrainingError(f"stage '{stage}': {special[0]} uses plain cross-entropy; remove "
                            "the loss, mixup and label_smoothing settings")
    if config.coteaching is not None:
        bs = config.batch_size
        return CoteachingTask(config.coteaching, config.epochs,
                              examples - (1 if examples % bs == 1 and examples > 1 else 0), seed)
    if config.elr is not None:
        return ElrTask(config.elr, examples)
    if config.adversarial is not None:
        return AdversarialTask(config.adversarial, config.label_smoothing)
    return task or ClassificationTask(label_smoothing=config.label_smoothing, loss=config.loss,
                                      mixup=config.mixup)


def diverged_above(start: float, factor: float) -> float:
    """The loss above which training from ``start`` has diverged: ``factor`` times the start's
    size above it, and never closer than ``factor`` (losses near zero, or negative ones)."""
    return start + factor * (abs(start) + 1.0)


def diverged(stage: str, epoch: int, start: float, now: float, config: TrainConfig,
             where: str) -> TrainingError:
    return TrainingError(
        f"stage '{stage}': training diverged at epoch {epoch + 1}{where}: the loss rose from "
        f"{start:.4g} to {now:.4g}; lower the learning rate (lr={config.lr:g}), set grad_clip, "
        "or check the data")


def _fit(model: nn.Module, train: Split, config: TrainConfig, val: Split | None,
         task: TrainingTask, extra: list[nn.Module], callbacks: Sequence[Callback], stage: str,
         seed: int, lr_scale: Mapping[nn.Parameter, float] | None) -> FitState:
    params = [p for m in [model, *extra] for p in m.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"stage '{stage}': the model has no trainable parameters")
    opt = make_optimizer(params, config, lr_scale)
    device = params[0].device.type
    gen = torch.Generator().manual_seed(seed)
    n_batches = sum(1 for _ in batches(len(train), config.batch_size, None))
    sched = make_schedule(opt, config, n_batches)
    cbs: list[Callback] = list(callbacks)
    if config.select_best and val is not None and len(val):
        cbs.append(BestCheckpoint())
    if config.early_stopping and val is not None and len(val):
        cbs.append(EarlyStopping(config.early_stopping))
    state = FitState(model=model, optimizer=opt, stage=stage, epochs=config.epochs,
                     batches_per_epoch=n_batches)
    for cb in cbs:
        cb.on_fit_start(state)
    x_all, y_all = train.x, train.y
    start_loss: float | None = None  # the loss before any update: divergence is measured from it
    for epoch in range(config.epochs):
        state.epoch = epoch
        model.train()
        for cb in cbs:
            cb.on_epoch_start(state)
        start = time.perf_counter()
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        seen = scored = 0
        for b, idx in enumerate(batches(len(train), config.batch_size, gen)):
            x, y = x_all[idx], y_all[idx]
            with torch.autocast(device, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                out = task(model, x, y, index=idx)
            loss = out["loss"].float()
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"stage '{stage}': loss became {loss.item()} at epoch {epoch + 1}, batch "
                    f"{b + 1}; lower the learning rate (lr={config.lr:g}) or check the data")
            value = loss.item()
            if start_loss is None:
                start_loss = value
            elif value > diverged_above(start_loss, 1000.0):
                raise diverged(stage, epoch, start_loss, value, config, f", batch {b + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            sched.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(y)
                if "output" in out:  # self-supervised tasks have no class output
                    correct += (out["output"].argmax(1) == y).sum()
                    scored += len(y)
            seen += len(y)
            state.step += 1
            state.batch_loss = value
            for cb in cbs:
                cb.on_batch_end(state)
        mean_loss = loss_sum.item() / max(seen, 1)
        if start_loss is not None and mean_loss > diverged_above(start_loss, 10.0):
            raise diverged(stage, epoch, start_loss, mean_loss, config, " (epoch mean)")
        record = {"epoch": epoch + 1, "train_loss": mean_loss,
                  "lr": opt.param_groups[0]["lr"], "train_seconds": time.perf_counter() - start}
        if scored:
            record["train_accuracy"] = correct.item() / scored
        if val is not None and len(val):
            v = evaluate(model, val, config.eval_batch_size)
            record.update(val_loss=v["loss"], val_accuracy=v["accuracy"])
        state.history.append(record)
        for cb in cbs:
            cb.on_epoch_end(state)
        if state.stop:
            break
    for cb in cbs:
        cb.on_fit_end(state)
    model.eval()
    return state
