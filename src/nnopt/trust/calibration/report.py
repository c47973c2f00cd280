"""Report section for post-hoc calibration: the fitted map and validation ECE before/after."""

from __future__ import annotations

import math
from pathlib import Path

from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, register_section
from nnopt.trust.calibration.records import CalibrationRecord

MAX_PANELS = 12


@register_section
def calibration_section(doc: Doc, labels: list[str], records: list[StageRecord],
                        figs: Path) -> None:
    rows = []
    for lab, s in zip(labels, records):
        c = CalibrationRecord.of(s.details)
        if c:
            acc = (f"{100 * c.val_accuracy_before:.2f}% -> {100 * c.val_accuracy_after:.2f}%"
                   if c.val_accuracy_before is not None and c.val_accuracy_after is not None
                   else "-")
            rows.append([lab, c.method, f"{c.temperature:.3f}" if c.temperature is not None
                         else "-", c.fitted_on, f"{c.val_ece_before:.4f}",
                         f"{c.val_ece_after:.4f}", acc])
    if rows:
        doc.h2("Post-hoc calibration")
        doc.p("Each map was fitted on the validation split (never on test): the scaling maps by "
              "minimising the NLL, histogram binning and isotonic regression one class against "
              "the rest. A deployed artifact (ONNX or int8) gets the map appended to its own "
              "graph. The test-set metrics of the calibrated stages are in the tables above.")
        doc.table(["stage", "method", "temperature", "fitted on", "val ECE before",
                   "val ECE after", "val accuracy"], rows)


@register_section
def reliability_section(doc: Doc, labels: list[str], records: list[StageRecord],
                        figs: Path) -> None:
    stages = [(lab, s.details["reliability"], s.metrics.get("ece"))
              for lab, s in zip(labels, records) if s.details.get("reliability")]
    if not stages:
        return
    shown = stages[:MAX_PANELS]
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plots.subplots(2 * rows, cols, figsize=(3.2 * cols, 4.4 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1] * rows})
    for i, (lab, rel, ece) in enumerate(shown):
        top, bottom = axes[2 * (i // cols)][i % cols], axes[2 * (i // cols) + 1][i % cols]
        width = rel["upper"][0]
        lefts = [u - width for u in rel["upper"]]
        filled = [j for j, n in enumerate(rel["count"]) if n > 0]
        top.bar([lefts[j] for j in filled], [rel["accuracy"][j] for j in filled], width,
                align="edge", edgecolor="black", linewidth=0.5, label="accuracy")
        top.bar([lefts[j] for j in filled],
                [rel["confidence"][j] - rel["accuracy"][j] for j in filled], width,
                bottom=[rel["accuracy"][j] for j in filled], align="edge", color="tab:red",
                alpha=0.3, label="gap to confidence")
        top.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_title(f"{lab}" + (f" (ECE {ece:.4f})" if ece is not None else ""), fontsize=9)
        top.set_ylabel("accuracy", fontsize=8)
        if i == 0:
            top.legend(fontsize=7, loc="upper left")
        bottom.bar(lefts, rel["count"], width, align="edge", color="tab:gray")
        bottom.set_yscale("log")
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("confidence", fontsize=8)
        bottom.set_ylabel("examples", fontsize=8)
    for j in range(len(shown), rows * cols):
        axes[2 * (j // cols)][j % cols].axis("off")
        axes[2 * (j // cols) + 1][j % cols].axis("off")
    fig.tight_layout()
    doc.h2("Reliability")
    note = f" (the first {MAX_PANELS} stages)" if len(stages) > MAX_PANELS else ""
    doc.figure(_save(fig, figs / "reliability.png"),
               "Reliability diagrams (15 equal-width confidence bins: accuracy per bin against the "
               "diagonal) and confidence histograms, per stage" + note)
