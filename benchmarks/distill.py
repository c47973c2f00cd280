"""Distillation: a small CNN student distilled from the quickstart CNN vs the same student alone.

One teacher (the quickstart cnn: width 32, depth 2, 4 epochs on the full training split). The
student (cnn width 8, hidden 64, no dropout; 7x fewer parameters) learns from a transfer set of
``--labels`` training images (Hinton et al. 2015, section 3: soft targets as a regulariser when
data is scarce), drawn anew for each seed. For seeds 0, 1, 2 it is trained the same epochs on the
same images with plain cross-entropy, with logit distillation (T = 4, alpha = 0.9) and with logits
plus attention transfer (beta = 1000). Settings were chosen on validation accuracy. Test accuracy
on the full Fashion-MNIST test set; threshold: logit distillation recovers >= 30% of the
teacher-student gap (mean of seeds). ``--labels 0`` uses the whole training split.

    .venv/bin/python benchmarks/distill.py [--labels 3000] [--epochs 40] [--out runs/distill-bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from nnopt.compress.distill.task import DistillationTask, DistillConfig
from nnopt.core.compute import seed_everything
from nnopt.core.registry import DATASETS
from nnopt.data import load_data
from nnopt.models import build_model
from nnopt.models.cnn import CnnConfig
from nnopt.train.fit import TrainConfig, evaluate, fit

TEACHER = CnnConfig(width=32, depth=2)
STUDENT = CnnConfig(width=8, depth=2, hidden=64, dropout=0.0)
ROUTES = {"alone": None,
          "logits": DistillConfig(temperature=4.0, alpha=0.9),
          "logits+attention": DistillConfig(temperature=4.0, alpha=0.9, attention_weight=1000)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--labels", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/distill-bench")
    args = ap.parse_args()
    data = load_data(DATASETS.get("fashion-mnist").config(name="fashion-mnist"))
    cfg = TrainConfig(epochs=args.epochs, lr=0.002, weight_decay=1e-4, batch_size=64)

    def build(mc: CnnConfig):  # noqa: ANN202
        return build_model(mc, data.input_shape, data.num_classes, data.mean, data.std)

    seed_everything(0)  # the teacher's initial weights
    teacher = build(TEACHER)
    fit(teacher, data.train, config=TrainConfig(epochs=4, lr=0.002, weight_decay=1e-4),
        val=data.val, seed=0)
    t_acc = evaluate(teacher, data.test)["accuracy"]
    print(f"teacher: {t_acc:.4f}", flush=True)
    acc: dict[str, list[float]] = {r: [] for r in ROUTES}
    for seed in args.seeds:
        train = data.train
        if args.labels:
            g = torch.Generator().manual_seed(seed)
            train = train.take(torch.randperm(len(train), generator=g)[:args.labels])
        for route, dcfg in ROUTES.items():
            seed_everything(seed)  # every route starts from the same initial student
            student = build(STUDENT)
            task = None if dcfg is None else DistillationTask(teacher, dcfg, train.x[:8],
                                                              train_x=train.x)
            fit(student, train, config=cfg, val=data.val, task=task, seed=seed)
            acc[route].append(evaluate(student, data.test)["accuracy"])
            print(f"seed {seed} {route}: {acc[route][-1]:.4f}", flush=True)
    alone = statistics.mean(acc["alone"])
    gap = t_acc - alone
    rows = {r: {"mean": statistics.mean(v), "sd": statistics.pstdev(v), "runs": v,
                "gap_recovered": (statistics.mean(v) - alone) / gap if gap > 0 else None}
            for r, v in acc.items()}
    result = {"teacher_accuracy": t_acc, "epochs": args.epochs, "labels": args.labels or
              len(data.train), "students": rows,
              "teacher_params": sum(p.numel() for p in teacher.parameters()),
              "student_params": sum(p.numel() for p in build(STUDENT).parameters())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill.json").write_text(json.dumps(result, indent=1))
    print(f"teacher {100 * t_acc:.2f}% ({result['teacher_params']} params), student "
          f"{result['student_params']} params, {result['labels']} training images, "
          f"{args.epochs} epochs each")
    print("| student | accuracy (mean +- sd of seeds) | gap recovered |")
    print("|---|---|---|")
    for r, row in rows.items():
        rec = "" if r == "alone" else f"{100 * row['gap_recovered']:.0f}%"
        print(f"| {r} | {100 * row['mean']:.2f} +- {100 * row['sd']:.2f}% | {rec} |")
    ok = gap > 0 and rows["logits"]["gap_recovered"] >= 0.30
    print("PASS" if ok else "FAIL", "(logit distillation recovers >= 30% of the gap)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
