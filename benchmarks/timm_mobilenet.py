"""A timm model through nnopt: MobileNetV3-small (random init) on Fashion-MNIST at 32x32,
trained, channels pruned by half, each deployed on the best server runtime
(``recipes/timm-mobilenet.yaml``). Prints each stage's accuracy and size, the server latency
ratios the run measured side by side (paired rounds, with their spread) and the report's
conclusions.

Thresholds: the pruned, fine-tuned model within 2.0 pt of the trained one; the server's answer
a deployment faster than the trained model in PyTorch eager (speed-up > 1, not flagged
noisy).

    .venv/bin/python benchmarks/timm_mobilenet.py [--run runs/timm-mobilenet]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import Checks, finished_run
from nnopt.core.environment import cpu_flags, cpu_model

MAX_DROP = 0.020


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/timm-mobilenet")
    args = ap.parse_args()
    report = finished_run("recipes/timm-mobilenet.yaml", args.run)
    res = json.loads((Path(args.run) / "results.json").read_text())
    stages = {s["name"]: s for s in res["stages"]}
    rows = {n: {k: s["metrics"].get(k) for k in ("accuracy", "params", "macs", "size_bytes",
                                                  "latency_ms/server")}
            | {"seconds": round(s["seconds"], 1),
               "deployed": s["details"].get("deployed", {}).get("server")}
            for n, s in stages.items()}
    rec = res["summary"]["recommendations"][0]
    print(json.dumps({"cpu": cpu_model(), "flags": [f for f in cpu_flags() if "avx" in f][:4],
                      "stages": rows, "recommendation": rec}, indent=1, default=str))
    for line in res["summary"]["conclusions"]:
        print("-", line)
    check = Checks()
    drop = stages["train"]["metrics"]["accuracy"] - stages["prune"]["metrics"]["accuracy"]
    check(drop <= MAX_DROP, f"pruned by half: accuracy {100 * drop:.2f} pt below the trained "
          f"model (threshold {100 * MAX_DROP:.1f} pt)")
    check(rec["stage"] != "train" and rec["speedup"] > 1 and not rec["noisy"],
          f"server ships '{rec['stage']}' at {rec['speedup']:.2f}x over the trained model "
          f"(paired p10-p90 {rec.get('speedup_p10', 0):.2f}-{rec.get('speedup_p90', 0):.2f}x)")
    del report
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
