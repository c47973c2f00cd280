"""Datasets from arrays: the user's own ``.npz`` file and a synthetic set for tests."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from nnopt.core.config import PATH, Seed
from nnopt.core.environment import memory_bytes
from nnopt.core.errors import DataError
from nnopt.core.fileio import regular_file
from nnopt.core.registry import DATASETS
from nnopt.data.base import ClassCount, DataConfig, DataSplits, make_splits


class NpzConfig(DataConfig):
    name: Literal["npz"] = "npz"
    path: str = Field(..., json_schema_extra=PATH, description="a .npz with x_train, y_train, x_test, y_test "
                                       "(optional x_val, y_val); x as (N, C, ...) or (N, F)")
    num_classes: ClassCount = None


@DATASETS.register("npz", config=NpzConfig)
def npz(cfg: NpzConfig) -> DataSplits:
    """The user's arrays from a .npz file, loaded without pickle (allow_pickle=False)."""
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(f"npz file not found: {path.absolute()}")
    path = regular_file(path, "npz file", DataError)
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz file (a zip archive of .npy arrays, as "
                        "numpy.savez writes)")
    try:
        with zipfile.ZipFile(path) as z:
            size = sum(i.file_size for i in z.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz: {exc}") from None
    if size * 4 > memory_bytes():  # float32 copies of the arrays beside them
        raise DataError(f"{path} holds {size / 2 ** 30:.1f} GiB of arrays, more than this "
                        f"machine's {memory_bytes() / 2 ** 30:.0f} GiB of memory can train on")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{path} holds object arrays, which load only through pickle; "
                            "save numeric arrays") from None
        raise DataError(f"{path} is not a readable .npz: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz: {exc}") from None
    need = ["x_train", "y_train", "x_test", "y_test"]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; it has {', '.join(sorted(arrays))}")
    x = {k: _as_nc(arrays[k]) for k in ("x_train", "x_test", "x_val") if k in arrays}
    return make_splits("npz", cfg, x["x_train"], arrays["y_train"], x["x_test"], arrays["y_test"],
                       x_val=x.get("x_val"), y_val=arrays.get("y_val"),
                       num_classes=cfg.num_classes)


def _as_nc(x: np.ndarray) -> np.ndarray:
    """(N, F) feature vectors become (N, 1, F) so that every input has a channel axis."""
    return x[:, None, :] if x.ndim == 2 else x


class SyntheticConfig(DataConfig):
    name: Literal["synthetic"] = "synthetic"
    shape: list[Annotated[int, Field(ge=1, le=2 ** 16)]] = Field(
        default_factory=lambda: [1, 28, 28], min_length=1, max_length=4,
        description="input shape (C, ...) of one example")
    num_classes: int = Field(10, ge=2)
    train_size: int = Field(512, ge=4, le=10_000_000)
    test_size: int = Field(128, ge=2, le=10_000_000)
    noise: float = Field(0.15, ge=0.0, description="pixel noise around each class template")
    seed: Seed = 0


@DATASETS.register("synthetic", config=SyntheticConfig)
def synthetic(cfg: SyntheticConfig) -> DataSplits:
    """Learnable random data for tests: one random template per class plus noise, in [0, 1]."""
    rng = np.random.default_rng(cfg.seed)
    templates = rng.uniform(0.0, 1.0, size=(cfg.num_classes, *cfg.shape)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, cfg.num_classes, size=n)
        x = templates[y] + cfg.noise * rng.standard_normal((n, *cfg.shape)).astype(np.float32)
        return np.clip(x, 0.0, 1.0), y

    x_tr, y_tr = draw(cfg.train_size)
    x_te, y_te = draw(cfg.test_size)
    return make_splits("synthetic", cfg, x_tr, y_tr, x_te, y_te, num_classes=cfg.num_classes)
