"""Report section for self-supervised runs: each stage's protocol beside its accuracy, k-NN
accuracy and collapse check; the monitor's curves over pre-training epochs; the test embeddings
projected on their first two principal components, coloured by class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, fmt, register_section


def protocol(s: StageRecord) -> str:
    pre, fine = s.details.get("pretrain"), s.details.get("finetune")
    if pre:
        bf16 = " (bf16 autocast)" if pre.get("precision") == "bf16" else ""
        views = pre.get("views", 2)
        crops = f", multi-crop: {views} views per image" if views > 2 else ""
        return (f"{pre['method']} pre-training{bf16}, {pre['epochs']} epochs on "
                f"{pre['examples']} unlabelled inputs{crops}")
    if fine:
        what = (f"linear probe (lr {fine['probe']['lr']:g}, {fine['probe']['epochs']} steps)"
                if fine["mode"] == "probe" else
                f"full fine-tuning ({fine['train']['epochs']} epochs, lr "
                f"{fine['train']['lr']:g}"
                + (f", encoder lr x{fine['train']['encoder_lr']:g}"
                   if fine["train"].get("encoder_lr", 1.0) != 1.0 else "")
                + (", augmented views" if fine["train"].get("augment") else "")
                + (", bf16 autocast" if fine["train"].get("precision") == "bf16" else "") + ")")
        if fine.get("fixmatch"):
            fm = fine["fixmatch"]
            what += (f" + FixMatch on {fm['unlabelled']} unlabelled inputs (ratio {fm['ratio']}, "
                     f"threshold {fm['threshold']:g}; {100 * fm['mask_rate_last_epoch']:.0f}% "
                     "of pseudo-labels confident in the last epoch)")
        start = "" if s.details.get("from") != "input" else (
            "semi-supervised from scratch: " if fine.get("fixmatch") else
            "supervised from scratch: ")
        return f"{start}{what} on {fine['labels']} labels (seed {fine['label_seed']})"
    return ""


def _curves(doc: Doc, stages: list[tuple[str, list[dict[str, Any]]]], figs: Path) -> None:
    fig, (ax_a, ax_s) = plots.subplots(1, 2, figsize=(10, 3.6))
    for lab, hist in stages:
        pts = [h for h in hist if "knn_accuracy" in h]
        ep = [h["epoch"] for h in pts]
        line, = ax_a.plot(ep, [100 * h["probe_accuracy"] for h in pts], marker=".",
                          label=f"{lab}: linear probe")
        ax_a.plot(ep, [100 * h["knn_accuracy"] for h in pts], ls="--", marker=".",
                  color=line.get_color(), label=f"{lab}: k-NN")
        ax_s.plot(ep, [h["embedding_std"] for h in pts], marker=".", label=lab)
    ax_a.set(xlabel="pre-training epoch", ylabel="validation accuracy (%)",
             title="embedding quality during pre-training")
    ax_s.set(xlabel="pre-training epoch", ylabel="std x sqrt(dim)", ylim=(0, None),
             title="collapse check (0 = collapsed)")
    for ax in (ax_a, ax_s):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    doc.figure(_save(fig, figs / "pretrain_monitor.png"), "Linear-probe and k-NN accuracy on "
               "the validation split (labelled bank of the monitor's size) and the collapse "
               "check, per pre-training epoch")


def _pca(doc: Doc, stages: list[tuple[str, dict[str, Any]]], figs: Path) -> None:
    stages = stages[:4]
    fig, axes = plots.subplots(1, len(stages), figsize=(3.6 * len(stages), 3.6), squeeze=False)
    for ax, (lab, pca) in zip(axes[0], stages):
        xy = list(zip(*pca["xy"]))
        sc = ax.scatter(xy[0], xy[1], c=pca["labels"], cmap="tab10", s=4, vmin=-0.5,
                        vmax=9.5)
        ax.set_title(lab, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes[0].tolist(), ticks=range(10), label="class", shrink=0.8)
    doc.figure(_save(fig, figs / "embedding_pca.png"), "Test embeddings on their first two "
               "principal components, coloured by the true class")


@register_section
def ssl_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    rows = [[lab, protocol(s), fmt("accuracy", s.metrics.get("accuracy")),
             fmt("accuracy", s.metrics.get("knn_accuracy")),
             f"{s.metrics['embedding_std']:.3f}" if "embedding_std" in s.metrics else "-"]
            for lab, s in zip(labels, records)
            if s.details.get("pretrain") or s.details.get("finetune")]
    if not rows:
        return
    doc.h2("Self-supervised pre-training and few labels")
    doc.p("Pre-training sees the training inputs only; its stage's accuracy is that of an "
          "untrained classifier. k-NN: k = 200, cosine similarity, votes weighted by "
          "exp(s / 0.07), the whole labelled training split as memory bank. Fine-tuning on few "
          "labels keeps its last epoch (no validation split). A 'from: input' fine-tuning is "
          "supervised training from scratch on the same labels.")
    doc.table(["stage", "protocol", "test accuracy", "k-NN accuracy", "embedding std"], rows)
    curves = [(lab, s.details["history"]) for lab, s in zip(labels, records)
              if s.details.get("pretrain") and any("knn_accuracy" in h
                                                   for h in s.details.get("history", []))]
    if curves:
        _curves(doc, curves, figs)
    pcas = [(lab, s.details["embedding_pca"]) for lab, s in zip(labels, records)
            if s.details.get("embedding_pca")]
    if pcas:
        _pca(doc, pcas, figs)
