"""Hugging Face ``datasets`` from local files: arrow (a folder written by save_to_disk, or
.arrow files), parquet, csv or json; a text column is tokenized (a tokenizer.json, e.g. a model
folder's, or MiniLM's) into token ids for transformer models, or numeric feature columns are
taken as they are. Nothing is downloaded: the library runs offline with its cache in a temporary
folder that is removed afterwards."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from nnopt.core.config import PATH, path_or
from nnopt.core.errors import DataError
from nnopt.core.extras import require
from nnopt.core.registry import DATASETS
from nnopt.data.base import DataConfig, DataSplits, make_splits
from nnopt.data.tabular import holdout, label_indices
from nnopt.models.minilm import package_dir

FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json",
           ".arrow": "arrow"}


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

    @model_validator(mode="after")
    def _inputs(self) -> HfDatasetConfig:
        if (self.text is None) == (self.features is None):
            raise ValueError("name either a text column (text: COLUMN, with a tokenizer) or "
                             "feature columns (features: [A, B, ...])")
        return self


def tokenizer_file(ref: str) -> Path:
    """The tokenizer.json a config names (a file, a folder holding one, or 'minilm')."""
    if ref == "minilm":
        return package_dir() / "tokenizer.json"
    path = Path(ref)
    path = path / "tokenizer.json" if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"tokenizer not found: {path} (a tokenizer.json, a folder holding "
                        "one, or 'minilm')")
    return path


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


def _load(cfg: HfDatasetConfig, ds: Any, cache: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The train and test tables as {column: list}."""
    train = Path(cfg.train).expanduser()
    if not train.exists():
        raise DataError(f"dataset file not found: {train}")
    fmt = _format(cfg, train)
    try:
        if fmt == "disk" or (fmt == "arrow" and train.is_dir()):
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
    return make_splits("hf-dataset", cfg, inputs(train), y_train, inputs(test), y_test,
                       class_names=names, num_classes=len(names))
