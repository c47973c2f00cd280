"""Sensitivity analysis: validation accuracy as each layer alone is pruned deeper (Han et al.
2015, section 4), and per-layer amounts derived from it under an accuracy-drop tolerance."""

from __future__ import annotations

import copy

from torch import nn

from nnopt.compress.prune.masks import apply_masks, magnitude_masks, prunable_weights
from nnopt.data.base import Split
from nnopt.train.fit import evaluate

LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def layer_sensitivity(model: nn.Module, names: list[str], val: Split,
                      levels: tuple[float, ...] = LEVELS) -> dict[str, object]:
    """For every weight in ``names``: validation accuracy with only that layer pruned, per level."""
    base = evaluate(model, val)["accuracy"]
    curves: dict[str, list[list[float]]] = {}
    for name in names:
        curve = []
        for level in levels:
            trial = copy.deepcopy(model)
            weights = prunable_weights(trial)
            apply_masks(trial, magnitude_masks({name: weights[name]}, level))
            curve.append([level, evaluate(trial, val)["accuracy"]])
        curves[name] = curve
    return {"base_accuracy": base, "levels": list(levels), "curves": curves}


def amounts_from_sensitivity(scan: dict[str, object], tolerance: float) -> dict[str, float]:
    """Per layer, the deepest level whose accuracy drop stays within ``tolerance`` (else 0)."""
    base = float(scan["base_accuracy"])  # type: ignore[arg-type]
    out = {}
    for name, curve in scan["curves"].items():  # type: ignore[union-attr]
        ok = [level for level, acc in curve if base - acc <= tolerance]
        out[name] = max(ok) if ok else 0.0
    return out
