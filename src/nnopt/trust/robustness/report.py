"""Report sections for robustness: attacks per stage with their cost, robustness curves, the
gradient-masking check, and the corruption suite."""

from __future__ import annotations

from pathlib import Path

from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, register_section

ORDER = ("fgsm", "pgd", "pgd_l2", "pgd_targeted", "apgd", "cw_l2", "square", "transfer")


@register_section
def robustness_section(doc: Doc, labels: list[str], records: list[StageRecord],
                       figs: Path) -> None:
    stages = [(lab, s) for lab, s in zip(labels, records) if s.details.get("robustness")]
    if not stages:
        return
    first = stages[0][1].details["robustness"]
    attacks = [a for a in ORDER if any(f"robust_accuracy/{a}" in s.metrics for _, s in stages)]
    doc.h2("Adversarial robustness")
    doc.p(f"Accuracy on the first {first['examples']} test images under each attack (L-inf eps "
          f"{first['eps']:g}, L2 eps {first['eps_l2']:g}; an image counts only if classified "
          "correctly both clean and attacked). pgd_targeted counts the true class kept; transfer "
          "examples are PGD examples of the run's first model. In brackets: the attack's cost in "
          "seconds per 1,000 images.")
    rows = []
    for lab, s in stages:
        rob = s.details["robustness"]
        cells = []
        for a in attacks:
            v = s.metrics.get(f"robust_accuracy/{a}")
            cost = rob["attacks"].get(a, {}).get("seconds_per_1000")
            cells.append("-" if v is None else f"{100 * v:.1f}% ({cost:.1f} s)")
        rows.append([lab, f"{100 * s.metrics['clean_accuracy_attacked']:.1f}%", *cells,
                     rob["gradients"]])
    doc.table(["stage", "clean", *attacks, "white-box gradients"], rows)
    flagged = [(lab, f) for lab, s in stages
               for f in s.details["robustness"].get("masking_flags", [])]
    checked = [lab for lab, s in stages if "masking_flags" in s.details["robustness"]]
    if checked:
        doc.p("Gradient-masking check (black-box or transfer attacks must not beat white-box "
              "ones; PGD accuracy must fall to ~0 at a large eps): "
              + ("; ".join(f"**{lab}**: {f}" for lab, f in flagged) if flagged
                 else f"passed for {', '.join(checked)}."))
    curves = {}
    for lab, s in stages:
        rob = s.details["robustness"]
        found = rob.get("curves") or ({"pgd": rob["curve"]} if rob.get("curve") else {})
        for attack, curve in found.items():
            curves.setdefault(attack, []).append((lab, curve))
    if curves:
        fig, axes = plots.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4),
                                 squeeze=False, sharey=True)
        for ax, (attack, lines) in zip(axes[0], curves.items()):
            for lab, curve in lines:
                ax.plot([e for e, _ in curve], [100 * a for _, a in curve], marker="o",
                        label=lab)
            ax.set_title(attack, fontsize=9)
            ax.set_xlabel("L-inf eps")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("accuracy under attack (%)")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        doc.figure(_save(fig, figs / "robustness_curves.png"),
                   "Robustness curves: accuracy against the budget, per attack and stage")


@register_section
def corruption_section(doc: Doc, labels: list[str], records: list[StageRecord],
                       figs: Path) -> None:
    stages = [(lab, s) for lab, s in zip(labels, records) if s.details.get("corruption")]
    if not stages:
        return
    types = list(stages[0][1].details["corruption"]["table"])
    doc.h2("Common corruptions")
    doc.p(f"Accuracy on the first {stages[0][1].details['corruption']['examples']} test images "
          "under each corruption, averaged over its severities; 'mean' averages every type.")
    rows = []
    for lab, s in stages:
        c = s.details["corruption"]
        rows.append([lab, f"{100 * c['clean_accuracy']:.1f}%",
                     f"{100 * s.metrics['corruption_accuracy']:.1f}%",
                     *[f"{100 * s.metrics.get(f'corruption_accuracy/{t}', float('nan')):.1f}"
                       for t in types]])
    doc.table(["stage", "clean", "mean", *types], rows)
    fig, ax = plots.subplots(figsize=(5.5, 3.6))
    for lab, s in stages:
        table = s.details["corruption"]["table"]
        sev = sorted({int(k) for row in table.values() for k in row})
        mean = [100 * sum(row[str(v)] for row in table.values()) / len(table) for v in sev]
        ax.plot([0, *sev], [100 * s.details["corruption"]["clean_accuracy"], *mean],
                marker="o", label=lab)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("accuracy, mean over types (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    doc.figure(_save(fig, figs / "corruption_severity.png"),
               "Accuracy against corruption severity, averaged over the corruption types")
