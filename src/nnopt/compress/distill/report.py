"""Report section for distillation: who taught whom, with which losses."""

from __future__ import annotations

from pathlib import Path

from nnopt.compress.distill.records import DistillationRecord
from nnopt.report.model import StageRecord
from nnopt.report.render import Doc, register_section


@register_section
def distillation_section(doc: Doc, labels: list[str], records: list[StageRecord],
                         figs: Path) -> None:
    rows = []
    for lab, s in zip(labels, records):
        d = DistillationRecord.of(s.details)
        if d:
            rows.append([lab, d.teacher, f"{d.teacher_params:,}", f"{d.student_params:,}",
                         f"{d.temperature:g}", f"{d.alpha:g}",
                         "; ".join(" <- ".join(p) for p in d.hint_pairs) or "-",
                         "; ".join(" <- ".join(p) for p in d.attention_pairs) or "-"])
    if rows:
        doc.h2("Distillation")
        doc.p("Loss: (1 - alpha) cross-entropy + alpha T^2 KL(teacher_T || student_T) (Hinton et al. "
              "2015), plus hint (FitNets) and attention-transfer terms for the listed "
              "student <- teacher layer pairs.")
        doc.table(["stage", "teacher", "teacher params", "student params", "T", "alpha", "hints",
                   "attention"], rows)
