"""Datasets as in-memory tensors with fixed-seed train/val/test splits."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch.utils.data._utils import signal_handling as loader_signal_handling

from nnopt.core.config import Seed, Strict
from nnopt.core.errors import DataError
from nnopt.data.noise import LabelNoiseConfig, corrupt_labels, realised_rate

# the number of classes, set by the user when some class has no training example
ClassCount = Annotated[int | None, Field(ge=2, le=1_000_000, description=(
    "number of classes (default: the largest label + 1, every class present in the training "
    "labels); set it when some class truly has no example"))]


class DataConfig(Strict):
    """Options every dataset shares: which one, how to split, how much to use."""

    name: str
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0,
                                description="share of the training set held out for validation")
    limit: int | None = Field(None, ge=1, description="use at most this many training examples")
    eval_limit: int | None = Field(None, ge=1,
                                   description="use at most this many val and test examples")
    split_seed: Seed = Field(0, description="seed of the train/val split and of the subsets")
    label_noise: LabelNoiseConfig | None = Field(
        None, description="corrupt the training and validation labels (test stays clean)")


class SplitDataset(torch.utils.data.Dataset):
    """A split as a torch ``Dataset`` whose item i is ``(x[i], y[i], i)``; a batch of indices
    is fetched with one indexing (``__getitems__``), in a DataLoader worker or in this
    process."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.x[i], self.y[i], i

    def __getitems__(self, idx: list[int] | torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return self.x[idx], self.y[idx], idx


@contextlib.contextmanager
def loader_signals() -> Iterator[None]:
    """The process's SIGCHLD handler as it was before DataLoader workers ran: torch installs
    its own for them, process-wide and for good, and with it in place a later subprocess wait
    in the same process crashed (SIGSEGV, seen with ExecuTorch's quantize step after a fit
    with workers). torch installs it again for the next loader with workers."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGCHLD) if main else None
    try:
        yield
    finally:
        if main and signal.getsignal(signal.SIGCHLD) is not before:
            signal.signal(signal.SIGCHLD, before)
            loader_signal_handling._SIGCHLD_handler_set = False


def whole_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The DataLoader's collate function for ``SplitDataset``: its batches come whole."""
    return batch


@dataclass
class Split:
    """Inputs in [0, 1] (or the dataset's natural scale) and integer labels."""

    x: torch.Tensor
    y: torch.Tensor
    y_clean: torch.Tensor | None = None  # the true labels where ``y`` was corrupted on purpose

    def __len__(self) -> int:
        return len(self.y)

    def dataset(self) -> SplitDataset:
        """This split as a torch Dataset (what training reads through a DataLoader)."""
        return SplitDataset(self.x, self.y)

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
    """Check the arrays, hold out a seeded validation share of the training set (unless given),
    apply limits. Every check fails with one line naming the array: numbers only, finite
    inputs, labels that are class indices, matching lengths and input shapes."""
    if (x_val is None) != (y_val is None):
        given = "x_val" if x_val is not None else "y_val"
        raise DataError(f"dataset '{name}': {given} is given without its partner; give both "
                        "x_val and y_val, or neither (a validation share is then held out)")
    xs = {"x_train": x_train, "x_test": x_test, **({"x_val": x_val} if x_val is not None else {})}
    ys = {"y_train": y_train, "y_test": y_test, **({"y_val": y_val} if y_val is not None else {})}
    x = {k: _inputs(name, k, v) for k, v in xs.items()}
    y = {k: _labels(name, k, v) for k, v in ys.items()}
    for split in x:
        lab = "y" + split[1:]
        if len(x[split]) != len(y[lab]):
            raise DataError(f"dataset '{name}': {split} has {len(x[split])} examples but {lab} "
                            f"has {len(y[lab])} labels")
        if x[split].shape[1:] != x["x_train"].shape[1:]:
            raise DataError(f"dataset '{name}': {split} inputs have shape "
                            f"{tuple(x[split].shape[1:])}, x_train's "
                            f"{tuple(x['x_train'].shape[1:])}")
    n_cls = _classes(name, y, num_classes)
    xt, yt = x["x_train"], y["y_train"]
    test = Split(x["x_test"], y["y_test"])
    if len(yt) < 2 or len(test) < 1:
        raise DataError(f"dataset '{name}': too few examples (train {len(yt)}, test {len(test)})")
    gen = torch.Generator().manual_seed(cfg.split_seed)
    if "x_val" in x:
        train = Split(xt, yt)
        val = Split(x["x_val"], y["y_val"])
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
    mean, std = channel_stats(train.x)
    noise = None
    if cfg.label_noise is not None and cfg.label_noise.rate > 0:
        train, val, noise = _add_noise(cfg.label_noise, name, n_cls, train, val)
    return DataSplits(name=name, train=train, val=val, test=test, num_classes=n_cls,
                      class_names=class_names or [str(i) for i in range(n_cls)],
                      mean=mean, std=std, noise=noise)


def _first_bad(mask: torch.Tensor) -> int:
    """The example index of the first True in ``mask`` (any shape, examples first)."""
    return int(mask.reshape(len(mask), -1).any(1).nonzero()[0, 0])


def _inputs(name: str, what: str, x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Inputs as float32 (N, ...) with N >= 1 examples of at least one feature, all finite."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise DataError(f"dataset '{name}': {what} holds {x.dtype} values; inputs must be "
                            "numbers (bool, integer or float)")
    if x.ndim < 2 or 0 in x.shape[1:]:
        raise DataError(f"dataset '{name}': {what} has shape {tuple(x.shape)}; inputs are "
                        "(N, F) feature vectors or (N, C, ...) arrays")
    t = torch.as_tensor(x, dtype=torch.float32)
    bad = ~torch.isfinite(t)
    if bad.any():
        raise DataError(f"dataset '{name}': {what} has {int(bad.sum())} non-finite value(s) "
                        f"(NaN or Inf), the first in example {_first_bad(bad)}; clean or drop them")
    return t


def _labels(name: str, what: str, y: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Labels as int64 class indices (>= 0), from integer or integral float arrays."""
    if not isinstance(y, torch.Tensor):
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise DataError(f"dataset '{name}': {what} holds {y.dtype} values; labels must be "
                            "integer class indices 0..K-1 (map names to numbers first)")
        y = torch.as_tensor(y.astype(np.float64) if y.dtype.kind == "f" else y.astype(np.int64))
    if y.dim() != 1:
        raise DataError(f"dataset '{name}': {what} must be a 1-D array of class indices, got "
                        f"shape {tuple(y.shape)}")
    if y.dtype.is_floating_point:
        odd = ~torch.isfinite(y) | (y != y.round())
        if odd.any():
            i = _first_bad(odd)
            raise DataError(f"dataset '{name}': {what} has label {y[i].item()} at index {i}; "
                            "labels must be integer class indices 0..K-1")
        if len(y) and y.abs().max() > 2 ** 31:
            i = _first_bad(y.abs() > 2 ** 31)
            raise DataError(f"dataset '{name}': {what} has label {y[i].item():g} at index {i}; "
                            "labels must be class indices 0..K-1")
    y = y.long()
    if len(y) and y.min() < 0:
        i = _first_bad(y < 0)
        raise DataError(f"dataset '{name}': {what} has label {y[i].item()} at index {i}; labels "
                        "must be class indices 0..K-1")
    return y


def _classes(name: str, y: dict[str, torch.Tensor], num_classes: int | None) -> int:
    """The number of classes: given (every label must be below it) or inferred as the largest
    label + 1, in which case every class must have training examples (a stray label of 1000
    among 0..9 is a mistake, not 991 empty classes)."""
    top = {k: int(v.max()) for k, v in y.items() if len(v)}
    if num_classes is not None:
        for k, m in top.items():
            if m >= num_classes:
                i = _first_bad(y[k] >= num_classes)
                raise DataError(f"dataset '{name}': {k} has label {y[k][i].item()} at index "
                                f"{i}, but the dataset has {num_classes} classes "
                                f"(0..{num_classes - 1})")
        return num_classes
    n = max(top.values(), default=0) + 1
    if n < 2:
        raise DataError(f"dataset '{name}': the labels name {n} class; a classifier needs at "
                        "least 2")
    present = torch.unique(y["y_train"])  # sorted
    if len(present) < n:
        # the runs of absent classes, from the gaps between the labels present (never a loop
        # over 0..n: a stray label of 10^12 is one gap)
        edges = torch.cat([torch.tensor([-1]), present, torch.tensor([n])])
        gaps = (edges[1:] - edges[:-1] > 1).nonzero().flatten()
        runs = [(int(edges[i]) + 1, int(edges[i + 1]) - 1) for i in gaps[:4]]
        shown = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in runs) + (
            f" and {len(gaps) - 4} more runs" if len(gaps) > 4 else "")
        where = max(top, key=lambda k: top[k])
        raise DataError(f"dataset '{name}': labels run 0..{n - 1} (the largest in {where}) but "
                        f"y_train has no example of class {shown}; labels must be the class "
                        "indices 0..K-1 (set data.num_classes if some classes truly have none)")
    return n


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
