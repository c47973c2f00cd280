"""The report's first screen: the recommended stage per target and why, the conclusions, and
predicted against measured; then the main table (a few columns, a 'deployed as' per target)."""

from __future__ import annotations

from typing import Any

from nnopt.measure.quantity import fmt
from nnopt.report.doc import Doc
from nnopt.report.model import StageRecord
from nnopt.report.summary import deployed_text

MAIN = ("accuracy", "nll", "ece", "size_bytes", "compressed_size_bytes")


def _speed(r: dict[str, Any]) -> str:
    if r.get("speedup") is None:
        return "-"
    if r.get("noisy"):
        return "not claimed (noisy)"
    text = f"{r['speedup']:.2f}x"
    if "speedup_p10" in r:
        text += f" ({r['speedup_p10']:.2f}-{r['speedup_p90']:.2f})"
    return text


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
    doc.p("Recommended stage per target: the fastest (paired speed-up over the first stage, "
          "timed side by side) that meets " + ", ".join(rules) + ".")
    if recs:
        doc.table(["target", "recommended stage", "deployed as", "latency", "speed-up vs "
                   f"{first} (p10-p90)", "accuracy", "not chosen"],
                  [[r["target"], r["stage"] or "none qualifies",
                    deployed_text(r.get("deployed", {})),
                    fmt("latency_ms/", r.get("latency_ms")), _speed(r),
                    fmt("accuracy", r.get("accuracy")) + (" (this target's artifact)"
                                                          if r.get("own_accuracy") else ""),
                    "; ".join(f"{k}: {v[0]}" for k, v in r.get("rejected", {}).items()) or "-"]
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
            row += [text + (" (noisy)" if lat.get("noisy") else ""),
                    deployed_text(lat.get("deployed", {}))]
        rows.append(row)
    doc.table(header, rows)
