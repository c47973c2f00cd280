"""Attack cost (issue 7, acceptance 6): nnopt's FGSM and PGD-40 against a straightforward PyTorch
implementation of the same attack, on the same model, inputs and threads; timed alternately over
rounds, medians. Also checks that both reach the same robust accuracy (same attack, not a weaker
shortcut).

    python benchmarks/attack_cost.py --model runs/adversarial/models/train [--examples 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from nnopt.models import load_model
from nnopt.recipe import resolve
from nnopt.runner import prepare
from nnopt.trust.robustness.attacks import fgsm, pgd


def reference_pgd(model, x, y, eps: float, alpha: float, steps: int, seed: int = 0):
    """The textbook loop: random start, signed gradient step, clip to the ball and to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x_adv = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps)
        x_adv = x_adv.clamp(0, 1)
    return x_adv


def reference_fgsm(model, x, y, eps: float):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x.detach() + eps * grad.sign()).clamp(0, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/adversarial/models/train")
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    data, _ = prepare(resolve({"data": {"name": "fashion-mnist"}, "model": {"name": "mlp"}}))
    x, y = data.test.x[:args.examples], data.test.y[:args.examples]
    eps, steps = 0.1, 40
    alpha = 2.5 * eps / steps
    pairs = {
        "FGSM": (lambda: fgsm(model, x, y, eps), lambda: reference_fgsm(model, x, y, eps)),
        "PGD-40": (lambda: pgd(model, x, y, eps, steps=steps, alpha=alpha),
                   lambda: reference_pgd(model, x, y, eps, alpha, steps)),
    }
    ok = True
    print(f"{args.examples} Fashion-MNIST test images, {args.threads} threads, eps {eps}\n")
    print("| attack | nnopt s/1000 | reference s/1000 | ratio | nnopt acc | reference acc |")
    print("|---|---|---|---|---|---|")
    for name, (ours, ref) in pairs.items():
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        outs = {}
        for _ in range(args.rounds):
            for key, fn in (("ours", ours), ("ref", ref)):
                start = time.perf_counter()
                outs[key] = fn()
                times[key].append(time.perf_counter() - start)
        with torch.no_grad():
            acc = {k: (model(v).argmax(1) == y).float().mean().item() for k, v in outs.items()}
        t_ours = statistics.median(times["ours"]) * 1000 / len(x)
        t_ref = statistics.median(times["ref"]) * 1000 / len(x)
        ratio = t_ours / t_ref
        ok &= ratio <= 1.2
        print(f"| {name} | {t_ours:.2f} | {t_ref:.2f} | {ratio:.2f}x | {100 * acc['ours']:.1f}% | "
              f"{100 * acc['ref']:.1f}% |")
    print("\nPASS: within 1.2x of the reference" if ok else "\nFAIL: slower than 1.2x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
