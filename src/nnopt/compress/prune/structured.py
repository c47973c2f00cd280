"""Structured (channel, filter, head) pruning that physically removes parameters across coupled
layers, using Torch-Pruning's dependency graph (Fang et al. 2023, DepGraph).

Importance: L1/L2 magnitude of the coupled group, BN scale (Liu et al. 2017, network slimming)
or first-order Taylor (Molchanov et al. 2019). The amount is a channel ratio, or a budget of MACs
or of measured latency on a target, reached by pruning in small steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.core.errors import NnoptError
from nnopt.core.extras import require
from nnopt.data.base import Split


def _importance(name: str):  # -> torch_pruning Importance
    tp = require("torch_pruning", "channel pruning")

    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    raise NnoptError(f"unknown importance '{name}'; valid choices: l1, l2, bn_scale, taylor")


def _classifier(model: nn.Module) -> nn.Module:
    """The last Linear layer: its outputs are the classes and are never pruned."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NnoptError("channel pruning needs a final Linear classifier layer")
    return linears[-1]


def _attention_options(model: nn.Module, prune_heads: bool, head_ratio: float) -> dict:
    """Head bookkeeping for attention blocks that expose ``qkv`` and ``num_heads``."""
    heads = {m.qkv: m.num_heads for m in model.modules()
             if hasattr(m, "qkv") and hasattr(m, "num_heads")}
    if not heads:
        return {}
    params = [(p, p.dim() - 1) for n, p in model.named_parameters()
              if n.rsplit(".", 1)[-1] in ("pos", "cls", "pos_embed", "cls_token")]
    return {"num_heads": heads, "prune_num_heads": prune_heads, "prune_head_dims": not prune_heads,
            "head_pruning_ratio": head_ratio if prune_heads else 0.0,
            "unwrapped_parameters": params}


def _sync_attention(model: nn.Module, pruner) -> None:  # noqa: ANN001
    for m in model.modules():
        if hasattr(m, "qkv") and hasattr(m, "num_heads"):
            m.num_heads = pruner.num_heads.get(m.qkv, m.num_heads)
            m.head_dim = m.qkv.out_features // (3 * m.num_heads)


def _taylor_gradients(model: nn.Module, data: Split, batches: int = 4, bs: int = 128) -> None:
    model.zero_grad()
    model.eval()
    for i in range(batches):
        x, y = data.x[i * bs:(i + 1) * bs], data.y[i * bs:(i + 1) * bs]
        if len(y) == 0:
            break
        F.cross_entropy(model(x), y).backward()


def channel_prune(model: nn.Module, example: torch.Tensor, *, amount: float, importance: str,
                  scope: str, data: Split, per_layer: dict[str, float] | None = None,
                  prune_heads: bool = False, round_to: int | None = None,
                  budget: Callable[[nn.Module], bool] | None = None, steps: int = 20,
                  max_amount: float = 0.9) -> dict[str, object]:
    """Prune ``model`` in place; with ``budget``, prune in steps until ``budget(model)`` holds."""
    tp = require("torch_pruning", "channel pruning")

    modules = dict(model.named_modules())
    ratio_dict = None
    if per_layer:
        unknown = sorted(set(per_layer) - set(modules))
        if unknown:
            raise NnoptError(f"per_layer names unknown layers: {', '.join(unknown)}; layers: "
                             + ", ".join(n for n, m in modules.items()
                                         if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))))
        ratio_dict = {modules[n]: r for n, r in per_layer.items()}
    iterative = budget is not None
    pruner = tp.pruner.MetaPruner(
        model, example, importance=_importance(importance), global_pruning=scope == "global",
        pruning_ratio=max_amount if iterative else amount, pruning_ratio_dict=ratio_dict,
        iterative_steps=steps if iterative else 1, ignored_layers=[_classifier(model)],
        round_to=round_to, **_attention_options(model, prune_heads, amount))
    done_steps = 0
    for _ in range(steps if iterative else 1):
        if importance == "taylor":
            _taylor_gradients(model, data)
        pruner.step()
        _sync_attention(model, pruner)
        done_steps += 1
        if iterative and budget(model):
            break
    model.zero_grad(set_to_none=True)
    met = budget(model) if iterative else True
    if iterative and not met:
        raise NnoptError(f"the budget was not met even at the maximum channel ratio "
                         f"{max_amount}; relax the budget or raise max_amount")
    return {"steps": done_steps, "ratio": (max_amount * done_steps / steps) if iterative
            else amount}
