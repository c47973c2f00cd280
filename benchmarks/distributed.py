"""Centralised against distributed training on this machine: the quickstart's training stage in
one process, then data-parallel on ``--nproc 2`` (torch.distributed, gloo, through torchrun),
same recipe, same global batch. Reports test accuracy, the training stage's time and images/s,
and the whole command's wall time, both ways.

Threshold: accuracy within 0.3 pt. On a 2-core machine the speed-up may be below 1: one
process already uses both cores for its matrix products, and two processes add a gradient
all-reduce per batch; the figures say how much.

    python benchmarks/distributed.py [--out runs/distributed]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from nnopt.core.environment import cpu_flags, cpu_model


def run(recipe: Path, out: Path, nproc: int) -> tuple[dict, float]:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "nnopt"), "run", str(recipe), "--out",
                    str(out), "--quiet", "--nproc", str(nproc)], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text()), time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/distributed")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(Path("recipes/quickstart.yaml").read_text())
    raw.update(name="quickstart-train", targets=[], evaluate=["accuracy", "nll"],
               stages=[s for s in raw["stages"] if "train" in s])
    recipe = out / "train.yaml"
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    rows = {}
    for nproc in (1, 2):
        res, wall = run(recipe, out / f"nproc{nproc}", nproc)
        train = res["stages"][0]
        images = res["data"]["train"] * raw["stages"][0]["train"]["epochs"]
        rows[nproc] = {"accuracy": train["metrics"]["accuracy"], "train_seconds": train["seconds"],
                       "images_per_s": images / train["seconds"], "wall_seconds": wall,
                       "distributed": train["details"]["training"].get("distributed", "-")}
    print(json.dumps({"cpu": cpu_model(), "avx": [f for f in cpu_flags() if "avx" in f][:3],
                      "runs": rows}, indent=2))
    gap = 100 * abs(rows[1]["accuracy"] - rows[2]["accuracy"])
    speed = rows[2]["images_per_s"] / rows[1]["images_per_s"]
    print(f"{'PASS' if gap <= 0.3 else 'FAIL'}: accuracy 1 process {100 * rows[1]['accuracy']:.2f}%"
          f", 2 processes {100 * rows[2]['accuracy']:.2f}% ({gap:.2f} pt apart; need <= 0.3)")
    print(f"training: {rows[1]['images_per_s']:.0f} images/s in 1 process, "
          f"{rows[2]['images_per_s']:.0f} in 2 ({speed:.2f}x); wall {rows[1]['wall_seconds']:.0f} s"
          f" vs {rows[2]['wall_seconds']:.0f} s")
    return 0 if gap <= 0.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
