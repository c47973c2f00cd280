"""Low-rank factorization: exact at full rank, optimal truncation error, costs, rank choices."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from conftest import tiny_raw
from nnopt.compress.lowrank.decompose import (
    factorize_layer,
    full_ranks,
    layer_macs,
    rank_for_energy,
)
from nnopt.core.errors import NnoptError, RecipeError
from nnopt.models import load_model
from nnopt.recipe import resolve
from nnopt.runner import run_recipe

torch.manual_seed(0)
CONV = nn.Conv2d(6, 8, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 1))
X = torch.randn(2, 6, 11, 13)


@pytest.mark.parametrize("method", ["channel", "tucker2", "spatial"])
def test_conv_factorizations_are_exact_at_full_rank(method):
    f = factorize_layer(CONV, method, full_ranks(CONV, method))
    torch.testing.assert_close(f(X), CONV(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method,ranks", [("channel", [3]), ("tucker2", [3, 4]), ("spatial", [5])])
def test_mac_formula_matches_pytorch_flop_counter(method, ranks):
    f = factorize_layer(CONV, method, ranks)
    with FlopCounterMode(display=False) as c:
        y = f(X[:1])
    assert layer_macs(CONV, method, ranks, (11, 13), tuple(y.shape[2:])) == c.get_total_flops() // 2


def test_linear_svd_truncation_is_eckart_young_optimal():
    lin = nn.Linear(20, 12)
    x = torch.eye(20)  # outputs minus bias are the columns of W^T
    for r in (1, 4, 12):
        f = factorize_layer(lin, "svd", [r])
        err = torch.linalg.matrix_norm((f(x) - lin(x)).T)
        s = torch.linalg.svdvals(lin.weight.detach())
        assert err.item() == pytest.approx(s[r:].pow(2).sum().sqrt().item(), abs=1e-5)
    assert [type(m) for m in f] == [nn.Linear, nn.Linear] and f[0].bias is None


def test_rank_for_energy():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.7) == 2
    assert rank_for_energy(s, 1.0) == 3


def _run(tmp_path, cfg, model=None, name="run"):
    raw = tiny_raw(stages=[{"train": {"epochs": 1, "batch_size": 32}}, {"factorize": cfg}])
    if model:
        raw["model"] = model
    return run_recipe(resolve(raw), tmp_path / name)


def test_factorize_skips_layers_that_would_cost_more_and_reloads(tmp_path):
    mlp = {"name": "mlp", "hidden": [32, 32]}
    rep = _run(tmp_path, {"ranks": {"net.1": 4, "net.3": 30}, "finetune": None}, mlp)
    rows = rep.stages[1].details["factorization"]["layers"]
    assert rows["net.1"]["apply"] and rows["net.1"]["factorized_macs"] == 4 * (64 + 32)
    assert not rows["net.3"]["apply"]  # 30 * 64 MACs > 0.8 * 32 * 32
    assert rows["net.3"]["break_even_rank"] == 16  # r (32 + 32) <= 32 * 32
    model = load_model(tmp_path / "run" / "models" / "factorize")
    assert isinstance(model.net[1], nn.Sequential) and isinstance(model.net[3], nn.Linear)
    assert rep.stages[1].metrics["macs"] < rep.stages[0].metrics["macs"]


def test_factorize_meets_a_macs_budget_and_scans_sensitivity(tmp_path):
    mlp = {"name": "mlp", "hidden": [48]}
    rep = _run(tmp_path, {"keep_macs": 0.6, "finetune": None}, mlp)
    assert rep.stages[1].metrics["macs"] <= 0.6 * rep.stages[0].metrics["macs"]
    assert rep.stages[1].details["rank_budget"]["trace"]
    rep = _run(tmp_path, {"sensitivity_tolerance": 0.5, "finetune": None}, mlp, "sens")
    assert "accuracy" in rep.stages[1].details["rank_sensitivity"]


def test_factorize_errors(tmp_path):
    with pytest.raises(RecipeError, match="choose ranks one way"):
        resolve(tiny_raw(stages=[{"factorize": {"keep_macs": 0.5, "ranks": {"a": 1}}}]))
    with pytest.raises(NnoptError, match="ranks names unknown layers: nope"):
        _run(tmp_path, {"ranks": {"nope": 2}})
    with pytest.raises(NnoptError, match="cannot meet the budget"):
        _run(tmp_path, {"keep_macs": 0.01}, None, "b")
