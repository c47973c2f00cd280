"""Report sections for deployment: export equivalence, runtime vs precision effect, choice."""

from __future__ import annotations

from pathlib import Path

from nnopt.report.model import StageRecord
from nnopt.report.render import Doc, register_section


@register_section
def deployment_section(doc: Doc, labels: list[str], records: list[StageRecord],
                       figs: Path) -> None:
    exports = [(lab, s.details["export"]) for lab, s in zip(labels, records)
               if s.details.get("export")]
    if exports:
        doc.h2("Deployed artifact vs its source")
        doc.table(["stage", "images", "max |logit diff|", "top-1 agreement"],
                  [[lab, str(e["images"]), f"{e['max_abs_diff']:.2e}",
                    f"{100 * e['top1_agreement']:.2f}%"] for lab, e in exports])
    for lab, s in zip(labels, records):
        q = s.details.get("quantization")
        if q:
            doc.h2(f"Quantization ({lab})")
            ops = ", ".join(f"{k} x{v}" for k, v in (q.get("integer_ops") or {}).items())
            run = ", ".join(f"{k} x{v}" for k, v in (q.get("integer_ops_as_run") or {}).items())
            doc.p(f"Chosen deployment: {q['chosen']}. Weights: {q['weight_type']} "
                  f"({q['weight_type_reason']}). Quantized operators in the saved graph: "
                  f"{ops or 'none'}; in the graph ONNX Runtime runs after fusion: "
                  f"{run or 'none'}.")
            if q.get("candidates"):
                doc.table(["deployment", "target", "latency ms", "val accuracy", "eligible"],
                          [[c["deployment"], c["target"], f"{c['latency_ms']:.4f}",
                            f"{100 * c['validation_accuracy']:.2f}%",
                            "yes" if c["eligible"] else "no"] for c in q["candidates"]])
        rows = s.details.get("deployment")
        if rows:
            doc.h2(f"Runtime effect vs precision effect ({lab})")
            doc.p("Same batch and threads per row. Runtime effect: PyTorch fp32 -> ONNX Runtime "
                  "fp32. Precision effect: ONNX Runtime fp32 -> int8. 'no' means int8 is not "
                  "faster there and gets no credit for the runtime's gain.")
            doc.table(["target", "batch", "threads", "torch fp32 ms", "ORT fp32 ms",
                       "ORT int8 ms", "runtime effect", "precision effect", "total",
                       "int8 faster"],
                      [[r["target"], str(r["batch_size"]), str(r["threads"]),
                        f"{r['torch_fp32_ms']:.4f}", f"{r['ort_fp32_ms']:.4f}",
                        f"{r['ort_int8_ms']:.4f}", f"{r['runtime_effect']:.2f}x",
                        f"{r['precision_effect']:.2f}x", f"{r['total']:.2f}x",
                        "yes" if r["int8_faster"] else "no"] for r in rows])
