"""MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package, never downloaded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nnopt.core.config import Seed
from nnopt.core.errors import DataError
from nnopt.core.extras import require
from nnopt.core.registry import DATASETS
from nnopt.data.base import DataConfig, DataSplits, make_splits


class Mnist1dConfig(DataConfig):
    name: Literal["mnist1d"] = "mnist1d"
    num_samples: int = Field(5000, ge=100, le=10_000_000,
                             description="examples generated (80% train, 20% test)")
    seed: Seed = Field(42, description="generator seed (42 is the published dataset)")


@DATASETS.register("mnist1d", config=Mnist1dConfig)
def mnist1d(cfg: Mnist1dConfig) -> DataSplits:
    """MNIST-1D: 40-sample 1-D signals of 10 digit templates, shifted, sheared and noised."""
    try:
        require("mnist1d", "the mnist1d dataset")
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("dataset 'mnist1d' needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args()
    args.num_samples, args.seed = cfg.num_samples, cfg.seed
    ds = make_dataset(args)
    return make_splits("mnist1d", cfg, ds["x"][:, None, :], ds["y"], ds["x_test"][:, None, :],
                       ds["y_test"], num_classes=10)
