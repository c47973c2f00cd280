"""Label-noise injection: realised rates within sampling error, each kind's transition structure,
determinism, clean labels kept and the test split untouched."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_raw
from nnopt.data.noise import FASHION_PAIRS, LabelNoiseConfig, corrupt_labels, realised_rate
from nnopt.recipe import resolve
from nnopt.runner import prepare

N, K = 20000, 10
Y = torch.arange(N) % K


def _within(observed: float, p: float, n: int) -> bool:
    return abs(observed - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12  # 4 sigma


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.6])
def test_symmetric_rate_and_off_class_flips(rate):
    noisy = corrupt_labels(Y, LabelNoiseConfig(kind="symmetric", rate=rate), K)
    assert _within(realised_rate(noisy, Y), rate, N)
    flipped = noisy != Y
    # a flip never lands on the true class, and the other classes are hit uniformly
    counts = torch.bincount((noisy[flipped] - Y[flipped]) % K, minlength=K).double()
    assert counts[0] == 0
    expected = flipped.sum().item() / (K - 1)
    assert (counts[1:] - expected).abs().max() <= 5 * math.sqrt(expected)


def test_symmetric_including_the_true_class():
    noisy = corrupt_labels(Y, LabelNoiseConfig(kind="symmetric", rate=0.5, include_true=True), K)
    assert _within(realised_rate(noisy, Y), 0.5 * (K - 1) / K, N)


def test_asymmetric_flips_only_to_the_partner():
    noisy = corrupt_labels(Y, LabelNoiseConfig(kind="asymmetric", rate=0.4), K,
                           dataset="fashion-mnist")
    partner = {a: b for a, b in FASHION_PAIRS} | {b: a for a, b in FASHION_PAIRS}
    for c in range(K):
        moved = noisy[(Y == c) & (noisy != Y)]
        if c in partner:
            assert set(moved.tolist()) == {partner[c]}
            assert _within((noisy[Y == c] != c).double().mean().item(), 0.4, N // K)
        else:
            assert len(moved) == 0
    assert _within(realised_rate(noisy, Y), 0.4 * 0.6, N)  # 6 of 10 classes flip


def test_instance_dependent_rate_and_determinism():
    x = torch.rand(N, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    cfg = LabelNoiseConfig(kind="instance", rate=0.3, seed=3)
    noisy = corrupt_labels(Y, cfg, K, x=x)
    assert abs(realised_rate(noisy, Y) - 0.3) < 0.02
    assert torch.equal(noisy, corrupt_labels(Y, cfg, K, x=x))
    assert not torch.equal(noisy, corrupt_labels(Y, cfg.model_copy(update={"seed": 4}), K, x=x))


def test_dataset_option_keeps_clean_labels_and_a_clean_test_split():
    raw = tiny_raw()
    raw["data"]["label_noise"] = {"kind": "symmetric", "rate": 0.5}
    noisy, _ = prepare(resolve(raw))
    clean, _ = prepare(resolve(tiny_raw()))
    assert torch.equal(noisy.train.y_clean, clean.train.y)
    assert torch.equal(noisy.test.y, clean.test.y) and noisy.test.y_clean is None
    assert (noisy.train.y != clean.train.y).any() and (noisy.val.y != clean.val.y).any()
    info = noisy.summary()["label_noise"]
    assert info["realised_train"] == realised_rate(noisy.train.y, clean.train.y)
    sub = noisy.train.take(torch.tensor([0, 2]))
    assert torch.equal(sub.y_clean, noisy.train.y_clean[[0, 2]])
