"""Out-of-distribution detection: scores from a classifier's outputs (higher = more
in-distribution) and the detection metrics of Hendrycks & Gimpel (2017): AUROC, AUPR with either
side as positive, and the FPR on OOD inputs at 95% TPR on in-distribution ones."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from nnopt.core.extras import require
from nnopt.trust.uncertainty import decompose, entropy

Score = Literal["msp", "entropy", "energy", "mutual_information"]
SCORES = ("msp", "entropy", "energy", "mutual_information")


def ood_score(logits: torch.Tensor, kind: Score, *, temperature: float = 1.0) -> torch.Tensor:
    """Per example, higher when the input looks in-distribution.

    ``logits`` is (examples, classes), or (samples, examples, classes) for MC dropout and
    ensembles. msp: max softmax probability (Hendrycks & Gimpel 2017); entropy: minus the
    predictive entropy; energy: T logsumexp(logits / T), minus the free energy (Liu et al. 2020);
    mutual_information: minus the epistemic part (needs samples).
    """
    x = logits.double()
    if kind == "mutual_information":
        if x.dim() != 3:
            raise ValueError("the mutual_information score needs several predictive samples "
                             "(MC dropout or an ensemble): (samples, examples, classes) logits")
        return -decompose(x.softmax(-1))["mutual_information"]
    if x.dim() == 3:  # average the samples' probabilities, then score the mean prediction
        probs = x.softmax(-1).mean(0)
        if kind == "energy":
            return temperature * torch.logsumexp(x / temperature, -1).mean(0)
    else:
        probs = x.softmax(-1)
    if kind == "msp":
        return probs.max(-1).values
    if kind == "entropy":
        return -entropy(probs)
    if kind == "energy":
        return temperature * torch.logsumexp(x / temperature, -1)
    raise ValueError(f"unknown OOD score '{kind}'; choose {', '.join(SCORES)}")


def detection_metrics(score_in: torch.Tensor, score_out: torch.Tensor) -> dict[str, float]:
    """AUROC and AUPR-in (in-distribution positive), AUPR-out (OOD positive, scores negated) and
    FPR@95TPR: the share of OOD inputs accepted at the threshold that accepts 95% of the
    in-distribution ones."""
    s_in = score_in.detach().double().numpy()
    s_out = score_out.detach().double().numpy()
    if not len(s_in) or not len(s_out):
        raise ValueError("detection metrics need in-distribution and OOD scores")
    y = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    s = np.concatenate([s_in, s_out])
    # the highest threshold that still accepts >= 95% of the in-distribution inputs
    threshold = np.sort(s_in)[int(np.floor(0.05 * len(s_in) + 1e-9))]
    metrics = require("sklearn.metrics", "OOD detection metrics")
    roc_auc_score, average_precision_score = metrics.roc_auc_score, metrics.average_precision_score
    return {"auroc": float(roc_auc_score(y, s)),
            "aupr_in": float(average_precision_score(y, s)),
            "aupr_out": float(average_precision_score(1 - y, -s)),
            "fpr95": float((s_out >= threshold).mean())}
