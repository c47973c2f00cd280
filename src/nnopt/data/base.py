"""Datasets as in-memory tensors with fixed-seed train/val/test splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import Field

from nnopt.data.noise import LabelNoiseConfig, corrupt_labels, realised_rate
from nnopt.errors import DataError
from nnopt.recipe import Strict


class DataConfig(Strict):
    """Options every dataset shares: which one, how to split, how much to use."""

    name: str
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0,
                                description="share of the training set held out for validation")
    limit: int | None = Field(None, ge=1, description="use at most this many training examples")
    eval_limit: int | None = Field(None, ge=1,
                                   description="use at most this many val and test examples")
    split_seed: int = Field(0, description="seed of the train/val split and of the subsets")
    label_noise: LabelNoiseConfig | None = Field(
        None, description="corrupt the training and validation labels (test stays clean)")


@dataclass
class Split:
    """Inputs in [0, 1] (or the dataset's natural scale) and integer labels."""

    x: torch.Tensor
    y: torch.Tensor
    y_clean: torch.Tensor | None = None  # the true labels where ``y`` was corrupted on purpose

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor | np.ndarray) -> Split:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Split(self.x[idx], self.y[idx],
                     None if self.y_clean is None else self.y_clean[idx])

    def subset(self, n: int | None, seed: int) -> Split:
        """``n`` examples drawn at random under ``seed`` (the split itself when ``n`` is None or
        not below its size)."""
        if n is None or n >= len(self):
            return self
        return self.take(torch.randperm(len(self), generator=torch.Generator()
                                        .manual_seed(seed))[:n])


@dataclass
class DataSplits:
    """A dataset ready to train on: three splits and what a model needs to know about them."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    noise: dict[str, object] | None = None  # the label noise injected, requested and realised

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name, "train": len(self.train), "val": len(self.val),
            "test": len(self.test), "input_shape": list(self.input_shape),
            "num_classes": self.num_classes}
        if self.noise:
            out["label_noise"] = self.noise
        return out


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of inputs shaped (N, C, ...)."""
    dims = [0] + list(range(2, x.dim()))
    mean = x.float().mean(dim=dims)
    std = x.float().std(dim=dims).clamp_min(1e-6)
    return mean.tolist(), std.tolist()


def make_splits(name: str, cfg: DataConfig, x_train: np.ndarray | torch.Tensor,
                y_train: np.ndarray | torch.Tensor, x_test: np.ndarray | torch.Tensor,
                y_test: np.ndarray | torch.Tensor, *, class_names: list[str] | None = None,
                x_val: np.ndarray | torch.Tensor | None = None,
                y_val: np.ndarray | torch.Tensor | None = None,
                num_classes: int | None = None) -> DataSplits:
    """Hold out a seeded validation share of the training set (unless given), apply limits."""
    xt, yt = torch.as_tensor(np.asarray(x_train), dtype=torch.float32), _labels(y_train)
    test = Split(torch.as_tensor(np.asarray(x_test), dtype=torch.float32), _labels(y_test))
    if len(xt) != len(yt) or len(test.x) != len(test.y):
        raise DataError(f"dataset '{name}': inputs and labels have different lengths")
    if len(yt) < 2 or len(test) < 1:
        raise DataError(f"dataset '{name}': too few examples (train {len(yt)}, test {len(test)})")
    gen = torch.Generator().manual_seed(cfg.split_seed)
    if x_val is not None and y_val is not None:
        train = Split(xt, yt)
        val = Split(torch.as_tensor(np.asarray(x_val), dtype=torch.float32), _labels(y_val))
    else:
        perm = torch.randperm(len(yt), generator=gen)
        n_val = int(round(cfg.val_fraction * len(yt)))
        if cfg.val_fraction > 0:
            n_val = max(1, n_val)
        train = Split(xt[perm[n_val:]], yt[perm[n_val:]])
        val = Split(xt[perm[:n_val]], yt[perm[:n_val]])
    if cfg.limit is not None and cfg.limit < len(train):
        train = train.take(torch.randperm(len(train), generator=gen)[: cfg.limit])
    if cfg.eval_limit is not None:
        if cfg.eval_limit < len(val):
            val = val.take(torch.randperm(len(val), generator=gen)[: cfg.eval_limit])
        if cfg.eval_limit < len(test):
            test = test.take(torch.randperm(len(test), generator=gen)[: cfg.eval_limit])
    n_cls = num_classes or int(max(train.y.max(), test.y.max())) + 1
    mean, std = channel_stats(train.x)
    noise = None
    if cfg.label_noise is not None and cfg.label_noise.rate > 0:
        train, val, noise = _add_noise(cfg.label_noise, name, n_cls, train, val)
    return DataSplits(name=name, train=train, val=val, test=test, num_classes=n_cls,
                      class_names=class_names or [str(i) for i in range(n_cls)],
                      mean=mean, std=std, noise=noise)


def _add_noise(cfg: LabelNoiseConfig, name: str, num_classes: int, train: Split, val: Split
               ) -> tuple[Split, Split, dict[str, object]]:
    """Training and validation labels corrupted (validation too: a user's held-out labels are
    as noisy as the rest); the clean labels kept beside them."""
    out = []
    for salt, split in enumerate((train, val)):
        try:
            noisy = corrupt_labels(split.y, cfg, num_classes, dataset=name, x=split.x, salt=salt)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        out.append(Split(split.x, noisy, split.y))
    info = {**cfg.model_dump(mode="json"),
            "realised_train": realised_rate(out[0].y, train.y),
            "realised_val": realised_rate(out[1].y, val.y)}
    return out[0], out[1], info


def _labels(y: np.ndarray | torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(y))
    if y.dim() != 1:
        raise DataError(f"labels must be a 1-D array of class indices, got shape {tuple(y.shape)}")
    if y.dtype.is_floating_point and not torch.equal(y, y.round()):
        raise DataError("labels must be integer class indices, got fractional values")
    return y.long()
