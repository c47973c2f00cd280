"""Measurement: registered metrics over a stage's model, data, saved file and targets."""

from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement


def measure(m: Measurement, names: list[str]) -> dict[str, float]:
    """Run the named metrics; a metric that could not be measured is absent, never zero."""
    out: dict[str, float] = {}
    for name in names:
        out.update(METRICS.get(name).fn(m))
    return out


__all__ = ["Measurement", "measure"]
