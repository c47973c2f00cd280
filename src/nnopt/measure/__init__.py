"""Measurement: registered metrics over a stage's model, data, saved file and targets."""

from collections.abc import Callable

from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement


def measure(m: Measurement, names: list[str],
            bar: Callable[..., None] | None = None) -> dict[str, float]:
    """Run the named metrics; a metric that could not be measured is absent, never zero.
    ``bar(done, total, name)`` shows progress (attacks and evaluation take minutes)."""
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        if bar:
            bar(i, len(names), name)
            m.note = lambda text, i=i, name=name: bar(i, len(names), f"{name}: {text}")
        out.update(METRICS.get(name).fn(m))
    m.note = None
    if bar:
        bar(len(names), len(names), "done")
    return out


__all__ = ["Measurement", "measure"]
