"""Uncertainty: models that give several predictive samples (MC dropout, deep ensembles, Bayes by
Backprop) or a posterior (last-layer Laplace), one technique per module.

This module holds what they share: the total predictive entropy of several samples splits into
the expected entropy (aleatoric) and the mutual information between the prediction and the model
(epistemic) (Depeweg et al. 2018; Gal 2016), and a sampling model's samples are averaged in
probability space."""

from __future__ import annotations

import math

import torch
from torch import nn

from nnopt.core.compute import placed


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats of each row of ``probs`` (0 log 0 = 0)."""
    p = probs.double()
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)


def decompose(sample_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """For (samples, examples, classes) probabilities: mean prediction, predictive entropy
    H[mean p], expected entropy E[H[p]] and mutual information H[mean p] - E[H[p]] >= 0."""
    if sample_probs.dim() != 3:
        raise ValueError("decompose takes (samples, examples, classes) probabilities, got shape "
                         f"{tuple(sample_probs.shape)}")
    mean = sample_probs.double().mean(0)
    total = entropy(mean)
    expected = entropy(sample_probs).mean(0)
    return {"mean": mean, "predictive_entropy": total, "expected_entropy": expected,
            "mutual_information": (total - expected).clamp_min(0.0)}


def log_mean_softmax(sample_logits: torch.Tensor) -> torch.Tensor:
    """log of the mean of softmax over dim 0: "logits" whose softmax is the averaged prediction
    (computed with logsumexp, so confident members do not underflow)."""
    return torch.logsumexp(sample_logits.log_softmax(-1), 0) - math.log(sample_logits.shape[0])


def is_sampler(model: nn.Module) -> bool:
    """Whether ``model`` (or its ``net``) gives several predictive samples per input."""
    return hasattr(getattr(model, "net", model), "sample_logits")


def sample_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """(samples, examples, classes) logits of a sampling model (ensemble, MC dropout, Bayesian
    network); its input normalisation and compute dtype are applied as in its forward."""
    net = getattr(model, "net", model)
    if not hasattr(net, "sample_logits"):
        raise ValueError(f"{type(net).__name__} gives one prediction per input, not samples")
    norm = getattr(model, "normalize", nn.Identity())
    dtype = getattr(model, "compute_dtype", None)
    was = model.training
    model.eval()
    try:
        with placed(model) as dev, torch.no_grad():
            parts = [net.sample_logits(norm(x[i:i + batch_size].to(dev, dtype))).float().cpu()
                     for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    return torch.cat(parts, 1)
