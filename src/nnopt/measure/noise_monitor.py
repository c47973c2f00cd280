"""What training does with noisy labels, epoch by epoch (attached to every fit() of a run whose
training labels were corrupted on purpose, so their clean labels are known).

Per epoch, in eval mode, it adds to the history: ``noisy_fit`` (accuracy against the given,
noisy training labels: how far the model follows them), ``clean_fit`` (against the true ones),
``memorised`` (the share of the corrupted examples predicted as their wrong label) and
``test_accuracy`` (clean test split). The test figures are recorded, never used to select: the
checkpoint selection sees the (noisy) validation split only. At the end, before a best-epoch
checkpoint is restored, it notes the last epoch's test accuracy, NLL and ECE, so that a report
can show the val-selected and the last-epoch model side by side.
"""

from __future__ import annotations

import torch

from nnopt.core.compute import predict
from nnopt.data.base import DataSplits, Split
from nnopt.measure.quality import expected_calibration_error, nll_score
from nnopt.train.callbacks import Callback, FitState

MAX_TRAIN = 20_000  # training examples scored per epoch (a fixed, seeded subset beyond this)


class NoiseMonitor(Callback):
    """Records memorisation of the corrupted labels and clean test accuracy per epoch."""

    def __init__(self, train: Split, data: DataSplits, batch_size: int = 1000) -> None:
        if train.y_clean is None:
            raise ValueError("NoiseMonitor needs a training split with clean labels (y_clean)")
        train = train.subset(MAX_TRAIN, 0)
        self.train, self.test, self.batch_size = train, data.test, batch_size
        self.wrong = train.y != train.y_clean

    def _scores(self, state: FitState) -> tuple[dict[str, float], torch.Tensor]:
        pred = predict(state.model, self.train.x, self.batch_size).argmax(1)
        logits = predict(state.model, self.test.x, self.batch_size)
        out = {"noisy_fit": (pred == self.train.y).double().mean().item(),
               "clean_fit": (pred == self.train.y_clean).double().mean().item(),
               "test_accuracy": (logits.argmax(1) == self.test.y).double().mean().item()}
        if self.wrong.any():
            out["memorised"] = (pred[self.wrong] == self.train.y[self.wrong]).double().mean().item()
        return out, logits

    def on_epoch_end(self, state: FitState) -> None:
        scores, logits = self._scores(state)
        state.last.update(scores)
        self.logits = logits

    def on_fit_end(self, state: FitState) -> None:
        if not state.history:
            return
        last = state.last
        state.notes["last_epoch"] = {
            "epoch": last["epoch"], "test_accuracy": last["test_accuracy"],
            "test_nll": nll_score(self.logits, self.test.y),
            "test_ece": expected_calibration_error(self.logits.double().softmax(1), self.test.y),
            **{k: last[k] for k in ("noisy_fit", "clean_fit", "memorised") if k in last}}
