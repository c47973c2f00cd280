"""Report section for low-rank factorization: ranks, MACs and break-even rank per layer."""

from __future__ import annotations

from pathlib import Path

from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, register_section


@register_section
def factorization_section(doc: Doc, labels: list[str], records: list[StageRecord],
                          figs: Path) -> None:
    stages = [(lab, s.details["factorization"]) for lab, s in zip(labels, records)
              if s.details.get("factorization")]
    if not stages:
        return
    doc.h2("Low-rank factorization")
    doc.p("Ranks per layer with the multiply-accumulates (per example) before and after. A layer "
          "is factorized only where its low-rank form needs at most max_cost of its MACs; the "
          "break-even rank is the largest rank at which the low-rank form is no more expensive "
          "than the original, so a rank above it can never pay off.")
    rows = []
    for lab, f in stages:
        for name, r in f["layers"].items():
            rows.append([lab, name, r["method"], "x".join(map(str, r["ranks"])),
                         "x".join(map(str, r["full_ranks"])), str(r["break_even_rank"]),
                         f"{r['macs']:,}", f"{r['factorized_macs']:,}",
                         "yes" if r["apply"] else "no (not cheaper)"])
    doc.table(["stage", "layer", "method", "rank", "full rank", "break-even rank", "MACs",
               "low-rank MACs", "factorized"], rows)
    for lab, s in zip(labels, records):
        trace = (s.details.get("rank_budget") or {}).get("trace")
        if trace:
            fig, ax = plots.subplots(figsize=(5.5, 3.4))
            ax.plot([e for e, _ in trace], [c for _, c in trace], marker="o")
            ax.axvline(s.details["rank_budget"]["energy"], color="tab:red", ls="--",
                       label="chosen energy")
            ax.set_xlabel("singular-value energy kept")
            ax.set_ylabel("share of the budgeted cost")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            safe = lab.replace("/", "_")
            doc.figure(_save(fig, figs / f"rank_budget_{safe}.png"),
                       f"{lab}: cost against the energy kept per layer")
