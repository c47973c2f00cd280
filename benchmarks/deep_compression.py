"""Deep Compression on LeNet-300-100: the encoded file against the fp32 safetensors file.

Runs ``recipes/deep-compression.yaml`` (or reads a finished run), then decodes the cluster
stage's ``model.nnc`` into a fresh model and evaluates it on the full test set. Thresholds:
the encoded file is >= 40x smaller than the baseline's fp32 safetensors file, accuracy drops
<= 1.0 point, and the decoded model's accuracy equals the reported one exactly.

    .venv/bin/python benchmarks/deep_compression.py [--out runs/deep-compression]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import finished_run
from nnopt.core.compute import predict
from nnopt.data import load_data
from nnopt.measure.quality import accuracy_score
from nnopt.models import load_model
from nnopt.recipe import load_recipe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/deep-compression")
    args = ap.parse_args()
    out = Path(args.out)
    report = finished_run("recipes/deep-compression.yaml", out)
    base, final = report.stages[0], report.stages[-1]
    encoded = out / final.artifact / "model.nnc"
    decoded = load_model(encoded)
    data = load_data(load_recipe("recipes/deep-compression.yaml").data)
    decoded_acc = accuracy_score(predict(decoded, data.test.x), data.test.y)  # the metric's own code
    ratio = base.metrics["size_bytes"] / encoded.stat().st_size
    loss = base.metrics["accuracy"] - final.metrics["accuracy"]
    print("| stage | accuracy | non-zero weights | file | compressed file | vs fp32 file |")
    print("|---|---|---|---|---|---|")
    for s in report.stages:
        m = s.metrics
        print(f"| {s.name} | {100 * m['accuracy']:.2f}% | {int(m['nonzero_params']):,} | "
              f"{m['size_bytes'] / 1024:.1f} KiB | {m['compressed_size_bytes'] / 1024:.1f} KiB "
              f"({s.details.get('compressor', '')}) | "
              f"{base.metrics['size_bytes'] / m['compressed_size_bytes']:.1f}x |")
    print(f"\nencoded file {encoded.stat().st_size:,} bytes = {ratio:.1f}x smaller than the fp32 "
          f"safetensors file ({int(base.metrics['size_bytes']):,} bytes); accuracy "
          f"{100 * base.metrics['accuracy']:.2f}% -> {100 * final.metrics['accuracy']:.2f}% "
          f"({-100 * loss:+.2f} points); decoded from the file: {100 * decoded_acc:.2f}%")
    ok = ratio >= 40 and loss <= 0.010 and decoded_acc == final.metrics["accuracy"]
    print("PASS" if ok else "FAIL", "(>= 40x, <= 1.0 point, decoded accuracy identical)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
