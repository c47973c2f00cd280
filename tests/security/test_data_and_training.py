"""Arrays that are wrong in kind, range or shape, training that diverges, and results files
that are not nnopt's: each one line and exit 2, with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hostile import cli, recipe_file  # noqa: F401  (fixtures)


def arrays(**changes: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.random((40, 1, 4, 4), dtype=np.float32),
            "y_train": np.arange(40) % 3,
            "x_test": rng.random((9, 1, 4, 4), dtype=np.float32), "y_test": np.arange(9) % 3}
    base.update(changes)
    return base


def with_nan(a: np.ndarray, value: float) -> np.ndarray:
    a = a.copy()
    a[5, 0, 1, 1] = value
    return a


X = arrays()
CASES = {
    "label 1000": (dict(y_train=np.r_[X["y_train"][:-1], 1000]),
                   "labels run 0..1000 (the largest in y_train) but y_train has no example of class 3..999;"),
    "label -1": (dict(y_test=np.r_[X["y_test"][:-1], -1]), "y_test has label -1 at index 8"),
    "fractional": (dict(y_train=X["y_train"] + 0.5), "y_train has label 0.5 at index 0"),
    "nan label": (dict(y_train=np.r_[X["y_train"][:-1], np.nan]), "y_train has label nan"),
    "NaN input": (dict(x_test=with_nan(X["x_test"], np.nan)),
                  "x_test has 1 non-finite value(s) (NaN or Inf), the first in example 5"),
    "Inf input": (dict(x_train=with_nan(X["x_train"], np.inf)), "x_train has 1 non-finite"),
    "lengths": (dict(x_val=X["x_test"], y_val=X["y_test"][:5]),
                "x_val has 9 examples but y_val has 5 labels"),
    "val alone": (dict(x_val=X["x_test"]), "x_val is given without its partner"),
    "shapes": (dict(x_test=np.zeros((9, 1, 5, 5), np.float32)),
               "x_test inputs have shape (1, 5, 5), x_train's (1, 4, 4)"),
    "strings": (dict(y_train=np.array(["cat"] * 40)), "y_train holds <U3 values"),
    "string inputs": (dict(x_test=np.array([["a"]] * 9)), "x_test holds <U1 values"),
    "1-D inputs": (dict(x_test=np.zeros(9, np.float32)), "x_test has shape (9,)"),
    "complex": (dict(x_train=X["x_train"].astype(np.complex64)), "x_train holds complex64"),
    "2-D labels": (dict(y_train=np.zeros((40, 2))), "y_train must be a 1-D array"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arrays_are_named(case, cli, recipe_file, tmp_path):
    changes, needle = CASES[case]
    npz = tmp_path / "d.npz"
    np.savez(npz, **arrays(**changes))
    path = recipe_file(data={"name": "npz", "path": str(npz)})
    cli("run", path, "--out", tmp_path / "o").one_line_error(needle)
    assert not (tmp_path / "o").exists()


def test_declared_classes_and_non_zip_files(cli, recipe_file, tmp_path):
    npz = tmp_path / "d.npz"
    np.savez(npz, **arrays(y_train=np.arange(40) % 2))
    ok = recipe_file(data={"name": "npz", "path": str(npz), "num_classes": 3})
    assert cli("run", ok, "--out", tmp_path / "o", "--quiet").code == 0
    small = recipe_file(name="s.yaml", data={"name": "npz", "path": str(npz), "num_classes": 2})
    np.savez(npz, **arrays())
    cli("run", small, "--out", tmp_path / "p").one_line_error(
        "y_train has label 2 at index 2, but the dataset has 2 classes")
    for content in (b"not a zip at all", b"\x93NUMPY" + b"\x00" * 100):
        npz.write_bytes(content)
        cli("run", ok, "--out", tmp_path / "p").one_line_error("is not an .npz file")


def test_divergence_stops_the_stage_with_a_remedy(cli, recipe_file, tmp_path):
    path = recipe_file(stages=[{"train": {"epochs": 3, "lr": 1.0e6, "batch_size": 16,
                                          "optimizer": "sgd"}}])
    res = cli("run", path, "--out", tmp_path / "o", "--quiet")
    res.one_line_error("stage 'train': training diverged at epoch 1")
    assert "lower the learning rate (lr=1e+06)" in res.err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "not a JSON object"),
    ('{"nnopt_version": "0", "recipe": {}, "stages": []}', "'stages' must be a non-empty"),
    ('{"nnopt_version": "0", "recipe": {}, "stages": [{"name": "a", "step": "b", '
     '"seconds": 1, "metrics": {"accuracy": "high"}}]}', "metrics['accuracy'] must be a finite"),
    ('{"nnopt_version": "0", "recipe": {}, "stages": [{"name": "a", "step": "b", '
     '"seconds": 1, "metrics": {}, "details": {"latency": 5}}]}', "are not what nnopt writes"),
    ("{" * 100000, "not an nnopt results file"),
    ("\xff\xfe", "not an nnopt results file"),
])
def test_malformed_results_given_to_report(content, needle, cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_bytes(content.encode("latin-1"))
    cli("report", run, "--out", tmp_path / "cmp").one_line_error(needle)
    assert not (tmp_path / "cmp").exists()


def test_report_does_not_overwrite_a_run(cli, recipe_file, tmp_path):
    assert cli("run", recipe_file(), "--out", tmp_path / "a", "--quiet").code == 0
    before = json.loads((tmp_path / "a" / "results.json").read_text())
    cli("report", tmp_path / "a", "--out", tmp_path / "a").one_line_error(
        "holds an nnopt run folder, not a comparison")
    assert json.loads((tmp_path / "a" / "results.json").read_text()) == before
