"""Report sections for pruning: sparsity per layer, pre-flight, sensitivity, lottery, channels."""

from __future__ import annotations

from pathlib import Path

from nnopt.compress.prune.records import PruningRecord
from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, register_section


def _short(name: str) -> str:
    return name.removesuffix(".weight")


@register_section
def sparsity_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    stages = [(lab, s.details["sparsity"]) for lab, s in zip(labels, records)
              if s.details.get("sparsity")]
    if not stages:
        return
    doc.h2("Sparsity per layer")
    for lab, s in zip(labels, records):
        rec = PruningRecord.of(s.details)
        if rec is not None and rec.global_sparsity is not None:
            doc.p(f"{lab}: {rec.method} pruning, {rec.pattern} pattern, ranked per "
                  f"{rec.scope}: {100 * rec.global_sparsity:.1f}% of the pruned layers' "
                  "weights are zero.")
    layers = list(dict.fromkeys(k for _, sp in stages for k in sp))
    doc.table(["layer"] + [lab for lab, _ in stages],
              [[_short(k)] + [f"{100 * sp[k]:.1f}%" if k in sp else "-" for _, sp in stages]
               for k in layers])
    fig, ax = plots.subplots(figsize=(max(5, 0.6 * len(layers) * len(stages) + 2), 3.6))
    width = 0.8 / len(stages)
    for i, (lab, sp) in enumerate(stages):
        ax.bar([j + i * width for j in range(len(layers))],
               [100 * sp.get(k, 0) for k in layers], width, label=lab)
    ax.set_xticks([j + width * (len(stages) - 1) / 2 for j in range(len(layers))],
                  [_short(k) for k in layers], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("zeros (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    ax.set_title("sparsity per layer")
    doc.figure(_save(fig, figs / "sparsity_per_layer.png"), "Share of zero weights per layer")


@register_section
def preflight_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    rows = []
    for lab, s in zip(labels, records):
        for r in s.details.get("preflight", []):
            if r.get("skipped"):
                rows.append([lab, r["target"], r["runtime"], "-", "-", "-", "-", "-", "-",
                             f"not measured: {r['skipped']}"])
                continue
            rows.append([lab, r["target"], r["runtime"], str(r["batch_size"]), str(r["threads"]),
                         f"{r['dense_ms']:.4f}", f"{r['sparse_ms']:.4f}",
                         f"{r['speedup']:.2f}x" if r.get("speedup") else "-",
                         "yes" if r["pays_off"] else "NO", r["method"]])
    if rows:
        doc.h2("Will sparsity be faster here? (pre-flight)")
        doc.p("Measured before fine-tuning, at the requested sparsity, on each target's runtime, "
              "batch and threads: the prunable layers timed dense and on the sparse kernel the "
              "runtime has. 'NO' means the sparse path is not at least 5% faster there.")
        doc.table(["stage", "target", "runtime", "batch", "threads", "dense ms", "sparse ms",
                   "speedup", "pays off", "how"], rows)
        notes = [n for s in records for r in s.details.get("preflight", [])
                 if (n := r.get("note"))]
        for note in dict.fromkeys(notes):
            doc.p(note)


@register_section
def sensitivity_section(doc: Doc, labels: list[str], records: list[StageRecord],
                        figs: Path) -> None:
    scans = [(lab, s.details["sensitivity"]) for lab, s in zip(labels, records)
             if s.details.get("sensitivity")]
    for lab, scan in scans:
        doc.h2(f"Sensitivity ({lab})")
        fig, ax = plots.subplots(figsize=(6, 3.8))
        for name, curve in scan["curves"].items():
            ax.plot([100 * c[0] for c in curve], [100 * c[1] for c in curve], marker=".",
                    label=_short(name))
        ax.axhline(100 * (scan["base_accuracy"] - scan["tolerance"]), ls="--", color="grey",
                   label="tolerance")
        ax.set(xlabel="sparsity of that layer alone (%)", ylabel="validation accuracy (%)",
               title="per-layer sensitivity")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        doc.figure(_save(fig, figs / f"sensitivity_{lab}.png"),
                   "Validation accuracy as each layer alone is pruned by magnitude")
        doc.table(["layer", "derived amount"],
                  [[_short(k), f"{100 * v:.0f}%"] for k, v in scan["derived"].items()])


@register_section
def lottery_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    for lab, s in zip(labels, records):
        lot = s.details.get("lottery")
        if not lot:
            continue
        rows = lot["rows"]
        doc.h2(f"Lottery ticket ({lab})")
        doc.table(["round", "weights left", "ticket test acc", "random re-init test acc"],
                  [[str(r["round"]), f"{100 * r['remaining']:.1f}%",
                    f"{100 * r['ticket_test_accuracy']:.2f}%",
                    f"{100 * r['random_test_accuracy']:.2f}%" if "random_test_accuracy" in r
                    else "-"] for r in rows])
        fig, ax = plots.subplots(figsize=(6, 3.8))
        ax.plot([100 * r["remaining"] for r in rows],
                [100 * r["ticket_test_accuracy"] for r in rows], marker="o", label="ticket (rewound)")
        rand = [r for r in rows if "random_test_accuracy" in r]
        if rand:
            ax.plot([100 * r["remaining"] for r in rand],
                    [100 * r["random_test_accuracy"] for r in rand], marker="s",
                    label="random re-init, same masks")
        ax.set_xscale("log")
        ax.set_xticks([100, 50, 20, 10, 5, 2, 1], ["100", "50", "20", "10", "5", "2", "1"])
        ax.invert_xaxis()
        ax.set(xlabel="weights remaining (%)", ylabel="test accuracy (%)", title="lottery ticket")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        doc.figure(_save(fig, figs / f"lottery_{lab}.png"),
                   "Ticket vs random re-initialisation across sparsity")


@register_section
def channels_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    rows = [[lab, _short(k), str(v[0]), str(v[1])] for lab, s in zip(labels, records)
            for k, v in (s.details.get("channels") or {}).items()]
    if rows:
        doc.h2("Channels removed")
        doc.table(["stage", "layer", "out channels before", "after"], rows)


@register_section
def heads_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    rows = [[lab, k, f"{v['heads'][0]} -> {v['heads'][1]}", f"{v['ffn'][0]} -> {v['ffn'][1]}"]
            for lab, s in zip(labels, records) for k, v in (s.details.get("heads") or {}).items()]
    if rows:
        doc.h2("Attention heads and FFN neurons removed")
        for lab, s in zip(labels, records):
            rec = PruningRecord.of(s.details)
            if rec is not None and rec.method == "heads":
                doc.p(f"{lab}: per layer, the least important heads and FFN neurons by "
                      f"{rec.importance} importance were removed (rows of the query, key, value "
                      "and FFN input projections, columns of the output projections).")
        doc.table(["stage", "layer", "heads", "FFN neurons"], rows)
