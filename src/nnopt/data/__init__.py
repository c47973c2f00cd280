"""Datasets, registered by name; each returns DataSplits with fixed-seed splits."""

from nnopt.core.registry import DATASETS
from nnopt.data.base import DataConfig, DataSplits, Split


def load_data(cfg: DataConfig) -> DataSplits:
    """Build the dataset that a validated data config names."""
    return DATASETS.get(cfg.name).fn(cfg)


__all__ = ["DataConfig", "DataSplits", "Split", "load_data"]
