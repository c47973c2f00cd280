"""Report section for post-hoc calibration: the fitted map and validation ECE before/after."""

from __future__ import annotations

from pathlib import Path

from nnopt.report.model import StageRecord
from nnopt.report.render import Doc, register_section


@register_section
def calibration_section(doc: Doc, labels: list[str], records: list[StageRecord],
                        figs: Path) -> None:
    rows = []
    for lab, s in zip(labels, records):
        c = s.details.get("calibration")
        if c:
            rows.append([lab, c["method"], f"{c['temperature']:.3f}" if "temperature" in c else "-",
                         c["fitted_on"], f"{c['val_ece_before']:.4f}", f"{c['val_ece_after']:.4f}"])
    if rows:
        doc.h2("Post-hoc calibration")
        doc.p("Each map was fitted on the validation split by minimising the NLL (never on test); "
              "the test-set metrics of the calibrated stages are in the tables above.")
        doc.table(["stage", "method", "temperature", "fitted on", "val ECE before",
                   "val ECE after"], rows)
