"""Shared fixtures: tiny recipes on synthetic data so that every test runs in seconds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from nnopt.data import load_data
from nnopt.models import build_model
from nnopt.recipe import resolve
from nnopt.train import TrainConfig, fit

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


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained on digits (5 epochs), and its data: one per test module."""
    r = resolve(tiny_raw(data={"name": "digits"}, model={"name": "cnn", "width": 8,
                                                          "hidden": 32, "depth": 1}))
    data = load_data(r.data)
    torch.manual_seed(0)
    model = build_model(r.model, data.input_shape, data.num_classes, data.mean, data.std)
    fit(model, data.train, config=TrainConfig(epochs=5, lr=0.01))
    return model.eval(), data
