"""Attacks: perturbations stay in the budget and in [0, 1]; references on linear models (FGSM's
closed form, the minimal L2 distance for CW); targeted attacks reach the target; undefended
accuracy falls to ~0 at a large eps; Square needs no gradients; BPDA mixes values and grads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnopt.trust.robustness.attacks import (
    StraightThrough,
    _checkpoints,
    apgd_ce,
    fgsm,
    pgd,
    project,
)
from nnopt.trust.robustness.cw import cw_l2
from nnopt.trust.robustness.square import square_linf


def _linear_problem(n: int = 64, classes: int = 3, seed: int = 0):
    """Linearly separable classes in [0.2, 0.8]^(1x4x4) and a linear model that separates them."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(classes, 16, generator=g) * 0.4 + 0.3
    y = torch.arange(n) % classes
    x = (centers[y] + 0.02 * torch.randn(n, 16, generator=g)).clamp(0.2, 0.8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, classes))
    with torch.no_grad():
        model[1].weight.copy_(centers * 40)
        model[1].bias.copy_(-20 * (centers ** 2).sum(1))  # nearest-centre classifier
    x = x.view(n, 1, 4, 4)
    assert (model(x).argmax(1) == y).all()
    return model.eval(), x, y


ATTACKS = {
    "fgsm": lambda m, x, y, e: fgsm(m, x, y, e),
    "pgd": lambda m, x, y, e: pgd(m, x, y, e, steps=10, restarts=2),
    "pgd_l2": lambda m, x, y, e: pgd(m, x, y, e, steps=10, norm="l2"),
    "apgd": lambda m, x, y, e: apgd_ce(m, x, y, e, steps=20),
    "square": lambda m, x, y, e: square_linf(m, x, y, e, queries=50),
}


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("eps", [0.03, 0.3])
def test_perturbations_respect_the_budget_and_the_box(name, eps):
    model, x, y = _linear_problem()
    x_adv = ATTACKS[name](model, x, y, eps)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    if name == "pgd_l2":
        assert (delta.norm(dim=1) <= eps + 1e-5).all()
    else:
        assert delta.abs().max() <= eps + 1e-6
    clean = model(x).argmax(1) == y
    adv = model(x_adv).argmax(1) == y
    assert (adv & clean).sum() <= clean.sum()  # robust accuracy <= clean accuracy


@pytest.mark.parametrize("name", ["pgd", "apgd", "square"])
def test_undefended_accuracy_falls_to_zero_at_a_large_eps(name):
    model, x, y = _linear_problem()
    x_adv = ATTACKS[name](model, x, y, 0.5)
    assert (model(x_adv).argmax(1) == y).float().mean() <= 0.02


def test_fgsm_on_a_linear_two_class_model_is_the_closed_form():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, 10, generator=g)
    model = nn.Linear(10, 2)
    with torch.no_grad():
        model.weight.copy_(w)
        model.bias.zero_()
    x = torch.rand(8, 10, generator=g) * 0.4 + 0.3
    y = torch.zeros(8, dtype=torch.long)
    # the cross-entropy of class 0 grows fastest along sign(w_1 - w_0)
    expected = (x + 0.1 * torch.sign(w[1] - w[0])).clamp(0, 1)
    torch.testing.assert_close(fgsm(model, x, y, 0.1), expected)


def test_targeted_pgd_reaches_its_target_on_a_linear_model():
    model, x, y = _linear_problem()
    target = (y + 1) % 3
    x_adv = pgd(model, x, y, 0.4, steps=40, target=target)
    assert (model(x_adv).argmax(1) == target).all()


def test_cw_finds_the_minimal_l2_distance_of_a_linear_model():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(16, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w, -w]) / 2)
        model[1].bias.zero_()
    x = (0.5 + 0.05 * torch.randn(6, 1, 4, 4, generator=g)).clamp(0.3, 0.7)
    y = model(x).argmax(1)
    # distance from x to the boundary w.x = 0 (the box [0, 1] does not bind this close to 0.5)
    exact = (x.flatten(1) @ w).abs() / w.norm()
    x_adv = cw_l2(model, x, y, steps=300, lr=0.01, search_steps=6, c=10.0)
    found = (x_adv - x).flatten(1).norm(dim=1)
    assert (model(x_adv).argmax(1) != y).all()
    assert (found >= exact - 1e-4).all() and (found <= exact * 1.1 + 0.02).all()


def test_square_needs_only_outputs():
    model, x, y = _linear_problem()

    def no_grad_model(inp: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled()  # a black box: never differentiated
        return model(inp)

    x_adv = square_linf(no_grad_model, x, y, 0.3, queries=200)
    assert (model(x_adv).argmax(1) == y).float().mean() < (model(x).argmax(1) == y).float().mean()


def test_straight_through_takes_values_of_one_and_gradients_of_the_other():
    exact = nn.Linear(4, 2)
    surrogate = nn.Linear(4, 2)
    bpda = StraightThrough(exact, surrogate)
    x = torch.rand(3, 4, requires_grad=True)
    out = bpda(x)
    torch.testing.assert_close(out, exact(x))
    (gx,) = torch.autograd.grad(out[:, 0].sum(), x)
    torch.testing.assert_close(gx, surrogate.weight[0].expand(3, 4))


def test_apgd_checkpoints_follow_the_paper():
    assert _checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


def test_l2_projection_scales_onto_the_sphere():
    x = torch.full((2, 1, 2, 2), 0.5)
    far = x + torch.tensor([0.3, 0.0, 0.0, 0.4]).view(1, 1, 2, 2)
    out = project(far, x, 0.25, "l2")
    torch.testing.assert_close((out - x).flatten(1).norm(dim=1), torch.full((2,), 0.25))


def test_square_with_ties_keeps_searching_where_the_output_does_not_move():
    x = torch.full((4, 1, 6, 6), 0.5)
    y = torch.zeros(4, dtype=torch.long)

    def flat(inp: torch.Tensor) -> torch.Tensor:  # a fully quantized plateau: one output
        return torch.tensor([[1.0, 0.0, 0.0]]).expand(len(inp), 3)

    def column_constant(d: torch.Tensor) -> bool:  # the vertical-stripe start, unchanged
        return bool((d == d[:, :, :1, :]).all())

    strict = square_linf(flat, x, y, 0.1, queries=30, accept_ties=False)
    ties = square_linf(flat, x, y, 0.1, queries=30, accept_ties=True)
    assert column_constant(strict - x)  # a strict search never leaves its start
    assert not column_constant(ties - x)
    assert (ties - x).abs().max() <= 0.1 + 1e-6
