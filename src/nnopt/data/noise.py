"""Label-noise injection (a dataset option): the training and validation labels are corrupted,
deterministically by seed; the test split stays clean and every corrupted split keeps its clean
labels (``Split.y_clean``) for evaluation and for scoring label-error detection.

- ``symmetric``: each label is flipped with probability ``rate``; by default to one of the *other*
  classes, uniformly (so the realised rate is ``rate``); with ``include_true: true`` it is redrawn
  uniformly from all classes (the realised rate is then rate (K - 1) / K).
- ``asymmetric``: class-pair noise; each label of a paired class flips to its partner with
  probability ``rate``. Fashion-MNIST uses T-shirt<->shirt, pullover<->coat, sandal<->sneaker;
  other datasets the cyclic map k -> k + 1 unless ``pairs`` is given. The realised rate is
  ``rate`` times the share of labels in flipping classes.
- ``instance``: instance-dependent noise (Xia et al. 2020): each example flips with its own
  probability drawn from N(rate, 0.1^2) clipped to [0, 1], to a class chosen by a random linear
  map of its input.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from nnopt.core.config import Seed, Strict

FASHION_PAIRS = [[0, 6], [2, 4], [5, 7]]


class LabelNoiseConfig(Strict):
    """Which noise, how much, from which seed."""

    kind: Literal["symmetric", "asymmetric", "instance"] = "symmetric"
    rate: float = Field(0.2, ge=0.0, le=1.0, description="flip probability")
    include_true: bool = Field(False, description="symmetric: a flip may land on the true class")
    pairs: list[list[int]] | None = Field(None, description="asymmetric: class pairs that swap "
                                          "(default: the dataset's known confusions)")
    seed: Seed = Field(0, description="seed of the corruption")


def transition_pairs(cfg: LabelNoiseConfig, dataset: str, num_classes: int) -> dict[int, int]:
    """source class -> target class of asymmetric noise."""
    if cfg.pairs is not None:
        pairs = cfg.pairs
    elif dataset == "fashion-mnist":
        pairs = FASHION_PAIRS
    else:
        return {k: (k + 1) % num_classes for k in range(num_classes)}
    out: dict[int, int] = {}
    for pair in pairs:
        if len(pair) != 2 or not all(0 <= c < num_classes for c in pair):
            raise ValueError(f"label_noise.pairs: {pair} is not a pair of classes "
                             f"0..{num_classes - 1}")
        out[pair[0]], out[pair[1]] = pair[1], pair[0]
    return out


def corrupt_labels(y: torch.Tensor, cfg: LabelNoiseConfig, num_classes: int, *,
                   dataset: str = "", x: torch.Tensor | None = None, salt: int = 0
                   ) -> torch.Tensor:
    """Noisy copy of ``y`` (``x`` is needed for instance-dependent noise); ``salt`` separates
    the streams of different splits."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + salt)
    n, k = len(y), num_classes
    noisy = y.clone()
    if cfg.kind == "symmetric":
        flip = torch.rand(n, generator=g) < cfg.rate
        if cfg.include_true:
            new = torch.randint(0, k, (n,), generator=g)
        else:  # one of the other k - 1 classes, uniformly
            new = (y + torch.randint(1, k, (n,), generator=g)) % k
        noisy[flip] = new[flip]
    elif cfg.kind == "asymmetric":
        mapping = transition_pairs(cfg, dataset, k)
        flip = torch.rand(n, generator=g) < cfg.rate
        target = torch.tensor([mapping.get(c, c) for c in range(k)])
        noisy[flip] = target[y[flip]]
    else:
        if x is None:
            raise ValueError("instance-dependent noise needs the inputs")
        feats = x.flatten(1).double()
        feats = (feats - feats.mean(0)) / feats.std(0).clamp_min(1e-6)
        q = (cfg.rate + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)).clamp(0, 1)
        w = torch.randn(k, feats.shape[1], k, generator=g, dtype=torch.float64)
        logits = torch.empty(n, k, dtype=torch.float64)
        for c in range(k):  # the random map of each example's own class
            rows = y == c
            logits[rows] = feats[rows] @ w[c] / math.sqrt(feats.shape[1])
        logits[torch.arange(n), y] = -math.inf
        probs = q[:, None] * logits.softmax(1)
        probs[torch.arange(n), y] = 1 - q
        noisy = torch.multinomial(probs, 1, generator=g)[:, 0]
    return noisy


def realised_rate(noisy: torch.Tensor, clean: torch.Tensor) -> float:
    return (noisy != clean).double().mean().item() if len(clean) else 0.0
