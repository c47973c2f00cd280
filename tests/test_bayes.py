"""Bayes by Backprop: the closed-form KL against torch.distributions, the local
reparameterisation's moments against sampling the weights, the ELBO loss, and the step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from nnopt.trust.uncertainty.bayes import BayesConv2d, BayesLinear, BayesNet, ElboTask, gaussian_kl


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(20, generator=g, dtype=torch.float64)
    sigma = torch.rand(20, generator=g, dtype=torch.float64) + 0.01
    ref = kl_divergence(Normal(mu, sigma), Normal(torch.zeros(20, dtype=torch.float64),
                                                  0.3 * torch.ones(20, dtype=torch.float64)))
    torch.testing.assert_close(gaussian_kl(mu, sigma, 0.3), ref.sum())


def _weight_sampled(layer, x: torch.Tensor, n: int) -> torch.Tensor:
    """Reference: draw whole weight tensors from q and apply the layer's operation."""
    g = torch.Generator().manual_seed(1)
    s_w, s_b = F.softplus(layer.weight_rho), F.softplus(layer.bias_rho)
    outs = []
    for _ in range(n):
        w = layer.weight_mu + s_w * torch.randn(layer.weight_mu.shape, generator=g,
                                                dtype=torch.float64)
        b = layer.bias_mu + s_b * torch.randn(layer.bias_mu.shape, generator=g,
                                              dtype=torch.float64)
        outs.append(layer.op(x, w, b))
    return torch.stack(outs)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_local_reparameterisation_has_the_moments_of_weight_sampling(kind):
    torch.manual_seed(0)
    if kind == "linear":
        layer = BayesLinear(nn.Linear(5, 3), prior_sigma=0.1, init_sigma=0.3).double()
        x = torch.randn(2, 5, dtype=torch.float64)
    else:
        layer = BayesConv2d(nn.Conv2d(2, 3, 3, padding=1), prior_sigma=0.1,
                            init_sigma=0.3).double()
        x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    n = 4000
    with torch.no_grad():
        lrt = torch.stack([layer(x) for _ in range(n)])
        ref = _weight_sampled(layer, x, n)
    # same mean and variance per output unit (sampling error ~ 1/sqrt(n))
    torch.testing.assert_close(lrt.mean(0), ref.mean(0), rtol=0, atol=0.08)
    torch.testing.assert_close(lrt.var(0), ref.var(0), rtol=0.12, atol=0.01)
    mean = layer.op(x, layer.weight_mu, layer.bias_mu).detach()
    torch.testing.assert_close(lrt.mean(0), mean, rtol=0, atol=0.08)


def test_elbo_loss_is_nll_plus_scaled_kl():
    torch.manual_seed(0)
    net = BayesNet(nn.Sequential(BayesLinear(nn.Linear(4, 3), 0.5, 0.1)), samples=3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    task = ElboTask(net, n_train=100, kl_weight=0.5)
    torch.manual_seed(3)
    out = task(net.train(), x, y)
    torch.testing.assert_close(out["loss"], F.cross_entropy(out["output"], y) + 0.5 * net.kl() / 100)
    net.eval()
    torch.testing.assert_close(net(x), net(x))  # seeded passes: repeatable predictions


def test_step_trains_and_reloads(tmp_path):
    from conftest import tiny_raw
    from nnopt.models.saving import load_model
    from nnopt.recipe import resolve
    from nnopt.runner import run_recipe

    raw = tiny_raw()  # a CNN: conv and linear layers become variational
    raw["evaluate"] = ["accuracy", "nll"]
    raw["stages"] = [{"train": {"epochs": 1, "batch_size": 32}},
                     {"bayes": {"samples": 3, "train": {"epochs": 2, "batch_size": 32}}}]
    result = run_recipe(resolve(raw), tmp_path)
    info = result.stages[1].details["bayes"]
    assert info["kl_per_example"] > 0 and info["posterior_sigma_median"] > 0
    model = load_model(tmp_path / "models" / "bayes")
    kinds = {type(m) for m in model.modules()}
    assert {BayesConv2d, BayesLinear} <= kinds and nn.Conv2d not in kinds
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(model(x), load_model(tmp_path / "models" / "bayes")(x))
