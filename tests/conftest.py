"""Shared fixtures: tiny recipes on synthetic data so that every test runs in seconds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

torch.set_num_threads(1)

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "data": {"name": "synthetic", "shape": [1, 8, 8], "train_size": 96, "test_size": 32},
    "model": {"name": "cnn", "width": 4, "hidden": 8},
    "targets": [{"name": "cpu", "runtime": "torch", "batch_size": 2, "threads": 1,
                 "warmup": 1, "repeats": 5, "min_seconds": 0.0}],
    "evaluate": ["accuracy", "nll", "params", "nonzero_params", "size", "compressed_size", "macs",
                 "latency"],
    "stages": [{"train": {"epochs": 2, "batch_size": 32, "lr": 0.01}}],
}


def tiny_raw(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(TINY)
    raw.update(changes)
    return raw


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write a recipe mapping (or text) to a YAML file and return its path."""

    def write(raw: dict[str, Any] | str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
        return path

    return write
