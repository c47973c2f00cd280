"""Report sections for uncertainty: OOD detection per stage and score, ensemble members, the
MC-dropout and Bayesian set-ups."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, register_section
from nnopt.trust.uncertainty.records import (
    BayesRecord,
    EnsembleRecord,
    LaplaceRecord,
    McDropoutRecord,
)

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
    fig, axes = plots.subplots(1, len(sets), figsize=(max(4.5, 0.7 * len(stages) + 2) * len(sets),
                                                    3.8), squeeze=False)
    width = 0.8 / len(scores)
    for ax, name in zip(axes[0], sets):
        xs = np.arange(len(stages))
        for j, k in enumerate(scores):
            vals = [t.get(name, {}).get(k, {}).get("auroc", np.nan) for _, t in stages]
            ax.bar(xs + (j - (len(scores) - 1) / 2) * width, vals, width, label=SCORE_NAMES[k])
        ax.set_xticks(xs, [lab for lab, _ in stages], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0.0, 1.0)  # an AUROC below chance must still show
        ax.axhline(0.5, color="0.4", linestyle="--", linewidth=0.8)
        ax.set_ylabel("AUROC")
        ax.set_title(f"test split vs {name}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=len(scores), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    doc.figure(_save(fig, figs / "ood_auroc.png"), "OOD detection AUROC per stage and score "
               "(the dashed line, 0.5, is chance)")


@register_section
def members_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    for lab, s in zip(labels, records):
        members = s.details.get("members")
        if not members:
            continue
        doc.h2(f"Ensemble members: {lab}")
        ensemble = EnsembleRecord.of(s.details)
        trained = {r["member"]: r.get("trained", "") for r in
                   (ensemble.members if ensemble else [])}
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
        mc = McDropoutRecord.of(s.details)
        if mc:
            rows.append([lab, "MC dropout", str(mc.samples),
                         "rates " + ", ".join(f"{p:g}" for p in mc.dropout_rates)
                         + (f"; added before {', '.join(mc.added_before)}"
                            if mc.added_before else "")
                         + ("; fine-tuned with it" if mc.finetuned else "")])
        bnn = BayesRecord.of(s.details)
        if bnn:
            rows.append([lab, "Bayes by Backprop", str(bnn.samples),
                         f"{len(bnn.layers)} variational layers, prior N(0, "
                         f"{bnn.prior_sigma:g}^2), KL weight {bnn.kl_weight:g}, "
                         f"KL/example {bnn.kl_per_example:.3g}, posterior std median "
                         f"{bnn.posterior_sigma_median:.3g}"])
    if rows:
        doc.h2("Sampling models")
        doc.p("Stages whose every prediction averages several stochastic passes; their metrics "
              "above are those of the averaged prediction, and their latency includes every pass.")
        doc.table(["stage", "method", "samples", "set-up"], rows)


@register_section
def laplace_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    stages = [(lab, rec) for lab, s in zip(labels, records)
              if (rec := LaplaceRecord.of(s.details)) is not None]
    if not stages:
        return
    doc.h2("Laplace approximation")
    doc.p("The last layer's posterior N(MAP, (GGN + tau I)^-1), predictions by the probit "
          "approximation; the prior precision tau was chosen by the validation NLL (the last "
          "candidate, tau = 1e12, is the MAP network itself).")
    rows = []
    for lab, info in stages:
        scan = info.scan or []
        chosen = next((r["val_nll"] for r in scan
                       if r["prior_precision"] == info.prior_precision), None)
        rows.append([lab, info.layer, info.hessian, f"{info.prior_precision:.4g}",
                     f"{chosen:.4f}" if chosen is not None else "fixed",
                     f"{scan[-1]['val_nll']:.4f}" if scan else "-"])
    doc.table(["stage", "layer", "curvature", "prior precision", "val NLL", "val NLL of MAP"],
              rows)
    scans = [(lab, info.scan[:-1]) for lab, info in stages if info.scan]
    if scans:
        fig, ax = plots.subplots(figsize=(5, 3.2))
        for lab, scan in scans:
            ax.plot([r["prior_precision"] for r in scan], [r["val_nll"] for r in scan],
                    marker=".", label=lab)
        ax.set_xscale("log")
        ax.set_xlabel("prior precision tau")
        ax.set_ylabel("validation NLL")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        doc.figure(_save(fig, figs / "laplace_prior.png"),
                   "Validation NLL against the prior precision (the choice is the minimum)")
