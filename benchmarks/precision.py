"""Training precision and memory format: SimCLR pre-training throughput of fit() on the encoder
of recipes/ssl.yaml in fp32, bf16 autocast, channels-last, and both, on Fashion-MNIST.

Each round trains a fresh copy for one epoch over the same images in every configuration in
turn, so that machine noise hits them alike; the figure is the median of images per second over
the rounds, and the ratio to fp32. The threshold (bf16 + channels-last >= 1.5x fp32) holds on a
CPU with native bf16 (avx512_bf16 or AMX); the accuracy side of bf16 is in BENCHMARKS.md (the
issue 9 runs).

    .venv/bin/python benchmarks/precision.py [--samples 5120] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from nnopt.data import load_data
from nnopt.learn.selfsup.augment import AugmentConfig
from nnopt.learn.selfsup.simclr import SimclrTask
from nnopt.models import build_model
from nnopt.recipe import resolve
from nnopt.train import TrainConfig, fit

THRESHOLD = 1.5
CONFIGS = {"fp32": {}, "bf16": {"precision": "bf16"}, "fp32 channels-last":
           {"channels_last": True}, "bf16 channels-last": {"precision": "bf16",
                                                           "channels_last": True}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5120)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    r = resolve({"data": {"name": "fashion-mnist", "limit": args.samples},
                 "model": {"name": "cnn", "width": 32, "depth": 4, "hidden": 0, "dropout": 0,
                           "head": "avgpool"}})
    data = load_data(r.data)
    aug = AugmentConfig(crop=(0.4, 1.0), flip=0.5, translate=0.1, jitter=0.4)

    def one_epoch(extra: dict, seed: int) -> tuple[float, float]:
        torch.manual_seed(0)
        model = build_model(r.model, data.input_shape, data.num_classes, data.mean, data.std)
        cfg = TrainConfig(epochs=1, batch_size=256, lr=2e-3, weight_decay=1e-4, **extra)
        state = fit(model, data.train, config=cfg, task=SimclrTask(aug, 0.5, 128, seed),
                    seed=seed)
        rec = state.history[0]
        return len(data.train) / rec["train_seconds"], rec["train_loss"]

    one_epoch({}, 0)  # warm-up
    speed: dict[str, list[float]] = {k: [] for k in CONFIGS}
    loss: dict[str, list[float]] = {k: [] for k in CONFIGS}
    for k in range(args.rounds):
        for name, extra in CONFIGS.items():
            s, value = one_epoch(extra, k)
            speed[name].append(s)
            loss[name].append(value)
    base = statistics.median(speed["fp32"])
    result = {"samples": len(data.train), "rounds": args.rounds,
              "threads": torch.get_num_threads(),
              "cpu": torch.backends.cpu.get_cpu_capability(),
              "median_images_per_s": {k: round(statistics.median(v), 1) for k, v in speed.items()},
              "ratio_to_fp32": {k: round(statistics.median(v) / base, 2)
                                for k, v in speed.items()},
              "median_epoch_loss": {k: round(statistics.median(v), 4) for k, v in loss.items()},
              "threshold": THRESHOLD}
    print(json.dumps(result, indent=2))
    ratio = result["ratio_to_fp32"]["bf16 channels-last"]
    if ratio < THRESHOLD:
        print(f"FAIL: bf16 + channels-last trains at {ratio:.2f}x fp32 (< {THRESHOLD})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
