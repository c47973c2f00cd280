"""Images from a folder: one subfolder per class (PNG, JPEG, BMP, WebP), read with Pillow and
resized as the recipe says. With ``train/`` and ``test/`` subfolders those are the splits;
otherwise a seeded share of every class is held out as the test set. Images are decoded once into
memory, like every nnopt dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from nnopt.core.config import PATH
from nnopt.core.environment import memory_bytes
from nnopt.core.errors import DataError
from nnopt.core.fileio import regular_file
from nnopt.core.registry import DATASETS
from nnopt.data.base import DataConfig, DataSplits, make_splits

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class ImageFolderConfig(DataConfig):
    name: Literal["imagefolder"] = "imagefolder"
    root: str = Field(..., json_schema_extra=PATH, description="a folder with one subfolder of "
                      "images per class, or with train/ and test/ folders laid out so")
    size: list[Annotated[int, Field(ge=1, le=4096)]] | None = Field(
        None, min_length=2, max_length=2, description="[height, width] every image is resized "
        "to (bilinear); default: the images' own size, which must then be the same for all")
    channels: Literal[1, 3] = Field(3, description="1: grayscale, 3: RGB")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of each class held out as "
                                 "the test set when there is no test/ folder")


def _inside(path: Path, root: Path) -> None:
    """Refuse a link that leads out of the dataset's folder (a folder of images is data: it
    may not make nnopt read elsewhere)."""
    if not Path(os.path.realpath(path)).is_relative_to(root):
        raise DataError(f"{path} is a link to {os.path.realpath(path)}, outside the image "
                        f"folder {root}; only what lies inside it is read")


def _classes(folder: Path, root: Path) -> list[str]:
    names = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_dir():
            continue
        _inside(p, root)
        names.append(p.name)
    return names


def _files(folder: Path, root: Path) -> list[Path]:
    """The images of a class folder, sorted: regular files inside the dataset's folder (a link
    that leads out of it, or a FIFO or device named like an image, is refused)."""
    out = []
    for top, dirs, files in os.walk(folder):  # links to folders are not followed
        for d in dirs:
            if os.path.islink(os.path.join(top, d)):
                _inside(Path(top) / d, root)
        for name in sorted(files):
            p = Path(top) / name
            if p.suffix.lower() in SUFFIXES:
                regular_file(p, "image", DataError, root)
                out.append(p)
    return sorted(out)


def _read(paths: list[Path], cfg: ImageFolderConfig) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if cfg.channels == 1 else "RGB"
    out: np.ndarray | None = None
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if cfg.size is not None:
                    img = img.resize((cfg.size[1], cfg.size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise DataError(f"image {path} cannot be read: {str(exc)[:100]}") from None
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if out is None:
            need = len(paths) * arr.size * 4
            if need > memory_bytes() // 2:
                raise DataError(f"{len(paths)} images of {arr.shape} need {need / 2 ** 30:.1f} "
                                "GiB as float32, more than this machine can hold; set a "
                                "smaller size")
            out = np.empty((len(paths), *arr.shape), dtype=np.uint8)
        if arr.shape != out.shape[1:]:
            raise DataError(f"image {path} is {arr.shape[2]}x{arr.shape[1]}, the first one "
                            f"{out.shape[3]}x{out.shape[2]}; set size: [H, W] to resize them all")
        out[i] = arr
    assert out is not None
    return out


def _split(folder: Path, classes: list[str], root: Path) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for k, name in enumerate(classes):
        if (folder / name).is_dir():
            found = _files(folder / name, root)
            paths += found
            labels += [k] * len(found)
    return paths, labels


@DATASETS.register("imagefolder", config=ImageFolderConfig)
def imagefolder(cfg: ImageFolderConfig) -> DataSplits:
    """Images in one folder per class (ImageNet's layout), resized, scaled to [0, 1]."""
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    train_dir = root / "train" if has_splits else root
    classes = _classes(train_dir, root)
    if len(classes) < 2:
        raise DataError(f"{train_dir} needs one subfolder per class (at least two); found "
                        f"{len(classes)}")
    paths, labels = _split(train_dir, classes, root)
    if has_splits:
        extra = sorted(set(_classes(root / "test", root)) - set(classes))
        if extra:
            raise DataError(f"{root / 'test'} has classes that train/ lacks: {', '.join(extra)}")
        test_paths, test_labels = _split(root / "test", classes, root)
    else:
        gen = torch.Generator().manual_seed(cfg.split_seed)
        y = torch.tensor(labels)
        test_idx = []
        for k in range(len(classes)):
            idx = torch.nonzero(y == k).flatten()
            n = max(1, int(round(cfg.test_fraction * len(idx)))) if len(idx) > 1 else 0
            test_idx += idx[torch.randperm(len(idx), generator=gen)[:n]].tolist()
        held = set(test_idx)
        test_paths = [paths[i] for i in sorted(held)]
        test_labels = [labels[i] for i in sorted(held)]
        paths = [p for i, p in enumerate(paths) if i not in held]
        labels = [v for i, v in enumerate(labels) if i not in held]
    if not paths or not test_paths:
        raise DataError(f"{root}: no {'training' if not paths else 'test'} images (PNG, JPEG, "
                        "BMP or WebP files in the class folders)")
    x_train = _read(paths, cfg).astype(np.float32) / 255.0
    x_test = _read(test_paths, cfg).astype(np.float32) / 255.0
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{root}: test images are {x_test.shape[1:]}, training images "
                        f"{x_train.shape[1:]}; set size: [H, W]")
    return make_splits("imagefolder", cfg, x_train, np.asarray(labels), x_test,
                       np.asarray(test_labels), class_names=classes, num_classes=len(classes))
