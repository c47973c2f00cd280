"""Unstructured and N:M masks: which weights to zero, applying them, keeping them through training.

Magnitude pruning follows Han et al. 2015 (layer-wise) and its global variant; random masks are
the control; N:M keeps the N largest of every M consecutive input weights (Mishra et al. 2021).
"""

from __future__ import annotations

import torch
from torch import nn

from nnopt.train.masks import KeepMasks, Masks, apply_masks, masks_from_zeros  # noqa: F401

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def prunable_weights(model: nn.Module, exclude: list[str] | tuple[str, ...] = ()
                     ) -> dict[str, nn.Parameter]:
    """Weights of Linear and Conv layers, by parameter name, minus the excluded layer names."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE) and not any(name == e or name.startswith(e + ".")
                                                    for e in exclude):
            out[f"{name}.weight"] = module.weight
    return out


def _keep_top(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Mask keeping all but the ``amount`` share of lowest scores (ties broken by position)."""
    n_prune = int(round(amount * scores.numel()))
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_prune > 0:
        idx = torch.argsort(scores.flatten(), stable=True)[:n_prune]
        mask[idx] = False
    return mask.view_as(scores)


def score_masks(scores: dict[str, torch.Tensor], amount: float | dict[str, float],
                scope: str = "layer") -> Masks:
    """Masks removing the lowest scores: per layer, or over all layers together (global)."""
    if scope == "global":
        if isinstance(amount, dict):
            raise ValueError("global pruning takes one amount, not per-layer amounts")
        flat = torch.cat([s.flatten() for s in scores.values()])
        keep = _keep_top(flat, amount)
        out, start = {}, 0
        for name, s in scores.items():
            out[name] = keep[start:start + s.numel()].view_as(s)
            start += s.numel()
        return out
    return {name: _keep_top(s, amount[name] if isinstance(amount, dict) else amount)
            for name, s in scores.items()}


def magnitude_masks(weights: dict[str, nn.Parameter], amount: float | dict[str, float],
                    scope: str = "layer") -> Masks:
    """Remove the smallest-magnitude weights (already-zero weights go first)."""
    return score_masks({k: w.detach().abs() for k, w in weights.items()}, amount, scope)


def random_masks(weights: dict[str, nn.Parameter], amount: float | dict[str, float],
                 scope: str = "layer", seed: int = 0) -> Masks:
    """Remove a random share of weights: the control for every scoring rule."""
    gen = torch.Generator().manual_seed(seed)
    scores = {k: torch.rand(w.shape, generator=gen).to(w.device) for k, w in weights.items()}
    return score_masks(scores, amount, scope)


def nm_masks(weights: dict[str, nn.Parameter], n: int = 2, m: int = 4) -> Masks:
    """Keep the ``n`` largest-magnitude of every ``m`` consecutive weights along the input axis."""
    out = {}
    for name, w in weights.items():
        flat = w.detach().abs().reshape(w.shape[0], -1)
        if flat.shape[1] % m:
            raise ValueError(f"{name}: {flat.shape[1]} inputs per output are not a multiple of "
                             f"M={m}; exclude this layer or choose another M")
        groups = flat.reshape(flat.shape[0], -1, m)
        top = groups.topk(n, dim=-1).indices
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
        out[name] = mask.reshape(w.shape)
    return out


def sparsity(model: nn.Module, names: list[str] | None = None) -> dict[str, float]:
    """Share of exact zeros per prunable weight (or per named parameter)."""
    params = dict(model.named_parameters())
    names = names or list(prunable_weights(model))
    return {n: 1.0 - params[n].count_nonzero().item() / params[n].numel() for n in names}


def global_sparsity(model: nn.Module, names: list[str]) -> float:
    params = dict(model.named_parameters())
    total = sum(params[n].numel() for n in names)
    zeros = sum(params[n].numel() - params[n].count_nonzero().item() for n in names)
    return zeros / max(total, 1)


def mark_sparse(model: nn.Module, masks: Masks, pattern: str) -> None:
    """Record in the model's spec which weights are pruned, so later stages keep them at zero."""
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict):
        prev = set((spec.get("sparsity") or {}).get("params", []))
        spec["sparsity"] = {"params": sorted(prev | set(masks)), "pattern": pattern}
