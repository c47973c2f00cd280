"""Experiment tracking (issue 28): an MLflow run read back through MlflowClient, a sweep's
variants as child runs, TensorBoard event files read back, a missing extra in one line."""

from __future__ import annotations

import builtins
import json

import pytest

from conftest import tiny_raw
from nnopt.cli import main
from nnopt.core.errors import NnoptError
from nnopt.recipe import resolve
from nnopt.runner import run_recipe

mlflow = pytest.importorskip("mlflow")

STAGES = [{"train": {"epochs": 2, "batch_size": 32, "lr": 0.01}},
          {"prune": {"method": "channel", "amount": 0.5,
                     "finetune": {"epochs": 1, "batch_size": 32}}}]


def _runs(uri: str, experiment: str) -> list:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time"])


def test_mlflow_and_tensorboard_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    raw = tiny_raw(evaluate=["accuracy", "nll", "params", "latency"], stages=STAGES,
                   tracking={"mlflow": {"experiment": "fmnist"},
                             "tensorboard": str(tmp_path / "tb")})
    report = run_recipe(resolve(raw), tmp_path / "runs" / "first")
    # no uri: the store lies inside the run folder, and nothing was written beside it
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["first"]
    assert report.run["tracking"]["mlflow"] == f"sqlite:///{tmp_path}/runs/first/mlflow.db"
    client, runs = _runs(f"sqlite:///{tmp_path}/runs/first/mlflow.db", "fmnist")
    (run,) = runs
    assert run.info.run_name == "first" and run.info.status == "FINISHED"
    assert run.data.params["stages.1.prune.amount"] == "0.5"
    assert run.data.params["model.name"] == "cnn"
    for stage in report.stages:  # every stage's metrics, latency included
        for metric, value in stage.metrics.items():
            assert run.data.metrics[f"{stage.name}/{metric}"] == pytest.approx(value)
    history = client.get_metric_history(run.info.run_id, "train/val_accuracy")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(
        [h["val_accuracy"] for h in report.stages[0].details["history"]])
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "report.md", "results.json", "figures"} <= files
    # artifacts were written in the staging folder, recorded where the run folder ended up
    assert run.info.artifact_uri.startswith((tmp_path / "runs" / "first" / "mlartifacts").as_uri())
    local = client.download_artifacts(run.info.run_id, "results.json", str(tmp_path))
    assert json.loads(open(local).read())["stages"][1]["name"] == "prune"

    events = EventAccumulator(str(tmp_path / "tb" / "first"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/train_loss")]
    assert losses == pytest.approx([h["train_loss"] for h in report.stages[0].details["history"]])
    assert [e.step for e in events.Scalars("prune/val_accuracy")] == [1]
    assert events.Scalars("metrics/accuracy")[1].value == pytest.approx(
        report.stages[1].metrics["accuracy"])


def test_a_sweep_logs_each_variant_as_a_child_run(tmp_path, write_recipe):
    raw = tiny_raw(evaluate=["accuracy"], stages=STAGES[:1],
                   tracking={"mlflow": {"uri": f"sqlite:///{tmp_path}/ml.db"}})
    recipe = write_recipe(raw)
    assert main(["sweep", str(recipe), "--grid", "stages.train.lr=0.01,0.05",
                 "--out", str(tmp_path / "sw")]) == 0
    client, runs = _runs(f"sqlite:///{tmp_path}/ml.db", "tiny")
    parent = next(r for r in runs if r.info.run_name == "sw")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["v00-lr=0.01", "v01-lr=0.05"]
    assert all(r.info.status == "FINISHED" and "train/accuracy" in r.data.metrics
               for r in children)
    assert parent.data.params["grid.stages.train.lr"] == "[0.01, 0.05]"
    assert "sweep.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_a_failed_run_is_marked_failed(tmp_path):
    for tracking in ({"uri": f"sqlite:///{tmp_path}/ml.db"}, {}):
        raw = tiny_raw(evaluate=["accuracy"], tracking={"mlflow": tracking},
                       stages=[STAGES[0], {"calibrate": {}}])
        raw["data"]["val_fraction"] = 0.0  # calibrate needs a validation split: fails
        with pytest.raises(NnoptError):
            run_recipe(resolve(raw), tmp_path / "runs" / "bad")
    _, (run,) = _runs(f"sqlite:///{tmp_path}/ml.db", "tiny")
    assert run.info.status == "FAILED"
    # the default store lived in the run folder, which a failed run does not keep
    assert not (tmp_path / "runs").exists()


def test_a_missing_tracker_is_one_line(tmp_path, monkeypatch, capsys, write_recipe):
    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name.split(".")[0] == "mlflow":
            raise ImportError(f"No module named '{name}'", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    monkeypatch.delitem(__import__("sys").modules, "mlflow", raising=False)
    recipe = write_recipe(tiny_raw(evaluate=["accuracy"], tracking={"mlflow": {}}))
    assert main(["run", str(recipe), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("nnopt: error: MLflow tracking needs the optional package 'mlflow': "
                       "pip install 'nnopt[mlflow]' (or nnopt[all])")
    assert not (tmp_path / "o").exists()
