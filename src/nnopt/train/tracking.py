"""Experiment tracking: a run logged to MLflow (the recipe as parameters, each epoch's training
figures as they come, every stage's metrics, the report, figures and results.json as artifacts;
a sweep's variants as child runs) and per-epoch scalars written for TensorBoard.

``tracking: {mlflow: {uri: ...}}`` in a recipe: without ``uri``, MLFLOW_TRACKING_URI when set,
else a SQLite store ``mlflow.db`` (artifacts in ``mlartifacts/``) in the folder that holds the
run folder (``runs/`` for ``--out runs/NAME``). ``tracking: {tensorboard: DIR}`` writes event
files to ``DIR/<run folder name>``. Only process 0 of a distributed run logs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from nnopt.core.config import PATH, Strict
from nnopt.core.errors import NnoptError
from nnopt.core.extras import require
from nnopt.train.callbacks import Callback, FitState

MAX_PARAM = 500  # characters of one MLflow parameter value


class MlflowConfig(Strict):
    uri: str | None = Field(None, description="tracking URI: a server (http://host:5000), a "
                            "database (sqlite:///path/mlflow.db); default MLFLOW_TRACKING_URI, "
                            "else mlflow.db beside the run folder")
    experiment: str | None = Field(None, min_length=1, max_length=200,
                                   description="the experiment (default: the recipe's name)")
    parent: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="the run ID this "
                               "run is a child of (a sweep sets it for its variants)")


class TrackingConfig(Strict):
    """Where a run is logged besides its own folder."""

    mlflow: MlflowConfig | None = Field(None, description="log to MLflow")
    tensorboard: str | None = Field(None, json_schema_extra=PATH, description="a folder for "
                                    "TensorBoard event files (per-epoch scalars per stage)")


def _quiet() -> None:
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def flat(obj: Any, prefix: str = "") -> dict[str, str]:
    """A nested recipe as MLflow parameters: dotted keys, values as short strings."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        for i, v in enumerate(obj):
            out.update(flat(v, f"{prefix}.{i}"))
    elif obj is not None:
        out[key(prefix)] = str(obj)[:MAX_PARAM]
    return out


def key(name: str) -> str:
    """A name as MLflow accepts it (letters, digits and _-. :/ only)."""
    return re.sub(r"[^\w\-. :/]", "_", name)[:250]


def store_uri(cfg: MlflowConfig, run_dir: Path) -> str:
    if cfg.uri:
        return cfg.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(run_dir.absolute().parent / 'mlflow.db').as_posix()}"


class MlflowRun:
    """One MLflow run, logged through an explicit client (no global active run, so runs in
    one process, a sweep's for instance, never mix)."""

    def __init__(self, cfg: MlflowConfig, name: str, experiment: str, run_dir: Path,
                 tags: dict[str, str] | None = None) -> None:
        mlflow = require("mlflow", "MLflow tracking")
        _quiet()
        self.uri = store_uri(cfg, run_dir)
        try:
            self.client = mlflow.MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                exp_id = found.experiment_id
            else:
                where = None
                if self.uri.startswith("sqlite:///"):  # artifacts beside the database
                    where = (Path(self.uri.removeprefix("sqlite:///")).parent
                             / "mlartifacts").absolute().as_uri()
                exp_id = self.client.create_experiment(experiment, artifact_location=where)
            all_tags = dict(tags or {})
            if cfg.parent:
                all_tags["mlflow.parentRunId"] = cfg.parent
            self.run_id = self.client.create_run(exp_id, run_name=name, tags=all_tags).info.run_id
        except mlflow.exceptions.MlflowException as exc:
            raise NnoptError(f"MLflow at {self.uri}: {str(exc).splitlines()[0][:160]}") from None
        self.experiment_id = exp_id

    def params(self, recipe: dict[str, Any]) -> None:
        items = list(flat(recipe).items())
        from mlflow.entities import Param

        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in items[i:i + 100]])

    def metrics(self, values: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key(k), float(v), now, step) for k, v in values.items()
                 if isinstance(v, (int, float)) and math.isfinite(v)]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[i:i + 500])

    def artifacts(self, folder: Path, names: list[str]) -> None:
        for name in names:
            path = folder / name
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))

    def end(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class TensorBoardWriter:
    """Event files for TensorBoard (torch.utils.tensorboard, the 'tensorboard' extra)."""

    def __init__(self, folder: str, name: str) -> None:
        require("tensorboard", "TensorBoard logging")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(folder) / name))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Tracker:
    """What a run logs to, opened and closed by the runner; each fit() gets its callback."""

    def __init__(self, mlflow: MlflowRun | None, tensorboard: TensorBoardWriter | None) -> None:
        self.mlflow, self.tensorboard = mlflow, tensorboard
        self.fits: dict[str, int] = {}  # epochs logged per stage (a stage may fit more than once)

    def params(self, values: dict[str, Any]) -> None:
        if self.mlflow is not None:
            self.mlflow.params(values)

    def epoch(self, stage: str, values: dict[str, float]) -> None:
        step = self.fits[stage] = self.fits.get(stage, 0) + 1
        scalars = {f"{stage}/{k}": v for k, v in values.items() if k != "epoch"}
        if self.mlflow is not None:
            self.mlflow.metrics(scalars, step)
        if self.tensorboard is not None:
            self.tensorboard.scalars(scalars, step)

    def stage(self, index: int, stage: str, metrics: dict[str, float]) -> None:
        if self.mlflow is not None:
            self.mlflow.metrics({f"{stage}/{k}": v for k, v in metrics.items()})
        if self.tensorboard is not None:
            self.tensorboard.scalars({f"metrics/{k}": v for k, v in metrics.items()}, index)

    def close(self, ok: bool, folder: Path | None = None) -> None:
        if self.mlflow is not None:
            if ok and folder is not None:
                self.mlflow.artifacts(folder, ["report.html", "report.md", "results.json",
                                               "sweep.json", "figures"])
            self.mlflow.end(ok)
        if self.tensorboard is not None:
            self.tensorboard.close()


@contextlib.contextmanager
def logged(tracker: Tracker | None, folder: Path) -> Iterator[None]:
    """The block's work logged by ``tracker`` (when there is one): the run is marked FAILED if
    the block raises, else FINISHED with the reports in ``folder`` as artifacts."""
    if tracker is None:
        yield
        return
    try:
        yield
    except BaseException:
        tracker.close(ok=False)
        raise
    tracker.close(ok=True, folder=folder)


class TrackEpochs(Callback):
    """Each epoch's history row (loss, validation figures) to the run's tracker."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_epoch_end(self, state: FitState) -> None:
        if state.history:
            self.tracker.epoch(state.stage, state.history[-1])


def open_tracker(cfg: TrackingConfig | None, run_dir: Path, experiment: str,
                 tags: dict[str, str] | None = None) -> Tracker | None:
    if cfg is None or (cfg.mlflow is None and cfg.tensorboard is None):
        return None
    name = run_dir.absolute().name
    ml = MlflowRun(cfg.mlflow, name, cfg.mlflow.experiment or experiment, run_dir, tags) \
        if cfg.mlflow is not None else None
    tb = TensorBoardWriter(cfg.tensorboard, name) if cfg.tensorboard else None
    return Tracker(ml, tb)
