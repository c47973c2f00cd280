"""The report's first screen: the recommended stage per target and why, the conclusions, and
predicted against measured; then the main table (a few columns, a 'deployed as' per target)."""

from __future__ import annotations

from typing import Any

from nnopt.measure.quantity import fmt
from nnopt.report.doc import Doc
from nnopt.report.model import StageRecord
from nnopt.report.summary import deployed_text, not_chosen, ship_text, speed_text

MAIN = ("accuracy", "nll", "ece", "size_bytes", "compressed_size_bytes")


def answer(doc: Doc, summary: dict[str, Any], first: str) -> None:
    """Recommendations, conclusions and predictions of a run's summary."""
    recs = summary.get("recommendations") or []
    if not recs and not summary.get("conclusions"):
        return
    doc.h2("Answer")
    dec = summary.get("decide") or {}
    rules = [f"accuracy within {100 * dec.get('max_accuracy_drop', 0.01):.2f} pt of {first}"]
    rules += [f"{k.replace('_', ' ')} {v}" for k, v in dec.items()
              if v is not None and k not in ("max_accuracy_drop", "robust_attack")]
    n = next((r["test_examples"] for r in recs if r.get("test_examples")), None)
    doc.p("Recommended stage per target: the fastest (paired speed-up over the first stage, "
          "timed side by side) that meets " + ", ".join(rules) + "; ship the files named"
          + (f"; accuracies rest on {n:,} test examples (95% interval)" if n else "") + ".")
    if recs:
        doc.table(["target", "recommended stage", "deployed as", "ship", "latency",
                   f"speed-up vs {first} (p10-p90)", "accuracy", "not chosen"],
                  [[r["target"], r["stage"] or "none qualifies",
                    deployed_text(r.get("deployed", {})), ship_text(r.get("deployed", {})),
                    fmt("latency_ms/", r.get("latency_ms")), speed_text(r),
                    _accuracy(r), "; ".join(f"{k}: {v}" for k, v in not_chosen(r).items())
                    or "-"]
                   for r in recs])
    doc.ul(summary.get("conclusions") or [])
    preds = summary.get("predictions") or []
    if preds:
        doc.p("Predicted against measured (a noisy measurement is marked):")
        doc.table(["stage", "target", "prediction", "predicted", "measured", "measured / "
                   "predicted"],
                  [[p["stage"], p["target"], p["prediction"], _num(p["predicted"], p["unit"]),
                    _num(p["measured"], p["unit"]) + (" noisy" if p.get("noisy") else ""),
                    f"{p['measured'] / p['predicted']:.2f}" if p["predicted"] else "-"]
                   for p in preds])


def _accuracy(r: dict[str, Any]) -> str:
    text = fmt("accuracy", r.get("accuracy"))
    if r.get("accuracy_ci95"):
        lo, hi = r["accuracy_ci95"]
        text += f" ({100 * lo:.2f}-{100 * hi:.2f})"
    return text + (" (this target's artifact)" if r.get("own_accuracy") else "")


def _num(v: float, unit: str) -> str:
    return f"{v:.3f} ms" if unit == "ms" else f"{v:.2f}x"


def main_table(doc: Doc, labels: list[str], records: list[StageRecord],
               targets: list[str]) -> None:
    """Stage, step, the main quality and size metrics, and per target the latency and how the
    stage was deployed there."""
    cols = [c for c in MAIN if any(c in r.metrics for r in records)]
    header = ["stage", "step"] + cols
    for t in targets:
        header += [f"{t} latency", f"{t} deployed as"]
    rows = []
    for lab, s in zip(labels, records):
        row = [lab, s.step] + [fmt(c, s.metrics.get(c)) for c in cols]
        for t in targets:
            lat = (s.details.get("latency") or {}).get(t) or {}
            text = fmt("latency_ms/", lat.get("median_ms")) if "median_ms" in lat else "-"
            how = (s.details.get("deployed") or {}).get(t) or lat.get("deployed", {})
            size = f", {fmt('size_bytes', how['size_bytes'])}" if how.get("size_bytes") else ""
            row += [text + (" (noisy)" if lat.get("noisy") else ""), deployed_text(how) + size]
        rows.append(row)
    doc.table(header, rows)
