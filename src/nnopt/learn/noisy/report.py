"""Report section for runs on noisy labels: the noise injected, each stage's val-selected and
last-epoch test accuracy, calibration on the clean test labels, how much of the noise each
model memorised, the label-error detection of ``clean_labels``, and the curves per epoch."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from nnopt.learn.noisy.records import CleanLabelsRecord
from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, fmt, register_section


def _rows(labels: list[str], records: list[StageRecord]) -> list[list[str]]:
    rows = []
    for lab, s in zip(labels, records):
        notes = s.details.get("training") or {}
        last = notes.get("last_epoch")
        if not last:
            continue
        best_epoch = notes.get("best_epoch", last["epoch"])
        objective = notes.get("objective", "")
        if s.step == "clean_labels":
            objective = f"confident learning, then {objective}"
        rows.append([lab, objective, str(best_epoch), fmt("accuracy", s.metrics.get("accuracy")),
                     str(last["epoch"]), fmt("accuracy", last["test_accuracy"]),
                     f"{last['test_ece']:.4f}", f"{last['test_nll']:.4f}",
                     fmt("accuracy", last.get("noisy_fit")),
                     fmt("accuracy", last.get("memorised"))])
    return rows


@register_section
def noisy_labels_section(doc: Doc, labels: list[str], records: list[StageRecord],
                         figs: Path) -> None:
    rows = _rows(labels, records)
    if not rows:
        return
    doc.h2("Noisy labels")
    doc.p("The training and validation labels were corrupted on purpose (see the data line for "
          "the noise requested and realised); the test split is clean. 'selected' is the model "
          "the stage returned (its best epoch on the noisy validation split, or its last epoch "
          "if select_best is off): its calibration is in the stage table above. 'last' is the "
          "last epoch's model on the clean test split. 'fits noisy labels' is the training "
          "accuracy against the given labels, 'memorised' the share of the corrupted training "
          "labels the model reproduces (both at the last epoch, eval mode). The test split was "
          "never used to select anything.")
    doc.table(["stage", "objective", "selected epoch", "selected test acc", "last epoch",
               "last test acc", "last ECE", "last NLL", "fits noisy labels", "memorised"], rows)
    det = [(lab, d) for lab, s in zip(labels, records)
           if (d := CleanLabelsRecord.of(s.details)) is not None and d.detection]
    if det:
        doc.p("Label-error detection (confident learning on out-of-sample probabilities) against "
              "the injected errors:")
        doc.table(["stage", "filter", "flagged", "corrupted", "precision", "recall", "kept"],
                  [[lab, d.filter_by, str(d.detection["flagged"]),
                    str(d.detection["corrupted"]), f"{d.detection['precision']:.3f}",
                    f"{d.detection['recall']:.3f}", str(d.kept)] for lab, d in det])
    curves = [(f"{lab}: {(s.details.get('training') or {}).get('objective', '')}",
               s.details["history"]) for lab, s in zip(labels, records)
              if s.details.get("history") and "noisy_fit" in s.details["history"][0]]
    if curves:
        fig, (ax_t, ax_m) = plots.subplots(1, 2, figsize=(12, 4))
        for lab, hist in curves:
            ep = [h["epoch"] for h in hist]
            line, = ax_t.plot(ep, [100 * h["test_accuracy"] for h in hist], marker=".",
                              label=lab)  # a marker: one epoch is a point, not a line
            ax_m.plot(ep, [100 * h["noisy_fit"] for h in hist], color=line.get_color(),
                      marker=".", label=lab)
        ax_t.set(xlabel="epoch", ylabel="accuracy (%)", title="clean test accuracy")
        ax_m.set(xlabel="epoch", ylabel="accuracy (%)",
                 title="training accuracy on the noisy labels")
        for ax in (ax_t, ax_m):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        ax_m.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        fig.tight_layout()
        doc.figure(_save(fig, figs / "noisy_labels.png"), "Per epoch: clean test accuracy "
                   "(recorded, never used to select) and the fit to the noisy training labels; "
                   "a rising right curve with a falling left one is memorisation of the noise")
