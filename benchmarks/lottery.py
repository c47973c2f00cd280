"""Lottery tickets over 3 seeds: ticket (rewound) vs random re-initialisation of the same masks.

Runs ``recipes/lottery.yaml`` with seeds 0, 1, 2 (or reads finished runs), averages the test
accuracy per pruning round and plots it. Thresholds: a ticket at <= 20% of the weights is within
0.5 point of the dense accuracy (mean of seeds), and the rounds reach <= 5% of the weights.

    .venv/bin/python benchmarks/lottery.py [--out runs/lottery-bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nnopt.report import load_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/lottery-bench")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    out = Path(args.out)
    runs = []
    for seed in args.seeds:
        folder = out / f"seed{seed}"
        if not (folder / "results.json").is_file():
            subprocess.run([sys.executable, "-m", "nnopt", "run", "recipes/lottery.yaml", "--out",
                            str(folder), "--quiet", "--set", f"seed={seed}"], check=True)
        runs.append(load_report(folder).stages[0].details["lottery"]["rows"])
    rounds = len(runs[0])
    table = []
    for r in range(rounds):
        rows = [run[r] for run in runs]
        entry = {"round": r, "remaining": statistics.mean(x["remaining"] for x in rows),
                 "ticket": statistics.mean(x["ticket_test_accuracy"] for x in rows),
                 "ticket_sd": statistics.pstdev(x["ticket_test_accuracy"] for x in rows)}
        if "random_test_accuracy" in rows[0]:
            entry["random"] = statistics.mean(x["random_test_accuracy"] for x in rows)
            entry["random_sd"] = statistics.pstdev(x["random_test_accuracy"] for x in rows)
        table.append(entry)
    dense = table[0]["ticket"]
    small = [e for e in table if e["remaining"] <= 0.20]
    first_small = small[0] if small else None  # the first level at or below 20%: no picking
    ok = bool(first_small) and dense - first_small["ticket"] <= 0.005 and \
        min(e["remaining"] for e in table) <= 0.05
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [100 * e["remaining"] for e in table]
    ax.errorbar(xs, [100 * e["ticket"] for e in table], [100 * e["ticket_sd"] for e in table],
                marker="o", capsize=3, label="ticket (rewound to epoch 1)")
    rand = [e for e in table if "random" in e]
    ax.errorbar([100 * e["remaining"] for e in rand], [100 * e["random"] for e in rand],
                [100 * e["random_sd"] for e in rand], marker="s", capsize=3,
                label="random re-init, same masks")
    ax.set_xscale("log")
    ax.set_xticks([100, 50, 20, 10, 5], ["100", "50", "20", "10", "5"])
    ax.invert_xaxis()
    ax.set(xlabel="weights remaining (%)", ylabel="test accuracy (%)",
           title=f"LeNet-300-100 on Fashion-MNIST, mean of {len(runs)} seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(out / "lottery_mean.png", dpi=110, bbox_inches="tight")
    print(json.dumps({"seeds": args.seeds, "rounds": table, "dense": dense,
                      "first_ticket_at_or_below_20pct": first_small,
                      "figure": str(out / "lottery_mean.png")}, indent=2))
    if not ok:
        print("FAIL: no ticket <= 20% within 0.5 point of dense, or rounds stop above 5%",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
