"""Latency stability: the same model measured twice back to back on each target.

Uses nnopt's own latency measurement (warm-up, at least 50 timed calls and 0.5 s, median) on the
quickstart CNN for the quickstart's targets plus a 1-thread PyTorch batch-1 target. The figure is
the relative difference of the two medians; the acceptance threshold is < 10%. It also checks
that the ONNX Runtime model agrees with PyTorch (max abs difference of logits).

    .venv/bin/python benchmarks/latency_stability.py [--model-dir runs/quickstart/models/train]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from nnopt.data import load_data
from nnopt.measure import Measurement
from nnopt.measure.latency import measure_target
from nnopt.measure.runtimes import export_onnx, ort_session
from nnopt.measure.target import Target
from nnopt.models import build_model, load_model
from nnopt.recipe import resolve

THRESHOLD = 0.10
TARGETS = [Target(name="edge-ort-b1-t1", runtime="onnxruntime", batch_size=1, threads=1),
           Target(name="torch-b1-t1", runtime="torch", batch_size=1, threads=1),
           Target(name="server-torch-b64-t2", runtime="torch", batch_size=64, threads=2)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default="runs/quickstart/models/train")
    args = ap.parse_args()
    r = resolve({"data": {"name": "fashion-mnist", "eval_limit": 1000},
                 "model": {"name": "cnn", "width": 32, "depth": 2}})
    data = load_data(r.data)
    if (Path(args.model_dir) / "spec.json").is_file():
        model, source = load_model(args.model_dir), args.model_dir
    else:
        torch.manual_seed(0)
        model = build_model(r.model, data.input_shape, data.num_classes, data.mean, data.std)
        source = "untrained quickstart CNN (latency does not depend on dense weight values)"
    model.eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        m = Measurement(model, data, TARGETS, Path(tmp))
        onnx = export_onnx(model, Path(tmp) / "model.onnx", m.example(1))
        x = m.example(256)
        got = torch.from_numpy(ort_session(onnx, 1).run(None, {"input": x.numpy()})[0])
        with torch.inference_mode():
            diff = (got - model(x)).abs().max().item()
        for t in TARGETS:
            a, b = measure_target(m, t), measure_target(m, t)
            rel = abs(a["median_ms"] - b["median_ms"]) / min(a["median_ms"], b["median_ms"])
            rows.append({"target": t.name, "runtime": t.runtime, "batch": t.batch_size,
                         "threads": t.threads, "median_ms_1": round(a["median_ms"], 4),
                         "median_ms_2": round(b["median_ms"], 4),
                         "p10_p90_ms_1": [round(a["p10_ms"], 4), round(a["p90_ms"], 4)],
                         "calls": [a["repeats"], b["repeats"]], "rel_diff": round(rel, 4)})
    print(json.dumps({"model": source, "onnx_vs_torch_max_abs_diff": diff, "targets": rows},
                     indent=2))
    bad = [row["target"] for row in rows if row["rel_diff"] >= THRESHOLD]
    if bad:
        print(f"FAIL: back-to-back medians differ by >= {THRESHOLD:.0%} on {', '.join(bad)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
