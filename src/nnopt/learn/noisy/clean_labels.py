"""The ``clean_labels`` step: confident learning (Northcutt et al. 2021, through cleanlab) on
out-of-sample predicted probabilities, then training on the kept examples.

Each of ``folds`` models (fresh weights of the incoming architecture) trains on the other folds
and predicts its held-out fold, so every training example gets a probability vector from a model
that never saw its label. cleanlab flags the likely label errors; the flagged examples are
dropped (or, ``action: relabel``, given their out-of-sample prediction as label) and the incoming
model is trained on the result. Where the data set knows its clean labels
(injected noise), the report gives the precision and recall of the flagged set.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from nnopt.context import RunContext
from nnopt.core.compute import predict
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.extras import require
from nnopt.core.registry import STEPS
from nnopt.data.base import Split
from nnopt.learn.noisy.records import CleanLabelsRecord
from nnopt.measure.base import is_nnopt_model
from nnopt.models.saving import fresh_model
from nnopt.train.fit import TrainConfig


class CleanLabelsConfig(Strict):
    """Cross-validation, cleanlab's filter, and the training on the kept examples."""

    folds: int = Field(5, ge=2, le=20, description="cross-validation folds")
    fold_train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=5),
                                    description="training of each fold model")
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                       "predicted_neq_given"] = Field("prune_by_noise_rate",
                                                      description="cleanlab's filter_by")
    action: Literal["remove", "relabel"] = Field(
        "remove", description="remove the flagged examples, or relabel them with their "
        "out-of-sample prediction (keeps their inputs)")
    train: TrainConfig = Field(default_factory=TrainConfig,
                               description="training on the kept examples")


def out_of_sample_probs(model: nn.Module, split: Split, cfg: CleanLabelsConfig, ctx: RunContext
                        ) -> np.ndarray:
    """(examples, classes) probabilities, each from the fold model that did not train on it."""
    n = len(split)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed))
    probs = torch.zeros(n, ctx.data.num_classes, dtype=torch.float64)
    folds = torch.tensor_split(order, cfg.folds)
    for k, held in enumerate(folds):
        rest = torch.cat([f for j, f in enumerate(folds) if j != k])
        fold_model = fresh_model(model, ctx.seed + 100 + k, "clean_labels")
        ctx.fit(fold_model, cfg.fold_train, train=split.take(rest),
                callbacks=ctx.callbacks(fold_model, monitor=False),
                stage=f"{ctx.stage} fold {k + 1}", seed=ctx.seed + 100 + k, record="none")
        probs[held] = predict(fold_model, split.x[held]).double().softmax(1)
        ctx.log.info("%s: fold %d/%d done", ctx.stage, k + 1, cfg.folds)
    return probs.numpy()


def detection_scores(flagged: np.ndarray, noisy: torch.Tensor, clean: torch.Tensor
                     ) -> dict[str, float]:
    """Precision and recall of the flagged set against the known corrupted labels."""
    wrong = (noisy != clean).numpy()
    hits = int((flagged & wrong).sum())
    return {"precision": hits / max(int(flagged.sum()), 1),
            "recall": hits / max(int(wrong.sum()), 1),
            "flagged": int(flagged.sum()), "corrupted": int(wrong.sum())}


@STEPS.register("clean_labels", config=CleanLabelsConfig,
                tiny={"folds": 2, "fold_train": {"epochs": 1, "batch_size": 32},
                      "train": {"epochs": 1, "batch_size": 32}})
def clean_labels(model: nn.Module, cfg: CleanLabelsConfig, ctx: RunContext) -> nn.Module:
    """Flag likely label errors by confident learning; remove (or relabel) them and train."""
    require("cleanlab", "clean_labels")
    from cleanlab.filter import find_label_issues

    if not is_nnopt_model(model):
        raise NnoptError("clean_labels trains PyTorch models; put it before export/quantize")
    train = ctx.data.train
    if len(train) < 2 * cfg.folds:
        raise NnoptError(f"clean_labels needs at least {2 * cfg.folds} training examples")
    probs = out_of_sample_probs(model, train, cfg, ctx)
    # in this process: cleanlab's pool forks a process that holds torch's threads (and
    # inductor's, the loader's), and a forked pool worker was once seen stuck for ever on its
    # queue's lock (the whole test suite hung); the search over the probabilities is fast alone
    flagged = find_label_issues(labels=train.y.numpy(), pred_probs=probs,
                                filter_by=cfg.filter_by, n_jobs=1)
    flag = torch.from_numpy(flagged)
    if cfg.action == "relabel":
        y = torch.where(flag, torch.from_numpy(probs.argmax(1)), train.y)
        kept = Split(train.x, y, train.y_clean)
    else:
        kept = train.take((~flag).nonzero()[:, 0])
    out = copy.deepcopy(model)
    ctx.fit(out, cfg.train, train=kept)
    info = CleanLabelsRecord(
        folds=cfg.folds, filter_by=cfg.filter_by, examples=len(train),
        flagged=int(flagged.sum()), action=cfg.action, kept=len(kept),
        oof_accuracy_given=float((probs.argmax(1) == train.y.numpy()).mean()))
    if train.y_clean is not None:
        info.detection = detection_scores(flagged, train.y, train.y_clean)
        if cfg.action == "relabel":
            info.relabelled_correct = float((kept.y == train.y_clean)[flag].double()
                                            .mean()) if flag.any() else 1.0
    ctx.record(info)
    return out
