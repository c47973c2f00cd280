"""The ``corruption`` metric: accuracy on the common-corruption suite, per type and severity."""

from __future__ import annotations

import torch
from pydantic import Field

from nnopt.core.compute import predict
from nnopt.core.config import Seed, Strict
from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement
from nnopt.measure.quantity import FRACTION
from nnopt.trust.robustness.corruptions import corrupt, corruption_names


class CorruptionConfig(Strict):
    """Which corruptions, at which severities, on how many test images."""

    types: list[str] = Field(default_factory=corruption_names,
                             description="corruption types (default: all)")
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    examples: int = Field(2000, ge=1, description="the first N test images are corrupted")
    seed: Seed = 0

    def model_post_init(self, _: object) -> None:
        names = corruption_names()
        bad = [t for t in self.types if t not in names]
        if bad:
            raise ValueError(f"unknown corruption(s) {', '.join(bad)}; choose "
                             f"{', '.join(names)}")
        if any(not 1 <= s <= 5 for s in self.severities):
            raise ValueError("severities are 1 to 5")


@METRICS.register("corruption", config=CorruptionConfig,
                  produces=["corruption_accuracy", "corruption_accuracy/<type>"],
                  quantity=FRACTION)
def corruption(m: Measurement) -> dict[str, float]:
    """Mean accuracy over every corruption type and severity (and per type, over severities)
    on the first ``examples`` test images; details hold the type x severity table."""
    cfg: CorruptionConfig = m.option("corruption")
    x, y = m.data.test.x[:cfg.examples], m.data.test.y[:cfg.examples]
    if x.dim() != 4 or x.dtype not in (torch.float32, torch.float64):
        return {}  # image data only
    table: dict[str, dict[str, float]] = {}
    out: dict[str, float] = {}
    for name in cfg.types:
        if m.note:
            m.note(f"corruption {name}")
        row = {}
        for s in cfg.severities:
            logits = predict(m.model, corrupt(x, name, s, cfg.seed))
            row[str(s)] = (logits.argmax(1) == y).double().mean().item()
        table[name] = row
        out[f"corruption_accuracy/{name}"] = sum(row.values()) / len(row)
    clean = (m.logits[:cfg.examples].argmax(1) == y).double().mean().item()
    out["corruption_accuracy"] = sum(out.values()) / len(cfg.types)
    m.details["corruption"] = {"examples": len(x), "clean_accuracy": clean, "table": table}
    return out
