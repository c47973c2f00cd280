"""Calibration metrics against independent loop formulations, sklearn, and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import brier_score_loss

from nnopt.measure.calibration import (
    aurc,
    bin_index,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    max_calibration_error,
)
from nnopt.measure.quality import nll_score


def _ref_bins(conf, bins):
    """Bin b holds b/bins < c <= (b + 1)/bins; c = 0 goes to the first bin."""
    out = []
    for c in conf:
        b = 0
        while b < bins - 1 and c > (b + 1) / bins:
            b += 1
        out.append(b)
    return out


def _ref_gaps(conf, hit, idx):
    rows = []
    for b in sorted(set(idx)):
        members = [i for i, j in enumerate(idx) if j == b]
        acc = sum(hit[i] for i in members) / len(members)
        c = sum(conf[i] for i in members) / len(members)
        rows.append((len(members) / len(conf), abs(acc - c)))
    return rows


def _ref_ece(p, y, bins, mass=False):
    conf = [max(r) for r in p]
    hit = [float(int(np.argmax(r)) == t) for r, t in zip(p, y)]
    if mass:
        order = sorted(range(len(conf)), key=lambda i: conf[i])
        idx = [0] * len(conf)
        for b, chunk in enumerate(np.array_split(order, bins)):
            for i in chunk:
                idx[i] = b
    else:
        idx = _ref_bins(conf, bins)
    rows = _ref_gaps(conf, hit, idx)
    return sum(w * g for w, g in rows), max(g for _, g in rows)


def _random(seed, n=200, k=5):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, k, generator=g, dtype=torch.double), 1)
    return probs, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("seed", range(5))
def test_ece_mce_match_a_loop_formulation(seed):
    probs, labels = _random(seed)
    p, y = probs.tolist(), labels.tolist()
    for bins in (1, 10, 15):
        ece, mce = _ref_ece(p, y, bins)
        assert expected_calibration_error(probs, labels, bins) == pytest.approx(ece, abs=1e-12)
        assert max_calibration_error(probs, labels, bins) == pytest.approx(mce, abs=1e-12)
        ece_m, _ = _ref_ece(p, y, bins, mass=True)
        assert expected_calibration_error(probs, labels, bins, scheme="mass") == pytest.approx(
            ece_m, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_brier_classwise_and_nll_match_references(seed):
    probs, labels = _random(seed, k=4)
    onehot = np.eye(4)[labels.numpy()]
    assert brier_score(probs, labels) == pytest.approx(
        float(((probs.numpy() - onehot) ** 2).sum(1).mean()), abs=1e-12)
    # the binary case is sklearn's brier_score_loss, times 2 (both classes counted)
    p2 = torch.softmax(torch.randn(50, 2, dtype=torch.double), 1)
    y2 = torch.randint(0, 2, (50,))
    assert brier_score(p2, y2) == pytest.approx(2 * brier_score_loss(y2.numpy(), p2[:, 1].numpy()),
                                                abs=1e-12)
    ref = 0.0
    for k in range(4):
        pk = probs[:, k].tolist()
        rows = _ref_gaps(pk, [float(t == k) for t in labels.tolist()], _ref_bins(pk, 15))
        ref += sum(w * g for w, g in rows) / 4
    assert classwise_calibration_error(probs, labels) == pytest.approx(ref, abs=1e-12)
    logits = torch.randn(30, 4, dtype=torch.double)
    y = torch.randint(0, 4, (30,))
    ref_nll = -np.mean([np.log(np.exp(r[t]) / np.exp(r).sum()) for r, t in
                        zip(logits.numpy(), y.numpy())])
    assert nll_score(logits, y) == pytest.approx(ref_nll, abs=1e-12)


def test_aurc_matches_its_definition():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], dtype=torch.double)
    labels = torch.tensor([0, 1, 1, 0])
    # by confidence 0.9 (ok), 0.8 (wrong), 0.7 (ok), 0.6 (ok): risks 0, 1/2, 1/3, 1/4
    assert aurc(probs, labels) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(2, 6), st.integers(1, 20))
def test_edge_cases_all_correct_all_wrong_and_confidence_one(n, k, bins):
    labels = torch.arange(n) % k
    sure = torch.nn.functional.one_hot(labels, k).double()  # confidence exactly 1.0, all right
    assert expected_calibration_error(sure, labels, bins) == 0.0
    assert max_calibration_error(sure, labels, bins) == 0.0
    assert brier_score(sure, labels) == 0.0 and aurc(sure, labels) == 0.0
    assert int(bin_index(torch.ones(1, dtype=torch.double), bins)) == bins - 1
    wrong = (labels + 1) % k
    assert expected_calibration_error(sure, wrong, bins) == 1.0  # sure and always wrong
    assert brier_score(sure, wrong) == 2.0 and aurc(sure, wrong) == 1.0
    uniform = torch.full((n, k), 1.0 / k, dtype=torch.double)
    ece = expected_calibration_error(uniform, labels, bins)
    assert 0.0 <= ece <= 1.0 and ece == pytest.approx(abs((labels == 0).double().mean().item()
                                                          - 1.0 / k), abs=1e-12)


def test_logits_and_probabilities_are_not_confused():
    probs, labels = _random(0)
    with pytest.raises(ValueError, match="not logits: apply softmax"):
        expected_calibration_error(torch.log(probs), labels)
    with pytest.raises(ValueError, match="takes logits"):
        nll_score(probs, labels)
    with pytest.raises(ValueError, match="matrix"):
        brier_score(probs[:, 0], labels)


def test_reliability_bins_agree_with_ece():
    from nnopt.measure.calibration import reliability_bins

    probs, labels = _random(3)
    rel = reliability_bins(probs, labels, bins=10)
    n = sum(rel["count"])
    assert n == len(labels) and rel["upper"][-1] == 1.0
    ece = sum(c / n * abs(a - f) for c, a, f in zip(rel["count"], rel["accuracy"],
                                                       rel["confidence"]))
    assert ece == pytest.approx(expected_calibration_error(probs, labels, 10), abs=1e-12)
