"""The ``distill`` step: train a student (the incoming model or a fresh architecture) on a
teacher's soft targets, hints and attention maps."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field, field_validator
from torch import nn

from nnopt.compress.distill.records import DistillationRecord
from nnopt.compress.distill.task import DistillationTask, DistillConfig
from nnopt.compress.distill.teacher import resolve_teacher
from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.registry import MODELS, STEPS
from nnopt.measure.efficiency import count_params
from nnopt.models.base import build_model
from nnopt.models.factory import model_section
from nnopt.train.fit import TrainConfig, label_smoothing


class DistillStepConfig(DistillConfig):
    """A DistillConfig plus the student and its training."""

    student: Any = Field(None, description="model section of a fresh student (e.g. {name: cnn, "
                         "width: 8}); default: the incoming model is the student")
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("student", mode="before")
    @classmethod
    def _student(cls, raw: Any) -> Any:
        if raw is None or isinstance(raw, Strict):
            return raw
        raw = model_section(raw)
        if not isinstance(raw, dict) or "name" not in raw:
            raise ValueError("student is a model section, e.g. {name: cnn, width: 8} or {timm: "
                             "mobilenetv3_small_050}")
        if raw["name"] not in MODELS:
            raise ValueError(f"unknown student model '{raw['name']}'; models: "
                             + ", ".join(MODELS.names()))
        return MODELS.get(raw["name"]).config.model_validate(raw)


def distillation_task(cfg: DistillConfig, ctx: RunContext, label_smoothing: float = 0.0
                      ) -> DistillationTask:
    """The TrainingTask other steps (prune, qat) use when their config has ``distill``."""
    return DistillationTask(resolve_teacher(cfg.teacher, ctx), cfg, ctx.data.train.x[:8],
                            label_smoothing=label_smoothing, train_x=ctx.data.train.x)


@STEPS.register("distill", config=DistillStepConfig,
                tiny={"train": {"epochs": 1, "batch_size": 32}, "hint_weight": 0.5})
def distill(model: nn.Module, cfg: DistillStepConfig, ctx: RunContext) -> nn.Module:
    """Knowledge distillation (Hinton et al. 2015; FitNets; attention transfer) into a student."""
    if cfg.student is not None:
        d = ctx.data
        student = build_model(cfg.student, d.input_shape, d.num_classes, d.mean, d.std)
    else:
        student = copy.deepcopy(model)
    task = distillation_task(cfg, ctx, label_smoothing(cfg.train))
    ctx.fit(student, cfg.train, task=task)
    ctx.record(DistillationRecord(
        teacher=cfg.teacher, teacher_params=count_params(task.teacher),
        student_params=count_params(student), temperature=cfg.temperature, alpha=cfg.alpha,
        hint_pairs=[list(p) for p in task.hints], attention_pairs=[list(p) for p in task.attn]))
    return student
