"""Monte Carlo dropout (Gal & Ghahramani 2016): dropout stays active at test time and T
stochastic forward passes are averaged; their spread gives the epistemic uncertainty."""

from __future__ import annotations

import torch
from torch import nn

from nnopt.core.compute import placed
from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement, is_artifact
from nnopt.measure.calibration import expected_calibration_error
from nnopt.measure.quantity import FRACTION, NATS, SCORE, SCORE_LOW
from nnopt.trust.uncertainty import decompose, is_sampler

DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
SAMPLES = 20


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, DROPOUT) and m.p > 0 for m in model.modules())


def mc_logits(model: nn.Module, x: torch.Tensor, samples: int = SAMPLES, *, seed: int = 0,
              batch_size: int = 1000) -> torch.Tensor:
    """(samples, examples, classes) logits with only the dropout layers in training mode
    (batch norm and the rest stay in eval mode); seeded, and the model's modes are restored."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in model.modules():
        if isinstance(m, DROPOUT):
            m.train()
    try:  # on the compute device; the dropout masks drawn from its generator, seeded
        with placed(model) as dev, torch.no_grad(), torch.random.fork_rng(
                devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            return torch.stack([torch.cat([model(x[i:i + batch_size].to(dev)).cpu()
                                           for i in range(0, len(x), batch_size)])
                                for _ in range(samples)])
    finally:
        for m, mode in modes.items():
            m.train(mode)


@METRICS.register("mc_dropout", produces=["accuracy_mc", "nll_mc", "ece_mc",
                                          "mutual_information_mc"],
                  quantities={"accuracy_mc": FRACTION, "nll_mc": NATS, "ece_mc": SCORE_LOW,
                              "mutual_information_mc": SCORE})
def mc_dropout(m: Measurement) -> dict[str, float]:
    """Accuracy, NLL and ECE of the mean of 20 MC-dropout passes on the test split, and the mean
    mutual information (PyTorch models with dropout only; a model made by the mc_dropout
    step already averages its samples in every metric)."""
    if is_artifact(m.model) or not has_dropout(m.model) or is_sampler(m.model):
        return {}
    d = decompose(mc_logits(m.model, m.data.test.x).double().softmax(-1))
    mean, y = d["mean"], m.labels
    nll = torch.nn.functional.nll_loss(mean.clamp_min(1e-300).log(), y).item()
    return {"accuracy_mc": (mean.argmax(1) == y).double().mean().item(), "nll_mc": nll,
            "ece_mc": expected_calibration_error(mean, y),
            "mutual_information_mc": d["mutual_information"].mean().item()}
