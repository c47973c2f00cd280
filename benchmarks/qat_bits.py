"""QAT at 8, 4 and 2 weight bits (8-bit activations) and mixed precision under the size of
uniform 4-bit, all fine-tuned from the same trained fp32 CNN for the same epochs.

Starts from ``--model`` (default: the fp32 stage of ``runs/quantize``; run recipes/quantize.yaml
first). Thresholds: w4a8 within 1.0 point of fp32; mixed precision with mean bits <= 4 at least as
accurate as uniform 4-bit. The 2-bit result is reported.

    .venv/bin/python benchmarks/qat_bits.py [--model runs/quantize/models/train] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from nnopt.report import load_report

VARIANTS = {"w8a8": {"w_bits": 8}, "w4a8": {"w_bits": 4}, "w2a8": {"w_bits": 2},
            "mixed<=4": {"mixed_budget": 4.0, "bits_choices": [2, 3, 4, 6, 8]}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/quantize/models/train")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default="runs/qat-bits")
    args = ap.parse_args()
    out = Path(args.out)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in {"fp32": None, **VARIANTS}.items():
            folder = out / name.replace("<=", "-le")
            stages = [] if opts is None else [{"qat": {**opts, "a_bits": 8, "finetune": {
                "epochs": args.epochs, "lr": 0.0002}}}]
            recipe = {"name": f"qat-{name}", "data": {"name": "fashion-mnist"},
                      "model": {"path": args.model}, "targets": [],
                      "evaluate": ["accuracy", "nll", "params"], "stages": stages}
            path = Path(tmp) / f"{name}.yaml".replace("<=", "-le")
            path.write_text(yaml.safe_dump(recipe))
            if not (folder / "results.json").is_file():
                subprocess.run([sys.executable, "-m", "nnopt", "run", str(path), "--out",
                                str(folder), "--quiet"], check=True)
            stage = load_report(folder).stages[-1]
            q = stage.details.get("qat", {})
            results[name] = {"accuracy": stage.metrics["accuracy"],
                             "mean_w_bits": q.get("mean_w_bits", 32.0),
                             "packed_weight_kib": round(q.get("packed_weight_bytes", 0) / 1024, 1),
                             "bits": {k: v["w_bits"] for k, v in q.get("layers", {}).items()}}
    fp32 = results["fp32"]["accuracy"]
    for r in results.values():
        r["drop_points"] = round(100 * (fp32 - r["accuracy"]), 2)
    print(json.dumps(results, indent=2))
    ok = (results["w4a8"]["drop_points"] <= 1.0
          and results["mixed<=4"]["mean_w_bits"] <= 4.0 + 1e-9
          and results["mixed<=4"]["accuracy"] >= results["w4a8"]["accuracy"])
    if not ok:
        print("FAIL: w4a8 drops > 1 point, or mixed precision is less accurate than uniform "
              "4-bit", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
