"""Single compression methods vs the prune -> distill -> int8 pipeline on the quickstart CNN.

Runs ``recipes/prune-distill-int8.yaml`` (or reads a finished run): every single method starts
from the same trained baseline, the pipeline is the recipe's last three stages. All stage models
are then re-timed side by side (alternating rounds) on the server target (PyTorch, batch 64,
2 threads; an ONNX Runtime artifact runs on its own runtime) and the edge target (ONNX Runtime,
batch 1, 1 thread). Threshold: the pipeline's final stage is on the accuracy / server-latency
Pareto front of the baseline, the single methods (stages made from the baseline) and itself.
The front over every stage, two-method combinations included, is printed too.

    .venv/bin/python benchmarks/pipelines.py [--run runs/prune-distill-int8] [--rounds 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import finished_run, side_by_side
from nnopt.data import load_data
from nnopt.measure.base import is_artifact, runtime_of
from nnopt.measure.target import Target
from nnopt.models import load_model
from nnopt.recipe import resolve
from nnopt.report.plots import pareto_front

SERVER = Target(name="server", runtime="torch", batch_size=64, threads=2)
EDGE = Target(name="edge", runtime="onnxruntime", batch_size=1, threads=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/prune-distill-int8")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run = Path(args.run)
    report = finished_run("recipes/prune-distill-int8.yaml", run)
    data = load_data(resolve({"data": {"name": "fashion-mnist", "eval_limit": 1000},
                              "model": {"name": "mlp"}}).data)
    models = {s.name: load_model(run / s.artifact) for s in report.stages}
    server = side_by_side(models, data, [SERVER], args.rounds)["server"]
    edge_ok = {k: m for k, m in models.items()
               if not (is_artifact(m) and runtime_of(m) == "torch")}
    edge = side_by_side(edge_ok, data, [EDGE], args.rounds)["edge"]
    names = [s.name for s in report.stages]
    acc = {s.name: s.metrics["accuracy"] for s in report.stages}
    # a stage starts from its 'from:' stage, else from the stage before it
    sources = [st.get("from") or prev for st, prev in zip(report.recipe["stages"],
                                                          [None, *names[:-1]])]
    final = names[-1]
    single = [n for n, src in zip(names, sources) if n == names[0] or src == names[0]] + [final]

    def front_of(group: list[str]) -> set[str]:
        return {group[i] for i in pareto_front([server[n] for n in group], [acc[n] for n in group])}

    front, front_all = front_of(single), front_of(names)
    base = server["train"]
    print("| stage | step | from | accuracy | server ms | speedup | edge ms | size | front (single "
          "methods + pipeline) | front (all stages) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s, src in zip(report.stages, sources):
        n = s.name
        e = f"{edge[n]:.3f}" if n in edge else "-"
        came = src or "-"
        on = "yes" if n in front else ("" if n in single else "n/a")
        print(f"| {n} | {s.step} | {came} | {100 * acc[n]:.2f}% | {server[n]:.3f} | "
              f"{base / server[n]:.2f}x | {e} | {s.metrics['size_bytes'] / 1024:.0f} KiB | {on} | "
              f"{'yes' if n in front_all else ''} |")
    ok = final in front
    print("PASS" if ok else "FAIL", f"(pipeline's final stage '{final}' on the Pareto front)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
