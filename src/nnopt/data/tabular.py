"""Tables as datasets: a CSV (Python's csv module) or Parquet file (pyarrow), feature columns and
a label column named in the recipe. Labels may be class indices or names (mapped to indices in
sorted order)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from nnopt.core.config import PATH
from nnopt.core.environment import memory_bytes
from nnopt.core.errors import DataError
from nnopt.core.extras import require
from nnopt.core.fileio import regular_file
from nnopt.core.registry import DATASETS
from nnopt.data.base import ClassCount, DataConfig, DataSplits, make_splits


class TabularConfig(DataConfig):
    name: Literal["tabular"] = "tabular"
    path: str = Field(..., json_schema_extra=PATH, description="a .csv (with a header row) or "
                      ".parquet file")
    test_path: str | None = Field(None, json_schema_extra=PATH, description="the test table "
                                  "(default: a seeded test_fraction of path)")
    label: str = Field(..., min_length=1, description="the label column: class indices or names")
    features: list[str] | None = Field(None, min_length=1, description="the feature columns "
                                       "(default: every other column)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share held out as the test set "
                                 "when there is no test_path")
    num_classes: ClassCount = None


def read_table(path: Path) -> dict[str, list[Any]]:
    """Columns of a CSV or Parquet file, by name."""
    if not path.exists():
        raise DataError(f"table not found: {path}")
    regular_file(path, "table", DataError)
    if path.stat().st_size * 8 > memory_bytes():
        raise DataError(f"{path} is larger than this machine can hold as a table")
    if path.suffix.lower() == ".parquet":
        pq = require("pyarrow.parquet", "Parquet tables")
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001  (pyarrow's errors: the file is not Parquet)
            raise DataError(f"{path} is not a readable Parquet file: {str(exc)[:100]}") from None
        _unique(table.column_names, path)
        return table.to_pydict()
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise DataError(f"{path}: a table is a .csv, .tsv or .parquet file")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file: {str(exc)[:100]}") from None
    if len(rows) < 2:
        raise DataError(f"{path} needs a header row and at least one data row")
    header = rows[0]
    _unique(header, path)
    bad = next((i for i, r in enumerate(rows[1:], 2) if len(r) != len(header)), None)
    if bad is not None:
        raise DataError(f"{path}:{bad}: {len(rows[bad - 1])} fields, the header has {len(header)}")
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(header)}


def _unique(names: list[str], path: Path) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise DataError(f"{path}: column {n!r} appears twice; column names must be unique")
        seen.add(n)


def columns(table: dict[str, list[Any]], names: list[str], source: Path) -> np.ndarray:
    """The named columns as a float32 (N, F) array; a missing or non-numeric one is one line."""
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(f"{source} has no column {missing[0]!r}; columns: "
                        f"{', '.join(list(table)[:20])}")
    out = []
    for name in names:
        try:
            out.append(np.asarray([float(v) for v in table[name]], dtype=np.float32))
        except (TypeError, ValueError):
            raise DataError(f"{source}: column {name!r} is not numeric (features must be "
                            "numbers)") from None
    return np.stack(out, axis=1)


MISSING = {"", "nan", "na", "n/a", "null", "none"}  # how tables spell an empty cell


def _blank(v: Any) -> bool:
    if isinstance(v, str):
        n = _number(v)
        return v.strip().lower() in MISSING or (n is not None and not np.isfinite(n))
    return v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v))


def check_labels(values: list[Any], source: str, column: str) -> None:
    """Every label present: a blank cell, a missing value or a NaN is one line naming its row
    (it would otherwise become a class of its own)."""
    bad = next((i for i, v in enumerate(values) if _blank(v)), None)
    if bad is not None:
        raise DataError(f"{source}: label column {column!r} is blank or NaN at data row "
                        f"{bad + 1}; every example needs a label (drop or fill that row)")


def _number(v: Any) -> float | None:
    """A label as a number (an int, a float, or a string that spells one), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def label_indices(train: list[Any], test: list[Any], source: str
                  ) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Labels as class indices: whole numbers (1, 1.0, "1") are kept as they are (make_splits
    checks them against the class count: a stray 1000 among 0..3 is refused, not a 1001-class
    model), names are numbered in sorted order and returned. Fractional numbers are not
    classes."""
    nums = [_number(v) for v in train + test]
    if all(n is not None for n in nums):
        odd = next((v for v, n in zip(train + test, nums) if not n.is_integer()), None)
        if odd is not None:
            raise DataError(f"{source}: label {odd!r} is a fractional number; labels must be "
                            "class indices 0..K-1 or class names")
        ints = np.asarray(nums, dtype=np.float64)
        if np.abs(ints).max() > 2 ** 62:
            raise DataError(f"{source}: label {ints[np.abs(ints).argmax()]:g} is not a class "
                            "index 0..K-1")
        ints = ints.astype(np.int64)
        return ints[:len(train)], ints[len(train):], None
    names = sorted({str(v) for v in train})
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted({str(v) for v in test} - set(index))
    if unknown:
        raise DataError(f"{source}: test labels that training lacks: {', '.join(unknown[:5])}")
    return (np.asarray([index[str(v)] for v in train]), np.asarray([index[str(v)] for v in test]),
            names)


def class_count(names: list[str] | None, num_classes: int | None, source: str
                ) -> tuple[list[str] | None, int | None]:
    """The class names and count make_splits gets: named labels give both (``num_classes``
    may add classes absent from the data), whole-number labels the count the user set."""
    if names is None:
        return None, num_classes
    if num_classes is None:
        return names, len(names)
    if num_classes < len(names):
        raise DataError(f"{source}: the labels name {len(names)} classes, more than "
                        f"num_classes {num_classes}")
    return names + [f"class_{i}" for i in range(len(names), num_classes)], num_classes


def holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, test) row indices."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    k = max(1, int(round(fraction * n)))
    return np.sort(perm[k:]), np.sort(perm[:k])


@DATASETS.register("tabular", config=TabularConfig)
def tabular(cfg: TabularConfig) -> DataSplits:
    """Feature columns and a label column of a CSV or Parquet table."""
    path = Path(cfg.path).expanduser()
    table = read_table(path)
    if cfg.label not in table:
        raise DataError(f"{path} has no label column {cfg.label!r}; columns: "
                        f"{', '.join(list(table)[:20])}")
    features = cfg.features or [c for c in table if c != cfg.label]
    x = columns(table, features, path)
    y = list(table[cfg.label])
    check_labels(y, str(path), cfg.label)
    if cfg.test_path:
        test = read_table(Path(cfg.test_path).expanduser())
        if cfg.label not in test:
            raise DataError(f"{cfg.test_path} has no label column {cfg.label!r}")
        x_test, y_test = columns(test, features, Path(cfg.test_path)), list(test[cfg.label])
        check_labels(y_test, cfg.test_path, cfg.label)
    else:
        tr, te = holdout(len(y), cfg.test_fraction, cfg.split_seed)
        x, x_test = x[tr], x[te]
        y, y_test = [y[i] for i in tr], [y[i] for i in te]
    y_train, y_te, names = label_indices(y, y_test, str(path))
    names, count = class_count(names, cfg.num_classes, str(path))
    return make_splits("tabular", cfg, x[:, None, :], y_train, x_test[:, None, :], y_te,
                       class_names=names, num_classes=count)
