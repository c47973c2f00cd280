"""Gradual pruning during training: the cubic schedule of Zhu & Gupta (2017), with magnitude,
random or movement scores (Sanh et al. 2020: weights moving towards zero are pruned first)."""

from __future__ import annotations

import torch
from torch import nn

from nnopt.compress.prune.masks import Masks, apply_masks, random_masks, score_masks
from nnopt.train.callbacks import Callback, FitState


def cubic_sparsity(step: int, final: float, start: int, end: int, initial: float = 0.0) -> float:
    """Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3, clamped to [t0, t1]."""
    if step <= start:
        return initial
    if step >= end:
        return final
    frac = (step - start) / (end - start)
    return final + (initial - final) * (1.0 - frac) ** 3


class GradualPruning(Callback):
    """Raise sparsity along the cubic schedule every ``every`` steps; keep masks between."""

    def __init__(self, names: list[str], final: float, *, method: str = "magnitude",
                 scope: str = "global", start_frac: float = 0.0, end_frac: float = 0.75,
                 every: int = 50, seed: int = 0) -> None:
        if method not in ("magnitude", "random", "movement"):
            raise ValueError(f"gradual pruning scores: magnitude, random or movement, not {method}")
        self.names, self.final, self.method, self.scope = names, final, method, scope
        self.start_frac, self.end_frac, self.every, self.seed = start_frac, end_frac, every, seed
        self.masks: Masks = {}
        self.movement: dict[str, torch.Tensor] = {}
        self.trace: list[tuple[int, float]] = []

    def on_fit_start(self, state: FitState) -> None:
        total = state.epochs * state.batches_per_epoch
        self.start = int(self.start_frac * total)
        self.end = max(self.start + 1, int(self.end_frac * total))
        # checkpoint selection may only pick epochs that end at the final sparsity
        state.notes["select_from_epoch"] = -(-self.end // state.batches_per_epoch)
        params = dict(state.model.named_parameters())
        self.params = {n: params[n] for n in self.names}
        self.movement = {n: torch.zeros_like(p) for n, p in self.params.items()}

    def _update(self, model: nn.Module, amount: float) -> None:
        if self.method == "random":
            self.masks = random_masks(self.params, amount, self.scope, seed=self.seed)
        else:
            scores = ({n: p.detach().abs() for n, p in self.params.items()}
                      if self.method == "magnitude" else self.movement)
            if self.masks:  # already-pruned weights stay pruned
                scores = {n: torch.where(self.masks[n], s, torch.full_like(s, -torch.inf))
                          for n, s in scores.items()}
            self.masks = score_masks(scores, amount, self.scope)
        apply_masks(model, self.masks)

    def on_batch_end(self, state: FitState) -> None:
        if self.method == "movement":
            for n, p in self.params.items():
                if p.grad is not None:
                    self.movement[n] -= p.grad.detach() * p.detach()
        step = state.step
        if self.start <= step <= self.end and (step - self.start) % self.every == 0:
            amount = cubic_sparsity(step, self.final, self.start, self.end)
            self._update(state.model, amount)
            self.trace.append((step, amount))
        elif self.masks:
            apply_masks(state.model, self.masks)

    def on_fit_end(self, state: FitState) -> None:
        if not self.trace or self.trace[-1][1] < self.final:
            self._update(state.model, self.final)
            self.trace.append((state.step, self.final))
