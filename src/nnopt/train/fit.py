"""One ``fit()`` for every technique: a TrainingTask says what the loss is, Callbacks act at events."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator, model_validator
from torch import nn

from nnopt.core.compute import compute_device, home, movable, predict, seed_everything  # noqa: F401
from nnopt.core.config import BatchSize, Epochs, Strict
from nnopt.core.errors import TrainingError, unknown_choice
from nnopt.core.registry import TASKS
from nnopt.core.task import TrainingTask
from nnopt.data.base import Split, loader_signals, whole_batch
from nnopt.train.callbacks import BestCheckpoint, Callback, EarlyStopping, FitState
from nnopt.train.distributed import (
    average_gradients,
    broadcast_state,
    same_model_everywhere,
    shard,
    sum_all,
    world,
)
from nnopt.train.task import ClassifyConfig, TaskSetting


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
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm")
    select_best: bool = Field(True, description="restore the weights of the best validation epoch")
    early_stopping: int | None = Field(None, ge=1, description="patience in epochs (off if unset)")
    eval_batch_size: BatchSize = 1000
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="mixed precision: the forward pass under bfloat16 (bf16) or float16 "
        "(fp16, with dynamic loss scaling) autocast; weights, gradients and optimiser stay fp32")
    channels_last: bool = Field(False, description="train convolutions in channels-last "
                                "memory format (faster on CPUs, above all with bf16); the "
                                "weights return to the default format after training")
    compile: bool = Field(False, description="train through torch.compile; the first epoch "
                          "includes the compilation (benchmarks/training_options.py measures "
                          "what it buys)")
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes that fetch "
                         "batches (0: in the training process); batches are pinned on CUDA")
    task: Any = Field(default_factory=lambda: ClassifyConfig(), description="the training "
                      "objective, a registered task with its own options: classify (cross-entropy"
                      " or a noise-robust loss, label smoothing, mixup), adversarial (PGD-AT, "
                      "TRADES), coteaching, elr; see `nnopt list tasks`")

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, raw: Any) -> Any:
        """Fields that became a task's options: say where they went."""
        if isinstance(raw, dict):
            for key, task in MOVED_TO_TASK.items():
                if key in raw:
                    where = (f"task: {{name: {task}, ...}}" if key == task
                             else f"task: {{name: {task}, {key}: ...}}")
                    raise ValueError(f"'{key}' is now an option of the training task: write "
                                     f"{where}")
        return raw

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, raw: Any) -> Any:
        return task_config(raw)


# TrainConfig fields of nnopt before the task block, and the task that took each over
MOVED_TO_TASK = {"adversarial": "adversarial", "coteaching": "coteaching", "elr": "elr",
                 "loss": "classify", "mixup": "classify", "label_smoothing": "classify"}


def task_config(raw: Any) -> BaseModel:
    """A task block validated against its registered config (``{name: ..., **options}``)."""
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ValueError(f"task needs a 'name'; registered tasks: {', '.join(TASKS.names())}")
    if raw["name"] not in TASKS:  # a ValueError, so that pydantic gives it the recipe's line
        raise ValueError(unknown_choice("task", raw["name"], TASKS.names()))
    entry = TASKS.get(raw["name"])
    if entry.config is None:
        raise ValueError(f"task '{raw['name']}' is built by {entry.meta.get('built_by', 'its step')}"
                         " and cannot be chosen in a task block")
    return entry.config.model_validate(raw)


def objective(cfg: TrainConfig) -> str:
    """A short name of what a TrainConfig optimises (for reports): the task and its options."""
    describe = getattr(cfg.task, "describe", None)
    return describe() if callable(describe) else str(getattr(cfg.task, "name", "task"))


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches over a permutation (sequential if no generator); a last batch of 1 is dropped."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        if len(idx) > 1 or n == 1:
            yield idx


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
    back = home(model)  # the model returns there (the CPU between a run's phases)
    device = compute_device() if movable(model) else back
    model.to(device)  # the same Parameter objects, now on the device
    task.to(device)
    extra: list[nn.Module] = []
    try:
        extra = [m.to(device) for m in task.setup(model)]
        if config.channels_last:
            model.to(memory_format=torch.channels_last)  # 4-D weights only; the same Parameters
        with loader_signals():
            state = _fit(model, train, config, val, task, extra, callbacks, stage, seed, lr_scale)
        state.notes["objective"] = named
        state.notes["compute"] = compute_note(config, device)
        return state
    finally:
        if config.channels_last:
            model.to(memory_format=torch.contiguous_format)
        task.teardown()
        task.to(back)
        for m in [model, *extra]:
            m.to(back)


def compute_note(config: TrainConfig, device: torch.device) -> str:
    """How a fit computed, for the report: device, precision and the options that change speed."""
    parts = [str(device), config.precision + (" autocast" if config.precision != "fp32" else "")]
    parts += [name for name, on in (("channels-last", config.channels_last),
                                    ("torch.compile", config.compile)) if on]
    if config.workers:
        parts.append(f"{config.workers} DataLoader workers")
    return ", ".join(parts)


def model_task(model: nn.Module, config: TrainConfig) -> TrainingTask | None:
    """The loss a model is defined with (a capsule network's margin loss), when the config
    asks for the default objective (plain cross-entropy)."""
    own = getattr(getattr(model, "net", model), "training_task", None)
    return own() if callable(own) and is_plain(config) else None


def is_plain(config: TrainConfig) -> bool:
    """Whether the config trains with plain cross-entropy (the default task)."""
    return config.task == ClassifyConfig()


def accepts_step_task(config: TrainConfig) -> bool:
    """Whether a step's own objective (distillation) may replace the config's task: only
    cross-entropy, whose label smoothing the step's task takes over (``label_smoothing``)."""
    t = config.task
    return t.name == "classify" and t.loss.name == "ce" and not t.mixup


def label_smoothing(config: TrainConfig) -> float:
    """The label smoothing of a config's classify task (0 for other tasks)."""
    return float(getattr(config.task, "label_smoothing", 0.0) or 0.0)


def make_task(config: TrainConfig, task: TrainingTask | None, examples: int, stage: str,
              seed: int) -> TrainingTask:
    """The TrainingTask a config asks for, or ``task`` (a step's own objective, such as
    distillation); the two cannot be combined."""
    if task is not None:
        if not accepts_step_task(config):
            raise TrainingError(f"stage '{stage}': task '{config.task.name}' replaces the loss, so"
                                f" it cannot be combined with {type(task).__name__}")
        return task
    setting = TaskSetting(epochs=config.epochs, batch_size=config.batch_size,
                          examples=examples, seed=seed, stage=stage)
    return TASKS.get(config.task.name).fn(config.task, setting)


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
    device = params[0].device
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    forward = torch.compile(model) if config.compile else model  # shares model's Parameters
    gen = torch.Generator().manual_seed(seed)  # the same batch order on every process
    rank, size = world()
    parallel = size > 1 and getattr(task, "data_parallel", True)
    smallest = 2 * size if parallel else 1  # a process needs 2 examples (batch norm)
    if parallel:
        if not same_model_everywhere([model, *extra]):
            raise TrainingError(
                f"stage '{stage}': the processes hold models of different shapes: an earlier "
                "step decided by measuring (a latency budget, a hardware-aware search) and "
                "decided differently in each process; run this recipe in one process")
        broadcast_state([model, *extra])
        torch.manual_seed(seed + 7919 * rank)  # each process its own dropout and augmentation
    n_batches = sum(1 for i in batches(len(train), config.batch_size, None) if len(i) >= smallest)
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
    data = train.dataset()
    start_loss: float | None = None  # the loss before any update: divergence is measured from it
    for epoch in range(config.epochs):
        state.epoch = epoch
        model.train()
        for cb in cbs:
            cb.on_epoch_start(state)
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)  # read once per epoch: no sync per batch
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = scored = 0
        # this epoch's batches (this process's shard of each), read through a DataLoader
        order = [i for i in batches(len(train), config.batch_size, gen) if len(i) >= smallest]
        loader = torch.utils.data.DataLoader(
            data, batch_sampler=[shard(i, rank, size) for i in order] if parallel else order,
            num_workers=config.workers, collate_fn=whole_batch,
            pin_memory=device.type == "cuda",  # its workers' seed from its own generator: the
            generator=torch.Generator().manual_seed(seed + epoch))  # global one (dropout) untouched
        for b, (idx, (x, y, mine)) in enumerate(zip(order, loader)):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=half or torch.float32, enabled=bool(half)):
                out = task(forward, x, y, index=mine)
            loss = out["loss"].float()
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss) or parallel:  # every process must join the all-reduce
                scaler.scale(loss).backward()
            value = average_gradients(params, len(mine), len(idx), loss) if parallel \
                else loss.item()
            if not math.isfinite(value):
                raise TrainingError(
                    f"stage '{stage}': loss became {value} at epoch {epoch + 1}, batch "
                    f"{b + 1}; lower the learning rate (lr={config.lr:g}) or check the data")
            if start_loss is None:
                start_loss = value
            elif value > diverged_above(start_loss, 1000.0):
                raise diverged(stage, epoch, start_loss, value, config, f", batch {b + 1}")
            if config.grad_clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(opt)  # skipped (and the scale lowered) on an fp16 overflow
            scaler.update()
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
        total, seen, right, scored = (sum_all(loss_sum.item(), seen, correct.item(), scored)
                                      if parallel else
                                      (loss_sum.item(), seen, correct.item(), scored))
        if parallel:  # process 0's batch-norm statistics everywhere, before validation
            broadcast_state([model, *extra], buffers_only=True)
        mean_loss = total / max(seen, 1)
        if start_loss is not None and mean_loss > diverged_above(start_loss, 10.0):
            raise diverged(stage, epoch, start_loss, mean_loss, config, " (epoch mean)")
        record = {"epoch": epoch + 1, "train_loss": mean_loss, "lr": opt.param_groups[0]["lr"],
                  "train_seconds": time.perf_counter() - start, "examples": int(seen)}
        if scored:
            record["train_accuracy"] = right / scored
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
    if size > 1:
        state.notes["distributed"] = (
            f"data-parallel over {size} processes (global batch {config.batch_size})" if parallel
            else f"replicated on {size} processes: {type(task).__name__} is not data-parallel "
                 f"({getattr(task, 'data_parallel_why', 'per-batch state')})")
    if scaler.is_enabled():  # halved at every overflow that skipped a step
        state.notes["fp16_loss_scale"] = scaler.get_scale()
    if parallel:
        torch.manual_seed(seed + 1)  # the same random state on every process again
    model.eval()
    return state
