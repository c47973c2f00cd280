"""The ``ood`` metric: how well each stage's outputs separate the test set from OOD sets."""

from __future__ import annotations

from nnopt.measure.base import Measurement
from nnopt.registry import METRICS
from nnopt.trust.ood import detection_metrics, ood_score

STAGE_SCORES = ("msp", "entropy", "energy")


@METRICS.register("ood", produces=["ood_auroc/<dataset>", "ood_fpr95/<dataset>"])
def ood(m: Measurement) -> dict[str, float]:
    """AUROC and FPR@95TPR of the energy score (Liu et al. 2020), test split against each OOD
    set (digits resized to the input size, uniform noise); details compare every score."""
    from nnopt.data.ood import ood_sets
    from nnopt.train.fit import predict

    out, table = {}, {}
    for name, x in ood_sets(m.data).items():
        logits_out = predict(m.model, x)
        rows = {kind: detection_metrics(ood_score(m.logits, kind), ood_score(logits_out, kind))
                for kind in STAGE_SCORES}
        table[name] = rows
        out[f"ood_auroc/{name}"] = rows["energy"]["auroc"]
        out[f"ood_fpr95/{name}"] = rows["energy"]["fpr95"]
    if table:
        m.details["ood"] = table
    return out
