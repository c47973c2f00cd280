"""Hugging Face ``datasets`` from local files: arrow (a folder written by save_to_disk, or
.arrow files), parquet, csv or json; a text column is tokenized (a tokenizer.json, e.g. a model
folder's, or MiniLM's) into token ids for transformer models, or numeric feature columns are
taken as they are. Nothing is downloaded: the library runs offline with its cache in a temporary
folder that is removed afterwards."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from nnopt.core.config import NAME, PATH, path_or
from nnopt.core.errors import DataError
from nnopt.core.extras import require
from nnopt.core.fileio import read_inside, regular_file
from nnopt.core.registry import DATASETS
from nnopt.data.base import ClassCount, DataConfig, DataSplits, make_splits
from nnopt.data.tabular import check_labels, class_count, holdout, label_indices
from nnopt.models.minilm import package_dir

FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json",
           ".arrow": "arrow"}
MAX_STATE_BYTES = 1 << 22  # state.json, dataset_info.json, dataset_dict.json


class HfDatasetConfig(DataConfig):
    name: Literal["hf-dataset"] = "hf-dataset"
    train: str = Field(..., json_schema_extra=PATH, description="the training file (.parquet, "
                       ".csv, .json/.jsonl, .arrow) or a folder written by save_to_disk (with a "
                       "train and optionally a test split)")
    test: str | None = Field(None, json_schema_extra=PATH, description="the test file (default:"
                             " the folder's test split, or a seeded test_fraction of train)")
    format: Literal["auto", "parquet", "csv", "json", "arrow"] = "auto"
    label: str = Field("label", min_length=1, description="the label column (indices or names)")
    text: str | None = Field(None, min_length=1, description="a text column, tokenized into "
                             "token ids")
    features: list[str] | None = Field(None, min_length=1, description="numeric feature columns "
                                       "(instead of text)")
    tokenizer: str | None = Field(None, json_schema_extra=path_or("minilm"), description="a tokenizer.json, "
                                  "or a folder holding one (a Hugging Face model folder); "
                                  "'minilm' for MiniLM's; default: the folder of an hf model")
    max_length: int = Field(64, ge=4, le=8192, description="tokens per text (padded, truncated)")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    num_classes: ClassCount = None

    @model_validator(mode="after")
    def _inputs(self) -> HfDatasetConfig:
        if (self.text is None) == (self.features is None):
            raise ValueError("name either a text column (text: COLUMN, with a tokenizer) or "
                             "feature columns (features: [A, B, ...])")
        return self


def tokenizer_file(ref: str) -> Path:
    """The tokenizer.json a config names (a file, a folder holding one, or 'minilm'), checked
    to be a regular file (inside the folder, when a folder is named)."""
    if ref == "minilm":
        return package_dir() / "tokenizer.json"
    path = Path(ref)
    folder = path if path.is_dir() else None
    path = path / "tokenizer.json" if folder is not None else path
    if not os.path.lexists(path):
        raise DataError(f"tokenizer not found: {path} (a tokenizer.json, a folder holding "
                        "one, or 'minilm')")
    return regular_file(path, "tokenizer", DataError, folder)


def tokenize_texts(texts: list[str], ref: str, max_length: int) -> np.ndarray:
    """Token ids (N, max_length) as float32, padded with the tokenizer's pad id (else 0)."""
    tokenizers = require("tokenizers", "tokenizing a text column")
    path = tokenizer_file(ref)
    try:
        tok = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001  (the tokenizers library's own error types)
        raise DataError(f"{path} is not a tokenizer.json: {str(exc)[:100]}") from None
    pad = next((tok.token_to_id(t) for t in ("[PAD]", "<pad>") if tok.token_to_id(t) is not None),
               0)
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=pad, length=max_length)
    return np.asarray([e.ids for e in tok.encode_batch([str(t) for t in texts])],
                      dtype=np.float32)


def _format(cfg: HfDatasetConfig, path: Path) -> str:
    if cfg.format != "auto":
        return cfg.format
    if path.is_dir():
        return "disk"
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"{path}: cannot tell the format from the suffix; set format: parquet, "
                        "csv, json or arrow")
    return FORMATS[path.suffix.lower()]


def _disk_folder(folder: Path) -> None:
    """Check a ``save_to_disk`` folder before the datasets library reads it: every split it
    lists is a subfolder of it, and every data file a split's state.json names is a plain file
    name, a regular file in that split's folder (state.json may name any path: '../x' or an
    absolute one would be read from outside the folder)."""
    def read(path: Path, root: Path) -> Any:
        try:
            return json.loads(read_inside(path, root, MAX_STATE_BYTES, "dataset file", DataError))
        except (ValueError, UnicodeDecodeError):
            raise DataError(f"{path} is not JSON") from None

    splits = [folder]
    if os.path.lexists(folder / "dataset_dict.json"):
        names = read(folder / "dataset_dict.json", folder)
        names = names.get("splits") if isinstance(names, dict) else None
        if not isinstance(names, list) or not all(
                isinstance(n, str) and re.fullmatch(NAME, n) for n in names):
            raise DataError(f"{folder / 'dataset_dict.json'}: 'splits' must list plain split "
                            "names (no paths)")
        splits = [folder / n for n in names]
    for split in splits:
        if not split.is_dir() or split.is_symlink():
            raise DataError(f"{split}: a split of {folder} must be a folder inside it, not a "
                            "link")
        state = read(split / "state.json", folder)
        files = state.get("_data_files") if isinstance(state, dict) else None
        if not isinstance(files, list) or not files:
            raise DataError(f"{split / 'state.json'} lists no data files")
        for entry in files:
            name = entry.get("filename") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not re.fullmatch(NAME, name):
                raise DataError(f"{split / 'state.json'} names the data file "
                                f"{json.dumps(name)[:60]}: only plain file names inside "
                                "the folder are read")
            regular_file(split / name, "data file", DataError, split)
        read(split / "dataset_info.json", folder)


def _load(cfg: HfDatasetConfig, ds: Any, cache: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The train and test tables as {column: list}."""
    train = Path(cfg.train).expanduser()
    if not train.exists():
        raise DataError(f"dataset file not found: {train}")
    fmt = _format(cfg, train)
    if train.is_dir():
        if fmt not in ("disk", "arrow"):
            raise DataError(f"{train} is a folder: only a save_to_disk folder (format auto or "
                            "arrow) is read as one")
        _disk_folder(train)
    else:
        regular_file(train, "dataset file", DataError)
    try:
        if train.is_dir():
            loaded = ds.load_from_disk(str(train))
            if isinstance(loaded, ds.DatasetDict):
                if "train" not in loaded:
                    raise DataError(f"{train} has splits {', '.join(loaded)}, no 'train'")
                test = loaded["test"].to_dict() if "test" in loaded else None
                return loaded["train"].to_dict(), test
            return loaded.to_dict(), None
        files = {"train": str(train)}
        if cfg.test:
            files["test"] = str(Path(cfg.test).expanduser())
            if not Path(files["test"]).exists():
                raise DataError(f"dataset file not found: {files['test']}")
            regular_file(files["test"], "dataset file", DataError)
        loaded = ds.load_dataset(fmt, data_files=files, cache_dir=cache)
        return loaded["train"].to_dict(), loaded["test"].to_dict() if cfg.test else None
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001  (datasets/pyarrow raise many types for bad files)
        raise DataError(f"{train}: the datasets library could not read it as {fmt}: "
                        f"{str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}"
                        ) from None


@DATASETS.register("hf-dataset", config=HfDatasetConfig)
def hf_dataset(cfg: HfDatasetConfig) -> DataSplits:
    """A Hugging Face dataset from local files: a text column tokenized, or feature columns."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds = require("datasets", "Hugging Face datasets")
    quiet = ds.utils.are_progress_bars_disabled()
    ds.disable_progress_bars()  # the CLI shows its own progress; this is a quick local read
    try:
        with tempfile.TemporaryDirectory(prefix="nnopt-datasets-") as cache:
            train, test = _load(cfg, ds, cache)
    finally:
        if not quiet:
            ds.enable_progress_bars()
    source = str(Path(cfg.train))
    wanted = [cfg.label] + ([cfg.text] if cfg.text else list(cfg.features or []))
    for table, what in ((train, "train"), (test, "test")):
        missing = [c for c in wanted if table is not None and c not in table]
        if missing:
            raise DataError(f"{source}: the {what} split has no column {missing[0]!r}; columns: "
                            f"{', '.join(list(table)[:20])}")
    check_labels(train[cfg.label], source, cfg.label)
    if test is not None:
        check_labels(test[cfg.label], f"{source} (test)", cfg.label)
    if test is None:
        tr, te = holdout(len(train[cfg.label]), cfg.test_fraction, cfg.split_seed)
        test = {k: [v[i] for i in te] for k, v in train.items()}
        train = {k: [v[i] for i in tr] for k, v in train.items()}

    def inputs(table: dict[str, Any]) -> np.ndarray:
        if cfg.text:
            return tokenize_texts(table[cfg.text], cfg.tokenizer or "", cfg.max_length)
        try:
            cols = [np.asarray(table[c], dtype=np.float32) for c in cfg.features or []]
        except (TypeError, ValueError):
            raise DataError(f"{source}: feature columns must be numeric") from None
        return np.stack(cols, axis=1)[:, None, :]

    y_train, y_test, names = label_indices(train[cfg.label], test[cfg.label], source)
    names, count = class_count(names, cfg.num_classes, source)
    return make_splits("hf-dataset", cfg, inputs(train), y_train, inputs(test), y_test,
                       class_names=names, num_classes=count)
