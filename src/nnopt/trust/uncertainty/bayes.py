"""Bayes by Backprop (Blundell et al. 2015) with the local reparameterisation trick (Kingma et
al. 2015): every weight has a factorised Gaussian posterior N(mu, softplus(rho)^2); a layer
samples its pre-activations, mean F(x, mu) and variance F(x^2, sigma^2), instead of its weights,
so the gradient noise is lower and each example gets its own weight sample.

Training minimises the negative ELBO per example, cross-entropy + kl_weight * KL(q || p) / N,
with the closed-form KL to a N(0, prior_sigma^2) prior. Starting from a trained network puts the
posterior means at its weights (a Bayesian fine-tuning); from a fresh model it trains from scratch.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS, TASKS, TRANSFORMS
from nnopt.measure.base import is_nnopt_model
from nnopt.models.saving import record_int
from nnopt.models.structure import replace_module
from nnopt.train.fit import TrainConfig
from nnopt.train.task import TrainingTask
from nnopt.trust.uncertainty import log_mean_softmax
from nnopt.trust.uncertainty.records import BayesRecord


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_sigma: float) -> torch.Tensor:
    """Sum of KL(N(mu, sigma^2) || N(0, prior_sigma^2)) over all elements."""
    return (math.log(prior_sigma) - torch.log(sigma)
            + (sigma ** 2 + mu ** 2) / (2 * prior_sigma ** 2) - 0.5).sum()


class _Bayes(nn.Module):
    """Shared parameters of a variational layer; subclasses give the deterministic operation."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, prior_sigma: float, init_sigma: float) -> None:
        super().__init__()
        self.prior_sigma = prior_sigma
        rho = math.log(math.expm1(init_sigma))  # softplus^-1
        self.weight_mu = nn.Parameter(layer.weight.detach().clone())
        self.weight_rho = nn.Parameter(torch.full_like(layer.weight, rho))
        if layer.bias is not None:
            self.bias_mu = nn.Parameter(layer.bias.detach().clone())
            self.bias_rho = nn.Parameter(torch.full_like(layer.bias, rho))
        else:
            self.bias_mu = self.bias_rho = None

    def op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.op(x, self.weight_mu, self.bias_mu)
        var_b = F.softplus(self.bias_rho) ** 2 if self.bias_rho is not None else None
        var = self.op(x * x, F.softplus(self.weight_rho) ** 2, var_b)
        return mean + torch.sqrt(var.clamp_min(1e-16)) * torch.randn_like(mean)

    def kl(self) -> torch.Tensor:
        out = gaussian_kl(self.weight_mu, F.softplus(self.weight_rho), self.prior_sigma)
        if self.bias_mu is not None:
            out = out + gaussian_kl(self.bias_mu, F.softplus(self.bias_rho), self.prior_sigma)
        return out


class BayesLinear(_Bayes):
    def op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b)


class BayesConv2d(_Bayes):
    def __init__(self, layer: nn.Conv2d, prior_sigma: float, init_sigma: float) -> None:
        super().__init__(layer, prior_sigma, init_sigma)
        if layer.padding_mode != "zeros":
            raise NnoptError("bayes supports zero-padded convolutions only")
        self.conv = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                         groups=layer.groups)

    def op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, w, b, **self.conv)


class BayesNet(nn.Module):
    """One sampled pass while training; in eval mode the log mean softmax of ``samples`` seeded
    passes (so predictions repeat)."""

    stochastic = True

    def __init__(self, net: nn.Module, samples: int, seed: int = 0) -> None:
        super().__init__()
        self.net, self.samples, self.seed = net, samples, seed

    def sample_logits(self, h: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return torch.stack([self.net(h) for _ in range(self.samples)])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.net(h)
        return log_mean_softmax(self.sample_logits(h))

    def kl(self) -> torch.Tensor:
        return sum(m.kl() for m in self.net.modules() if isinstance(m, _Bayes))


class ElboTask(TrainingTask):
    """Negative ELBO per training example: cross-entropy + kl_weight * KL / N."""

    def __init__(self, bayes_net: BayesNet, n_train: int, kl_weight: float) -> None:
        self.net, self.scale = bayes_net, kl_weight / n_train

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        out = model(x)
        nll = F.cross_entropy(out, y)
        kl = self.net.kl()
        return {"loss": nll + self.scale * kl, "output": out}


def _convert(net: nn.Module, names: list[str], prior_sigma: float, init_sigma: float) -> None:
    for name in names:
        layer = net.get_submodule(name)
        cls = BayesLinear if isinstance(layer, nn.Linear) else BayesConv2d
        replace_module(net, name, cls(layer, prior_sigma, init_sigma))


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    _convert(model.net, transform["layers"], transform["prior_sigma"], 1e-3)
    model.net = BayesNet(model.net, record_int(transform, "samples", 1, 1000),
                         record_int(transform, "seed", 0, 2 ** 62, default=0))


TRANSFORMS.add("bayes", _reapply)


class BayesConfig(Strict):
    """Variational layers, prior and ELBO training."""

    layers: Literal["all", "last"] = Field("all", description="every Linear/Conv2d, or only the "
                                           "last layer")
    prior_sigma: float = Field(0.1, gt=0, description="std of the N(0, s^2) weight prior")
    init_sigma: float = Field(1e-3, gt=0, description="initial posterior std of every weight")
    kl_weight: float = Field(1.0, ge=0, description="1 is the ELBO; < 1 tempers the prior")
    samples: int = Field(10, ge=1, le=1000, description="weight samples averaged at inference")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=5, select_best=False),
                               description="ELBO training")


@STEPS.register("bayes", config=BayesConfig,
                tiny={"samples": 2, "train": {"epochs": 1, "batch_size": 32}})
def bayes(model: nn.Module, cfg: BayesConfig, ctx: RunContext) -> nn.Module:
    """Make Linear/Conv2d layers variational and train the ELBO (posterior means start at the
    incoming weights)."""
    if not is_nnopt_model(model):
        raise NnoptError("bayes needs a PyTorch model; put it before export/quantize")
    if model.spec.get("transforms"):
        raise NnoptError("bayes converts the recipe's plain architecture; put it before steps "
                         "that rewrite modules (calibrate, mc_dropout, qat, factorize, ...)")
    out = copy.deepcopy(model)
    names = [n for n, m in out.net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not names:
        raise NnoptError("bayes found no Linear or Conv2d layer to make variational")
    names = names[-1:] if cfg.layers == "last" else names
    _convert(out.net, names, cfg.prior_sigma, cfg.init_sigma)
    out.net = BayesNet(out.net, cfg.samples, ctx.seed)
    task = ElboTask(out.net, len(ctx.data.train), cfg.kl_weight)
    ctx.fit(out, cfg.train, task=task, record="history")
    sigmas = torch.cat([F.softplus(m.weight_rho).detach().flatten()
                        for m in out.net.modules() if isinstance(m, _Bayes)])
    with torch.no_grad():
        kl = float(out.net.kl())
    ctx.record(BayesRecord(layers=names, prior_sigma=cfg.prior_sigma, kl_weight=cfg.kl_weight,
                           samples=cfg.samples, kl_per_example=kl / len(ctx.data.train),
                           posterior_sigma_median=float(sigmas.median()),
                           posterior_sigma_mean=float(sigmas.mean())))
    out.spec = {**out.spec, "transforms": [{"kind": "bayes", "layers": names, "seed": ctx.seed,
                                            "prior_sigma": cfg.prior_sigma,
                                            "samples": cfg.samples}]}
    return out


# chosen by its step, not by a `task:` block (it needs what the step builds)
TASKS.add("elbo", ElboTask, built_by="the bayes step")
