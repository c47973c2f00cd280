"""A user's own model and data beside the recipe (issue 28): a factory by file path or by a module
beside the recipe, and relative data paths, all found from the recipe's folder whatever folder
the run starts in; `nnopt validate` imports the factory and checks the files the recipe names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import tiny_raw
from nnopt.cli import main

MODEL = """
import torch.nn as nn

def build(input_shape, num_classes, width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1] * input_shape[-2], width),
                         nn.ReLU(), nn.Linear(width, num_classes))
"""


def _project(root: Path, factory: str, module: str = "nets/my_model.py") -> Path:
    """A user's folder: the recipe, their model file and an npz of 8x8 images."""
    (root / module).parent.mkdir(parents=True, exist_ok=True)
    (root / module).write_text(MODEL)
    rng = np.random.default_rng(0)
    x = rng.random((80, 1, 8, 8), dtype=np.float32)
    y = (x.mean((1, 2, 3)) > 0.5).astype(np.int64)
    np.savez(root / "images.npz", x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    raw = tiny_raw(data={"name": "npz", "path": "images.npz"},
                   model={"name": "factory", "factory": factory, "kwargs": {"width": 6}},
                   evaluate=["accuracy"],
                   stages=[{"train": {"epochs": 1, "batch_size": 16}}])
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    return recipe


@pytest.fixture
def elsewhere(tmp_path):
    """Run from a folder that is not the recipe's."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    before = os.getcwd()
    os.chdir(other)
    yield other
    os.chdir(before)


@pytest.mark.parametrize("factory", ["nets/my_model.py:build", "my_model:build"])
def test_a_factory_and_data_beside_the_recipe_run_from_another_folder(tmp_path, elsewhere,
                                                                     factory):
    module = "nets/my_model.py" if factory.startswith("nets/") else "my_model.py"
    recipe = _project(tmp_path / "project", factory, module)
    assert main(["validate", str(recipe)]) == 0
    assert main(["run", str(recipe), "--out", "out", "--quiet"]) == 0
    res = json.loads((elsewhere / "out/results.json").read_text())
    model_file = (tmp_path / "project" / module).resolve()
    assert res["recipe"]["model"]["factory"] == f"{model_file}:build"
    assert res["recipe"]["data"]["path"] == str((tmp_path / "project/images.npz").resolve())
    assert res["stages"][0]["metrics"]["accuracy"] >= 0


def test_validate_reports_a_missing_file_with_its_absolute_path(tmp_path, elsewhere, capsys):
    recipe = _project(tmp_path / "p", "nets/my_model.py:build")
    (tmp_path / "p/images.npz").unlink()
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nnopt: error: data.path: {(tmp_path / 'p/images.npz').resolve()} does not "
                   "exist (relative paths are read from the recipe's folder)"]
    recipe = _project(tmp_path / "q", "nets/missing.py:build")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no file {(tmp_path / 'q/nets/missing.py').resolve()}" in err[0]


def test_validate_imports_the_factory_and_its_failure_is_one_line(tmp_path, elsewhere, capsys):
    recipe = _project(tmp_path / "p", "nets/my_model.py:build")
    (tmp_path / "p/nets/my_model.py").write_text("import not_a_module_anywhere\n")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "raised ModuleNotFoundError" in err[0] and "my_model.py" in err[0]
    recipe = _project(tmp_path / "q", "no_such_module:build")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot import no_such_module" in err[0]
    assert "a file path 'path/to/file.py:function'" in err[0]


def test_a_saved_model_of_a_file_factory_reloads_when_trusted(tmp_path, elsewhere, capsys):
    recipe = _project(tmp_path / "p", "nets/my_model.py:build")
    assert main(["run", str(recipe), "--out", "out", "--quiet"]) == 0
    raw = tiny_raw(data={"name": "npz", "path": "../p/images.npz"},
                   model={"name": "saved", "path": str(elsewhere / "out/models/train")},
                   evaluate=["accuracy"], stages=[])
    again = tmp_path / "q" / "again.yaml"
    again.parent.mkdir()
    again.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert main(["run", str(again), "--out", "o2", "--quiet"]) == 2  # a folder vouches for no code
    assert "built by the factory" in capsys.readouterr().err
    assert main(["run", str(again), "--out", "o2", "--quiet",
                 "--trust", str(tmp_path / "p/nets/my_model.py") + ":build"]) == 0
