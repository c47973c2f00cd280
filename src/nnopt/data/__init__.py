"""Datasets, registered by name; each returns DataSplits with fixed-seed splits."""

from nnopt.data import arrays, cifar10, digits, idx, mnist1d, sentences  # noqa: F401
from nnopt.data.base import DataConfig, DataSplits, Split
from nnopt.registry import DATASETS


def load_data(cfg: DataConfig) -> DataSplits:
    """Build the dataset that a validated data config names."""
    return DATASETS.get(cfg.name).fn(cfg)


__all__ = ["DataConfig", "DataSplits", "Split", "load_data"]
