"""The distillation record of a stage (results.json: details.distillation)."""

from __future__ import annotations

from nnopt.core.record import Record, record


@record
class DistillationRecord(Record):
    """Who taught whom: the teacher, both sizes, the loss weights and the layer pairs of the
    hint (FitNets) and attention-transfer terms, student <- teacher."""

    KEY = "distillation"
    teacher: str
    teacher_params: int
    student_params: int
    temperature: float
    alpha: float
    hint_pairs: list[list[str]]
    attention_pairs: list[list[str]]
