"""White-box evasion attacks on models that take inputs in [0, 1] (normalisation lives inside
nnopt models, so attacks never see it): FGSM (Goodfellow et al. 2015), PGD with L-inf or L2
balls, random starts, restarts and a targeted variant (Madry et al. 2018), and APGD-CE with its
step-size schedule (Croce & Hein 2020).

Every function takes a batch and returns adversarial inputs of its shape, inside the eps-ball
around ``x`` and inside [0, 1]. Models are used in eval mode; only the input gets gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.core.compute import home

Norm = Literal["linf", "l2"]
Model = Callable[[torch.Tensor], torch.Tensor]


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example, shaped to broadcast against the batch."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """Into the eps-ball around ``x`` and into [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * torch.clamp(eps / _flat_norm(delta), max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, norm: Norm, generator: torch.Generator
                 ) -> torch.Tensor:
    """A uniform point of the L-inf ball, or of the L2 ball (direction and radius u^(1/d))."""
    if norm == "linf":
        noise = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    else:
        direction = torch.randn(x.shape, generator=generator)
        d = x[0].numel()
        radius = torch.rand(len(x), generator=generator) ** (1.0 / d) * eps
        noise = direction / _flat_norm(direction) * radius.view(-1, *([1] * (x.dim() - 1)))
    return project(x + noise.to(x), x, eps, norm)  # drawn on the CPU: the same on any device


def _loss_grad(model: Model, x_adv: torch.Tensor, y: torch.Tensor, targeted: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example loss to increase (CE, or minus CE to the target), its input gradient and
    the logits."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y, reduction="none")
        if targeted:
            loss = -loss
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
    return loss.detach(), grad.detach(), logits.detach()


def _step(grad: torch.Tensor, size: torch.Tensor | float, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return size * grad.sign()
    return size * grad / _flat_norm(grad)


def _fooled(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    return logits.argmax(1) == y if targeted else logits.argmax(1) != y


def fgsm(model: Model, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size eps (L-inf)."""
    _, grad, _ = _loss_grad(model, x, y, targeted=False)
    return project(x + eps * grad.sign(), x, eps, "linf")


def pgd(model: Model, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 40,
        alpha: float | None = None, norm: Norm = "linf", restarts: int = 1,
        random_init: bool = True, target: torch.Tensor | None = None, seed: int = 0
        ) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy (descent towards ``target`` if given).

    Step size ``alpha`` defaults to 2.5 eps / steps. Over restarts, each example keeps the first
    adversarial point found (else the last restart's point)."""
    alpha = 2.5 * eps / steps if alpha is None else alpha
    targeted = target is not None
    labels = target if targeted else y
    g = torch.Generator().manual_seed(seed)
    best = x.clone()
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        x_adv = random_start(x, eps, norm, g) if random_init else x.clone()
        for _ in range(steps):
            _, grad, _ = _loss_grad(model, x_adv, labels, targeted)
            x_adv = project(x_adv + _step(grad, alpha, norm), x, eps, norm)
        with torch.no_grad():
            fooled = _fooled(model(x_adv), labels, targeted)
        best[~done] = x_adv[~done]  # the first success, else the latest point
        done |= fooled
        if bool(done.all()):
            break
    return best


def _checkpoints(steps: int) -> list[int]:
    """APGD's iterations where the step size may halve: p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 9)) for q in p if q <= 1})


def apgd_ce(model: Model, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 100,
            norm: Norm = "linf", rho: float = 0.75, momentum: float = 0.75, seed: int = 0
            ) -> torch.Tensor:
    """Auto-PGD on the cross-entropy: per-example step size 2 eps halved at checkpoints when
    progress stalls (fewer than ``rho`` of the steps since the last checkpoint raised the loss,
    or neither the step size nor the best loss changed), restarting from the best point; a
    momentum step between the gradient step and the last move."""
    g = torch.Generator().manual_seed(seed)
    view = (-1, *([1] * (x.dim() - 1)))
    eta = torch.full((len(x),), 2.0 * eps, device=x.device)
    x_adv = random_start(x, eps, norm, g)
    loss, grad, _ = _loss_grad(model, x_adv, y, False)
    best_x, best_loss = x_adv.clone(), loss.clone()
    x_prev = x_adv.clone()
    x_adv = project(x_adv + _step(grad, eta.view(view), norm), x, eps, norm)
    checks = _checkpoints(steps)
    since_check = torch.zeros(len(x), device=x.device)
    last_check, eta_changed_last = 0, torch.ones(len(x), dtype=torch.bool, device=x.device)
    best_at_last_check, loss_prev = best_loss.clone(), best_loss.clone()
    for k in range(1, steps):
        loss, grad, _ = _loss_grad(model, x_adv, y, False)
        improved = loss > best_loss
        since_check += (loss > loss_prev).float()
        best_x[improved], best_loss[improved] = x_adv[improved], loss[improved]
        z = project(x_adv + _step(grad, eta.view(view), norm), x, eps, norm)
        x_next = project(x_adv + momentum * (z - x_adv) + (1 - momentum) * (x_adv - x_prev),
                         x, eps, norm)
        x_prev, x_adv, loss_prev = x_adv, x_next, loss
        if k in checks:
            cond1 = since_check < rho * (k - last_check)
            cond2 = ~eta_changed_last & (best_at_last_check >= best_loss)
            halve = cond1 | cond2
            eta[halve] /= 2
            x_adv[halve] = best_x[halve]  # restart from the best point
            eta_changed_last, best_at_last_check = halve, best_loss.clone()
            since_check.zero_()
            last_check = k
    with torch.no_grad():  # the last point's loss; no gradient needed
        loss = F.cross_entropy(model(x_adv), y, reduction="none")
    improved = loss > best_loss
    best_x[improved] = x_adv[improved]
    return best_x


class StraightThrough(nn.Module):
    """BPDA (Athalye et al. 2018): the forward values of ``model`` (an int8 or ONNX artifact
    without useful gradients) with the gradients of a float ``surrogate`` of it."""

    def __init__(self, model: nn.Module, surrogate: nn.Module) -> None:
        super().__init__()
        self.model, self.surrogate = model, surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        approx = self.surrogate(x.to(home(self.surrogate))).to(x.device)
        with torch.no_grad():  # the artifact runs where its runtime is (the CPU)
            exact = self.model(x.detach().to(home(self.model)))
        return approx + (exact.to(approx) - approx).detach()
