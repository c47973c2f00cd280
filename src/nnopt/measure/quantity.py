"""What a metric's number means: its unit and which direction is better, registered with the
metric (``@METRICS.register(NAME, produces=[...], quantity=FRACTION)``, or ``quantities={...}``
per produced name), so that tables, changes and plots format every metric from its metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nnopt.core.registry import METRICS

Unit = Literal["fraction", "bytes", "count", "ms", "nats", "score"]


@dataclass(frozen=True)
class Quantity:
    """A unit and the better direction (None when neither is better, e.g. a diagnostic)."""

    unit: Unit
    better: Literal["higher", "lower"] | None = None


FRACTION = Quantity("fraction", "higher")  # accuracies: shown in %, changes in points
ERROR_RATE = Quantity("fraction", "lower")
BYTES = Quantity("bytes", "lower")
COUNT = Quantity("count", "lower")
MS = Quantity("ms", "lower")
NATS = Quantity("nats", "lower")  # losses: NLL
SCORE_LOW = Quantity("score", "lower")  # calibration errors, Brier, AURC
SCORE_HIGH = Quantity("score", "higher")  # AUROC
SCORE = Quantity("score")  # a plain number, neither direction better


def _matches(name: str, pattern: str) -> bool:
    """``latency_ms/<target>`` matches every ``latency_ms/...``."""
    return name.startswith(pattern.split("<", 1)[0]) if "<" in pattern else name == pattern


def produced() -> list[tuple[str, Quantity]]:
    """Every produced name (or pattern) with its quantity, in registration order."""
    out = []
    for entry in METRICS.in_order():
        default = entry.meta.get("quantity", SCORE)
        for pattern in entry.meta.get("produces", [entry.name]):
            out.append((pattern, entry.meta.get("quantities", {}).get(pattern, default)))
    return out


def quantity(name: str) -> Quantity:
    """The quantity of a metric name (SCORE for a name no registered metric produces)."""
    return next((q for pattern, q in produced() if _matches(name, pattern)), SCORE)


def order(names: set[str] | list[str]) -> list[str]:
    """Metric names in the order of the metrics that produce them (registration order), names
    of one pattern sorted; unknown names last, sorted."""
    rank = {}
    patterns = [p for p, _ in produced()]
    for n in names:
        rank[n] = next((i for i, p in enumerate(patterns) if _matches(n, p)), len(patterns))
    return sorted(names, key=lambda n: (rank[n], n))


def fmt(name: str, value: Any) -> str:
    """A metric value as a person reads it, from its unit."""
    if value is None:
        return "-"
    unit = quantity(name).unit
    if unit == "fraction":
        return f"{100 * value:.2f}%"
    if unit == "bytes":
        for suffix, scale in (("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {suffix}"
        return f"{value:.0f} B"
    if unit == "count":
        for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.2f}{suffix}"
        return f"{value:.0f}"
    if unit == "ms":
        return f"{value:.3f} ms"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def change(name: str, new: float, ref: float) -> str:
    """The change from ``ref`` to ``new``: points for fractions, a ratio named by the better
    direction for costs ('faster' for time, 'smaller' otherwise)."""
    q = quantity(name)
    if q.unit == "fraction":
        return f"{100 * (new - ref):+.2f} pt"
    if ref == 0 or new == 0:
        return "-"
    if q.better == "lower":
        better, worse = ("faster", "slower") if q.unit == "ms" else ("smaller", "larger")
        ratio = ref / new
        return f"{ratio:.2f}x {better}" if ratio >= 1 else f"{1 / ratio:.2f}x {worse}"
    return f"{new / ref:.3g}x"


def axis(name: str) -> tuple[float, str]:
    """The scale and unit label of a plot axis for ``name``."""
    unit = quantity(name).unit
    return {"fraction": (100.0, "%"), "bytes": (1 / 1024, "KiB"), "ms": (1.0, "ms")}.get(
        unit, (1.0, ""))
