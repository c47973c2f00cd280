"""IDX datasets (Fashion-MNIST, MNIST, KMNIST): reader, search path, checked download."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
import zlib
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from nnopt.core.config import PATH
from nnopt.core.environment import memory_bytes
from nnopt.core.errors import DataError
from nnopt.core.fileio import atomic_write_bytes, inflate
from nnopt.core.registry import DATASETS
from nnopt.data.base import DataConfig, DataSplits, make_splits

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the *uncompressed* IDX files: independent of how a mirror gzipped them
# (measured on Debian's dataset-fashion-mnist, whose files agree with the upstream release).
FASHION_SHA256 = {
    "train_x": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_y": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_x": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_y": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
KMNIST_CLASSES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array; a malformed file raises DataError."""
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape)) if shape else 0
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(f"{path} is truncated or corrupt: expected {count * dtype.itemsize} data "
                        f"bytes for shape {shape}, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


def _read_maybe_gzip(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return inflate(data, memory_bytes() // 4, gzip=True)
        except zlib.error as exc:
            raise DataError(f"{path} is a corrupt gzip file: {exc}") from None
        except ValueError as exc:
            raise DataError(f"{path} {exc}, more than this machine can hold") from None
    return data


def find_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (plain or .gz), or None if any is missing."""
    found = {}
    for key, stem in FILES.items():
        for cand in (folder / stem, folder / f"{stem}.gz"):
            if cand.is_file():
                found[key] = cand
                break
        else:
            return None
    return found


def search_path(dataset: str, root: str | None) -> list[Path]:
    """Folders searched for a dataset: ``root`` alone if given, else $NNOPT_DATA, then Debian's."""
    if root is not None:
        return [Path(root).expanduser()]
    out = []
    env = os.environ.get("NNOPT_DATA")
    if env:
        out += [Path(env) / dataset, Path(env)]
    out.append(Path("/usr/share/datasets") / dataset)
    return out


def download(url: str, folder: Path, checksums: dict[str, str]) -> dict[str, Path]:
    """Fetch the four gzipped IDX files and verify the SHA-256 of their contents."""
    out = {}
    for key, stem in FILES.items():
        target = folder / f"{stem}.gz"
        try:
            with urllib.request.urlopen(f"{url}{stem}.gz", timeout=60) as resp:
                blob = resp.read()
        except OSError as exc:
            raise DataError(f"download of {url}{stem}.gz failed: {exc}") from None
        try:
            digest = hashlib.sha256(gzip.decompress(blob)).hexdigest()
        except (OSError, EOFError):
            digest = "not a gzip file"
        if digest != checksums[key]:
            raise DataError(f"download of {stem}.gz failed its SHA-256 check "
                            f"(got {digest}, expected {checksums[key]}); nothing was kept")
        atomic_write_bytes(target, blob)
        out[key] = target
    return out


class IdxConfig(DataConfig):
    root: str | None = Field(None, json_schema_extra=PATH,
                             description="folder with the four IDX files (.gz or plain)")
    download: bool = Field(False, description="download (with SHA-256 check) if not found")
    size: list[Annotated[int, Field(ge=4, le=1024)]] | None = Field(
        None, min_length=2, max_length=2, description="[height, width] the 28x28 images are "
        "resized to (bilinear), e.g. [32, 32] for ImageNet-style models")


def load_idx(name: str, cfg: IdxConfig, classes: list[str], how_to_get: str,
             url: str | None = None, checksums: dict[str, str] | None = None) -> DataSplits:
    folders = search_path(name, cfg.root)
    files = next((f for f in map(find_files, folders) if f is not None), None)
    if files is None and cfg.download and url and checksums:
        files = download(url, _download_folder(name, cfg), checksums)
    if files is None:
        looked = ", ".join(str(f) for f in folders)
        raise DataError(f"dataset '{name}' not found (looked in {looked}); {how_to_get}")
    arrays = {k: read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
            raise DataError(f"dataset '{name}': {split} images and labels differ in length")
    def to_x(a: np.ndarray) -> np.ndarray | torch.Tensor:
        x = (a.astype(np.float32) / 255.0)[:, None, :, :]
        if cfg.size is None or list(x.shape[2:]) == list(cfg.size):
            return x
        return F.interpolate(torch.from_numpy(x), size=tuple(cfg.size), mode="bilinear",
                             align_corners=False, antialias=True).clamp_(0.0, 1.0)

    return make_splits(name, cfg, to_x(arrays["train_x"]), arrays["train_y"].astype(np.int64),
                       to_x(arrays["test_x"]), arrays["test_y"].astype(np.int64),
                       class_names=classes, num_classes=len(classes))


def _download_folder(name: str, cfg: IdxConfig) -> Path:
    if cfg.root:
        return Path(cfg.root).expanduser()
    base = os.environ.get("NNOPT_DATA") or str(Path.home() / ".cache" / "nnopt")
    return Path(base) / name


class FashionConfig(IdxConfig):
    name: Literal["fashion-mnist"] = "fashion-mnist"


class MnistConfig(IdxConfig):
    name: Literal["mnist"] = "mnist"


class KmnistConfig(IdxConfig):
    name: Literal["kmnist"] = "kmnist"


@DATASETS.register("fashion-mnist", config=FashionConfig)
def fashion_mnist(cfg: FashionConfig) -> DataSplits:
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images of 10 clothing classes."""
    how = ("install it with 'apt-get install dataset-fashion-mnist', put the four IDX files in "
           "$NNOPT_DATA/fashion-mnist, or set data.download=true on a connected machine")
    return load_idx("fashion-mnist", cfg, FASHION_CLASSES, how, FASHION_URL, FASHION_SHA256)


@DATASETS.register("mnist", config=MnistConfig)
def mnist(cfg: MnistConfig) -> DataSplits:
    """MNIST (LeCun et al. 1998) from local IDX files: 60k/10k 28x28 handwritten digits."""
    how = "put the four MNIST IDX files (.gz or plain) in $NNOPT_DATA/mnist or set data.root"
    return load_idx("mnist", cfg, [str(i) for i in range(10)], how)


@DATASETS.register("kmnist", config=KmnistConfig)
def kmnist(cfg: KmnistConfig) -> DataSplits:
    """Kuzushiji-MNIST (Clanuwat et al. 2018) from local IDX files, in the MNIST layout."""
    how = "put the four KMNIST IDX files (.gz or plain) in $NNOPT_DATA/kmnist or set data.root"
    return load_idx("kmnist", cfg, KMNIST_CLASSES, how)
