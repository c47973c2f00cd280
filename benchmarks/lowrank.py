"""Low-rank factorization of LeNet-300-100's dense layers, measured side by side.

Runs ``recipes/factorize.yaml`` (or reads a finished run), then times the baseline and the
factorized, fine-tuned model alternately on the server (PyTorch, batch 64, 2 threads) and edge
(ONNX Runtime, batch 1, 1 thread) targets. Threshold: >= 1.5x on the server target with <= 1.0
point accuracy loss. Either way the per-layer ranks and break-even ranks are printed: the
break-even rank is where a factorized layer stops being cheaper than the dense one.

    .venv/bin/python benchmarks/lowrank.py [--run runs/factorize] [--rounds 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import finished_run, side_by_side
from nnopt.data import load_data
from nnopt.measure.target import Target
from nnopt.models import load_model
from nnopt.recipe import resolve

TARGETS = [Target(name="server", runtime="torch", batch_size=64, threads=2),
           Target(name="edge", runtime="onnxruntime", batch_size=1, threads=1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/factorize")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    run = Path(args.run)
    report = finished_run("recipes/factorize.yaml", run)
    base, fac = report.stages[0], report.stages[1]
    data = load_data(resolve({"data": {"name": "fashion-mnist", "eval_limit": 1000},
                              "model": {"name": "mlp"}}).data)
    models = {"baseline": load_model(run / base.artifact), "factorized": load_model(run / fac.artifact)}
    times = side_by_side(models, data, TARGETS, args.rounds)
    info = fac.details["factorization"]
    print(f"energy kept per layer: {info['energy']}")
    print("| layer | rank | full rank | break-even rank | MACs | low-rank MACs |")
    print("|---|---|---|---|---|---|")
    for name, r in info["layers"].items():
        print(f"| {name} | {r['ranks'][0] if r['apply'] else '- (kept dense)'} | "
              f"{r['full_ranks'][0]} | {r['break_even_rank']} | {r['macs']:,} | "
              f"{r['factorized_macs']:,} |")
    loss = base.metrics["accuracy"] - fac.metrics["accuracy"]
    print(f"\naccuracy {100 * base.metrics['accuracy']:.2f}% -> {100 * fac.metrics['accuracy']:.2f}%"
          f" ({-100 * loss:+.2f} points); MACs {int(base.metrics['macs']):,} -> "
          f"{int(fac.metrics['macs']):,}; params {int(base.metrics['params']):,} -> "
          f"{int(fac.metrics['params']):,}")
    print("| target | baseline ms | factorized ms | speedup |")
    print("|---|---|---|---|")
    for t in TARGETS:
        b, f = times[t.name]["baseline"], times[t.name]["factorized"]
        print(f"| {t.name} ({t.runtime}, b{t.batch_size}, t{t.threads}) | {b:.4f} | {f:.4f} | "
              f"{b / f:.2f}x |")
    speedup = times["server"]["baseline"] / times["server"]["factorized"]
    ok = speedup >= 1.5 and loss <= 0.010
    print("PASS" if ok else "FAIL", "(server >= 1.5x with <= 1.0 point loss)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
