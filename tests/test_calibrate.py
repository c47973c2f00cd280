"""Post-hoc calibration: heads fitted on validation, accuracy kept by temperature, reload."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_raw
from nnopt.errors import NnoptError
from nnopt.models import load_model
from nnopt.recipe import resolve
from nnopt.runner import run_recipe
from nnopt.trust.calibration.scaling import fit_head


def _overconfident(n=600, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    x = F.one_hot(labels, k).double() * 2.0 + torch.randn(n, k, generator=g, dtype=torch.double)
    # unit-variance Gaussians around 2 e_y: the Bayes posterior's logits are 2 x (+ a constant),
    # so logits 4 x are too sharp by a temperature of exactly 2
    return 4.0 * x, labels


def test_temperature_recovers_a_known_temperature_and_keeps_predictions():
    logits, labels = _overconfident()
    head = fit_head("temperature", logits, labels)
    assert head.temperature == pytest.approx(2.0, rel=0.15)
    assert torch.equal(head(logits.float()).argmax(1), logits.argmax(1))
    nll_before = F.cross_entropy(logits, labels).item()
    assert F.cross_entropy(head(logits.float()).double(), labels).item() < nll_before


@pytest.mark.parametrize("method", ["vector", "matrix"])
def test_vector_and_matrix_scaling_never_raise_the_fitted_nll(method):
    logits, labels = _overconfident(seed=1)
    head = fit_head(method, logits, labels)
    assert F.cross_entropy(head(logits.float()).double(), labels).item() <= \
        F.cross_entropy(logits, labels).item() + 1e-6


def test_calibrate_stage_reloads_and_reports(tmp_path):
    raw = tiny_raw(stages=[{"train": {"epochs": 2, "batch_size": 32, "lr": 0.01}},
                           {"calibrate": {"method": "temperature"}}])
    raw["evaluate"] = ["accuracy", "nll", "ece", "brier"]
    report = run_recipe(resolve(raw), tmp_path / "run")
    info = report.stages[1].details["calibration"]
    assert info["fitted_on"].startswith("validation") and info["temperature"] > 0
    assert report.stages[1].metrics["accuracy"] == report.stages[0].metrics["accuracy"]
    model = load_model(tmp_path / "run" / "models" / "calibrate")
    assert model.net[1].temperature == pytest.approx(info["temperature"])


def test_calibrate_needs_a_validation_split(tmp_path):
    raw = tiny_raw(stages=[{"calibrate": {}}])
    raw["data"]["val_fraction"] = 0.0
    with pytest.raises(NnoptError, match="validation split, which is empty"):
        run_recipe(resolve(raw), tmp_path / "run")
