"""Uncertainty from several predictive samples (MC dropout, ensembles): the total predictive
entropy splits into the expected entropy (aleatoric) and the mutual information between the
prediction and the model (epistemic) (Depeweg et al. 2018; Gal 2016)."""

from __future__ import annotations

import torch


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
