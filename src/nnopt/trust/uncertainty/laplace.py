"""Last-layer Laplace approximation (MacKay 1992; Daxberger et al. 2021, "Laplace Redux").

The trained network is the MAP estimate; only its last Linear layer gets a Gaussian posterior
N(W_map, (H + tau I)^-1), with H the generalised Gauss-Newton (for a last layer under softmax
cross-entropy it equals the Hessian): H = sum_n Lambda_n (x) phi_n phi_n^T, where
Lambda_n = diag(p_n) - p_n p_n^T and phi_n = [features, 1]. Two approximations of H:

- ``diag``: its exact diagonal;
- ``kron`` (K-FAC): (mean_n Lambda_n) (x) (sum_n phi_n phi_n^T), inverted in the eigenbases of
  the two factors, so the logit covariance of an input is Q_G diag(v) Q_G^T with
  v_j = sum_i (Q_A^T phi)_i^2 / (g_j a_i + tau).

Predictions use the probit approximation softmax(f / sqrt(1 + pi/8 var(f))), so the model stays
deterministic, saves as safetensors and exports to ONNX. The prior precision tau is chosen on the
validation split (lowest NLL over a log grid), never on test.
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
from nnopt.core.compute import placed
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS, TRANSFORMS
from nnopt.measure.base import is_nnopt_model
from nnopt.models.structure import replace_module
from nnopt.trust.uncertainty.records import LaplaceRecord

Hessian = Literal["kron", "diag"]
MAP_TAU = 1e12  # the prior precision that stands for "no posterior spread" in the scan


class LaplaceLinear(nn.Module):
    """The MAP Linear layer plus its posterior; outputs probit-scaled logits."""

    def __init__(self, linear: nn.Linear, hessian: Hessian) -> None:
        super().__init__()
        self.linear, self.hessian = linear, hessian
        k, d = linear.out_features, linear.in_features + (linear.bias is not None)
        self.register_buffer("prior_precision", torch.ones(()))
        if hessian == "kron":
            self.register_buffer("qa", torch.eye(d))
            self.register_buffer("a", torch.zeros(d))
            self.register_buffer("qg", torch.eye(k))
            self.register_buffer("g", torch.zeros(k))
        else:
            self.register_buffer("h", torch.zeros(k, d))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.ones_like(x[:, :1])], 1) if self.linear.bias is not None else x

    def logit_variance(self, x: torch.Tensor, tau: torch.Tensor | float | None = None
                       ) -> torch.Tensor:
        """Posterior variance of each logit, (examples, classes)."""
        tau = self.prior_precision if tau is None else tau
        phi = self.features(x)
        if self.hessian == "diag":
            return (phi ** 2) @ (1.0 / (self.h + tau)).T
        proj = (phi @ self.qa) ** 2                                   # (n, d) in A's eigenbasis
        v = proj @ (1.0 / (self.a[:, None] * self.g[None, :] + tau))  # (n, k) in G's eigenbasis
        return v @ (self.qg ** 2).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.linear(x)
        return f / torch.sqrt(1.0 + math.pi / 8.0 * self.logit_variance(x))

    @torch.no_grad()
    def fit_curvature(self, phi_batches: list[torch.Tensor]) -> None:
        """Accumulate the GGN factors from the last layer's inputs (training split)."""
        k, d = self.linear.out_features, self.features(phi_batches[0][:1]).shape[1]
        big_a = torch.zeros(d, d, dtype=torch.float64)
        big_g = torch.zeros(k, k, dtype=torch.float64)
        h = torch.zeros(k, d, dtype=torch.float64)
        n = 0
        for x in phi_batches:
            phi = self.features(x).double()
            p = self.linear(x).double().softmax(1)
            if self.hessian == "kron":
                big_a += phi.T @ phi
                big_g += torch.diag(p.sum(0)) - p.T @ p
            else:
                h += (p * (1 - p)).T @ (phi ** 2)
            n += len(x)
        if self.hessian == "kron":
            a, qa = torch.linalg.eigh(big_a)
            g, qg = torch.linalg.eigh(big_g / n)
            self.a.copy_(a.clamp_min(0)), self.qa.copy_(qa)
            self.g.copy_(g.clamp_min(0)), self.qg.copy_(qg)
        else:
            self.h.copy_(h)


def last_linear(model: nn.Module, probe: torch.Tensor) -> str:
    """The name of the Linear layer whose output is the model's output (checked by a run)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NnoptError("laplace needs a model whose last layer is nn.Linear; it has none")
    name, seen = linears[-1], {}
    layer = model.get_submodule(name)
    handle = layer.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    try:
        with torch.no_grad():
            out = model.eval()(probe)
    finally:
        handle.remove()
    if "out" not in seen or not torch.allclose(seen["out"], out, atol=1e-5):
        raise NnoptError(f"laplace: the model's output is not the output of its last Linear "
                         f"layer '{name}' (a head follows it); apply laplace before calibrate, "
                         "mc_dropout or ensemble")
    return name


def layer_inputs(model: nn.Module, layer: nn.Module, x: torch.Tensor,
                 batch_size: int = 1000) -> list[torch.Tensor]:
    """The inputs ``layer`` receives when ``model`` runs on ``x``, in batches."""
    out: list[torch.Tensor] = []
    handle = layer.register_forward_hook(
        lambda m, i, o: out.append(i[0].detach().flatten(1).cpu()))
    try:  # the forward passes on the compute device; the float64 curvature on the CPU
        with placed(model) as dev, torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size].to(dev))
    finally:
        handle.remove()
    return out


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    replace_module(model, transform["layer"],
                   LaplaceLinear(model.get_submodule(transform["layer"]), transform["hessian"]))


TRANSFORMS.add("laplace", _reapply)


class LaplaceConfig(Strict):
    """Curvature approximation and prior precision."""

    hessian: Hessian = Field("kron", description="kron (K-FAC) or diag generalised Gauss-Newton")
    prior_precision: float | None = Field(None, gt=0, description="fixed tau (default: the "
                                          "lowest validation NLL on the grid)")
    grid: list[float] = Field(default_factory=lambda: [10.0 ** (e / 4) for e in range(-12, 17)],
                              min_length=1, description="taus tried on validation")


@STEPS.register("laplace", config=LaplaceConfig, tiny={})
def laplace(model: nn.Module, cfg: LaplaceConfig, ctx: RunContext) -> nn.Module:
    """Replace the last Linear layer by its Laplace posterior (probit predictive)."""
    if not is_nnopt_model(model):
        raise NnoptError("laplace needs a PyTorch model; put it before export/quantize")
    out = copy.deepcopy(model).eval()
    name = last_linear(out, ctx.data.train.x[:8])
    layer = LaplaceLinear(out.get_submodule(name), cfg.hessian)
    layer.fit_curvature(layer_inputs(out, layer.linear, ctx.data.train.x))
    val = ctx.data.val
    scan: list[dict[str, float]] = []
    if cfg.prior_precision is not None:
        tau = cfg.prior_precision
    elif not len(val):
        raise NnoptError("laplace tunes the prior precision on the validation split, which is "
                         "empty; set data.val_fraction > 0 or laplace.prior_precision")
    else:
        phi = torch.cat(layer_inputs(out, layer.linear, val.x))
        with torch.no_grad():
            f = layer.linear(phi)
            for t in cfg.grid:
                z = f / torch.sqrt(1 + math.pi / 8 * layer.logit_variance(phi, t))
                scan.append({"prior_precision": t, "val_nll": F.cross_entropy(z.double(),
                                                                              val.y).item()})
        # a prior this strong leaves no posterior spread: the MAP network is a candidate too
        scan.append({"prior_precision": MAP_TAU,
                     "val_nll": F.cross_entropy(f.double(), val.y).item()})
        tau = min(scan, key=lambda r: r["val_nll"])["prior_precision"]
    layer.prior_precision.fill_(tau)
    replace_module(out, name, layer)
    out.spec = {**out.spec, "transforms": [*out.spec.get("transforms", []),
                                           {"kind": "laplace", "layer": name,
                                            "hessian": cfg.hessian}]}
    ctx.record(LaplaceRecord(layer=name, hessian=cfg.hessian, prior_precision=tau,
                             fitted_on=f"training ({len(ctx.data.train)} examples)", scan=scan))
    return out
