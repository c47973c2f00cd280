"""Issue 10 acceptance 3: the per-operator latency table's error against measured latency.
Architectures are drawn from the cnn macro space of recipes/nas.yaml; each is timed on the
server target (PyTorch, batch 64, 2 threads) and predicted from the table, built afresh in this
run. The table holds operators timed alone, never a whole network's latency, and the predictor
has no fitted parameter: every architecture scored is held out from what the prediction uses.

    python benchmarks/latency_predictor.py [--archs 20] [--batch 64 --threads 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

from _common import Checks
from nnopt.measure import Measurement
from nnopt.measure.latency import measure_target
from nnopt.measure.latency_table import LatencyTable
from nnopt.measure.target import Target
from nnopt.models import build_model
from nnopt.search.space import MacroSpace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    raw = yaml.safe_load(Path("recipes/nas.yaml").read_text())
    stage = next(s["nas"] for s in raw["stages"] if "nas" in s)
    space = MacroSpace(**stage["space"])
    target = Target(name="server", runtime="torch", batch_size=args.batch,
                    threads=args.threads, repeats=50, min_seconds=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        table = LatencyTable(target, Path(tmp))  # a fresh table: its build is part of the run
        rng = random.Random(1)
        held_out = []
        seen = set()
        while len(held_out) < args.archs:
            arch = space.sample(rng)
            if space.key(arch) not in seen:
                seen.add(space.key(arch))
                held_out.append(arch)
        data = SimpleNamespace(test=SimpleNamespace(x=torch.rand(64, 1, 28, 28)))
        rows = []
        for arch in held_out:
            model = build_model(space.config(arch), (1, 28, 28), 10, [0.286], [0.353])
            pred = table.predict_ms(model, (1, 28, 28))
            meas = measure_target(Measurement(model, data, [target], Path(tmp)), target)  # type: ignore[arg-type]
            rows.append((arch, pred, meas["median_ms"]))
    print("| architecture | predicted ms | measured ms | error |")
    print("|---|---|---|---|")
    errors = []
    for arch, pred, real in rows:
        err = abs(pred - real) / real
        errors.append(err)
        print(f"| {space.key(arch)} | {pred:.3f} | {real:.3f} | {100 * err:.1f}% |")
    mape = statistics.mean(errors)
    print(f"\ntable: {len(table.table)} operators; batch {args.batch}, {args.threads} threads")
    check = Checks()
    check(mape <= 0.15, f"mean absolute percentage error over {len(rows)} architectures: "
          f"{100 * mape:.1f}% (median {100 * statistics.median(errors):.1f}%)")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
