"""The Report: data only (rendering happens at the edge). Serialises to results.json."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnopt.core.errors import NnoptError, first_line
from nnopt.core.fileio import read_inside

RESULTS = "results.json"
MAX_RESULTS_BYTES = 256 * 2 ** 20


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
    run: dict[str, Any] = field(default_factory=dict)  # recipe file, date, seed, revision
    summary: dict[str, Any] = field(default_factory=dict)  # the answer: see report.summary

    @property
    def name(self) -> str:
        return str(self.recipe.get("name", "run"))

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, d: Any) -> Report:
        """The Report of a results.json; a file of another shape raises ValueError naming the
        first field that is wrong."""
        check_results(d)
        stages = [StageRecord(**{k: s.get(k) for k in ("name", "step", "seconds", "artifact",
                                                       "metrics")}, details=s.get("details", {}))
                  for s in d["stages"]]
        return cls(nnopt_version=d["nnopt_version"], recipe=d["recipe"],
                   environment=d.get("environment", {}), data=d.get("data", {}), stages=stages,
                   run=d.get("run", {}), summary=d.get("summary", {}))


def check_results(d: Any) -> None:
    """The shape results.json must have for a report to be drawn from it."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)

    need(isinstance(d, dict), "not a JSON object")
    need(isinstance(d.get("nnopt_version"), str), "'nnopt_version' must be a string")
    need(isinstance(d.get("recipe"), dict), "'recipe' must be an object")
    for key in ("environment", "data", "run", "summary"):
        need(isinstance(d.get(key, {}), dict), f"'{key}' must be an object")
    need(isinstance(d.get("stages"), list) and d["stages"], "'stages' must be a non-empty list")
    for i, s in enumerate(d["stages"]):
        at = f"stages[{i}]"
        need(isinstance(s, dict), f"{at} must be an object")
        need(isinstance(s.get("name"), str) and isinstance(s.get("step"), str),
             f"{at} needs 'name' and 'step' strings")
        need(type(s.get("seconds")) in (int, float), f"{at}.seconds must be a number")
        need(s.get("artifact") is None or isinstance(s["artifact"], str),
             f"{at}.artifact must be a string")
        need(isinstance(s.get("details", {}), dict), f"{at}.details must be an object")
        metrics = s.get("metrics")
        need(isinstance(metrics, dict), f"{at}.metrics must be an object")
        for k, v in metrics.items():
            need(type(v) in (int, float) and math.isfinite(v),
                 f"{at}.metrics['{str(k)[:40]}'] must be a finite number")


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
    data = read_inside(path, path.parent, MAX_RESULTS_BYTES, "results file")
    try:
        return Report.from_dict(json.loads(data))
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as exc:
        raise NnoptError(f"{path} is not an nnopt results file: {first_line(exc)}") from None
