"""The uncertainty records of a stage (results.json: details.mc_dropout, .bayes, .laplace,
.ensemble)."""

from __future__ import annotations

from typing import Any

from nnopt.core.record import Record, record


@record
class McDropoutRecord(Record):
    """MC dropout: passes averaged per prediction, the dropout rates in the network, the layers
    dropout was added before (if any) and whether the network was fine-tuned with it."""

    KEY = "mc_dropout"
    samples: int
    dropout_rates: list[float]
    added_before: list[str]
    finetuned: bool


@record
class BayesRecord(Record):
    """Bayes by Backprop: the variational layers, the prior, the KL weight, samples per
    prediction and the posterior's scale after training."""

    KEY = "bayes"
    layers: list[str]
    prior_sigma: float
    kl_weight: float
    samples: int
    kl_per_example: float
    posterior_sigma_median: float
    posterior_sigma_mean: float


@record
class LaplaceRecord(Record):
    """Last-layer Laplace: the layer, the curvature, the prior precision chosen and the
    validation NLL of each candidate (the last is the MAP network)."""

    KEY = "laplace"
    layer: str
    hessian: str
    prior_precision: float
    fitted_on: str
    scan: list[dict[str, float]]


@record
class EnsembleRecord(Record):
    """A deep ensemble: how each member was made, with its validation figures."""

    KEY = "ensemble"
    members: list[dict[str, Any]]
