"""Folders a user hands over (a Hugging Face model folder, an image folder, a datasets
``save_to_disk`` folder) and the files nnopt reads from them: a link out of the folder, a FIFO
or a socket named like a model file, a state.json naming files elsewhere, a config that would
divide by zero. Each is one line and exit 2, and nothing outside the folder is read."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket

import numpy as np
import pytest
import torch
from hostile import cli, recipe_file  # noqa: F401  (fixtures)
from PIL import Image
from safetensors.torch import save_file

from conftest import tiny_raw
from nnopt.core.errors import DataError, NnoptError
from nnopt.data import load_data
from nnopt.data.hf_datasets import tokenizer_file
from nnopt.models import build_model
from nnopt.recipe import resolve

BERT = {"model_type": "bert", "vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32}


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks, as a FIFO opened for reading
    does until someone writes to it."""
    def expire(*_):  # noqa: ANN002
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def hf_folder(tmp_path):
    """A Hugging Face model folder (config.json, model.safetensors) and, outside it, a config
    and a safetensors file with a key of its own."""
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(BertConfig(**{k: v for k, v in BERT.items() if k != "model_type"})
              ).save_pretrained(folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text(json.dumps(BERT))
    save_file({"secret.weight": torch.ones(3)}, outside / "secret.safetensors")
    return folder, outside


def _build(folder) -> torch.nn.Module:
    return build_model(resolve(tiny_raw(model={"hf": str(folder)})).model, (16,), 3)


def test_hf_folder_files_that_link_out_are_refused(hf_folder):
    folder, outside = hf_folder
    assert _build(folder).spec["model"]["hf"]["hidden_size"] == 16  # the folder as written
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(outside / "config.json")
    with pytest.raises(DataError, match="points outside"):
        _build(folder)
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(BERT))
    (folder / "extra.safetensors").symlink_to(outside / "secret.safetensors")
    with pytest.raises(DataError, match="extra.safetensors points outside"):
        _build(folder)
    (folder / "extra.safetensors").unlink()
    inner = folder / "sub"
    inner.mkdir()
    (inner / "real.json").write_text(json.dumps(BERT))  # a link inside the folder is fine
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(inner / "real.json")
    assert _build(folder).spec["model"]["hf"]["num_attention_heads"] == 2


def test_a_fifo_or_socket_named_like_a_model_file_is_refused_at_once(hf_folder, tmp_path):
    folder, _ = hf_folder
    os.mkfifo(folder / "blocking.safetensors")
    with deadline(20), pytest.raises(DataError, match="is a FIFO, not a regular file"):
        _build(folder)
    os.unlink(folder / "blocking.safetensors")
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")
    with deadline(20), pytest.raises(DataError, match="is a FIFO"):
        _build(folder)
    os.unlink(folder / "config.json")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "config.json"))
        with deadline(20), pytest.raises(DataError, match="is a socket"):
            _build(folder)
    finally:
        sock.close()


def test_a_tokenizer_that_links_out_of_its_folder_is_refused(hf_folder):
    folder, outside = hf_folder
    (outside / "tokenizer.json").write_text("{}")
    (folder / "tokenizer.json").symlink_to(outside / "tokenizer.json")
    with pytest.raises(DataError, match="tokenizer.json points outside"):
        tokenizer_file(str(folder))
    (folder / "tokenizer.json").unlink()
    os.mkfifo(folder / "tokenizer.json")
    with deadline(20), pytest.raises(DataError, match="is a FIFO"):
        tokenizer_file(str(folder))


@pytest.mark.parametrize("key, value, needle", [
    ("num_attention_heads", 0, "num_attention_heads must be a whole number in 1..4096, got 0"),
    ("hidden_size", -4, "hidden_size must be a whole number"),
    ("num_hidden_layers", 10 ** 9, "num_hidden_layers must be a whole number in 1..1024"),
    ("num_attention_heads", 3, "hidden_size 16 is not a multiple of num_attention_heads 3"),
    ("intermediate_size", 2.5, "intermediate_size must be a whole number"),
])
def test_an_hf_config_that_cannot_build_is_one_line(key, value, needle, hf_folder, cli,
                                                    recipe_file, tmp_path):
    raw = {"data": {"name": "sentences", "size": 60, "max_length": 16},
           "evaluate": ["accuracy"], "stages": [{"train": {"epochs": 1}}]}
    cli("run", recipe_file(model={"hf": {**BERT, key: value}}, **raw), "--out",
        tmp_path / "o").one_line_error(needle)
    folder, _ = hf_folder  # the same config read from a model folder
    (folder / "config.json").write_text(json.dumps({**BERT, key: value}))
    cli("run", recipe_file(model={"hf": str(folder)}, name="f.yaml", **raw), "--out",
        tmp_path / "o").one_line_error(needle)
    assert not (tmp_path / "o").exists()


def _image_folder(root, outside) -> None:
    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray((rng.random((6, 6, 3)) * 100 + 100 * k).astype(np.uint8)).save(
                root / name / f"{i}.png")
    outside.mkdir()
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(outside / "private.png")


def _images(root):
    return load_data(resolve(tiny_raw(data={"name": "imagefolder", "root": str(root)})).data)


def test_image_folder_links_and_fifos_are_refused(tmp_path):
    root, outside = tmp_path / "images", tmp_path / "outside"
    _image_folder(root, outside)
    data = _images(root)
    assert len(data.train) + len(data.val) + len(data.test) == 8
    (root / "cat" / "x.png").symlink_to(outside / "private.png")
    with pytest.raises(DataError, match=r"x.png points outside"):
        _images(root)
    (root / "cat" / "x.png").unlink()
    (root / "owl").symlink_to(outside, target_is_directory=True)  # a class folder elsewhere
    with pytest.raises(DataError, match="owl is a link to .*outside the image folder"):
        _images(root)
    (root / "owl").unlink()
    (root / "dog" / "more").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataError, match="more is a link to .*outside the image folder"):
        _images(root)
    (root / "dog" / "more").unlink()
    os.mkfifo(root / "dog" / "y.png")
    with deadline(20), pytest.raises(DataError, match="y.png is a FIFO"):
        _images(root)


def _disk_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "disk"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"a": [0.1 * i for i in range(20)],
                                             "label": [i % 2 for i in range(20)]}),
        "test": datasets.Dataset.from_dict({"a": [0.5, 1.5], "label": [0, 1]}),
    }).save_to_disk(folder)
    return folder


def _hf(folder):
    return load_data(resolve(tiny_raw(data={"name": "hf-dataset", "train": str(folder),
                                            "features": ["a"]})).data)


@pytest.mark.parametrize("where", ["../../outside.arrow", "ABSOLUTE", "sub/x.arrow"])
def test_a_state_json_naming_files_elsewhere_is_refused(where, tmp_path):
    folder = _disk_dataset(tmp_path)
    assert len(_hf(folder).test) == 2
    state_file = folder / "train" / "state.json"
    state = json.loads(state_file.read_text())
    data = folder / "train" / state["_data_files"][0]["filename"]
    (tmp_path / "outside.arrow").write_bytes(data.read_bytes())
    name = str(tmp_path / "outside.arrow") if where == "ABSOLUTE" else where
    state["_data_files"][0]["filename"] = name
    state_file.write_text(json.dumps(state))
    with pytest.raises(DataError, match="only plain file names inside the folder are read"):
        _hf(folder)


def test_dataset_splits_and_data_files_that_leave_the_folder_are_refused(tmp_path):
    folder = _disk_dataset(tmp_path)
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "../elsewhere"]}))
    with pytest.raises(DataError, match="plain split names"):
        _hf(folder)
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    state = json.loads((folder / "test" / "state.json").read_text())
    data = folder / "test" / state["_data_files"][0]["filename"]
    (tmp_path / "copy.arrow").write_bytes(data.read_bytes())
    data.unlink()
    data.symlink_to(tmp_path / "copy.arrow")  # a plain name, but a link out
    with pytest.raises(DataError, match="points outside"):
        _hf(folder)
    data.unlink()
    os.mkfifo(data)
    with deadline(20), pytest.raises(DataError, match="is a FIFO"):
        _hf(folder)


def test_a_fifo_given_as_a_data_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "t.csv"
    os.mkfifo(fifo)
    for data in ({"name": "tabular", "path": str(fifo), "label": "y"},
                 {"name": "npz", "path": str(fifo)},
                 {"name": "hf-dataset", "train": str(fifo), "format": "csv",
                  "features": ["a"]}):
        with deadline(20), pytest.raises(NnoptError, match="is a FIFO, not a regular file"):
            load_data(resolve(tiny_raw(data=data)).data)
