from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_raw
from nnopt.core.errors import DataError
from nnopt.data import idx as idx_mod
from nnopt.data import load_data
from nnopt.data.idx import FILES, read_idx
from nnopt.recipe import resolve

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def data_cfg(**d):
    return resolve(tiny_raw(data=d)).data


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    blob = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if gz else blob)


def make_idx_folder(folder: Path, n_train: int = 40, n_test: int = 10, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        write_idx(folder / (FILES[f"{split}_x"] + suffix), rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / (FILES[f"{split}_y"] + suffix), rng.integers(0, 10, (n,)), gz)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr, gz)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)


def test_idx_corrupt_and_truncated(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "t", np.zeros((4, 5)), False)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t")


@pytest.mark.parametrize("name", ["mnist", "kmnist", "fashion-mnist"])
def test_idx_datasets_from_nnopt_data(tmp_path, monkeypatch, name):
    make_idx_folder(tmp_path / name, gz=name != "mnist")
    monkeypatch.setenv("NNOPT_DATA", str(tmp_path))
    d = load_data(data_cfg(name=name, val_fraction=0.25))
    assert (len(d.train), len(d.val), len(d.test)) == (30, 10, 10)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert 0.0 <= float(d.train.x.min()) and float(d.train.x.max()) <= 1.0


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as e:
        load_data(data_cfg(name="fashion-mnist", root=str(tmp_path / "nowhere")))
    assert "not found" in str(e.value) and "apt-get install dataset-fashion-mnist" in str(e.value)


def test_download_verifies_sha256_of_contents(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    make_idx_folder(mirror)
    sums = {k: __import__("hashlib").sha256(gzip.decompress(
        (mirror / f"{FILES[k]}.gz").read_bytes())).hexdigest() for k in FILES}
    monkeypatch.setattr(idx_mod, "FASHION_SHA256", sums)
    monkeypatch.setattr(idx_mod, "FASHION_URL", mirror.as_uri() + "/")
    dest = tmp_path / "dest"
    d = load_data(data_cfg(name="fashion-mnist", root=str(dest), download=True))
    assert len(d.test) == 10 and (dest / "t10k-images-idx3-ubyte.gz").is_file()
    bad = dict(sums, train_x="0" * 64)
    monkeypatch.setattr(idx_mod, "FASHION_SHA256", bad)
    with pytest.raises(DataError, match="SHA-256 check"):
        load_data(data_cfg(name="fashion-mnist", root=str(tmp_path / "dest2"), download=True))
    assert not (tmp_path / "dest2" / "train-images-idx3-ubyte.gz").exists()


@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_splits():
    d = load_data(data_cfg(name="fashion-mnist"))
    assert (len(d.train), len(d.val), len(d.test)) == (54000, 6000, 10000)
    assert d.class_names[0] == "T-shirt/top"
    assert torch.bincount(d.test.y).tolist() == [1000] * 10


def test_splits_are_seeded_disjoint_and_limited():
    a = load_data(data_cfg(name="digits", limit=100, eval_limit=50))
    b = load_data(data_cfg(name="digits", limit=100, eval_limit=50))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert (len(a.train), len(a.val), len(a.test)) == (100, 50, 50)
    full = load_data(data_cfg(name="digits"))
    from sklearn.datasets import load_digits

    parts = torch.cat([full.train.x, full.val.x, full.test.x]).flatten(1) * 16
    assert len(parts) == 1797  # the three splits partition the data set exactly
    key = lambda rows: sorted(map(tuple, rows))  # noqa: E731
    assert key(parts.round().int().tolist()) == key(load_digits().data.astype(int).tolist())
    c = load_data(data_cfg(name="digits", split_seed=1))
    assert not torch.equal(c.train.y, full.train.y)


def test_mnist1d_is_generated_locally():
    d = load_data(data_cfg(name="mnist1d", num_samples=500))
    assert d.input_shape == (1, 40) and len(d.test) == 100 and d.num_classes == 10


def _cifar_folder(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 4).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))


def test_cifar10_python_batches(tmp_path):
    _cifar_folder(tmp_path / "c")
    d = load_data(data_cfg(name="cifar10", root=str(tmp_path / "c"), val_fraction=0.2))
    assert d.input_shape == (3, 32, 32) and len(d.train) + len(d.val) == 20 and len(d.test) == 4


class Evil:
    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/nnopt-pwned"), "x"))


def test_cifar10_refuses_code_in_pickles(tmp_path):
    _cifar_folder(tmp_path / "c")
    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refused to load global"):
        load_data(data_cfg(name="cifar10", root=str(tmp_path / "c")))
    assert not Path("/tmp/nnopt-pwned").exists()


def test_cifar10_binary_batches(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = rng.integers(0, 256, (3, 3073), dtype=np.uint8)
        rec[:, 0] %= 10  # the label byte
        (folder / name).write_bytes(rec.tobytes())
    d = load_data(data_cfg(name="cifar10", root=str(folder)))
    assert len(d.test) == 3 and d.input_shape == (3, 32, 32)
    (folder / "test_batch.bin").write_bytes(np.full((1, 3073), 77, np.uint8).tobytes())
    with pytest.raises(DataError, match="y_test has label 77 at index 0, but the dataset has 10"):
        load_data(data_cfg(name="cifar10", root=str(folder)))


def test_npz_user_arrays(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", x_train=rng.random((30, 5)), y_train=rng.integers(0, 3, 30),
             x_test=rng.random((6, 5)), y_test=rng.integers(0, 3, 6))
    d = load_data(data_cfg(name="npz", path=str(tmp_path / "a.npz")))
    assert d.input_shape == (1, 5) and len(d.test) == 6
    np.savez(tmp_path / "b.npz", x_train=rng.random((3, 5)))
    with pytest.raises(DataError, match="lacks y_train, x_test, y_test"):
        load_data(data_cfg(name="npz", path=str(tmp_path / "b.npz")))
    np.savez(tmp_path / "c.npz", x_train=np.array([{"a": 1}], dtype=object), y_train=[0],
             x_test=[[0.0]], y_test=[0])
    with pytest.raises(DataError, match="load only through pickle"):
        load_data(data_cfg(name="npz", path=str(tmp_path / "c.npz")))


def test_synthetic_is_deterministic_and_in_range():
    a = load_data(data_cfg(name="synthetic", shape=[3, 4, 4], num_classes=3))
    b = load_data(data_cfg(name="synthetic", shape=[3, 4, 4], num_classes=3))
    assert torch.equal(a.train.x, b.train.x) and a.input_shape == (3, 4, 4)
    assert float(a.train.x.min()) >= 0.0 and float(a.train.x.max()) <= 1.0
    assert len(a.mean) == 3 and all(s > 0 for s in a.std)
