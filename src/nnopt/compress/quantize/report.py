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
            chosen = q["chosen"]
            picks = ", ".join(f"{t}: {c or 'none'}" for t, c in chosen.items()) \
                if isinstance(chosen, dict) else str(chosen)
            text = f"Method {q.get('method', '-')}; deployed per target: {picks}."
            if q.get("integer_ops") is not None:
                text += (f" The primary target's int8 weights are {q['weight_type']} "
                         f"({q['weight_type_reason']}); quantized operators in its saved graph: "
                         f"{ops or 'none'}; in the graph ONNX Runtime runs after fusion: "
                         f"{run or 'none'}.")
            doc.p(text)
            cands = q.get("candidates") or {}
            if isinstance(cands, dict) and cands:
                doc.p("Every option timed side by side on each target (paired rounds); "
                      "'runs here' is whether the target can run its runtime, 'eligible' "
                      "whether its validation accuracy is within the tolerance of fp32.")
                doc.table(["target", "deployment", "runtime", "precision", "median ms",
                           "p10-p90 ms", "speed-up (p10-p90)", "val accuracy", "runs here",
                           "eligible", "chosen"],
                          [[t, c["deployment"], c["runtime"], c["precision"],
                            f"{c['latency_ms']:.4f}", f"{c['p10_ms']:.4f}-{c['p90_ms']:.4f}",
                            f"{c['speedup']:.2f}x ({c['speedup_p10']:.2f}-"
                            f"{c['speedup_p90']:.2f})" + (" noisy" if c["noisy"] else ""),
                            f"{100 * c['validation_accuracy']:.2f}%",
                            "yes" if c["runs_here"] else "no", "yes" if c["eligible"] else "no",
                            "yes" if chosen.get(t) == c["deployment"] else ""]
                           for t, rows in cands.items() for c in rows])
        rows = s.details.get("deployment")
        if rows:
            doc.h2(f"Runtime effect vs precision effect ({lab})")
            doc.p("Same batch and threads per row, timed side by side. Runtime effect: PyTorch "
                  "fp32 -> the runtime's fp32. Precision effect: the runtime's fp32 -> its "
                  "fastest int8. 'no' means int8 is not faster there and gets no credit for the "
                  "runtime's gain.")
            doc.table(["target", "runtime", "batch", "threads", "torch fp32 ms", "fp32 ms",
                       "int8 ms", "runtime effect", "precision effect", "total", "int8 faster"],
                      [[r["target"], r.get("runtime", "onnxruntime"), str(r["batch_size"]),
                        str(r["threads"]), f"{r['torch_fp32_ms']:.4f}",
                        f"{r.get('fp32_ms', r.get('ort_fp32_ms')):.4f}",
                        f"{r.get('int8_ms', r.get('ort_int8_ms')):.4f}",
                        f"{r['runtime_effect']:.2f}x", f"{r['precision_effect']:.2f}x",
                        f"{r['total']:.2f}x", ("yes" if r["int8_faster"] else "no")
                        + (" (noisy)" if r.get("noisy") else "")] for r in rows])


@register_section
def qat_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    for lab, s in zip(labels, records):
        q = s.details.get("qat")
        if q:
            doc.h2(f"Quantization-aware training ({lab})")
            doc.p(f"Mean weight bits: {q['mean_w_bits']:.2f}; the weight codes packed at their "
                  f"bit widths take {q['packed_weight_bytes'] / 1024:.1f} KiB (computed, "
                  "scales and biases not included).")
            doc.table(["layer", "weight bits", "input bits", "weight SQNR (dB)"],
                      [[n, str(r["w_bits"]), str(r["a_bits"] or "float"), f"{r['sqnr_db']:.1f}"]
                       for n, r in q["layers"].items()])
        mp = s.details.get("mixed_precision")
        if mp:
            doc.h2(f"Mixed precision ({lab})")
            sens = mp["sensitivity"]
            bits = sorted({int(b) for v in sens["layers"].values() for b in v["bits"]})
            doc.p(f"Budget: {mp['budget_bits']} bits per weight on average. Validation accuracy "
                  f"with only that layer quantized (float model: "
                  f"{100 * sens['base_accuracy']:.2f}%), and the bits assigned.")
            doc.table(["layer", "params"] + [f"{b}-bit acc" for b in bits] + ["assigned"],
                      [[n, str(v["params"])] + [f"{100 * v['bits'][b]['accuracy']:.2f}%"
                                                if b in v["bits"] else
                                                f"{100 * v['bits'][str(b)]['accuracy']:.2f}%"
                                                for b in bits] + [str(mp["assigned"][n])]
                       for n, v in sens["layers"].items()])
        sq = s.details.get("weight_sqnr_int8")
        if sq:
            doc.h2(f"Per-layer weight SQNR at int8 ({lab})")
            doc.table(["layer", "SQNR (dB)"], [[n, f"{v:.1f}"] for n, v in sq.items()])
