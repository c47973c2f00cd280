"""Experiment tracking: a run logged to MLflow (the recipe as parameters, each epoch's training
figures as they come, every stage's metrics, the report, figures and results.json as artifacts;
a sweep's variants as child runs) and per-epoch scalars written for TensorBoard.

``tracking: {mlflow: {uri: ...}}`` in a recipe: without ``uri``, MLFLOW_TRACKING_URI when set,
else a SQLite store ``mlflow.db`` (artifacts in ``mlartifacts/``) inside the run folder: a store
outside ``--out`` is only ever the one the user named, and the run's output says where it
logged. A server is asked first and must answer within seconds; MLflow's telemetry is off.
``tracking: {tensorboard: DIR}`` writes event files to ``DIR/<run folder name>``. Only process 0
of a distributed run logs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from nnopt.core.config import PATH, Strict
from nnopt.core.errors import NnoptError, first_line
from nnopt.core.extras import require
from nnopt.train.callbacks import Callback, FitState

MAX_PARAM = 500  # characters of one MLflow parameter value


class MlflowConfig(Strict):
    uri: str | None = Field(None, description="tracking URI: a server (http://host:5000), a "
                            "database (sqlite:///path/mlflow.db); default MLFLOW_TRACKING_URI, "
                            "else mlflow.db inside the run folder (nnopt writes nothing outside "
                            "--out unless told where)")
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


ANSWER_SECONDS = 5  # a tracking server that has not answered by then is not there


def explicit_uri(cfg: MlflowConfig) -> str | None:
    """The store the user named: the recipe's uri, else MLFLOW_TRACKING_URI (None: neither)."""
    return cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def check_server(uri: str) -> None:
    """A tracking server must answer its health check within ANSWER_SECONDS: a closed port or a
    server that never replies is one line now, not minutes of MLflow's retries."""
    if not uri.lower().startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=ANSWER_SECONDS) as resp:  # noqa: S310
            resp.read(64)
    except urllib.error.HTTPError:
        return  # it answered (a proxy's 401 or 404 is for MLflow's own calls to report)
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", exc)
        raise NnoptError(f"MLflow server {uri} does not answer ({first_line(why)}, waited at "
                         f"most {ANSWER_SECONDS} s): start it, or fix tracking.mlflow.uri"
                         ) from None


class MlflowRun:
    """One MLflow run, logged through an explicit client (no global active run, so runs in
    one process, a sweep's for instance, never mix).

    The store is the one the user named (``uri`` or MLFLOW_TRACKING_URI), else a SQLite store
    inside the run folder itself (``mlflow.db``, artifacts in ``mlartifacts/``): nnopt writes
    nothing outside ``--out`` unless told where. A run folder is built in ``staging`` and then
    moved to ``run_dir``: the store records the final paths, and its artifacts are written
    where the staging folder holds them."""

    def __init__(self, cfg: MlflowConfig, name: str, experiment: str, run_dir: Path,
                 tags: dict[str, str] | None = None, staging: Path | None = None) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        # a server that stops answering mid-run: a few short tries, not 7 retries of 120 s
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        mlflow = require("mlflow", "MLflow tracking")
        _quiet()
        given = explicit_uri(cfg)
        work = staging or run_dir
        self.local: tuple[str, Path] | None = None  # (final artifact root, where it is written)
        if given:
            check_server(given)
            self.uri = self.shown = given
            where = None
            if given.startswith("sqlite:///"):  # artifacts beside the database
                where = (Path(given.removeprefix("sqlite:///")).parent
                         / "mlartifacts").absolute().as_uri()
        else:
            self.uri = f"sqlite:///{(work.absolute() / 'mlflow.db').as_posix()}"
            self.shown = f"sqlite:///{(run_dir.absolute() / 'mlflow.db').as_posix()}"
            where = (run_dir.absolute() / "mlartifacts").as_uri()
            self.local = (where, work.absolute() / "mlartifacts")
        try:
            self.client = mlflow.MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                exp_id = found.experiment_id
            else:
                exp_id = self.client.create_experiment(experiment, artifact_location=where)
            all_tags = dict(tags or {})
            if cfg.parent:
                all_tags["mlflow.parentRunId"] = cfg.parent
            run = self.client.create_run(exp_id, run_name=name, tags=all_tags)
        except mlflow.exceptions.MlflowException as exc:
            raise NnoptError(f"MLflow at {self.shown}: {first_line(exc)[:160]}") from None
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
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
        repo = None
        if self.local is not None and self.artifact_uri.startswith(self.local[0]):
            # the store's own folder, not yet where it will be: write where it is now
            from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

            rel = self.artifact_uri.removeprefix(self.local[0]).lstrip("/")
            repo = LocalArtifactRepository(str(self.local[1] / rel))
        log_dir = repo.log_artifacts if repo is not None else \
            functools.partial(self.client.log_artifacts, self.run_id)
        log_file = repo.log_artifact if repo is not None else \
            functools.partial(self.client.log_artifact, self.run_id)
        for name in names:
            path = folder / name
            if path.is_dir():
                log_dir(str(path), artifact_path=name)
            elif path.is_file():
                log_file(str(path))

    def end(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class TensorBoardWriter:
    """Event files for TensorBoard (torch.utils.tensorboard, the 'tensorboard' extra)."""

    def __init__(self, folder: str, name: str) -> None:
        require("tensorboard", "TensorBoard logging")
        from torch.utils.tensorboard import SummaryWriter

        self.folder = str(Path(folder).absolute() / name)
        self.writer = SummaryWriter(log_dir=self.folder)

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

    def where(self) -> dict[str, str]:
        """Where the run is logged, for the run's record and output."""
        out = {}
        if self.mlflow is not None:
            out.update(mlflow=self.mlflow.shown, mlflow_run=self.mlflow.run_id)
        if self.tensorboard is not None:
            out["tensorboard"] = self.tensorboard.folder
        return out

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
                 tags: dict[str, str] | None = None, staging: Path | None = None
                 ) -> Tracker | None:
    """The run's tracker (None when the recipe tracks nothing). ``run_dir`` is the folder the
    run ends up in, ``staging`` the one it is built in meanwhile (when they differ)."""
    if cfg is None or (cfg.mlflow is None and cfg.tensorboard is None):
        return None
    name = run_dir.absolute().name
    ml = MlflowRun(cfg.mlflow, name, cfg.mlflow.experiment or experiment, run_dir, tags,
                   staging) if cfg.mlflow is not None else None
    tb = TensorBoardWriter(cfg.tensorboard, name) if cfg.tensorboard else None
    return Tracker(ml, tb)
