"""Data from the user's files (issue 28): an image folder, CSV and Parquet tables, Hugging Face
datasets on disk (a text column tokenized); each read back against what was written."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_raw
from nnopt.core.errors import DataError, RecipeError
from nnopt.data import load_data
from nnopt.models.minilm import tokenize
from nnopt.recipe import check_inputs, load_recipe, resolve
from nnopt.runner import run_recipe

CLASSES = ["cat", "dog", "owl"]


def _images(root, per_class: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """One folder per class of 12x10 RGB images, PNG and JPEG mixed; each class a brightness."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {}
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = (rng.random((12, 10, 3)) * 60 + 90 * k).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
            written.setdefault(name, []).append(arr)
    return written


def test_an_image_folder_written_here_is_read_and_trained_on(tmp_path):
    written = _images(tmp_path / "imgs" / "train", 12)
    _images(tmp_path / "imgs" / "test", 4, seed=1)
    (tmp_path / "imgs" / "train" / "notes.txt").write_text("not an image")
    raw = tiny_raw(data={"name": "imagefolder", "root": str(tmp_path / "imgs"),
                         "val_fraction": 0.0},
                   model={"name": "cnn", "width": 4, "hidden": 8}, evaluate=["accuracy"],
                   stages=[{"train": {"epochs": 8, "batch_size": 8, "lr": 0.02}}])
    resolved = resolve(raw)
    data = load_data(resolved.data)
    assert data.class_names == CLASSES and data.input_shape == (3, 12, 10)
    assert len(data.train) == 36 and len(data.test) == 12
    png = written["dog"][1]  # lossless: equal to the array written, scaled to [0, 1]
    rows = (data.train.y == 1).nonzero().flatten()
    assert any(torch.allclose(data.train.x[i], torch.from_numpy(png).permute(2, 0, 1) / 255.0)
               for i in rows)
    report = run_recipe(resolved, tmp_path / "run")
    assert report.stages[0].metrics["accuracy"] > 0.9  # the classes differ in brightness


def test_image_folder_resize_grayscale_and_holdout(tmp_path):
    _images(tmp_path / "imgs", 10)
    data = load_data(resolve(tiny_raw(data={"name": "imagefolder", "root": str(tmp_path / "imgs"),
                                            "size": [8, 8], "channels": 1})).data)
    assert data.input_shape == (1, 8, 8)
    assert len(data.test) == 6 and sorted(data.test.y.tolist()) == [0, 0, 1, 1, 2, 2]
    (tmp_path / "imgs" / "owl" / "big.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="big.png cannot be read"):
        load_data(resolve(tiny_raw(data={"name": "imagefolder", "root": str(tmp_path / "imgs"),
                                         "size": [8, 8]})).data)
    with pytest.raises(DataError, match="image folder not found"):
        load_data(resolve(tiny_raw(data={"name": "imagefolder", "root": str(tmp_path / "no")})).data)


def _table(rows: int = 60) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    x = rng.random((rows, 3)).astype(np.float32)
    return x, ["small" if v < 0.5 else "large" for v in x[:, 0]]


def test_csv_and_parquet_tables(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = _table()
    with (tmp_path / "t.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "size"])
        w.writerows([[*map(repr, map(float, row)), label] for row, label in zip(x, y, strict=True)])
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "size": y}),
                   tmp_path / "t.parquet")
    got = []
    for path in ("t.csv", "t.parquet"):
        data = load_data(resolve(tiny_raw(data={
            "name": "tabular", "path": str(tmp_path / path), "label": "size",
            "features": ["a", "c"], "val_fraction": 0.0})).data)
        assert data.input_shape == (1, 2) and data.class_names == ["large", "small"]
        assert len(data.train) == 48 and len(data.test) == 12
        got.append(data)
    torch.testing.assert_close(got[0].train.x, got[1].train.x)
    assert torch.equal(got[0].test.y, got[1].test.y)
    small = (got[0].train.x[:, 0, 0] < 0.5).long()  # feature a decides the label
    assert torch.equal(got[0].train.y, small)
    with pytest.raises(DataError, match="no label column 'kind'"):
        load_data(resolve(tiny_raw(data={"name": "tabular", "path": str(tmp_path / "t.csv"),
                                         "label": "kind"})).data)


def test_hf_datasets_on_disk_text_tokenized(tmp_path, write_recipe):
    datasets = pytest.importorskip("datasets")
    from nnopt.data.sentences import make_sentences

    text, labels = make_sentences(120, seed=3)
    datasets.Dataset.from_dict({"sentence": text, "label": labels}).to_parquet(tmp_path / "s.parquet")
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": text[:90], "label": labels[:90]}),
        "test": datasets.Dataset.from_dict({"sentence": text[90:], "label": labels[90:]}),
    }).save_to_disk(tmp_path / "disk")
    with (tmp_path / "s.jsonl").open("w") as f:
        import json
        f.writelines(json.dumps({"sentence": t, "label": k}) + "\n" for t, k in zip(text, labels,
                                                                                    strict=True))
    base = {"name": "hf-dataset", "text": "sentence", "tokenizer": "minilm", "max_length": 16,
            "val_fraction": 0.0}
    disk = load_data(resolve(tiny_raw(data={**base, "train": str(tmp_path / "disk")})).data)
    assert len(disk.train) == 90 and len(disk.test) == 30 and disk.input_shape == (16,)
    ids = tokenize(text[90:], 16).float()
    torch.testing.assert_close(disk.test.x[:, :ids.shape[1]], ids)
    for file in ("s.parquet", "s.jsonl"):
        data = load_data(resolve(tiny_raw(data={**base, "train": str(tmp_path / file)})).data)
        assert len(data.train) + len(data.test) == 120 and data.num_classes == 4
    recipe = write_recipe(tiny_raw(data={**base, "train": "s.parquet"}))  # beside the recipe
    resolved = load_recipe(recipe)
    check_inputs(resolved)  # 'minilm' names the package's tokenizer, not a file here
    assert resolved.data.tokenizer == "minilm"
    assert resolved.data.train == str(tmp_path / "s.parquet")
    with pytest.raises(RecipeError, match="needs a tokenizer"):
        resolve(tiny_raw(data={"name": "hf-dataset", "train": "x.parquet", "text": "sentence"}))
    with pytest.raises(DataError, match="no column 'review'"):
        load_data(resolve(tiny_raw(data={**base, "train": str(tmp_path / "s.parquet"),
                                         "text": "review"})).data)
