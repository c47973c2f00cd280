"""Training options, measured: the quickstart CNN's training throughput in fit() with each of
torch.compile, bf16 and fp16 autocast, channels-last and DataLoader workers, against plain fp32
eager, on this machine's device (the CPU here; a GPU where there is one: --device cuda).

Each configuration keeps its own model and trains it one epoch per round, the configurations in
turn within each round, so that machine noise hits them alike. The first two rounds are the
warm-up: round 0 holds torch.compile's compilation, reported apart as its one-off cost (round 0's
time minus the median epoch), and in round 1 inductor's pool of compile workers was still
settling (a first run saw plain fp32 take 8.1 s there against 4.7-5.0 s in every later round).
The figure per configuration is the median of the per-round ratios of its throughput to fp32
eager, with the p10-p90 spread; a spread wider than 10% of the ratio is
flagged noisy. Each configuration's test accuracy after its epochs is shown beside it: an option
that changes speed must not change what is learnt beyond noise.

No threshold: the issue asks that compile's effect be measured, not assumed. Its sign depends on
the device and the model (on a small CNN on 2 CPU cores, most of the time is in oneDNN
convolutions that compile does not change).

    .venv/bin/python benchmarks/training_options.py [--samples 3200] [--rounds 6] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from nnopt.core.compute import on_device, resolve_device
from nnopt.core.environment import cpu_flags, cpu_model
from nnopt.data import load_data
from nnopt.models import build_model
from nnopt.recipe import resolve
from nnopt.train import TrainConfig, fit
from nnopt.train.fit import evaluate

CONFIGS = {"fp32 eager": {}, "torch.compile": {"compile": True}, "bf16": {"precision": "bf16"},
           "fp16 (loss scaling)": {"precision": "fp16"}, "channels-last": {"channels_last": True},
           "1 loader worker": {"workers": 1}}
WARMUP = 2  # rounds not scored


def quantiles(values: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(values, n=10, method="inclusive")
    return qs[0], qs[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3200)
    ap.add_argument("--rounds", type=int, default=6, help="rounds after the two warm-up rounds")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = resolve_device(args.device)
    r = resolve({"data": {"name": "fashion-mnist", "limit": args.samples},
                 "model": {"name": "cnn", "width": 32, "depth": 2}})
    data = load_data(r.data)

    def model():
        torch.manual_seed(0)
        return build_model(r.model, data.input_shape, data.num_classes, data.mean, data.std)

    models = {name: model() for name in CONFIGS}
    seconds: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with on_device(device):
        for k in range(args.rounds + WARMUP):
            for name, options in CONFIGS.items():
                cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=1e-3,
                                  select_best=False, **options)
                state = fit(models[name], data.train, config=cfg, seed=k)
                seconds[name].append(state.history[0]["train_seconds"])
            print(f"round {k}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items()),
                  flush=True)
        accuracy = {name: evaluate(m, data.test)["accuracy"] for name, m in models.items()}
    base = seconds["fp32 eager"][WARMUP:]
    rows = {}
    for name, secs in seconds.items():
        ratios = [b / s for b, s in zip(base, secs[WARMUP:])]
        lo, hi = quantiles(ratios)
        ratio = statistics.median(ratios)
        epoch = statistics.median(secs[WARMUP:])
        rows[name] = {"images_per_s": round(len(data.train) / epoch, 1),
                      "speed_vs_fp32": round(ratio, 3), "p10": round(lo, 3),
                      "p90": round(hi, 3), "noisy": (hi - lo) > 0.1 * ratio,
                      "first_epoch_extra_s": round(secs[0] - epoch, 2),
                      "test_accuracy": round(accuracy[name], 4)}
    print(json.dumps({"device": str(device), "cpu": cpu_model(),
                      "cpu_flags": [f for f in cpu_flags() if f.startswith(("avx", "amx"))],
                      "threads": torch.get_num_threads(), "samples": len(data.train),
                      "epochs": args.rounds + WARMUP, "batch_size": args.batch_size,
                      "configs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
