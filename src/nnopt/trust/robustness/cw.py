"""Carlini-Wagner L2 (Carlini & Wagner 2017): minimise ||x' - x||^2 + c * max(Z_y - max_i!=y
Z_i, -kappa) over x' = (tanh(w) + 1) / 2 (so x' stays in [0, 1]) with Adam, and a binary search
over c. Returns the smallest adversarial perturbation found per example (the input itself where
none was found), so robust accuracy at an L2 budget is "no perturbation within it was found".
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nnopt.trust.robustness.square import margin


def cw_l2(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
          steps: int = 100, c: float = 1.0, search_steps: int = 3, lr: float = 0.01,
          kappa: float = 0.0) -> torch.Tensor:
    n = len(x)
    lo, hi = torch.zeros(n, device=x.device), torch.full((n,), 1e10, device=x.device)
    const = torch.full((n,), c, device=x.device)
    best = x.clone()
    best_norm = torch.full((n,), float("inf"), device=x.device)
    w0 = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    for _ in range(search_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        for _ in range(steps):
            with torch.enable_grad():
                x_adv = (torch.tanh(w) + 1) / 2
                logits = model(x_adv)
                dist = (x_adv - x).flatten(1).pow(2).sum(1)
                m = margin(logits, y)
                loss = (dist + const * m.clamp_min(-kappa)).sum()
                (w.grad,) = torch.autograd.grad(loss, w)  # the model's parameters get none
            opt.step()
            with torch.no_grad():
                success = m < 0  # for the point this step evaluated
                norms = dist.sqrt()
                better = success & (norms < best_norm)
                best[better] = x_adv.detach()[better]
                best_norm[better] = norms[better]
                found |= success
        # binary search on c: smaller where an example was fooled, larger where not
        hi = torch.where(found, torch.minimum(hi, const), hi)
        lo = torch.where(found, lo, torch.maximum(lo, const))
        const = torch.where(hi < 1e9, (lo + hi) / 2, const * 10)
    return best
