"""BatchNorm folding: equal outputs, the fused model reloads, and the pattern finder is strict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_raw
from nnopt.compress.fuse import fold, fold_pairs
from nnopt.models import build_model, load_model
from nnopt.models.resnet import ResnetConfig
from nnopt.recipe import resolve
from nnopt.runner import run_recipe


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize("layer,bn,x", [
    (nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5), torch.randn(2, 3, 6, 6)),
    (nn.Conv2d(4, 4, 3, groups=2), nn.BatchNorm2d(4), torch.randn(2, 4, 6, 6)),
    (nn.Linear(7, 5), nn.BatchNorm1d(5), torch.randn(3, 7)),
    (nn.Conv1d(2, 6, 3), nn.BatchNorm1d(6), torch.randn(2, 2, 9))])
def test_fold_equals_layer_then_batchnorm(layer, bn, x):
    seq = nn.Sequential(layer, bn)
    _randomise_bn(seq)
    seq.eval()
    torch.testing.assert_close(fold(layer, bn)(x), seq(x), rtol=1e-5, atol=1e-5)


def test_pairs_found_through_residual_blocks_only_where_safe():
    model = build_model(ResnetConfig(depth=8, width=0.25), (1, 8, 8), 3)
    pairs = fold_pairs(model)
    assert ("net.layers.0.conv1", "net.layers.0.bn1") in pairs
    bns = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert {b for _, b in pairs} == set(bns)

    class Shared(nn.Module):  # the conv output feeds the norm and a skip: cannot fold
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    assert fold_pairs(Shared()) == []


def test_fuse_stage_keeps_outputs_and_reloads(tmp_path):
    raw = tiny_raw(model={"name": "resnet", "depth": 8, "width": 0.25},
                   stages=[{"train": {"epochs": 1, "batch_size": 32}}, {"fuse": {}}])
    report = run_recipe(resolve(raw), tmp_path / "run")
    info = report.stages[1].details["fusion"]
    assert info["max_abs_output_diff"] <= 1e-5 and len(info["pairs"]) == 9
    assert report.stages[1].metrics["accuracy"] == report.stages[0].metrics["accuracy"]
    model = load_model(tmp_path / "run" / "models" / "fuse")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
