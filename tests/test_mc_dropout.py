"""MC dropout: only dropout is stochastic, passes are seeded, modes and RNG are restored."""

from __future__ import annotations

import torch
from torch import nn

from nnopt.trust.uncertainty.mc_dropout import has_dropout, mc_logits


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(16, 3))


def test_passes_differ_only_through_dropout_and_are_seeded():
    net = _net().train()
    x = torch.randn(32, 6)
    stats = net[1].running_mean.clone()
    rng = torch.get_rng_state()
    out = mc_logits(net, x, samples=5, seed=3)
    assert out.shape == (5, 32, 3) and not torch.equal(out[0], out[1])
    assert torch.equal(out, mc_logits(net, x, samples=5, seed=3))  # seeded
    assert torch.equal(net[1].running_mean, stats)  # batch norm stayed in eval mode
    assert net.training and net[3].training  # modes restored
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is untouched
    net[3].p = 0.0
    assert not has_dropout(net)
    flat = mc_logits(net, x, samples=3)
    assert torch.equal(flat[0], flat[2]) and torch.allclose(flat[0], net.eval()(x))


def test_mc_metric_is_absent_without_dropout(tmp_path):
    from conftest import tiny_raw
    from nnopt.recipe import resolve
    from nnopt.runner import run_recipe

    raw = tiny_raw(model={"name": "mlp", "hidden": [8]})
    raw["evaluate"] = ["nll", "mc_dropout"]
    assert "nll_mc" not in run_recipe(resolve(raw), tmp_path / "a").stages[0].metrics
    raw["model"]["dropout"] = 0.3
    metrics = run_recipe(resolve(raw), tmp_path / "b").stages[0].metrics
    assert {"accuracy_mc", "nll_mc", "ece_mc", "mutual_information_mc"} <= set(metrics)
    assert metrics["mutual_information_mc"] > 0
