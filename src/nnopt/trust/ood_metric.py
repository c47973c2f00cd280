"""The ``ood`` metric: how well each stage's outputs separate the test set from OOD sets."""

from __future__ import annotations

import torch

from nnopt.core.compute import predict
from nnopt.core.registry import METRICS
from nnopt.data.ood import ood_sets
from nnopt.measure.base import Measurement
from nnopt.measure.quantity import ERROR_RATE, FRACTION
from nnopt.trust.ood import detection_metrics, ood_score
from nnopt.trust.uncertainty import is_sampler, sample_logits

NEAR_CHANCE = 0.6  # best AUROC below this: the model cannot tell the set from its test split


def normalized(logits: torch.Tensor) -> bool:
    """Whether the outputs are already log-probabilities (logsumexp 0 for every row), as for an
    exported ensemble: the energy score is then constant and meaningless."""
    return bool((logits.double().logsumexp(-1).abs() < 1e-4).all())


def stage_scores(model: torch.nn.Module, logits: torch.Tensor) -> tuple[str, ...]:
    if is_sampler(model):
        return ("msp", "entropy", "energy", "mutual_information")
    return ("msp", "entropy") if normalized(logits) else ("msp", "entropy", "energy")


@METRICS.register("ood", produces=["ood_auroc/<dataset>", "ood_fpr95/<dataset>"],
                  quantities={"ood_auroc/<dataset>": FRACTION,
                              "ood_fpr95/<dataset>": ERROR_RATE})
def ood(m: Measurement) -> dict[str, float]:
    """AUROC and FPR@95TPR of the energy score (Liu et al. 2020), test split against each OOD
    set (digits resized to the input size, uniform noise); for ensembles, MC dropout and
    Bayesian networks the energy is averaged over their samples. Details compare every score
    (max softmax, entropy, energy, and mutual information where the model samples)."""
    sampler = is_sampler(m.model)
    kinds = stage_scores(m.model, m.logits)
    z_in = sample_logits(m.model, m.data.test.x) if sampler else m.logits
    out, table = {}, {}
    for name, x in ood_sets(m.data).items():
        z_out = sample_logits(m.model, x) if sampler else predict(m.model, x)
        rows = {kind: detection_metrics(ood_score(z_in, kind), ood_score(z_out, kind))
                for kind in kinds}
        table[name] = rows
        if "energy" in rows:
            out[f"ood_auroc/{name}"] = rows["energy"]["auroc"]
            out[f"ood_fpr95/{name}"] = rows["energy"]["fpr95"]
    if table:
        m.details["ood"] = table
        flags = {name: flag for name, rows in table.items()
                 if (flag := indistinct(name, m.data.name, rows))}
        if flags:
            m.details["ood_flags"] = flags
    return out


def indistinct(name: str, dataset: str, rows: dict[str, dict[str, float]]) -> str:
    """Why an OOD set says nothing about OOD detection ('' when it does): it is the training
    dataset itself, or no score tells it from the test split (best AUROC below
    ``NEAR_CHANCE``), as for inputs of the training distribution."""
    best = max(r["auroc"] for r in rows.values())
    if name == dataset:
        return (f"is the training dataset itself (best AUROC {best:.2f}): it is not "
                "out-of-distribution")
    if best < NEAR_CHANCE:
        return (f"cannot be told from the test split (best AUROC {best:.2f} < {NEAR_CHANCE}): "
                "if it is drawn from the training distribution it measures nothing about OOD "
                "detection")
    return ""
