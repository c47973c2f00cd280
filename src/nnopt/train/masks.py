"""Weight masks during training: applying them and keeping pruned weights at zero.

The pruning methods that choose masks live in ``nnopt.compress.prune.masks``; this floor holds
what every fit() may need (a model pruned by an earlier stage keeps its zeros)."""

from __future__ import annotations

import torch
from torch import nn

from nnopt.train.callbacks import Callback, FitState

Masks = dict[str, torch.Tensor]


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero every masked weight in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name]))  # the weight's device and dtype


def masks_from_zeros(model: nn.Module, names: list[str]) -> Masks:
    """The masks of a saved pruned model: its exact zeros (pruned weights are stored as 0)."""
    params = dict(model.named_parameters())
    return {n: params[n].detach() != 0 for n in names if n in params}


class KeepMasks(Callback):
    """Re-apply masks after every optimiser step so pruned weights stay zero during training."""

    def __init__(self, masks: Masks) -> None:
        self.masks = masks

    def on_fit_start(self, state: FitState) -> None:
        params = dict(state.model.named_parameters())  # the masks where the weights train
        self.masks = {n: m.to(params[n].device) for n, m in self.masks.items()}
        apply_masks(state.model, self.masks)

    def on_batch_end(self, state: FitState) -> None:
        apply_masks(state.model, self.masks)
