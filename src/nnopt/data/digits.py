"""scikit-learn's bundled digits: 1,797 8x8 images of handwritten digits."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from nnopt.core.extras import require
from nnopt.core.registry import DATASETS
from nnopt.data.base import DataConfig, DataSplits, make_splits


class DigitsConfig(DataConfig):
    name: Literal["digits"] = "digits"
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="share held out for test")


@DATASETS.register("digits", config=DigitsConfig)
def digits(cfg: DigitsConfig) -> DataSplits:
    """Digits (UCI optical recognition, via scikit-learn): 8x8 images scaled to [0, 1]."""
    require("sklearn", "the digits dataset", extra="data")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    perm = np.random.default_rng(cfg.split_seed).permutation(len(y))
    n_test = int(round(cfg.test_fraction * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    return make_splits("digits", cfg, x[train], y[train], x[test], y[test], num_classes=10)
