"""OOD scores and detection metrics against definitions; uncertainty decomposition invariants."""

from __future__ import annotations

import math

import pytest
import torch

from nnopt.trust.ood import SCORES, detection_metrics, ood_score
from nnopt.trust.uncertainty import decompose, entropy


def test_entropy_and_decomposition():
    assert entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]])).tolist() == pytest.approx(
        [math.log(2), 0.0])
    agree = torch.tensor([[[0.9, 0.1]], [[0.9, 0.1]]])
    d = decompose(agree)
    assert d["mutual_information"].item() == pytest.approx(0.0, abs=1e-12)
    disagree = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # confident members that disagree
    d = decompose(disagree)
    assert d["expected_entropy"].item() == pytest.approx(0.0, abs=1e-12)
    assert d["mutual_information"].item() == pytest.approx(math.log(2))
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(7, 20, 5, generator=g), -1)
    d = decompose(p)  # total = aleatoric + epistemic, each >= 0
    torch.testing.assert_close(d["predictive_entropy"], d["expected_entropy"]
                               + d["mutual_information"])
    assert (d["mutual_information"] >= 0).all()


def test_scores_follow_their_definitions():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.1, 0.0, 0.0]], dtype=torch.double)
    p = logits.softmax(1)
    torch.testing.assert_close(ood_score(logits, "msp"), p.max(1).values)
    torch.testing.assert_close(ood_score(logits, "entropy"), (p * p.log()).sum(1))
    torch.testing.assert_close(ood_score(logits, "energy", temperature=2.0),
                               2.0 * torch.logsumexp(logits / 2.0, 1))
    for kind in ("msp", "entropy", "energy"):  # the confident row scores as more in-distribution
        s = ood_score(logits, kind)
        assert s[0] > s[1]
    with pytest.raises(ValueError, match="several predictive samples"):
        ood_score(logits, "mutual_information")
    samples = torch.stack([logits, logits.flip(1)])
    assert ood_score(samples, "mutual_information").shape == (2,)
    assert set(SCORES) == {"msp", "entropy", "energy", "mutual_information"}


def test_detection_metrics_on_known_cases():
    perfect = detection_metrics(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.1, 0.2]))
    assert perfect == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}
    reversed_ = detection_metrics(torch.tensor([0.1, 0.2]), torch.tensor([0.9, 0.8]))
    assert reversed_["auroc"] == 0.0 and reversed_["fpr95"] == 1.0
    # AUROC = P(score_in > score_out) with ties counted half
    s_in, s_out = torch.tensor([0.3, 0.5, 0.5]), torch.tensor([0.5, 0.1])
    pairs = [(a > b) + 0.5 * (a == b) for a in s_in.tolist() for b in s_out.tolist()]
    assert detection_metrics(s_in, s_out)["auroc"] == pytest.approx(sum(pairs) / len(pairs))
    # 20 ID scores 1..20: the 95% threshold accepts 19 of them (scores >= 2)
    m = detection_metrics(torch.arange(1.0, 21.0), torch.tensor([1.5, 2.0, 30.0, 0.0]))
    assert m["fpr95"] == pytest.approx(2 / 4)


def test_ood_metric_in_a_run_and_its_sets(tmp_path):
    from conftest import tiny_raw
    from nnopt.data import load_data
    from nnopt.data.ood import ood_sets
    from nnopt.recipe import resolve
    from nnopt.runner import run_recipe

    raw = tiny_raw()
    raw["evaluate"] = ["accuracy", "ood"]
    resolved = resolve(raw)
    sets = ood_sets(load_data(resolved.data), size=50)
    assert sets["digits"].shape == (50, 1, 8, 8) and sets["noise"].shape == (50, 1, 8, 8)
    assert all(0 <= float(s.min()) and float(s.max()) <= 1 for s in sets.values())
    assert torch.equal(sets["noise"], ood_sets(load_data(resolved.data), size=50)["noise"])
    report = run_recipe(resolved, tmp_path / "run")
    metrics, details = report.stages[0].metrics, report.stages[0].details["ood"]
    assert {"ood_auroc/digits", "ood_fpr95/digits", "ood_auroc/noise"} <= set(metrics)
    assert metrics["ood_auroc/digits"] == details["digits"]["energy"]["auroc"]
    assert set(details["noise"]) == {"msp", "entropy", "energy"}
