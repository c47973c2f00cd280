"""Two runs of one recipe give the same results: every stage's deterministic metrics equal.

    python benchmarks/same_results.py BEFORE_RUN AFTER_RUN

Used for issue 24 (a refactor must not change what a run computes): the quickstart and
prune-channels recipes are deterministic, so accuracy, NLL, ECE, parameter counts, MACs and file
sizes must match exactly. Latency and peak memory are measurements of a noisy machine, not of
the code: they are shown, not compared. Prints one PASS/FAIL line per run pair; exit 1 on FAIL.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TIMED = ("latency_ms/", "peak_memory_bytes", "predicted_latency")


def stages(run: Path) -> dict[str, dict[str, float]]:
    res = json.loads((run / "results.json").read_text())
    return {s["name"]: s["metrics"] for s in res["stages"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    a, b = stages(args.before), stages(args.after)
    ok = list(a) == list(b)
    print(f"stages: {', '.join(a)}" + ("" if ok else f"  vs  {', '.join(b)}"))
    print(f"{'stage':<12} {'metric':<24} {'before':>14} {'after':>14}")
    for name in a:
        for key in sorted(set(a[name]) | set(b.get(name, {}))):
            x, y = a[name].get(key), b.get(name, {}).get(key)
            timed = key.startswith(TIMED)
            same = x == y
            ok &= same or timed
            mark = "(timed)" if timed else ("" if same else "DIFFERENT")
            print(f"{name:<12} {key:<24} {x!s:>14} {y!s:>14} {mark}")
    print(f"{'PASS' if ok else 'FAIL'}: {args.before} and {args.after} give the same deterministic "
          "metrics")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
