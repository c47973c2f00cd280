"""The ``robust`` metric: adversarial accuracy of each stage under white-box, black-box and
transfer attacks, robustness curves, attack cost, and a gradient-masking check.

White-box attacks need input gradients: a PyTorch model gives its own (fake-quantized QAT
models through their straight-through estimators); a deployed artifact (ONNX Runtime or torch
int8) is attacked through BPDA, its exact outputs with the gradients of its float parent stage
(the float model the stage descends from, through every deployed or calibrated stage between;
the run's first model only when there is none). Square needs only outputs; transfer attacks are PGD examples made
on the run's first model (the fp32 baseline).
"""

from __future__ import annotations

import time
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from nnopt.core.compute import home, placed, predict
from nnopt.core.config import BatchSize, Seed, Strict
from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement, is_artifact, is_stochastic
from nnopt.measure.quantity import FRACTION
from nnopt.trust.robustness.attacks import StraightThrough, apgd_ce, fgsm, pgd
from nnopt.trust.robustness.cw import cw_l2
from nnopt.trust.robustness.square import square_linf

Attack = Literal["fgsm", "pgd", "pgd_l2", "pgd_targeted", "apgd", "cw_l2", "square", "transfer"]


class RobustConfig(Strict):
    """Budgets, attacks and how many test examples to attack."""

    eps: float = Field(0.1, gt=0, le=1, description="L-inf budget (inputs in [0, 1])")
    eps_l2: float = Field(1.5, gt=0, description="L2 budget for pgd_l2 and cw_l2")
    attacks: list[Attack] = Field(default_factory=lambda: ["fgsm", "pgd", "apgd", "square",
                                                           "transfer"])
    examples: int = Field(500, ge=1, description="the first N test examples are attacked")
    steps: int = Field(40, ge=1, le=100_000, description="PGD iterations")
    restarts: int = Field(1, ge=1, description="PGD random restarts")
    apgd_steps: int = Field(50, ge=1, le=100_000)
    square_queries: int = Field(1000, ge=1, le=1_000_000)
    cw_steps: int = Field(50, ge=1, le=100_000, description="Adam steps per binary-search step")
    curve: list[float] = Field(default_factory=lambda: [0.0, 0.025, 0.05, 0.1, 0.15, 0.2],
                               description="L-inf eps of the robustness curves ([] for none)")
    curve_attacks: list[Literal["fgsm", "pgd", "square"]] = Field(
        default_factory=lambda: ["fgsm", "pgd"], description="attacks drawn as curves")
    curve_steps: int = Field(20, ge=1, le=100_000, description="PGD iterations on the curve")
    large_eps: float = Field(0.5, gt=0, le=1, description="masking check: PGD accuracy at this "
                             "eps should be ~0")
    batch_size: BatchSize = 250
    seed: Seed = 0


def _batched(fn, x: torch.Tensor, y: torch.Tensor, size: int,
             on: nn.Module | None = None) -> torch.Tensor:
    """``fn`` on batches of (x, y) moved to the device of the model it attacks (``on``),
    the adversarial points back on the CPU."""
    dev = home(on) if on is not None else x.device
    return torch.cat([fn(x[i:i + size].to(dev), y[i:i + size].to(dev)).cpu()
                      for i in range(0, len(x), size)])


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    return predict(model, x, size).argmax(1) == y


def gradient_model(m: Measurement) -> tuple[nn.Module | None, str]:
    """What white-box attacks differentiate, and how it was obtained."""
    model = m.model
    if is_stochastic(model):
        return None, "sampling model: attacks would need expectation over transformation"
    if not is_artifact(model):
        return model, "own gradients"
    for name, surrogate in ((m.parent_name, m.parent), ("the first stage", m.reference)):
        if surrogate is not None and not is_artifact(surrogate):
            return StraightThrough(model, surrogate.eval()), f"BPDA through {name}"
    return None, "no float model to take gradients from"


def _targets(y: torch.Tensor, classes: int) -> torch.Tensor:
    return (y + 1) % classes  # a fixed wrong class per example


@METRICS.register("robust", config=RobustConfig,
                  produces=["robust_accuracy/<attack>", "clean_accuracy_attacked"],
                  quantity=FRACTION)
def robust(m: Measurement) -> dict[str, float]:
    """Accuracy under each attack on the first ``examples`` test inputs (an example counts only
    if it is classified correctly both clean and attacked); details hold the cost in seconds per
    1000 examples, the robustness curves and the gradient-masking check."""
    cfg: RobustConfig = m.option("robust")
    model = m.model.eval()
    x, y = m.data.test.x[:cfg.examples], m.data.test.y[:cfg.examples]
    if x.dtype not in (torch.float32, torch.float64):
        return {}  # token ids: no L-p ball around the input
    grad_model, how = gradient_model(m)
    with placed(model, grad_model, m.reference):  # attacks run on the compute device
        return _robust(m, cfg, model, grad_model, how, x, y)


def _robust(m: Measurement, cfg: RobustConfig, model: nn.Module, grad_model: nn.Module | None,
            how: str, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    bs = cfg.batch_size
    clean = _correct(model, x, y, bs)
    classes = m.logits.shape[1]
    out = {"clean_accuracy_attacked": clean.double().mean().item()}
    info: dict[str, dict] = {}
    attacks = {
        "fgsm": lambda a, b: fgsm(grad_model, a, b, cfg.eps),
        "pgd": lambda a, b: pgd(grad_model, a, b, cfg.eps, steps=cfg.steps,
                                restarts=cfg.restarts, seed=cfg.seed),
        "pgd_l2": lambda a, b: pgd(grad_model, a, b, cfg.eps_l2, steps=cfg.steps, norm="l2",
                                   restarts=cfg.restarts, seed=cfg.seed),
        "pgd_targeted": lambda a, b: pgd(grad_model, a, b, cfg.eps, steps=cfg.steps,
                                         target=_targets(b, classes), seed=cfg.seed),
        "apgd": lambda a, b: apgd_ce(grad_model, a, b, cfg.eps, steps=cfg.apgd_steps,
                                     seed=cfg.seed),
        "cw_l2": lambda a, b: cw_l2(grad_model, a, b, steps=cfg.cw_steps),
        "square": lambda a, b: square_linf(model, a, b, cfg.eps, queries=cfg.square_queries,
                                           seed=cfg.seed, accept_ties=True),
    }
    white = {"fgsm", "pgd", "pgd_l2", "pgd_targeted", "apgd", "cw_l2"}
    for name in cfg.attacks:
        if m.note:
            m.note(f"{name} on {len(x)} examples")
        if name == "transfer":
            source = m.reference
            if source is None or source is m.model or is_artifact(source):
                continue
            fn = lambda a, b: pgd(source.eval(), a, b, cfg.eps, steps=cfg.steps,  # noqa: E731
                                  seed=cfg.seed)
            on = source
        elif name in white and grad_model is None:
            info[name] = {"skipped": how}
            continue
        else:
            fn, on = attacks[name], grad_model if name in white else model
        start = time.perf_counter()
        x_adv = _batched(fn, x, y, bs, on)
        seconds = time.perf_counter() - start
        if name == "cw_l2":  # unbounded: count the perturbations within the L2 budget
            norms = (x_adv - x).flatten(1).norm(dim=1)
            wrong = ~_correct(model, x_adv, y, bs)
            ok = clean & ~(wrong & (norms <= cfg.eps_l2 + 1e-6))
            hit = wrong & clean  # the perturbations that broke a correct prediction
            extra = {"median_l2": norms[hit].median().item() if bool(hit.any()) else None}
        elif name == "pgd_targeted":
            hit = predict(model, x_adv, bs).argmax(1)
            ok = clean & (hit == y)
            extra = {"target_success": (hit == _targets(y, classes)).double().mean().item()}
        else:
            ok = clean & _correct(model, x_adv, y, bs)
            extra = {}
        out[f"robust_accuracy/{name}"] = ok.double().mean().item()
        info[name] = {"seconds_per_1000": 1000 * seconds / len(x), **extra}
    m.details["robustness"] = {"examples": len(x), "eps": cfg.eps, "eps_l2": cfg.eps_l2,
                               "gradients": how, "attacks": info,
                               **_curve_and_check(m, cfg, grad_model, x, y, clean, out)}
    return out


def _curve_and_check(m: Measurement, cfg: RobustConfig, grad_model: nn.Module | None,
                     x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor,
                     out: dict[str, float]) -> dict:
    """Accuracy per eps for each curve attack, and the gradient-masking flags (Carlini et al.
    2019's checklist: black-box or transfer attacks beating white-box ones; accuracy not ~0 at a
    large eps)."""
    if m.note:
        m.note("robustness curves and the masking check")
    if grad_model is None:
        return {}
    bs, res = cfg.batch_size, {}
    makers = {
        "fgsm": lambda e: lambda a, b: fgsm(grad_model, a, b, e),
        "pgd": lambda e: lambda a, b: pgd(grad_model, a, b, e, steps=cfg.curve_steps,
                                          seed=cfg.seed),
        "square": lambda e: lambda a, b: square_linf(m.model, a, b, e, seed=cfg.seed,
                                                     queries=cfg.square_queries,
                                                     accept_ties=True),
    }
    curves: dict[str, list[list[float]]] = {}
    for attack in cfg.curve_attacks if cfg.curve else []:
        curves[attack] = []
        for eps in cfg.curve:
            if eps == 0:
                curves[attack].append([0.0, clean.double().mean().item()])
                continue
            x_adv = _batched(makers[attack](eps), x, y, bs,
                             m.model if attack == "square" else grad_model)
            curves[attack].append(
                [eps, (clean & _correct(m.model, x_adv, y, bs)).double().mean().item()])
    if curves:
        res["curves"] = curves
    flags = []
    white = min((out[f"robust_accuracy/{k}"] for k in ("pgd", "apgd", "fgsm")
                 if f"robust_accuracy/{k}" in out), default=None)
    for k in ("square", "transfer"):
        other = out.get(f"robust_accuracy/{k}")
        if white is not None and other is not None and other < white - 0.02:
            flags.append(f"{k} ({100 * other:.1f}%) beats the white-box attacks "
                         f"({100 * white:.1f}%): gradients may be masked")
    x_big = _batched(lambda a, b: pgd(grad_model, a, b, cfg.large_eps, steps=cfg.curve_steps,
                                      seed=cfg.seed), x, y, bs, grad_model)
    big = (clean & _correct(m.model, x_big, y, bs)).double().mean().item()
    res["large_eps_accuracy"] = [cfg.large_eps, big]
    if big > 0.05:
        flags.append(f"accuracy under PGD at eps {cfg.large_eps:g} is {100 * big:.1f}%, not ~0: "
                     "gradients may be masked")
    res["masking_flags"] = flags
    if flags:
        m.details.setdefault("warnings", []).extend(flags)
    return res
