"""Corruptions (deterministic, in range, stronger with severity), the robust and corruption
metrics in a run (including an ONNX int8 artifact attacked through BPDA), metric options, and
the adversarial-training tasks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_raw
from nnopt.core.errors import RecipeError
from nnopt.recipe import resolve
from nnopt.runner import run_recipe
from nnopt.trust.robustness.corruptions import corrupt, corruption_names
from nnopt.trust.robustness.training import AdversarialConfig, AdversarialTask

IMAGES = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1


@pytest.mark.parametrize("name", corruption_names())
def test_corruptions_are_deterministic_and_in_range(name):
    a = corrupt(IMAGES, name, 3, seed=1)
    assert a.shape == IMAGES.shape and a.dtype == IMAGES.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, corrupt(IMAGES, name, 3, seed=1))
    assert not torch.equal(a, IMAGES)


def test_suite_size_and_severity_ordering():
    assert len(corruption_names()) >= 10
    for name in ("gaussian_noise", "impulse_noise", "gaussian_blur", "contrast", "brightness"):
        dist = [(corrupt(IMAGES, name, s) - IMAGES).abs().mean().item() for s in range(1, 6)]
        assert dist == sorted(dist), name
    with pytest.raises(ValueError, match="choose gaussian_noise"):
        corrupt(IMAGES, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(IMAGES, "contrast", 6)


def test_metrics_on_every_stage_including_int8(tmp_path):
    raw = tiny_raw(data={"name": "synthetic", "shape": [1, 8, 8], "train_size": 96,
                         "test_size": 32})
    raw["evaluate"] = ["accuracy", "robust", "corruption"]
    raw["metric_options"] = {
        "robust": {"examples": 16, "steps": 3, "apgd_steps": 3, "square_queries": 10,
                   "curve": [0.0, 0.1], "curve_steps": 2,
                   "attacks": ["fgsm", "pgd", "pgd_targeted", "apgd", "square", "transfer"]},
        "corruption": {"examples": 8, "types": ["contrast", "jpeg"], "severities": [1, 5]}}
    raw["stages"] = [{"train": {"epochs": 2, "batch_size": 32, "lr": 0.01}},
                     {"quantize": {"method": "ort-static"}}]
    result = run_recipe(resolve(raw), tmp_path)
    for stage in result.stages:
        met, rob = stage.metrics, stage.details["robustness"]
        for k in ("fgsm", "pgd", "apgd", "square"):
            assert met[f"robust_accuracy/{k}"] <= met["clean_accuracy_attacked"]
            assert rob["attacks"][k]["seconds_per_1000"] > 0
        assert set(rob["curves"]) == {"fgsm", "pgd"}
        for curve in rob["curves"].values():
            assert curve[0] == [0.0, met["clean_accuracy_attacked"]]
            assert curve[1][1] <= curve[0][1]
        table = stage.details["corruption"]["table"]
        assert set(table) == {"contrast", "jpeg"} and set(table["jpeg"]) == {"1", "5"}
        assert met["corruption_accuracy"] == pytest.approx(
            (met["corruption_accuracy/contrast"] + met["corruption_accuracy/jpeg"]) / 2)
    train, int8 = result.stages
    assert "robust_accuracy/transfer" not in train.metrics  # no other model to transfer from
    assert "robust_accuracy/transfer" in int8.metrics
    assert train.details["robustness"]["gradients"] == "own gradients"
    assert int8.details["robustness"]["gradients"] == \
        "BPDA through the float model of stage 'train'"


def test_metric_options_are_validated():
    raw = tiny_raw()
    raw["evaluate"] = ["accuracy", "robust"]
    raw["metric_options"] = {"robust": {"attacks": ["pgd", "deepfool"]}}
    with pytest.raises(RecipeError, match="deepfool"):
        resolve(raw)
    raw["metric_options"] = {"corruption": {}}
    with pytest.raises(RecipeError, match="which evaluate does not list"):
        resolve(raw)
    raw["metric_options"] = {"accuracy": {}}
    with pytest.raises(RecipeError, match="metric with options"):
        resolve(raw)


def test_adversarial_tasks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    trades = AdversarialTask(AdversarialConfig(method="trades", beta=0.0, eps=0.1, steps=2))
    out = trades(model, x, y)
    torch.testing.assert_close(out["loss"], F.cross_entropy(model(x), y))  # beta 0: plain CE
    task = AdversarialTask(AdversarialConfig(method="pgd", eps=0.1, steps=3))
    out = task(model.train(), x, y)
    assert model.training  # the attack ran in eval mode, the mode came back
    assert out["loss"] >= F.cross_entropy(model(x), y) - 1e-6  # the worst case costs more
    from nnopt.core.errors import TrainingError
    from nnopt.data.base import Split
    from nnopt.train.fit import TrainConfig, fit
    from nnopt.train.task import ClassificationTask

    cfg = TrainConfig(epochs=1, task={"name": "adversarial", "eps": 0.1})
    with pytest.raises(TrainingError, match="cannot be combined"):
        fit(model, Split(x, y), config=cfg, task=ClassificationTask())


def test_translate_moves_whole_pixels_by_the_severitys_distance():
    img = torch.zeros(8, 1, 28, 28)
    img[:, 0, 14, 14] = 1.0
    for s, r in zip(range(1, 6), (1, 2, 3, 4, 6)):
        out = corrupt(img, "translate", s, seed=2)
        assert torch.equal(out.flatten(1).sum(1), torch.ones(8))  # one pixel, moved whole
        for k in range(8):
            y, x = (out[k, 0] == 1).nonzero()[0].tolist()
            dist = ((y - 14) ** 2 + (x - 14) ** 2) ** 0.5
            assert 0.7 * r - 1e-6 <= dist <= r + 0.71, (s, dist)
