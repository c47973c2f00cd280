"""Post-hoc calibration: heads fitted on validation, accuracy kept by temperature, reload."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_raw
from nnopt.core.errors import NnoptError
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


def test_isotonic_map_equals_scikit_learn_per_class():
    from sklearn.isotonic import IsotonicRegression

    logits, labels = _overconfident(seed=2)
    head = fit_head("isotonic", logits, labels)
    probe = torch.randn(300, 4, dtype=torch.float64) * 4
    p = probe.softmax(1)
    for k in range(4):
        ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
            logits.softmax(1)[:, k].numpy(), (labels == k).double().numpy())
        got = head.map(p.float())[:, k].double()
        torch.testing.assert_close(got, torch.from_numpy(ref.predict(p[:, k].numpy())),
                                   rtol=0, atol=2e-5)  # float32 knots
    torch.testing.assert_close(head(probe.float()).exp().sum(1), torch.ones(300))


def test_histogram_bins_hold_their_validation_accuracy():
    logits, labels = _overconfident(n=900, seed=3)
    head = fit_head("histogram", logits, labels, bins=6)
    p = logits.softmax(1)
    for k in range(4):
        edges = torch.quantile(p[:, k], torch.linspace(0, 1, 7, dtype=torch.float64)[1:-1])
        idx = (p[:, k, None] > edges).sum(1)
        for b in range(6):  # each bin's value is the share of class k among its examples
            assert head.values[k, b].item() == pytest.approx(
                (labels[idx == b] == k).double().mean().item(), abs=1e-6)
    assert head.values.shape == (4, 6)
    # calibrated on its own fit data, the map is more calibrated than the raw probabilities
    from nnopt.measure.calibration import expected_calibration_error

    assert expected_calibration_error(head(logits.float()).double().softmax(1), labels) < \
        expected_calibration_error(p, labels)


@pytest.mark.parametrize("quantize", ["ort-static", "torch-static"])
def test_deployed_int8_artifacts_are_recalibrated_in_place(tmp_path, quantize):
    raw = tiny_raw(stages=[{"train": {"epochs": 2, "batch_size": 32, "lr": 0.01}},
                           {"quantize": {"method": quantize}},
                           {"calibrate": {"method": "isotonic"}}])
    raw["evaluate"] = ["accuracy", "nll", "ece"]
    report = run_recipe(resolve(raw), tmp_path / "run")
    int8 = load_model(tmp_path / "run" / "models" / "quantize")
    calibrated = load_model(tmp_path / "run" / "models" / "calibrate")
    assert type(calibrated) is type(int8) and calibrated.spec["calibration"]["method"] == "isotonic"
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        head = fit_head("isotonic", _val_logits(int8, tmp_path), _val_labels(tmp_path))
        torch.testing.assert_close(calibrated(x), head(int8(x)), rtol=1e-4, atol=1e-4)
    assert report.stages[2].details["calibration"]["fitted_on"].startswith("validation")
    with pytest.raises(NnoptError, match="already calibrated"):
        run_recipe(resolve({**raw, "stages": [*raw["stages"], {"calibrate": {}}]}),
                   tmp_path / "again")


def _val(tmp_path):
    from nnopt.runner import prepare

    data, _ = prepare(resolve(tiny_raw()))
    return data.val


def _val_logits(model, tmp_path):
    from nnopt.core.compute import predict

    return predict(model, _val(tmp_path).x)


def _val_labels(tmp_path):
    return _val(tmp_path).y
