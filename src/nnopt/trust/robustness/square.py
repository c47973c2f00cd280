"""Square attack, L-inf (Andriushchenko et al. 2020): a score-based black-box attack that only
queries the model's outputs, so it runs on artifacts without gradients (ONNX Runtime int8) and
cannot be fooled by masked gradients.

Random search: start from vertical stripes of +-eps, then repeatedly redraw one random square
window to +-eps per channel and keep the change when the margin (true logit minus the best other)
drops; the window's area shrinks on the paper's schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
             (6000, 128), (8000, 256))


def window_fraction(p_init: float, it: int, queries: int) -> float:
    """The share of the image a square covers at iteration ``it`` (schedule rescaled to 10k)."""
    i = int(it / queries * 10000)
    div = 512
    for bound, d in _SCHEDULE:
        if i <= bound:
            div = d
            break
    return p_init / div


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the best other one (< 0: misclassified)."""
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.clone()
    other.scatter_(1, y[:, None], -math.inf)
    return true - other.max(1).values


@torch.no_grad()
def square_linf(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                y: torch.Tensor, eps: float, *, queries: int = 1000, p_init: float = 0.05,
                seed: int = 0, accept_ties: bool = False) -> torch.Tensor:
    """Adversarial inputs within eps (L-inf) of ``x`` and in [0, 1], found with at most
    ``queries`` model calls per example. ``accept_ties`` also keeps changes that leave the
    margin equal: a quantized model's outputs move in steps, and a strict search stalls on them."""
    g = torch.Generator().manual_seed(seed)
    shape = x.shape
    img = x.reshape(len(x), shape[1], -1, shape[-1]) if x.dim() != 4 else x  # (n, c, h, w)
    n, c, h, w = img.shape

    def query(batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return margin(model(batch.reshape(len(batch), *shape[1:])).float(), labels)

    signs = torch.randint(0, 2, (n, c, 1, w), generator=g).to(x) * 2 - 1
    best = (img + eps * signs).clamp(0, 1)
    loss = query(best, y)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    for it in range(1, queries):
        active = (loss > 0).nonzero()[:, 0]
        if not len(active):
            break
        xa, ba = img[active], best[active]
        s = max(1, min(h, w, round(math.sqrt(window_fraction(p_init, it, queries) * h * w))))
        top = torch.randint(0, h - s + 1, (len(active), 1, 1, 1), generator=g).to(x.device)
        left = torch.randint(0, w - s + 1, (len(active), 1, 1, 1), generator=g).to(x.device)
        window = (rows >= top) & (rows < top + s) & (cols >= left) & (cols < left + s)
        signs = torch.randint(0, 2, (len(active), c, 1, 1), generator=g).to(x) * 2 - 1
        values = signs * eps
        candidate = torch.where(window, (xa + values).clamp(0, 1), ba)
        new = query(candidate, y[active])
        better = new <= loss[active] if accept_ties else new < loss[active]
        best[active[better]] = candidate[better]
        loss[active[better]] = new[better]
    return best.reshape(shape)
