"""Capsule network: squash, routing-by-agreement, margin loss against the paper's formulas."""

from __future__ import annotations

import torch

from nnopt.data.base import Split
from nnopt.models import build_model
from nnopt.models.capsnet import CapsNetConfig, margin_loss, route, squash
from nnopt.train.fit import TrainConfig, fit, model_task


def test_squash_by_hand_and_norms_below_one():
    v = squash(torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(v, torch.tensor([[25 / 26 * 0.6, 25 / 26 * 0.8]]))
    s = torch.randn(500, 8, generator=torch.Generator().manual_seed(0)) * torch.logspace(
        -3, 3, 500).unsqueeze(1)
    n = squash(s).norm(dim=-1)
    assert (n >= 0).all() and (n < 1).all()
    cos = torch.nn.functional.cosine_similarity(squash(s), s, dim=-1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)
    assert torch.equal(squash(torch.zeros(2, 4)), torch.zeros(2, 4))


def test_routing_shapes_couplings_and_agreement():
    g = torch.Generator().manual_seed(0)
    u_hat = torch.randn(3, 12, 5, 4, generator=g)
    v, c = route(u_hat, 3)
    assert v.shape == (3, 5, 4) and c.shape == (3, 12, 5)
    assert torch.allclose(c.sum(-1), torch.ones(3, 12))
    assert (v.norm(dim=-1) < 1).all()
    # one iteration: uniform couplings, v_j = squash(mean-free sum / outputs)
    v1, c1 = route(u_hat, 1)
    assert torch.allclose(c1, torch.full_like(c1, 0.2))
    assert torch.allclose(v1, squash(u_hat.sum(1) / 5))
    # inputs that agree on output 0 route to it: its coupling grows with the iterations
    agree = torch.randn(1, 1, 1, 4, generator=g).expand(2, 12, 1, 4)
    mixed = torch.cat([agree, torch.randn(2, 12, 1, 4, generator=g)], dim=2)
    couplings = [route(mixed, r)[1][..., 0].mean().item() for r in (1, 2, 3)]
    assert couplings[0] == 0.5 and couplings[0] < couplings[1] < couplings[2]


def test_margin_loss_by_hand():
    lengths = torch.tensor([[0.95, 0.3, 0.05], [0.5, 0.2, 0.9]])
    y = torch.tensor([0, 2])
    # row 0: present 0, absent 0.5 * 0.2^2; row 1: present 0, absent 0.5 * (0.4^2 + 0.1^2)
    want = (0.5 * 0.04 + 0.5 * (0.16 + 0.01)) / 2
    assert torch.isclose(margin_loss(lengths, y), torch.tensor(want))
    assert torch.isclose(margin_loss(torch.tensor([[0.5, 0.0]]), torch.tensor([0])),
                         torch.tensor(0.16))


def _tiny() -> torch.nn.Module:
    cfg = CapsNetConfig(conv_channels=4, kernel_size=3, primary_types=2, primary_dim=4,
                        class_dim=4, decoder=[8])
    torch.manual_seed(0)
    return build_model(cfg, (1, 12, 12), 3, [0.5], [0.25])


def test_output_is_the_logit_of_capsule_lengths():
    model = _tiny().eval()
    x = torch.rand(4, 1, 12, 12)
    v, _ = model.net.capsules(model.normalize(x))
    assert v.shape == (4, 3, 4)
    assert torch.allclose(torch.sigmoid(model(x)), v.norm(dim=-1), atol=1e-6)
    recon = model.net.reconstruct(v, torch.tensor([0, 1, 2, 0]))
    assert recon.shape == x.shape and (recon >= 0).all() and (recon <= 1).all()


def test_fit_trains_with_the_margin_loss_unless_told_otherwise():
    model = _tiny()
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (48,), generator=g)
    x = torch.rand(48, 1, 12, 12, generator=g) * 0.3 + y.view(-1, 1, 1, 1) * 0.3
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.01, select_best=False)
    state = fit(model, Split(x, y), config=cfg)
    assert state.notes["objective"] == "CapsuleTask"
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    smoothed = TrainConfig(task={"name": "classify", "label_smoothing": 0.1})
    assert model_task(model, smoothed) is None  # the recipe's loss wins


def test_capsnet_trains_in_a_recipe_and_deploys_as_int8(tmp_path):
    from conftest import tiny_raw
    from nnopt.recipe import resolve
    from nnopt.runner import run_recipe

    raw = tiny_raw(model={"name": "capsnet", "conv_channels": 4, "kernel_size": 3,
                          "primary_types": 2, "primary_dim": 4, "class_dim": 4, "decoder": [8]},
                   stages=[{"train": {"epochs": 1, "batch_size": 32}},
                           {"quantize": {"method": "ort-static"}}])
    rep = run_recipe(resolve(raw), tmp_path / "run")
    assert rep.stages[0].details["training"]["objective"] == "CapsuleTask"
    fp32, int8 = (st.metrics for st in rep.stages)
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 0.1 and "latency_ms/cpu" in int8
    from nnopt.models.saving import read_spec

    assert read_spec(tmp_path / "run" / "models" / "quantize")["format"] == "nnopt-deployed"
    assert read_spec(tmp_path / "run" / "models" / "quantize" / "cpu")["format"] == "nnopt-onnx"
