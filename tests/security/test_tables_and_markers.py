"""Tables whose labels are not classes (a stray huge label, blanks, NaN, duplicate columns), and
markers that nnopt did not write for the folder they sit in: each one line and exit 2, nothing of
the user's replaced."""

from __future__ import annotations

import csv
import json
import shutil
import time

import pytest
from hostile import cli, recipe_file  # noqa: F401  (fixtures)

from nnopt.core.fileio import MARKER

TABLE = {"evaluate": ["accuracy"], "model": {"name": "mlp", "hidden": [4]},
         "stages": [{"train": {"epochs": 1, "batch_size": 8}}]}


def _csv(path, labels, header=("a", "b", "y")) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[i * 0.1, (i % 3) * 0.5, lab] for i, lab in enumerate(labels)])


LABELS = [i % 4 for i in range(40)]
CASES = {
    "huge label": (LABELS[:-1] + [999999999999], "labels run 0..999999999999 (the largest in "),
    "stray 1000": (LABELS[:-1] + [1000], "labels run 0..1000 (the largest in "),
    "blank": (LABELS[:7] + [""] + LABELS[8:], "label column 'y' is blank or NaN at data row 8"),
    "nan": (LABELS[:3] + ["nan"] + LABELS[4:], "label column 'y' is blank or NaN at data row 4"),
    "fraction": (LABELS[:-1] + ["0.5"], "label '0.5' is a fractional number"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_labels_that_are_not_classes_are_one_line(case, cli, recipe_file, tmp_path):
    labels, needle = CASES[case]
    _csv(tmp_path / "t.csv", labels)
    path = recipe_file(data={"name": "tabular", "path": str(tmp_path / "t.csv"), "label": "y",
                             "val_fraction": 0.0}, **TABLE)
    start = time.perf_counter()
    res = cli("run", path, "--out", tmp_path / "o")
    res.one_line_error(needle)
    assert time.perf_counter() - start < 60  # a huge label allocates nothing (it grew to 20 GB)
    assert not (tmp_path / "o").exists()


def test_nan_labels_in_parquet_and_duplicate_columns(cli, recipe_file, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [0.1] * 20, "y": [float(i % 2) for i in range(19)] +
                             [float("nan")]}), tmp_path / "t.parquet")
    data = {"name": "tabular", "path": str(tmp_path / "t.parquet"), "label": "y"}
    cli("run", recipe_file(data=data, **TABLE), "--out", tmp_path / "o").one_line_error(
        "label column 'y' is blank or NaN at data row 20")
    _csv(tmp_path / "d.csv", LABELS, header=("a", "a", "y"))
    cli("run", recipe_file(data={**data, "path": str(tmp_path / "d.csv")}, name="d.yaml",
                           **TABLE), "--out", tmp_path / "o").one_line_error(
        "column 'a' appears twice")
    assert not (tmp_path / "o").exists()


def test_num_classes_allows_absent_classes(cli, recipe_file, tmp_path):
    _csv(tmp_path / "t.csv", LABELS)
    data = {"name": "tabular", "path": str(tmp_path / "t.csv"), "label": "y", "num_classes": 6}
    assert cli("run", recipe_file(data=data, **TABLE), "--out", tmp_path / "o",
               "--quiet").code == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["data"]["num_classes"] == 6
    _csv(tmp_path / "t.csv", LABELS[:-1] + [7])
    cli("run", recipe_file(data=data, name="b.yaml", **TABLE), "--out", tmp_path / "p"
        ).one_line_error("has label 7 at index")


def test_a_marker_copied_from_another_run_vouches_for_nothing(cli, recipe_file, tmp_path):
    path = recipe_file()
    assert cli("run", path, "--out", tmp_path / "run", "--quiet").code == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.json").write_text("my own results")  # a name nnopt also writes
    shutil.copy(tmp_path / "run" / MARKER, mine / MARKER)
    cli("run", path, "--out", mine, "--quiet").one_line_error("was not written for this folder")
    assert (mine / "results.json").read_text() == "my own results"
    # a whole copy of a run folder is another folder: its marker vouches for nothing there
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    cli("run", path, "--out", tmp_path / "copy", "--quiet").one_line_error(
        "was not written for this folder")
    # nnopt's own folder, moved: still its own (a rename keeps it)
    (tmp_path / "run").rename(tmp_path / "moved")
    assert cli("run", path, "--out", tmp_path / "moved", "--quiet").code == 0


def test_a_file_changed_since_nnopt_wrote_it_is_kept(cli, recipe_file, tmp_path):
    path = recipe_file()
    out = tmp_path / "run"
    assert cli("run", path, "--out", out, "--quiet").code == 0
    report = out / "report.md"
    report.write_text(report.read_text() + "\nmy notes on this run\n")  # edited by its user
    cli("run", path, "--out", out, "--quiet").one_line_error("changed since (report.md)")
    assert report.read_text().endswith("my notes on this run\n")
