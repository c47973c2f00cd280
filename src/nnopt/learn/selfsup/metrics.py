"""Metrics of a network's embedding (the classifier's input): ``knn`` (k-NN accuracy on the test
split with the whole labelled training split as memory bank, k = 200, cosine) and
``embedding_std`` (the collapse check). Deployed artifacts have no embedding to read: skipped."""

from __future__ import annotations

import torch

from nnopt.core.registry import METRICS
from nnopt.learn.selfsup.embedding import embed, embedding_std, knn_predict
from nnopt.measure.base import Measurement, is_artifact
from nnopt.measure.quantity import FRACTION, SCORE


def _embeddable(m: Measurement) -> bool:
    return not is_artifact(m.model)


@METRICS.register("knn", produces=["knn_accuracy"], quantity=FRACTION)
def knn(m: Measurement) -> dict[str, float]:
    """k-NN accuracy (k = 200, cosine, weighted votes) of the embedding, training split as bank."""
    if not _embeddable(m):
        return {}
    train = m.data.train
    pred = knn_predict(embed(m.model, train.x), train.y, m.embedding, m.data.num_classes)
    return {"knn_accuracy": (pred == m.labels).double().mean().item()}


@METRICS.register("embedding_std", produces=["embedding_std"], quantity=SCORE)
def embedding_std_metric(m: Measurement) -> dict[str, float]:
    """Collapse check: std of the L2-normalised test embeddings x sqrt(dim) (~1 healthy, 0
    collapsed); with the first two principal components kept for the report's figure."""
    if not _embeddable(m):
        return {}
    z = m.embedding.double()
    n = min(len(z), 1000)
    zc = z[:n] - z[:n].mean(0)
    _, _, v = torch.linalg.svd(zc, full_matrices=False)
    xy = (zc @ v[:2].T).tolist()
    m.details["embedding_pca"] = {"xy": [[round(a, 4), round(b, 4)] for a, b in xy],
                                  "labels": m.labels[:n].tolist()}
    return {"embedding_std": embedding_std(z)}
