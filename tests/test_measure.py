from __future__ import annotations

import lzma
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import tiny_raw
from nnopt.data import load_data
from nnopt.measure import Measurement, measure
from nnopt.measure.efficiency import count_macs, count_nonzero, count_params, peak_forward_bytes
from nnopt.measure.latency import time_calls
from nnopt.measure.target import Target
from nnopt.models import build_model, save_model
from nnopt.recipe import resolve


def measurement(tmp_path: Path, targets: list[Target]) -> Measurement:
    r = resolve(tiny_raw())
    data = load_data(r.data)
    model = build_model(r.model, data.input_shape, data.num_classes, data.mean, data.std).eval()
    weights = save_model(model, tmp_path / "m")
    return Measurement(model, data, targets, tmp_path / "m", weights)


def test_param_counts_match_layer_formulas():
    lin = nn.Linear(10, 4)
    assert count_params(lin) == 10 * 4 + 4
    with torch.no_grad():
        lin.weight[:2] = 0
    assert count_nonzero(lin) == 44 - 20


def test_macs_match_layer_formulas():
    assert count_macs(nn.Linear(10, 4), torch.rand(1, 10)) == 40
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, torch.rand(1, 3, 6, 6)) == 6 * 6 * 8 * 3 * 9


def test_peak_memory_covers_the_largest_activation():
    model = nn.Sequential(nn.Linear(100, 5000), nn.ReLU(), nn.Linear(5000, 2))
    peak = peak_forward_bytes(model, torch.rand(8, 100))
    assert peak >= 8 * 5000 * 4


def test_size_metrics_are_real_file_sizes(tmp_path):
    m = measurement(tmp_path, [])
    out = measure(m, ["size", "compressed_size", "params", "nonzero_params", "macs"])
    files = [m.weights_path, m.weights_path.parent / "spec.json"]  # what reloads the model
    assert out["size_bytes"] == sum(f.stat().st_size for f in files)
    assert out["compressed_size_bytes"] == sum(len(lzma.compress(f.read_bytes(), preset=9))
                                               for f in files)
    assert 0 < out["nonzero_params"] <= out["params"] and out["macs"] > 0


def test_unmeasurable_metric_is_absent_not_zero(tmp_path):
    m = measurement(tmp_path, [])
    m.weights_path = None
    assert measure(m, ["size", "compressed_size"]) == {}


def test_accuracy_and_nll_against_direct_computation(tmp_path):
    m = measurement(tmp_path, [])
    out = measure(m, ["accuracy", "nll"])
    logits = m.model(m.data.test.x)
    assert out["accuracy"] == pytest.approx((logits.argmax(1) == m.data.test.y).float().mean().item())
    assert out["nll"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, m.data.test.y).item(), rel=1e-5)


def test_latency_on_both_runtimes(tmp_path):
    targets = [Target(name="a", runtime="torch", batch_size=3, repeats=5, min_seconds=0, warmup=1),
               Target(name="b", runtime="onnxruntime", batch_size=2, repeats=5, min_seconds=0,
                      warmup=1)]
    m = measurement(tmp_path, targets)
    out = measure(m, ["latency"])
    assert set(out) == {"latency_ms/a", "latency_ms/b"} and all(v > 0 for v in out.values())
    rec = m.details["latency"]["b"]
    assert rec["runtime"] == "onnxruntime" and rec["batch_size"] == 2 and rec["repeats"] >= 5
    assert rec["p10_ms"] <= rec["median_ms"] <= rec["p90_ms"]
    assert (tmp_path / "m" / "model.onnx").is_file()


def test_time_calls_counts_and_orders():
    calls = []
    stats = time_calls(lambda: calls.append(1), warmup=3, repeats=7, min_seconds=0)
    assert len(calls) == 10 and stats["repeats"] == 7
    assert stats["min_ms"] <= stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"]


def test_example_batch_repeats_small_splits(tmp_path):
    m = measurement(tmp_path, [])
    assert m.example(100).shape[0] == 100 and torch.equal(m.example(3), m.data.test.x[:3])


def test_ece_matches_a_hand_computed_case_and_rejects_logits():
    from nnopt.measure.quality import expected_calibration_error

    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.0, 1.0]], dtype=torch.double)
    labels = torch.tensor([0, 1, 1, 1])
    # 2 bins over (0, 1]: (0, 0.5] is empty; (0.5, 1] holds all four with mean confidence
    # (0.9 + 0.6 + 0.7 + 1.0) / 4 = 0.8 and accuracy 3/4 -> ECE = |0.75 - 0.8| = 0.05
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.05)
    # 10 bins: per-bin gaps 0.1 (0.9 bin), 0.6 (0.6 bin, wrong), 0.3 (0.7), 0.0 (1.0)
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(
        (0.1 + 0.6 + 0.3 + 0.0) / 4)
    with pytest.raises(ValueError, match="not logits"):
        expected_calibration_error(torch.tensor([[2.0, -1.0]]), torch.tensor([0]))
