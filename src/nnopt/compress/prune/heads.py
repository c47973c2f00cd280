"""Attention-head and FFN-neuron pruning of BERT-style transformer encoders (Michel et al. 2019,
"Are Sixteen Heads Really Better than One?"; FFN neurons as in Kwon et al. 2022), removing the
rows and columns physically.

A layer qualifies when it has ``attention.self.{query,key,value}``, ``attention.output.dense``,
``intermediate.dense`` and ``output.dense`` (Hugging Face BERT, RoBERTa, ELECTRA, ... and nnopt's
MiniLM). A head's importance is first-order Taylor (|sum of activation x gradient| over its
slice of the attention output, on training batches) or the L2 norm of its weights; an FFN
neuron's the same on the intermediate activations. Each layer keeps its most important heads
and neurons (at least one of each).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.core.compute import placed
from nnopt.core.errors import NnoptError
from nnopt.data.base import Split


def encoder_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The BERT-style layers of ``model`` (name, module)."""
    found = []
    for name, m in model.named_modules():
        att, inter, out = (getattr(m, k, None) for k in ("attention", "intermediate", "output"))
        sa = getattr(att, "self", None)
        if sa is None or inter is None or out is None:
            continue
        if all(isinstance(getattr(sa, k, None), nn.Linear) for k in ("query", "key", "value")) \
                and isinstance(getattr(getattr(att, "output", None), "dense", None), nn.Linear) \
                and isinstance(getattr(inter, "dense", None), nn.Linear) \
                and isinstance(getattr(out, "dense", None), nn.Linear):
            found.append((name, m))
    return found


def head_size(sa: nn.Module) -> int:
    size = getattr(sa, "attention_head_size", getattr(sa, "head_dim", None))
    if not isinstance(size, int):
        raise NnoptError(f"attention module {type(sa).__name__} has no head size attribute")
    return size


def _taylor(model: nn.Module, layers: list[nn.Module], data: Split, batches: int,
            batch_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """|sum activation x gradient| per input feature of each attention output projection and
    FFN output projection, over ``batches`` training batches."""
    acts: dict[nn.Module, torch.Tensor] = {}

    def keep(module: nn.Module, args: tuple) -> None:
        if args[0].requires_grad:
            args[0].retain_grad()
            acts[module] = args[0]

    targets = [m.attention.output.dense for m in layers] + [m.output.dense for m in layers]
    scores = {t: torch.zeros(t.in_features) for t in targets}
    hooks = [t.register_forward_pre_hook(keep) for t in targets]
    try:
        with placed(model) as device:
            model.eval()
            for i in range(batches):
                x = data.x[i * batch_size:(i + 1) * batch_size]
                y = data.y[i * batch_size:(i + 1) * batch_size]
                if len(y) == 0:
                    break
                model.zero_grad()
                F.cross_entropy(model(x.to(device)), y.to(device)).backward()
                for t in targets:
                    a = acts.get(t)
                    if a is None or a.grad is None:
                        raise NnoptError("taylor importance needs gradients through every "
                                         "layer (a frozen encoder has none): use "
                                         "importance: magnitude")
                    acts.pop(t)
                    scores[t] += (a * a.grad).reshape(-1, a.shape[-1]).sum(0).detach().cpu()
            model.zero_grad(set_to_none=True)
    finally:
        for h in hooks:
            h.remove()
    heads = [scores[m.attention.output.dense].abs() for m in layers]
    ffn = [scores[m.output.dense].abs() for m in layers]
    return heads, ffn


def _magnitude(layers: list[nn.Module]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    heads, ffn = [], []
    for m in layers:
        sa = m.attention.self
        rows = sum(getattr(sa, k).weight.detach() ** 2 for k in ("query", "key", "value"))
        heads.append(rows.sum(1) + (m.attention.output.dense.weight.detach() ** 2).sum(0))
        ffn.append((m.intermediate.dense.weight.detach() ** 2).sum(1)
                   + (m.output.dense.weight.detach() ** 2).sum(0))
    return heads, ffn


def _rows(linear: nn.Linear, keep: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.detach()[keep].clone())
    if linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias.detach()[keep].clone())
    linear.out_features = len(keep)


def _cols(linear: nn.Linear, keep: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.detach()[:, keep].clone())
    linear.in_features = len(keep)


def _kept(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    n = len(scores)
    keep = max(1, n - round(ratio * n))
    return scores.topk(keep).indices.sort().values


def prune_heads_ffn(model: nn.Module, *, heads: float, ffn: float, importance: str, data: Split,
                    batches: int = 4, batch_size: int = 32) -> dict[str, Any]:
    """Remove the share ``heads`` of attention heads and ``ffn`` of FFN neurons in every
    BERT-style layer of ``model`` (in place); return heads and neurons per layer before/after."""
    named = encoder_layers(model)
    if not named:
        raise NnoptError("head pruning needs a BERT-style transformer encoder (layers with "
                         "attention.self.query/key/value, attention.output.dense, "
                         "intermediate.dense, output.dense): an hf or minilm model")
    layers = [m for _, m in named]
    if importance == "taylor":
        head_feat, ffn_scores = _taylor(model, layers, data, batches, batch_size)
    else:
        head_feat, ffn_scores = _magnitude(layers)
    record: dict[str, Any] = {}
    for (name, m), hf_scores, nf_scores in zip(named, head_feat, ffn_scores, strict=True):
        sa, size = m.attention.self, head_size(m.attention.self)
        n_heads = sa.query.out_features // size
        per_head = hf_scores.reshape(n_heads, size).sum(1)
        keep_h = _kept(per_head, heads)
        cols = (keep_h[:, None] * size + torch.arange(size)[None]).reshape(-1)
        for k in ("query", "key", "value"):
            _rows(getattr(sa, k), cols)
        _cols(m.attention.output.dense, cols)
        for attr in ("num_attention_heads", "heads", "num_heads"):
            if isinstance(getattr(sa, attr, None), int):
                setattr(sa, attr, len(keep_h))
        if isinstance(getattr(sa, "all_head_size", None), int):
            sa.all_head_size = len(cols)
        keep_n = _kept(nf_scores, ffn)
        _rows(m.intermediate.dense, keep_n)
        _cols(m.output.dense, keep_n)
        record[name] = {"heads": [n_heads, len(keep_h)],
                        "ffn": [len(nf_scores), len(keep_n)]}
    return record
