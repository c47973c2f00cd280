"""CIFAR-10 from a local folder of the standard python batches, read without running pickle code.

The python batches are pickles; nnopt never unpickles what a user hands it, so they are read with
an unpickler that admits only plain containers and numpy arrays. The binary release
(``data_batch_1.bin`` ...) is read too.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from nnopt.core.config import PATH
from nnopt.core.errors import DataError
from nnopt.core.registry import DATASETS
from nnopt.data.base import DataConfig, DataSplits, make_splits

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load global '{module}.{name}'")


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: (N, 3, 32, 32) uint8 images and (N,) labels."""
    try:
        obj = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path} is not a valid CIFAR-10 batch: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a valid CIFAR-10 batch (not a mapping)")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    try:
        data = np.asarray(obj["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(obj["labels"], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a valid CIFAR-10 batch: {exc}") from None
    return data, labels


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: records of 1 label byte followed by 3072 pixel bytes."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size % 3073:
        raise DataError(f"{path} is not a valid CIFAR-10 binary batch (size {raw.size})")
    rec = raw.reshape(-1, 3073)
    return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)


class Cifar10Config(DataConfig):
    name: Literal["cifar10"] = "cifar10"
    root: str = Field(..., json_schema_extra=PATH, description="folder with data_batch_1..5 and test_batch "
                                       "(python version) or their .bin files")


@DATASETS.register("cifar10", config=Cifar10Config)
def cifar10(cfg: Cifar10Config) -> DataSplits:
    """CIFAR-10 (Krizhevsky 2009): 50k/10k 32x32 colour images of 10 classes, from a local folder."""
    root = Path(cfg.root).expanduser()
    sub = root / "cifar-10-batches-py"
    if sub.is_dir():
        root = sub
    names = [f"data_batch_{i}" for i in range(1, 6)]
    if all((root / n).is_file() for n in names + ["test_batch"]):
        reader, test_name = read_python_batch, "test_batch"
    elif all((root / f"{n}.bin").is_file() for n in names + ["test_batch"]):
        reader, test_name = read_binary_batch, "test_batch.bin"
        names = [f"{n}.bin" for n in names]
    else:
        raise DataError(f"dataset 'cifar10' not found in {root}: expected data_batch_1..5 and "
                        "test_batch (python version, cifar-10-python.tar.gz unpacked) there")
    parts = [reader(root / n) for n in names]
    x_test, y_test = reader(root / test_name)
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([p[1] for p in parts])
    return make_splits("cifar10", cfg, x, y, x_test.astype(np.float32) / 255.0, y_test,
                       class_names=CLASSES, num_classes=10)
