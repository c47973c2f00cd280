"""The mc_dropout step: the saved model averages the same seeded passes as mc_logits, dropout is
added where asked, and a model without dropout gets a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_raw
from nnopt.core.errors import NnoptError
from nnopt.models.saving import load_model
from nnopt.recipe import resolve
from nnopt.runner import run_recipe
from nnopt.trust.uncertainty import log_mean_softmax, sample_logits
from nnopt.trust.uncertainty.mc_dropout import mc_logits
from nnopt.trust.uncertainty.mc_step import MCDropoutNet, add_dropout


def test_forward_averages_the_seeded_passes_of_mc_logits():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x = torch.randn(10, 6)
    mc = MCDropoutNet(net, samples=7, seed=4).eval()
    ref = mc_logits(net, x, samples=7, seed=4)
    torch.testing.assert_close(mc.sample_logits(x), ref)
    torch.testing.assert_close(mc(x), log_mean_softmax(ref))
    torch.testing.assert_close(mc(x), mc(x))  # repeatable
    assert not net[2].training  # dropout back in eval mode afterwards


def test_add_dropout_places_it_before_linear_layers():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                        nn.Linear(8, 2))
    assert add_dropout(net, 0.1, "classifier") == ["5"]
    assert isinstance(net[5][0], nn.Dropout) and isinstance(net[5][1], nn.Linear)
    net2 = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert add_dropout(net2, 0.2, "linear") == ["2"]  # not before the input layer


def test_step_adds_finetunes_saves_and_reloads(tmp_path):
    raw = tiny_raw(model={"name": "mlp", "hidden": [8]})
    raw["evaluate"] = ["accuracy", "nll", "ood"]
    raw["stages"] = [{"train": {"epochs": 1, "batch_size": 32}},
                     {"mc_dropout": {"add": 0.3, "samples": 5,
                                     "finetune": {"epochs": 1, "batch_size": 32}}}]
    result = run_recipe(resolve(raw), tmp_path)
    stage = result.stages[1]
    assert stage.details["mc_dropout"]["added_before"] == ["3"]
    assert "mutual_information" in stage.details["ood"]["noise"]
    model = load_model(tmp_path / "models" / "mc_dropout")
    x = torch.rand(6, 1, 8, 8)
    samples = sample_logits(model, x)
    assert samples.shape == (5, 6, 10) and not torch.equal(samples[0], samples[1])
    torch.testing.assert_close(model(x), log_mean_softmax(samples))


def test_model_without_dropout_is_refused(tmp_path):
    raw = tiny_raw(model={"name": "mlp", "hidden": [8]})
    raw["evaluate"] = ["accuracy"]
    raw["stages"] = [{"train": {"epochs": 1}}, {"mc_dropout": {}}]
    with pytest.raises(NnoptError, match="mc_dropout.add"):
        run_recipe(resolve(raw), tmp_path)
