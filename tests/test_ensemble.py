"""Deep ensembles: the output is the mean of the members' probabilities, members are seeded and
independent, the ensemble saves, reloads and exports, and its cost is all members' cost."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_raw
from nnopt.core.errors import NnoptError
from nnopt.models.saving import load_model
from nnopt.recipe import resolve
from nnopt.runner import run_recipe
from nnopt.trust.uncertainty.ensemble import EnsembleNet


def test_output_is_the_log_of_the_mean_probability():
    torch.manual_seed(0)
    members = [nn.Linear(5, 4) for _ in range(3)]
    net = EnsembleNet(members)
    x = torch.randn(6, 5) * 10  # confident members: the log-sum-exp form must not underflow
    mean = torch.stack([m(x).double().softmax(1) for m in members]).mean(0)
    out = net(x)
    torch.testing.assert_close(out.double().softmax(1), mean, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.double().exp().sum(1), torch.ones(6, dtype=torch.float64))
    assert net.sample_logits(x).shape == (3, 6, 4)


def test_ensemble_step_members_cost_and_round_trip(tmp_path):
    raw = tiny_raw(model={"name": "mlp", "hidden": [8]})
    raw["evaluate"] = ["accuracy", "nll", "ece", "members", "params"]
    raw["stages"] = [{"train": {"epochs": 1, "batch_size": 32}},
                     {"ensemble": {"members": 3, "keep_incoming": True,
                                   "train": {"epochs": 1, "batch_size": 32}}},
                     {"export": {}}]
    result = run_recipe(resolve(raw), tmp_path)
    base, ens, onnx = result.stages
    assert ens.metrics["params"] == 3 * base.metrics["params"]
    rows = ens.details["members"]
    assert len(rows) == 3 and rows[0]["nll"] == pytest.approx(base.metrics["nll"], abs=1e-6)
    assert len({r["nll"] for r in rows}) == 3  # different seeds, different members
    assert ens.metrics["nll_best_member"] == min(r["nll"] for r in rows)
    # the mean of probabilities is never worse in NLL than the members' average (Jensen)
    assert ens.metrics["nll"] <= sum(r["nll"] for r in rows) / 3 + 1e-9
    model = load_model(tmp_path / "models" / "ensemble")
    assert isinstance(model.net, EnsembleNet) and len(model.net.members) == 3
    x = torch.rand(5, 1, 8, 8)
    trained = load_model(tmp_path / "models" / "train")
    torch.testing.assert_close(model.net.members[0](model.normalize(x)),
                               trained.net(trained.normalize(x)))
    assert onnx.metrics["accuracy"] == ens.metrics["accuracy"]
    assert onnx.details["export"]["max_abs_diff"] < 1e-4


def test_ensemble_refuses_a_rewritten_model(tmp_path):
    raw = tiny_raw(model={"name": "mlp", "hidden": [8]})
    raw["evaluate"] = ["accuracy"]
    raw["stages"] = [{"train": {"epochs": 1}}, {"calibrate": {}},
                     {"ensemble": {"members": 2, "train": {"epochs": 1}}}]
    with pytest.raises(NnoptError, match="before the compression stages"):
        run_recipe(resolve(raw), tmp_path)
