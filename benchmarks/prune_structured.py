"""Structured pruning speedup: baseline vs channel-pruned CNN, measured side by side.

Runs ``recipes/prune-channels.yaml`` (unless ``--run DIR`` points at a finished run), then loads
the trained baseline and the pruned, fine-tuned model and times both, alternating, on the server
target (PyTorch, batch 64, 2 threads) and the edge target (ONNX Runtime, batch 1, 1 thread).
Thresholds: server speedup >= 2.0x, edge >= 1.5x, accuracy drop <= 1.0 point.

    .venv/bin/python benchmarks/prune_structured.py [--run runs/prune-channels] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import finished_run, side_by_side
from nnopt.data import load_data
from nnopt.measure.target import Target
from nnopt.models import load_model
from nnopt.recipe import resolve

TARGETS = [Target(name="server", runtime="torch", batch_size=64, threads=2),
           Target(name="edge", runtime="onnxruntime", batch_size=1, threads=1)]
NEED = {"server": 2.0, "edge": 1.5}
MAX_DROP = 0.010


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/prune-channels")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    run = Path(args.run)
    report = finished_run("recipes/prune-channels.yaml", run)
    acc = {s.name: s.metrics["accuracy"] for s in report.stages}
    data = load_data(resolve({"data": {"name": "fashion-mnist", "eval_limit": 1000},
                              "model": {"name": "mlp"}}).data)
    models = {"train": load_model(run / "models/train"), "prune": load_model(run / "models/prune")}
    times = side_by_side(models, data, TARGETS, args.rounds)
    result = {"accuracy_baseline": acc["train"], "accuracy_pruned": acc["prune"],
              "accuracy_drop_points": round(100 * (acc["train"] - acc["prune"]), 2),
              "params": [s.metrics["params"] for s in report.stages],
              "macs": [s.metrics["macs"] for s in report.stages], "targets": {}}
    ok = acc["train"] - acc["prune"] <= MAX_DROP
    for t in TARGETS:
        base, pruned = times[t.name]["train"], times[t.name]["prune"]
        result["targets"][t.name] = {"runtime": t.runtime, "batch": t.batch_size,
                                     "threads": t.threads, "baseline_ms": round(base, 4),
                                     "pruned_ms": round(pruned, 4),
                                     "speedup": round(base / pruned, 2), "needed": NEED[t.name]}
        ok &= base / pruned >= NEED[t.name]
    print(json.dumps(result, indent=2))
    if not ok:
        print("FAIL: a speedup or the accuracy drop misses its threshold", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
