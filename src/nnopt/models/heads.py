"""Classical classifiers from scikit-learn as PyTorch modules: logistic regression, a
gradient-boosted tree ensemble and a linear SVM with Platt-scaled probabilities.

Each head maps features to log-probabilities (so softmax gives the classifier's own
``predict_proba``, and NLL/ECE are the classifier's), is a plain module with tensors only
(saved as safetensors, exported to ONNX, timed on the runtimes like any layer), and is built
empty from its shapes (the `build` of its CLASSIFIERS entry) so a saved model reloads without
pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


class LogisticHead(nn.Module):
    """Multinomial logistic regression on standardised features: log softmax(W z + b)."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.linear = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.scale).log_softmax(-1)


class SvmHead(nn.Module):
    """One-vs-rest linear SVMs, each decision f mapped to 1 / (1 + exp(a f + b)) (Platt),
    normalised over the classes and averaged over the calibration folds, as scikit-learn's
    CalibratedClassifierCV(LinearSVC, method="sigmoid") does."""

    def __init__(self, features: int, classes: int, folds: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.register_buffer("coef", torch.zeros(folds, classes, features))
        self.register_buffer("intercept", torch.zeros(folds, classes))
        self.register_buffer("a", torch.zeros(folds, classes))
        self.register_buffer("b", torch.zeros(folds, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.scale
        f = torch.einsum("bd,fkd->fbk", z, self.coef) + self.intercept[:, None]
        p = torch.sigmoid(-(self.a[:, None] * f + self.b[:, None]))
        k = p.shape[-1]
        total = p.sum(-1, keepdim=True)
        p = torch.where(total > 0, p / total.clamp_min(1e-30), torch.full_like(p, 1 / k))
        return p.mean(0).clamp_min(1e-12).log()


class TreeHead(nn.Module):
    """A gradient-boosted ensemble: every tree walked in ``depth`` steps at once (left when
    feature <= threshold; a leaf points to itself), raw scores = baseline + sum of the reached
    leaves' values per class, then log softmax."""

    def __init__(self, trees: int, nodes: int, classes: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.register_buffer("feature", torch.zeros(trees, nodes, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(trees, nodes))
        self.register_buffer("left", torch.zeros(trees, nodes, dtype=torch.long))
        self.register_buffer("right", torch.zeros(trees, nodes, dtype=torch.long))
        self.register_buffer("value", torch.zeros(trees, nodes))
        self.register_buffer("klass", torch.zeros(trees, dtype=torch.long))
        self.register_buffer("baseline", torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], self.feature.shape[0]
        node = torch.zeros(b, t, dtype=torch.long, device=x.device)
        rows = torch.arange(t, device=x.device).expand(b, t)
        for _ in range(self.depth):
            f = self.feature[rows, node]
            go_left = torch.gather(x, 1, f) <= self.threshold[rows, node]
            node = torch.where(go_left, self.left[rows, node], self.right[rows, node])
        leaf = self.value[rows, node]  # (b, t)
        onehot = nn.functional.one_hot(self.klass, self.baseline.shape[0]).to(x.dtype)
        return (self.baseline + leaf @ onehot).log_softmax(-1)


def _t(a: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def from_logistic(clf: Any, scaler: Any) -> tuple[nn.Module, dict[str, int]]:
    coef = clf.coef_
    if coef.shape[0] == 1:  # binary: scikit-learn keeps one row, for class 1
        coef = np.concatenate([-coef / 2, coef / 2])
        inter = np.concatenate([-clf.intercept_ / 2, clf.intercept_ / 2])
    else:
        inter = clf.intercept_
    shape = {"features": coef.shape[1], "classes": coef.shape[0]}
    head = LogisticHead(**shape)
    head.mean.copy_(_t(scaler.mean_))
    head.scale.copy_(_t(scaler.scale_))
    with torch.no_grad():
        head.linear.weight.copy_(_t(coef))
        head.linear.bias.copy_(_t(inter))
    return head, shape


def from_calibrated_svm(clf: Any, scaler: Any) -> tuple[nn.Module, dict[str, int]]:
    folds = clf.calibrated_classifiers_
    if len(clf.classes_) < 3:
        raise ValueError("the svm head needs 3 or more classes (one-vs-rest calibration)")
    shape = {"features": scaler.mean_.shape[0], "classes": len(clf.classes_),
             "folds": len(folds)}
    head = SvmHead(**shape)
    head.mean.copy_(_t(scaler.mean_))
    head.scale.copy_(_t(scaler.scale_))
    for i, cc in enumerate(folds):
        head.coef[i] = _t(cc.estimator.coef_)
        head.intercept[i] = _t(cc.estimator.intercept_)
        head.a[i] = _t([c.a_ for c in cc.calibrators])
        head.b[i] = _t([c.b_ for c in cc.calibrators])
    return head, shape


def from_hist_gbdt(clf: Any) -> tuple[nn.Module, dict[str, int]]:
    """From a fitted HistGradientBoostingClassifier (its per-iteration tree predictors; the
    tests check the result against its predict_proba)."""
    trees = [(k, p.nodes) for it in clf._predictors for k, p in enumerate(it)]
    classes = len(clf.classes_)
    if classes < 3:
        raise ValueError("the gbdt head needs 3 or more classes (one tree per class per round)")
    if any(n["is_categorical"].any() for _, n in trees):
        raise ValueError("categorical splits are not supported")
    nodes = max(len(n) for _, n in trees)
    depth = int(max(n["depth"].max() for _, n in trees))
    shape = {"trees": len(trees), "nodes": nodes, "classes": classes, "depth": max(depth, 1)}
    head = TreeHead(**shape)
    for t, (k, n) in enumerate(trees):
        m = len(n)
        leaf = n["is_leaf"].astype(bool)
        idx = np.arange(m)
        head.feature[t, :m] = _t(np.where(leaf, 0, n["feature_idx"]), torch.long)
        head.threshold[t, :m] = _t(np.where(leaf, np.inf, n["num_threshold"]))
        head.left[t, :m] = _t(np.where(leaf, idx, n["left"]), torch.long)
        head.right[t, :m] = _t(np.where(leaf, idx, n["right"]), torch.long)
        head.value[t, :m] = _t(np.where(leaf, n["value"], 0.0))
        head.klass[t] = k
    head.baseline.copy_(_t(clf._baseline_prediction.ravel()))
    return head, shape
