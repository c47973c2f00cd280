"""DARTS: the mixed operation is the softmax-weighted sum of its operations, the genotype keeps
two edges per node with their strongest non-zero operation, genotypes are validated, and the
darts step derives, retrains and reports a network that reloads from its spec."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_raw
from nnopt.models.darts import OPS, DartsConfig, darts
from nnopt.recipe import resolve
from nnopt.runner import run_recipe
from nnopt.search.darts import MixedOp, Supernet


def test_mixed_op_is_the_weighted_sum_of_its_operations():
    torch.manual_seed(0)
    ops = ["skip", "sep3", "avg3", "zero"]
    mixed = MixedOp(ops, 3, 1).eval()
    mixed.index = 1
    x = torch.randn(2, 3, 6, 6)
    w = F.softmax(torch.randn(2, len(ops)), dim=-1)
    expected = sum(w[1, k] * op(x) for k, op in enumerate(mixed.ops))
    assert torch.allclose(mixed(x, w), expected, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_every_operation_keeps_channels_and_halves_at_stride_2(stride):
    x = torch.randn(2, 4, 8, 8)
    for name, make in OPS.items():
        assert make(4, stride, True)(x).shape == (2, 4, 8 // stride, 8 // stride), name


def test_genotype_takes_the_two_strongest_edges_per_node():
    net = Supernet(1, ["zero", "skip", "sep3", "max3"], 2, 2, 2, 10)
    with torch.no_grad():
        net.alpha_normal.zero_()
        # node 0 (rows 0-1): input 1 strongest by sep3, input 0 by max3
        net.alpha_normal[0, 3] = 1.0
        net.alpha_normal[1, 2] = 2.0
        # node 1 (rows 2-4): a huge 'zero' on input 0 is ignored; inputs 2 and 1 win
        net.alpha_normal[2, 0] = 9.0
        net.alpha_normal[3, 1] = 1.0
        net.alpha_normal[4, 2] = 3.0
    g = net.genotype()["normal"]
    assert g[:2] == [("sep3", 1), ("max3", 0)]
    assert sorted(g[2:]) == [("sep3", 2), ("skip", 1)]
    DartsConfig(channels=2, cells=2, nodes=2, normal=g, reduce=g)  # a valid derived config


def test_genotypes_are_validated():
    with pytest.raises(ValueError, match="unknown DARTS operation 'sep7'"):
        DartsConfig(normal=[("sep7", 0)] * 6)
    with pytest.raises(ValueError, match="node 0 may take states 0..1, not 2"):
        DartsConfig(normal=[("skip", 2)] * 6)
    with pytest.raises(ValueError, match="two .operation, input. pairs per node"):
        darts(DartsConfig(nodes=2), (1, 8, 8), 10)


def test_darts_step_derives_retrains_and_reports(tmp_path):
    raw = tiny_raw(stages=[{"darts": {"ops": ["zero", "skip", "sep3", "max3"], "channels": 2,
                                      "cells": 2, "nodes": 2, "epochs": 2, "batch_size": 16,
                                      "limit": 64, "retrain": {"epochs": 1, "batch_size": 16}}}])
    rep = run_recipe(resolve(raw), tmp_path / "run")
    d = rep.stages[0].details["darts"]
    assert len(d["search"]) == 2 and len(d["genotype"]["normal"]) == 4
    for h in d["search"]:  # each edge's operation weights are a distribution
        for row in h["alpha_normal"] + h["alpha_reduce"]:
            assert sum(row) == pytest.approx(1.0, abs=1e-5)
    from nnopt.models.saving import load_model

    model = load_model(tmp_path / "run" / "models" / "darts")
    assert [list(p) for p in model.spec["model"]["normal"]] == \
        [list(p) for p in d["genotype"]["normal"]]
    text = (tmp_path / "run" / "report.md").read_text()
    assert "DARTS" in text and "darts_alpha_darts.png" in text
