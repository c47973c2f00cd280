"""Pre-flight summary of a sparsity sweep: dense vs sparse time per target and level, and whether
the warning fired exactly where the sparse path was not faster.

    .venv/bin/nnopt sweep recipes/prune-sparsity.yaml --out runs/sparsity-sweep \\
        --grid stages.1.prune.amount=0.5,0.9,0.95,0.98
    .venv/bin/python benchmarks/preflight_summary.py runs/sparsity-sweep
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nnopt.report import load_report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", nargs="?", default="runs/sparsity-sweep")
    args = ap.parse_args()
    sweep = json.loads((Path(args.sweep) / "sweep.json").read_text())
    rows, consistent = [], True
    for v in sweep["variants"]:
        stage = next(s for s in load_report(v["out"]).stages if s.step == "prune")
        warnings = stage.details.get("warnings", [])
        for r in stage.details["preflight"]:
            warned = any(f"'{r['target']}'" in w for w in warnings)
            consistent &= warned == (not r["pays_off"])
            rows.append({"amount": list(v["values"].values())[0], "target": r["target"],
                         "runtime": r["runtime"], "batch": r["batch_size"],
                         "threads": r["threads"], "dense_ms": round(r["dense_ms"], 4),
                         "sparse_ms": round(r["sparse_ms"], 4), "pays_off": r["pays_off"],
                         "warned": warned, "accuracy": stage.metrics["accuracy"]})
    print(json.dumps(rows, indent=1))
    print(f"warning fired exactly where sparse was not faster: {consistent}")
    return 0 if consistent else 1


if __name__ == "__main__":
    raise SystemExit(main())
