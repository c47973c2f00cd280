"""The noisy-label monitor: memorisation and clean test accuracy per epoch, the last epoch's
figures kept when a best-epoch checkpoint is restored, and the report section."""

from __future__ import annotations

import torch
from torch import nn

from conftest import tiny_raw
from nnopt.data.base import DataSplits, Split
from nnopt.measure.noise_monitor import NoiseMonitor
from nnopt.measure.quality import expected_calibration_error
from nnopt.recipe import resolve
from nnopt.runner import run_recipe
from nnopt.train.callbacks import FitState
from nnopt.train.fit import TrainConfig, objective


class Fixed(nn.Module):
    """Predicts class x[:, 0] (inputs are one-hot-like class codes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 5.0 * x


def _data() -> tuple[Split, DataSplits]:
    x = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    clean = torch.tensor([0, 1, 2, 0, 1, 2])
    noisy = torch.tensor([0, 1, 2, 1, 2, 2])  # examples 3 and 4 corrupted
    train = Split(x, noisy, clean)
    test = Split(x[:4], torch.tensor([0, 1, 2, 1]))  # the last test label disagrees
    return train, DataSplits("t", train, train, test, 3)


def test_monitor_scores_against_hand_counts():
    train, data = _data()
    mon = NoiseMonitor(train, data)
    model = Fixed()
    state = FitState(model=model, optimizer=None, stage="s", epochs=1,  # type: ignore[arg-type]
                     batches_per_epoch=1)
    state.history.append({"epoch": 1})
    mon.on_epoch_end(state)
    rec = state.history[-1]
    assert rec["noisy_fit"] == 4 / 6  # the model predicts the clean class everywhere
    assert rec["clean_fit"] == 1.0
    assert rec["memorised"] == 0.0  # neither corrupted label is reproduced
    assert rec["test_accuracy"] == 0.75
    mon.on_fit_end(state)
    last = state.notes["last_epoch"]
    probs = (5.0 * data.test.x).double().softmax(1)
    assert abs(last["test_ece"] - expected_calibration_error(probs, data.test.y)) < 1e-12
    nll = -probs.log()[torch.arange(4), data.test.y].mean().item()
    assert abs(last["test_nll"] - nll) < 1e-9


def test_objective_names():
    assert objective(TrainConfig()) == "cross-entropy"
    assert objective(TrainConfig(task={"name": "classify", "loss": {"name": "gce", "q": 0.5},
                                       "mixup": 0.2})) == "gce q=0.5 + mixup 0.2"
    assert objective(TrainConfig(task={"name": "classify", "label_smoothing": 0.1})) == \
        "cross-entropy + label smoothing 0.1"
    assert objective(TrainConfig(task={"name": "coteaching", "forget_rate": 0.4})) == \
        "co-teaching (forget 0.4)"


def test_run_records_last_epoch_beside_the_selected_one(tmp_path):
    raw = tiny_raw(model={"name": "mlp", "hidden": [16]},
                   data={"name": "digits", "limit": 300, "label_noise": {"rate": 0.4}})
    raw["evaluate"] = ["accuracy", "ece"]
    raw["stages"] = [{"train": {"epochs": 4, "lr": 0.01}},
                     {"train": {"epochs": 4, "lr": 0.01, "task": {"name": "classify", "loss": {"name": "gce"}}},
                      "from": "input"}]
    result = run_recipe(resolve(raw), tmp_path)
    for stage in result.stages:
        hist = stage.details["history"]
        assert all({"noisy_fit", "clean_fit", "memorised", "test_accuracy"} <= h.keys()
                   for h in hist)
        notes = stage.details["training"]
        assert notes["last_epoch"]["test_accuracy"] == hist[-1]["test_accuracy"]
        if notes["best_epoch"] == len(hist):  # the returned model is the last epoch's
            assert abs(stage.metrics["accuracy"] - hist[-1]["test_accuracy"]) < 1e-9
    report = (tmp_path / "report.md").read_text()
    assert "## Noisy labels" in report and "gce q=0.7" in report
    assert (tmp_path / "figures" / "noisy_labels.png").is_file()


def test_no_monitor_without_injected_noise(tmp_path):
    raw = tiny_raw()
    raw["evaluate"] = ["accuracy"]
    result = run_recipe(resolve(raw), tmp_path)
    assert "noisy_fit" not in result.stages[0].details["history"][0]
    assert "Noisy labels" not in (tmp_path / "report.md").read_text()
