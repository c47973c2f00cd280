"""Report sections for uncertainty: OOD detection per stage and score, ensemble members, the
MC-dropout and Bayesian set-ups."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, register_section

SCORE_NAMES = {"msp": "max softmax", "entropy": "entropy", "energy": "energy",
               "mutual_information": "mutual information"}


@register_section
def ood_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    stages = [(lab, s.details["ood"]) for lab, s in zip(labels, records) if s.details.get("ood")]
    if not stages:
        return
    sets = sorted({name for _, table in stages for name in table})
    scores = [k for k in SCORE_NAMES if any(k in t[n] for _, t in stages for n in t)]
    doc.h2("Out-of-distribution detection")
    doc.p("AUROC (FPR at 95% TPR in brackets) of each score separating the test split from each "
          "OOD set; higher AUROC and lower FPR are better. The headline metric ood_auroc is the "
          "energy score; '-' where a score does not apply (mutual information needs samples, "
          "energy needs unnormalised logits).")
    rows = []
    for lab, table in stages:
        for name in sets:
            cells = [f"{table[name][k]['auroc']:.4f} ({table[name][k]['fpr95']:.3f})"
                     if k in table.get(name, {}) else "-" for k in scores]
            rows.append([lab, name, *cells])
    doc.table(["stage", "OOD set", *[SCORE_NAMES[k] for k in scores]], rows)
    fig, axes = plt.subplots(1, len(sets), figsize=(max(5.0, 0.9 * len(stages) + 3) * len(sets),
                                                    3.6), squeeze=False)
    width = 0.8 / len(scores)
    for ax, name in zip(axes[0], sets):
        xs = np.arange(len(stages))
        for j, k in enumerate(scores):
            vals = [t.get(name, {}).get(k, {}).get("auroc", np.nan) for _, t in stages]
            ax.bar(xs + (j - (len(scores) - 1) / 2) * width, vals, width, label=SCORE_NAMES[k])
        ax.set_xticks(xs, [lab for lab, _ in stages], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0.5, 1.0)
        ax.set_ylabel("AUROC")
        ax.set_title(f"test split vs {name}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    doc.figure(_save(fig, figs / "ood_auroc.png"), "OOD detection AUROC per stage and score "
               "(0.5 is chance)")


@register_section
def members_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    for lab, s in zip(labels, records):
        members = s.details.get("members")
        if not members:
            continue
        doc.h2(f"Ensemble members: {lab}")
        trained = {r["member"]: r.get("trained", "") for r in
                   (s.details.get("ensemble") or {}).get("members", [])}
        doc.p("Each member alone on the test split, against the ensemble (the mean of their "
              "probabilities); the ensemble's size and latency in the tables above are those of "
              "all members together.")
        rows = [[str(r["member"]), trained.get(r["member"], ""), f"{r['accuracy']:.4f}",
                 f"{r['nll']:.4f}", f"{r['ece']:.4f}"] for r in members]
        met = s.metrics
        rows.append(["ensemble", f"{len(members)} members", f"{met.get('accuracy', np.nan):.4f}",
                     f"{met.get('nll', np.nan):.4f}", f"{met.get('ece', np.nan):.4f}"])
        doc.table(["member", "trained", "accuracy", "NLL", "ECE"], rows)


@register_section
def sampling_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    rows = []
    for lab, s in zip(labels, records):
        mc = s.details.get("mc_dropout")
        if mc:
            rows.append([lab, "MC dropout", str(mc["samples"]),
                         "rates " + ", ".join(f"{p:g}" for p in mc["dropout_rates"])
                         + (f"; added before {', '.join(mc['added_before'])}"
                            if mc["added_before"] else "")
                         + ("; fine-tuned with it" if mc["finetuned"] else "")])
    if rows:
        doc.h2("Sampling models")
        doc.p("Stages whose every prediction averages several stochastic passes; their metrics "
              "above are those of the averaged prediction, and their latency includes every pass.")
        doc.table(["stage", "method", "samples", "set-up"], rows)
