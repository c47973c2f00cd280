"""The ``classical_head`` step: a hybrid of a trained network's features and a classical
classifier. The network's last linear layer (its classifier) is replaced by a scikit-learn
model fitted on the penultimate features of the training split: logistic regression,
gradient-boosted trees (HistGradientBoosting) or a linear SVM with Platt-scaled probabilities.
The fitted classifier is converted to tensors (``models/heads.py``), so the hybrid is one
PyTorch model: saved without pickle, exported to ONNX, timed and calibrated like any other.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from nnopt.context import RunContext
from nnopt.core.compute import placed
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.extras import require
from nnopt.core.registry import CLASSIFIERS, STEPS, TRANSFORMS
from nnopt.measure.base import is_nnopt_model
from nnopt.models.heads import (
    LogisticHead,
    SvmHead,
    TreeHead,
    from_calibrated_svm,
    from_hist_gbdt,
    from_logistic,
)


class ClassicalHeadConfig(Strict):
    head: Literal["logistic", "gbdt", "svm"] = Field("logistic", description="logistic "
                                                     "regression, gradient-boosted trees or a "
                                                     "linear SVM (Platt-scaled)")
    C: float = Field(1.0, gt=0, description="logistic / svm: inverse regularisation strength")
    max_iter: int = Field(1000, ge=1, description="logistic / svm: solver iterations")
    trees: int = Field(100, ge=1, description="gbdt: boosting rounds (one tree per class each)")
    learning_rate: float = Field(0.1, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)
    folds: int = Field(3, ge=2, description="svm: folds of the sigmoid calibration")
    limit: int | None = Field(None, ge=1, description="training examples the head is fitted "
                              "on (a seeded subset; null: all)")


def classifier_layer(model: nn.Module) -> str:
    """The name of the model's classifier: its last linear layer."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise NnoptError("classical_head replaces the model's last linear layer (its "
                         "classifier), and this model has none")
    return names[-1]


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    kind = transform.get("head")
    if not isinstance(kind, str) or kind not in CLASSIFIERS:
        raise ValueError(f"unknown classical head {str(kind)[:30]!r}")
    _replace(model, transform["module"], CLASSIFIERS.get(kind).meta["build"](transform["shape"]))


TRANSFORMS.add("classical_head", _reapply)


def features(model: nn.Module, name: str, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """The inputs the classifier layer receives (the penultimate features)."""
    seen: list[torch.Tensor] = []
    hook = model.get_submodule(name).register_forward_hook(
        lambda _m, inp, _out: seen.append(inp[0].detach().cpu()))
    model.eval()
    try:
        with placed(model) as dev, torch.no_grad():  # on the compute device
            for i in range(0, len(x), batch):
                model(x[i:i + batch].to(dev))
    finally:
        hook.remove()
    return torch.cat(seen).double().numpy()


@CLASSIFIERS.register("gbdt", build=lambda s: TreeHead(s["trees"], s["nodes"], s["classes"],
                                                        s["depth"]))
def _gbdt(cfg: ClassicalHeadConfig, z: np.ndarray, y: np.ndarray, seed: int
          ) -> tuple[nn.Module, dict[str, int], Any]:
    """Gradient-boosted trees (scikit-learn's HistGradientBoosting), walked as tensors."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(max_iter=cfg.trees, learning_rate=cfg.learning_rate,
                                         max_leaf_nodes=cfg.max_leaf_nodes,
                                         early_stopping=False, random_state=seed).fit(z, y)
    head, shape = from_hist_gbdt(clf)
    return head, shape, clf


@CLASSIFIERS.register("logistic", build=lambda s: LogisticHead(s["features"], s["classes"]))
def _logistic(cfg: ClassicalHeadConfig, z: np.ndarray, y: np.ndarray, seed: int
              ) -> tuple[nn.Module, dict[str, int], Any]:
    """Logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(z)
    clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter).fit(scaler.transform(z), y)
    head, shape = from_logistic(clf, scaler)
    return head, shape, Pipeline([("scale", scaler), ("clf", clf)])


@CLASSIFIERS.register("svm", build=lambda s: SvmHead(s["features"], s["classes"], s["folds"]))
def _svm(cfg: ClassicalHeadConfig, z: np.ndarray, y: np.ndarray, seed: int
         ) -> tuple[nn.Module, dict[str, int], Any]:
    """A linear SVM with Platt-scaled probabilities (sigmoids fitted on held-out folds)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    scaler = StandardScaler().fit(z)
    clf = CalibratedClassifierCV(LinearSVC(C=cfg.C, max_iter=cfg.max_iter, random_state=seed),
                                 method="sigmoid", cv=cfg.folds).fit(scaler.transform(z), y)
    head, shape = from_calibrated_svm(clf, scaler)
    return head, shape, Pipeline([("scale", scaler), ("clf", clf)])


def fit_head(cfg: ClassicalHeadConfig, z: np.ndarray, y: np.ndarray, seed: int
             ) -> tuple[nn.Module, dict[str, int], Any]:
    """The head as a module, its shape, and the fitted scikit-learn estimator (on raw
    features: the scaler, where there is one, inside a Pipeline)."""
    require("sklearn", "a classical head", extra="hybrid")
    return CLASSIFIERS.get(cfg.head).fn(cfg, z, y, seed)


@STEPS.register("classical_head", config=ClassicalHeadConfig, tiny={"trees": 3})
def classical_head(model: nn.Module, cfg: ClassicalHeadConfig, ctx: RunContext) -> nn.Module:
    """Replace the network's classifier by a scikit-learn classifier on its features."""
    if not is_nnopt_model(model):
        raise NnoptError("classical_head takes a trained nnopt PyTorch model (put it before "
                         "quantize/export stages)")
    out = copy.deepcopy(model)
    name = classifier_layer(out)
    train = ctx.data.train.subset(cfg.limit, ctx.seed)
    y = train.y.numpy()
    if len(np.unique(y)) < ctx.data.num_classes:
        raise NnoptError(f"the {len(y)} training examples miss some of the "
                         f"{ctx.data.num_classes} classes; raise limit")
    start = time.perf_counter()
    z = features(out, name, train.x)
    head, shape, clf = fit_head(cfg, z, y, ctx.seed)
    seconds = time.perf_counter() - start
    old = out.get_submodule(name)
    _replace(out, name, head)
    with torch.no_grad():  # the torch form must be the classifier itself
        got = head(torch.as_tensor(z[:256], dtype=torch.float32)).exp().numpy()
    gap = float(np.abs(got - clf.predict_proba(z[:256])).max())
    if gap > 1e-3:  # float32 features on a tree threshold can take the other branch
        ctx.warn(f"the tensor form of the {cfg.head} head differs from scikit-learn's "
                 f"probabilities by up to {gap:.2g} on 256 training examples")
    out.spec = {**out.spec, "transforms": [*out.spec.get("transforms", []), {
        "kind": "classical_head", "module": name, "head": cfg.head, "shape": shape}]}
    ctx.record("classical_head", {
        "head": cfg.head, "replaced": f"{name} ({type(old).__name__} "
        f"{getattr(old, 'in_features', '?')} -> {getattr(old, 'out_features', '?')})",
        "features": int(z.shape[1]), "examples": len(y), "fit_seconds": round(seconds, 2),
        "train_accuracy": float((clf.predict(z) == y).mean()), "max_probability_gap": gap,
        "settings": cfg.model_dump(mode="json")})
    return out
