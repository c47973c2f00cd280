"""Last-layer Laplace: curvature against autograd Hessians, posterior variance against a dense
inverse, probit limits, and the step's prior-precision choice on validation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.trust.uncertainty.laplace import MAP_TAU, LaplaceLinear


def _problem(n: int, d: int = 4, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64))
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return lin, x, y


def _hessian(lin: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The exact Hessian of the summed cross-entropy w.r.t. [W | b], row-major (class outer)."""
    w_aug = torch.cat([lin.weight, lin.bias[:, None]], 1).detach()
    phi = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(phi @ w.view_as(w_aug).T, y, reduction="sum")

    return torch.autograd.functional.hessian(loss, w_aug.flatten())


def _dense_variance(hess: torch.Tensor, x: torch.Tensor, tau: float, k: int) -> torch.Tensor:
    cov = torch.linalg.inv(hess + tau * torch.eye(len(hess), dtype=hess.dtype))
    phi = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    out = []
    for p in phi:
        jac = torch.kron(torch.eye(k, dtype=x.dtype), p[None])  # d f / d vec([W | b])
        out.append(torch.diagonal(jac @ cov @ jac.T))
    return torch.stack(out)


def test_diagonal_curvature_is_the_exact_hessian_diagonal():
    lin, x, y = _problem(50)
    layer = LaplaceLinear(lin, "diag").double()
    layer.fit_curvature([x[:20], x[20:]])
    hess = _hessian(lin, x, y)
    torch.testing.assert_close(layer.h.flatten(), torch.diagonal(hess), rtol=1e-9, atol=1e-9)


def test_kron_variance_matches_a_dense_inverse_where_kfac_is_exact():
    # one example: mean Lambda (x) sum phi phi^T is then the exact Hessian
    lin, x, y = _problem(1)
    layer = LaplaceLinear(lin, "kron").double()
    layer.fit_curvature([x])
    hess = _hessian(lin, x, y)
    torch.testing.assert_close(torch.kron(layer.qg @ torch.diag(layer.g) @ layer.qg.T,
                                          layer.qa @ torch.diag(layer.a) @ layer.qa.T),
                               hess, rtol=1e-8, atol=1e-10)
    probe = torch.randn(7, 4, dtype=torch.float64)
    torch.testing.assert_close(layer.logit_variance(probe, 0.5),
                               _dense_variance(hess, probe, 0.5, 3), rtol=1e-8, atol=1e-10)


def test_kron_variance_equals_the_inverse_of_its_own_kronecker_matrix():
    lin, x, y = _problem(200)
    layer = LaplaceLinear(lin, "kron").double()
    layer.fit_curvature([x[:64], x[64:]])
    kfac = torch.kron(layer.qg @ torch.diag(layer.g) @ layer.qg.T,
                      layer.qa @ torch.diag(layer.a) @ layer.qa.T)
    # K-FAC approximates the exact Hessian: same trace
    torch.testing.assert_close(torch.trace(kfac), torch.trace(_hessian(lin, x, y)), rtol=0.5,
                               atol=0)
    probe = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(layer.logit_variance(probe, 2.0),
                               _dense_variance(kfac, probe, 2.0, 3), rtol=1e-8, atol=1e-10)


def test_probit_output_limits():
    lin, x, _ = _problem(30)
    layer = LaplaceLinear(lin, "kron").double()
    layer.fit_curvature([x])
    with torch.no_grad():
        layer.prior_precision.fill_(1e12)  # no posterior spread: the MAP logits
        torch.testing.assert_close(layer(x), lin(x), rtol=1e-6, atol=1e-6)
        layer.prior_precision.fill_(1.0)
        var = layer.logit_variance(x)
        assert (var > 0).all()
        expected = lin(x) / torch.sqrt(1 + math.pi / 8 * var)
        torch.testing.assert_close(layer(x), expected)
        # a broader posterior gives less confident predictions
        assert (layer(x).softmax(1).max(1).values <= lin(x).softmax(1).max(1).values + 1e-12).all()


def test_step_tunes_prior_on_validation_and_reloads(tmp_path):
    from conftest import tiny_raw
    from nnopt.models.saving import load_model
    from nnopt.recipe import resolve
    from nnopt.runner import run_recipe

    raw = tiny_raw(model={"name": "mlp", "hidden": [8]})
    raw["evaluate"] = ["accuracy", "nll"]
    raw["stages"] = [{"train": {"epochs": 2, "batch_size": 32, "lr": 0.01}},
                     {"laplace": {"hessian": "diag"}}, {"laplace": {}, "from": "train"}]
    result = run_recipe(resolve(raw), tmp_path)
    for stage in result.stages[1:]:
        info = stage.details["laplace"]
        best = min(info["scan"], key=lambda r: r["val_nll"])
        assert info["prior_precision"] == best["prior_precision"]
        # the MAP network (no spread) is the last candidate: the choice is never worse on val
        assert info["scan"][-1]["prior_precision"] == MAP_TAU
        assert best["val_nll"] <= info["scan"][-1]["val_nll"]
    model = load_model(tmp_path / "models" / "laplace")
    x = torch.rand(4, 1, 8, 8)
    assert isinstance(model.get_submodule(result.stages[1].details["laplace"]["layer"]),
                      LaplaceLinear)
    ref = load_model(tmp_path / "models" / "laplace")(x)
    torch.testing.assert_close(model(x), ref)
