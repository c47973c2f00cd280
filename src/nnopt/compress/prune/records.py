"""The pruning record of a stage (results.json: details.pruning)."""

from __future__ import annotations

from typing import Any

from nnopt.core.record import Record, record


@record
class PruningRecord(Record):
    """What was pruned and how: the method, the sparsity pattern ('unstructured', 'N:M' or
    'channels'), the ranking scope, the share of zeros over the pruned layers (unstructured and
    N:M), the channel importance and Torch-Pruning's own account (channel pruning)."""

    KEY = "pruning"
    method: str
    pattern: str = "channels"
    scope: str | None = None
    global_sparsity: float | None = None
    importance: str | None = None
    channel: dict[str, Any] | None = None  # channel pruning: steps, ratio, heads, ...
