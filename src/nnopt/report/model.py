"""The Report: data only (rendering happens at the edge). Serialises to results.json."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnopt.errors import NnoptError

RESULTS = "results.json"


@dataclass
class StageRecord:
    """One stage: its step, wall time, saved model and measured metrics."""

    name: str
    step: str
    seconds: float
    artifact: str | None
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """The outcome of one run: resolved recipe, environment, data summary and stage records."""

    nnopt_version: str
    recipe: dict[str, Any]
    environment: dict[str, Any]
    data: dict[str, Any]
    stages: list[StageRecord]

    @property
    def name(self) -> str:
        return str(self.recipe.get("name", "run"))

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        stages = [StageRecord(**{k: s.get(k) for k in ("name", "step", "seconds", "artifact",
                                                       "metrics")}, details=s.get("details", {}))
                  for s in d["stages"]]
        return cls(nnopt_version=d["nnopt_version"], recipe=d["recipe"],
                   environment=d.get("environment", {}), data=d.get("data", {}), stages=stages)


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: a key whose value is not finite is dropped, a list item becomes null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()
                if not (isinstance(v, float) and not math.isfinite(v))}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def load_report(folder: str | Path) -> Report:
    """Read ``folder/results.json``; a missing or corrupt file raises NnoptError."""
    path = Path(folder) / RESULTS if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        raise NnoptError(f"no {RESULTS} in {folder}: is it an nnopt run folder?")
    try:
        return Report.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise NnoptError(f"{path} is corrupt: {exc}") from None
