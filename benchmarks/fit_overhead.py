"""fit() overhead: training throughput of nnopt's fit() against a bare hand-written PyTorch loop.

Same model (the quickstart CNN), same Fashion-MNIST training subset, same batch size, optimiser
and thread count; the two loops alternate so that machine noise hits both alike. The figure is the
ratio of median throughputs (fit / bare); the acceptance threshold is >= 0.9.

    .venv/bin/python benchmarks/fit_overhead.py [--samples 12800] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from nnopt.data import load_data
from nnopt.models import build_model
from nnopt.recipe import resolve
from nnopt.train import TrainConfig, fit

THRESHOLD = 0.9


def bare_loop(model, x, y, batch_size: int, lr: float, seed: int) -> float:
    """The loop a PyTorch user writes by hand: shuffle, forward, loss, backward, step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(y), generator=gen)
    total = 0.0
    for i in range(0, len(y), batch_size):
        idx = order[i:i + batch_size]
        out = model(x[idx])
        loss = F.cross_entropy(out, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=12800)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    r = resolve({"data": {"name": "fashion-mnist", "limit": args.samples},
                 "model": {"name": "cnn", "width": 32, "depth": 2}})
    data = load_data(r.data)
    x, y = data.train.x, data.train.y

    def model():
        torch.manual_seed(0)
        return build_model(r.model, data.input_shape, data.num_classes, data.mean, data.std)

    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=1e-3, select_best=False)
    bare, ours = [], []
    bare_loop(model(), x[:1024], y[:1024], args.batch_size, 1e-3, 0)  # warm-up
    for k in range(args.rounds):
        bare.append(len(y) / bare_loop(model(), x, y, args.batch_size, 1e-3, k))
        state = fit(model(), data.train, config=cfg, seed=k)
        ours.append(len(y) / state.history[0]["train_seconds"])
    ratio = statistics.median(ours) / statistics.median(bare)
    result = {"samples": len(y), "batch_size": args.batch_size, "rounds": args.rounds,
              "threads": torch.get_num_threads(),
              "bare_samples_per_s": [round(v, 1) for v in bare],
              "fit_samples_per_s": [round(v, 1) for v in ours],
              "median_bare": round(statistics.median(bare), 1),
              "median_fit": round(statistics.median(ours), 1), "ratio": round(ratio, 3),
              "threshold": THRESHOLD}
    print(json.dumps(result, indent=2))
    if ratio < THRESHOLD:
        print(f"FAIL: fit() throughput is {ratio:.3f}x the bare loop (< {THRESHOLD})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
