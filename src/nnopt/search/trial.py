"""One search trial: build an architecture, train it briefly (the proxy), measure its objectives
on the validation split and on the targets. A trial is a plain picklable job and result, so any
executor (in-process, Ray) can run it; the trial store keeps every result as one JSON line.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from nnopt.core.compute import on_device, resolve_device, seed_everything
from nnopt.core.environment import environment
from nnopt.core.errors import NnoptError, RecipeError, unknown_choice
from nnopt.core.fileio import atomic_write_text
from nnopt.core.registry import DATASETS, METRICS, MODELS
from nnopt.data import load_data
from nnopt.data.base import DataSplits
from nnopt.measure import Measurement, measure
from nnopt.measure.target import Target
from nnopt.models import build_model
from nnopt.train.fit import TrainConfig, fit

MAXIMISED = ("accuracy", "knn_accuracy", "robust_accuracy/", "clean_accuracy", "accuracy_")


def direction(objective: str) -> str:
    """'max' for accuracies, 'min' for everything else (latency, size, ECE, NLL, ...)."""
    return "max" if objective.startswith(MAXIMISED) else "min"


def metric_for(objective: str) -> str:
    """The registered metric that produces ``objective`` (e.g. latency for latency_ms/edge)."""
    names = []
    for entry in METRICS.entries():
        for pattern in entry.meta.get("produces", [entry.name]):
            names.append(pattern)
            if re.fullmatch(re.sub(r"<[^>]+>", "[^/]+", re.escape(pattern)), objective):
                return entry.name
    raise RecipeError(unknown_choice("objective", objective, names))


@dataclass
class TrialJob:
    """Everything a worker needs to evaluate one architecture, as plain data."""

    number: int
    arch: dict[str, Any]
    family: str
    fixed: dict[str, Any]
    data: dict[str, Any]  # the resolved data config (the worker loads, and caches, the data)
    proxy: dict[str, Any]  # TrainConfig fields
    proxy_limit: int | None
    metrics: list[str]  # registered metric names to measure
    targets: list[dict[str, Any]]
    seed: int
    metric_options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"  # where the trial trains and is measured


@dataclass
class TrialResult:
    number: int
    arch: dict[str, Any]
    metrics: dict[str, float]
    seconds: float
    seed: int
    environment: dict[str, Any]
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


_DATA: dict[str, DataSplits] = {}


def data_key(cfg: dict[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True)


def share_data(cfg: dict[str, Any], data: DataSplits) -> None:
    """Let in-process trials use data already loaded (no reload per trial)."""
    _DATA[data_key(cfg)] = data


def _load(cfg: dict[str, Any]) -> DataSplits:
    key = data_key(cfg)
    if key not in _DATA:
        entry = DATASETS.get(cfg["name"])
        assert entry.config is not None
        _DATA[key] = load_data(entry.config(**cfg))
    return _DATA[key]


@cache
def _environment() -> dict[str, Any]:
    env = environment()
    return {k: env[k] for k in ("python", "torch", "onnxruntime", "cpu", "cpu_count", "gpu")}


def evaluate_trial(job: TrialJob) -> TrialResult:
    """Train the architecture on the proxy budget and measure it; errors become a failed result
    (the search goes on), with the reason."""
    start = time.perf_counter()
    try:
        with on_device(resolve_device(job.device)):
            metrics, details = _evaluate(job)
        error = None
    except NnoptError as exc:
        metrics, details, error = {}, {}, str(exc)
    except Exception as exc:  # one broken architecture must not end the search
        metrics, details = {}, {}
        error = traceback.format_exception_only(type(exc), exc)[-1].strip()
    env = {**_environment(), "host": os.uname().nodename, "pid": os.getpid()}
    return TrialResult(job.number, job.arch, metrics, time.perf_counter() - start, job.seed,
                       env, error, details)


def _evaluate(job: TrialJob) -> tuple[dict[str, float], dict[str, Any]]:
    data = _load(job.data)
    cls = MODELS.get(job.family).config
    assert cls is not None
    seed_everything(job.seed)
    model = build_model(cls(**{**job.fixed, **job.arch}), data.input_shape, data.num_classes,
                        data.mean, data.std)
    train = data.train.subset(job.proxy_limit, job.seed)
    state = fit(model, train, config=TrainConfig(**job.proxy), val=data.val, seed=job.seed,
                stage=f"trial {job.number}")
    # objectives are judged on the validation split: the test split stays unseen by the search
    judged = DataSplits(name=data.name, train=data.train, val=data.val, test=data.val,
                        num_classes=data.num_classes, class_names=data.class_names,
                        mean=data.mean, std=data.std)
    options = {k: METRICS.get(k).config(**v) for k, v in job.metric_options.items()}
    with tempfile.TemporaryDirectory() as tmp:
        m = Measurement(model=model, data=judged, targets=[Target(**t) for t in job.targets],
                        work_dir=Path(tmp), options=options)
        metrics = measure(m, job.metrics)
    last = state.history[-1] if state.history else {}
    return metrics, {"proxy_epochs": len(state.history),
                     "proxy_train_loss": last.get("train_loss")}


class TrialStore:
    """Trials of one search as JSON lines, appended and flushed one by one: an interrupted
    search loses at most the trial being written, and resumes from the others. A header line
    holds the search settings; a store written by different settings is refused."""

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.folder, self.settings = folder, settings
        self.path = folder / "trials.jsonl"

    def load(self) -> list[TrialResult]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text().splitlines()
        if not lines:
            return []
        header = json.loads(lines[0])
        if header.get("settings") != json.loads(json.dumps(self.settings)):
            raise NnoptError(f"the trial store {self.path} holds a search with other settings "
                             "(space, strategy, objectives, proxy, data or seed); delete it or "
                             "set the step's 'store' to another folder")
        out = []
        for i, line in enumerate(lines[1:], start=2):
            try:
                out.append(TrialResult(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                if i != len(lines):  # only the last line may be cut by an interruption
                    raise NnoptError(f"{self.path} line {i} is not a trial record") from None
        return out

    def start(self, keep: list[TrialResult]) -> None:
        """Begin the file afresh with the header and the kept trials (drops a cut last line)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"settings": self.settings}) + "\n"
        text += "".join(json.dumps(asdict(t)) + "\n" for t in keep)
        atomic_write_text(self.path, text)

    def append(self, result: TrialResult) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(asdict(result)) + "\n")
            f.flush()
            os.fsync(f.fileno())
