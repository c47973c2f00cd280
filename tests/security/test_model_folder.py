"""A model folder is data: loading it never imports or calls anything it names."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import onnx
import pytest
import torch
from hostile import cli, recipe_file  # noqa: F401  (fixtures)
from onnx import TensorProto, helper, numpy_helper

from nnopt.compress.cluster.codec import MAGIC
from nnopt.core.errors import ModelFileError
from nnopt.core.registry import MODELS
from nnopt.models import build_model, load_model, save_model

HOSTILE_FACTORIES = ["os:system", "subprocess:run", "builtins:exec", "shutil:rmtree"]


def saved_model(folder: Path, **cfg: object) -> Path:
    config = MODELS.get("cnn").config.model_validate({"name": "cnn", "width": 4, "hidden": 8,
                                                      **cfg})
    torch.manual_seed(0)
    save_model(build_model(config, (1, 8, 8), 10, [0.5], [0.2]), folder)
    return folder


def edit_spec(folder: Path, **changes: object) -> dict:
    spec = json.loads((folder / "spec.json").read_text())
    spec.update(changes)
    (folder / "spec.json").write_text(json.dumps(spec))
    return spec


def hostile(ref: str, pwned: Path) -> dict:
    kwargs = {"system": {"command": f"touch {pwned}"},
              "run": {"args": ["touch", str(pwned)]},
              "exec": {"source": f"open({str(pwned)!r}, 'w')"},
              "rmtree": {"path": str(pwned.parent / "victim")}}[ref.split(":")[1]]
    return {"name": "factory", "factory": ref, "kwargs": kwargs}


@pytest.mark.parametrize("ref", HOSTILE_FACTORIES)
def test_spec_naming_a_factory_runs_nothing(ref, tmp_path, cli, recipe_file):
    pwned, victim = tmp_path / "pwned", tmp_path / "victim"
    victim.mkdir()
    folder = saved_model(tmp_path / "m")
    edit_spec(folder, model=hostile(ref, pwned))
    with pytest.raises(ModelFileError, match=f"built by the factory '{ref}'"):
        load_model(folder)
    cli("run", recipe_file(model={"path": str(folder)}), "--out", tmp_path / "o"
        ).one_line_error(f"--trust {ref}")
    teacher = recipe_file(stages=[{"train": {"epochs": 1}},
                                  {"distill": {"teacher": str(folder), "train": {"epochs": 1}}}])
    cli("run", teacher, "--out", tmp_path / "o", "--quiet").one_line_error("cannot vouch")
    assert not pwned.exists() and victim.is_dir() and not (tmp_path / "o").exists()


def test_trusted_factory_reloads_and_trust_is_per_factory(tmp_path, cli, recipe_file):
    ref = "helpers.user_models:small_net"
    run = recipe_file(model={"factory": ref})
    assert cli("run", run, "--out", tmp_path / "a", "--quiet", outside_ok=()).code == 0
    folder = tmp_path / "a" / "models" / "train"
    assert json.loads((folder / "spec.json").read_text())["model"]["factory"] == ref
    again = recipe_file(name="again.yaml", model={"path": str(folder)}, stages=[])
    cli("run", again, "--out", tmp_path / "b").one_line_error(f"--trust {ref}")
    cli("run", again, "--out", tmp_path / "b", "--trust", "helpers.user_models:two_branch"
        ).one_line_error("cannot vouch")
    assert cli("run", again, "--out", tmp_path / "b", "--quiet", "--trust", ref).code == 0
    trusted = recipe_file(name="t.yaml", model={"path": str(folder)}, stages=[], trust=[ref])
    assert cli("run", trusted, "--out", tmp_path / "c", "--quiet").code == 0
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(load_model(folder, trust=[ref])(x), load_model(folder, trust=[ref])(x))
    cli("validate", again, "--trust", "not a ref").one_line_error("--trust 'not a ref'")


def test_nnc_header_and_int8_source_are_checked_too(tmp_path):
    pwned = tmp_path / "pwned"
    spec = json.loads((saved_model(tmp_path / "m") / "spec.json").read_text())
    spec["model"] = hostile("os:system", pwned)
    header = zlib.compress(json.dumps({"spec": spec, "tensors": []}).encode())
    nnc = tmp_path / "x.nnc"
    nnc.write_bytes(MAGIC + struct.pack("<I", len(header)) + header)
    with pytest.raises(ModelFileError, match="built by the factory 'os:system'"):
        load_model(nnc)
    int8 = tmp_path / "q"
    int8.mkdir()
    (int8 / "model.safetensors").write_bytes((tmp_path / "m" / "model.safetensors").read_bytes())
    (int8 / "spec.json").write_text(json.dumps({
        "format": "nnopt-torch-int8", "source": spec,
        "quantization": {"method": "torch-static"}}))
    with pytest.raises(ModelFileError, match="built by the factory 'os:system'"):
        load_model(int8)
    assert not pwned.exists()


def test_nnc_header_bomb_is_refused(tmp_path):
    header = zlib.compress(b"[" + b" " * (80 * 2 ** 20) + b"]", 9)  # 80 MiB of JSON in ~80 kB
    nnc = tmp_path / "bomb.nnc"
    nnc.write_bytes(MAGIC + struct.pack("<I", len(header)) + header)
    with pytest.raises(ModelFileError, match="inflates to more than"):
        load_model(nnc)


@pytest.mark.parametrize("change, needle", [
    ({"model": {"name": "saved", "path": "/etc"}}, "cannot point at another saved model"),
    ({"model": {"name": "nope"}}, "unknown model 'nope'"),
    ({"model": "cnn"}, "'model' must be an object"),
    ({"input_shape": [1, 10 ** 9, 10 ** 9]}, "'input_shape' must list"),
    ({"input_shape": "1,8,8"}, "'input_shape' must list"),
    ({"num_classes": 10 ** 12}, "'num_classes' must be an integer"),
    ({"normalize": {"mean": [0.5], "std": [0.0]}}, "positive 'std'"),
    ({"transforms": [{"kind": "os.system"}]}, "transform 'os.system', which this nnopt lacks"),
    ({"transforms": "fuse"}, "'transforms' must be a list"),
    ({"structure": {"tensors": {"net.0.0.weight": "big"}}}, "structure tensor 'net.0.0.weight'"),
    ({"structure": {"tensors": {"net.99.weight": [4, 1, 3, 3]}}}, "lacks"),
    ({"structure": {"attrs": {"net.0.0": {"forward": 3}}}}, "not a size attribute"),
    ({"structure": {"tensors": {"net.0.0.weight": [10 ** 9, 10 ** 9]}}}, "do not match"),
    ({"model": {"name": "cnn", "width": 10 ** 8, "hidden": 8}}, "do not match the spec"),
    ({"model": {"name": "cnn", "width": "wide"}}, "can build: model.width: Input should be a valid integer"),
])
def test_bad_spec_fields_are_one_clear_error(change, needle, tmp_path):
    folder = saved_model(tmp_path / "m")
    edit_spec(folder, **change)
    with pytest.raises(ModelFileError, match=needle) as info:
        load_model(folder)
    assert "\n" not in str(info.value)


def test_spec_that_would_allocate_terabytes_fails_fast(tmp_path, cli, recipe_file):
    folder = saved_model(tmp_path / "m")
    edit_spec(folder, model={"name": "cnn", "width": 10 ** 6, "hidden": 10 ** 6})
    cli("run", recipe_file(model={"path": str(folder)}), "--out", tmp_path / "o"
        ).one_line_error("weights do not match the spec")


def _onnx_with_external(folder: Path, location: str) -> None:
    w = numpy_helper.from_array(torch.ones(64, 10).numpy(), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 10])], [w])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(proto, str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    if location != "weights.bin":
        proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        for entry in proto.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        (folder / "model.onnx").write_bytes(proto.SerializeToString())
    (folder / "spec.json").write_text(json.dumps({
        "format": "nnopt-onnx", "model": {"name": "cnn"}, "input_shape": [1, 8, 8],
        "num_classes": 10}))


def test_onnx_external_data_is_read_from_the_model_folder_only(tmp_path, monkeypatch):
    folder = tmp_path / "onnx"
    folder.mkdir()
    _onnx_with_external(folder, "weights.bin")
    monkeypatch.chdir(tmp_path)  # not the model's folder: the data must still be found
    out = load_model(folder)(torch.ones(2, 1, 8, 8))
    assert torch.equal(out, torch.full((2, 10), 64.0))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 4096)
    for where in ["../secret.bin", str(secret), "missing.bin"]:
        _onnx_with_external(folder, where)
        with pytest.raises(ModelFileError, match="which is not a file inside"):
            load_model(folder)


def test_every_zoo_model_is_counted_without_weights():
    from nnopt.models.base import weightless_count

    for name in MODELS.names():
        entry = MODELS.get(name)
        if entry.meta.get("loads") or entry.meta.get("vouch") or "tiny" not in entry.meta:
            continue
        shape = (2, 24) if entry.meta.get("inputs") == "sequence" else (1, 16, 16)
        if entry.meta.get("inputs") == "tokens":
            continue
        cfg = entry.config.model_validate({"name": name, **entry.meta["tiny"]})
        real = build_model(cfg, shape, 5).net.state_dict()
        assert weightless_count(cfg, shape, 5) == sum(t.numel() for t in real.values()), name
    assert sys.modules.get("nnopt")  # the loop above ran over the registry


@pytest.mark.parametrize("transform, needle", [
    ({"kind": "ensemble", "members": 10 ** 9}, "members must be an integer in 1..64"),
    ({"kind": "mc_dropout", "samples": 10 ** 9, "p": 0.1}, "samples must be an integer"),
    ({"kind": "mc_dropout", "samples": 4, "seed": 2 ** 80}, "seed must be an integer"),
    ({"kind": "bayes", "layers": [], "prior_sigma": 0.1, "samples": -1}, "samples"),
    ({"kind": "calibrate", "method": "histogram", "size": 10 ** 9}, "head size"),
    ({"kind": "calibrate", "method": "os.system"}, "unknown calibration head"),
    ({"kind": "cast", "dtype": "complex"}, "can build"),
    ({"kind": "fuse", "pairs": [["net.nope", "net.0.1"]]}, "can build"),
    ({"kind": "factorize", "layers": {"net.0.0": {"method": "svd", "ranks": [10 ** 7]}}},
     "can build"),
    ({"kind": "qat"}, "can build"),
])
def test_hostile_transform_records_are_refused_fast(transform, needle, tmp_path):
    import time

    folder = saved_model(tmp_path / "m")
    edit_spec(folder, transforms=[transform])
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=needle):
        load_model(folder)
    assert time.perf_counter() - start < 10


def test_files_of_a_model_folder_are_read_from_inside_it_only(tmp_path):
    folder = saved_model(tmp_path / "m")
    weights = folder / "model.safetensors"
    inside = folder / "weights.bin"
    weights.rename(inside)
    weights.symlink_to(inside.name)  # a link within the folder is fine
    assert load_model(folder) is not None
    weights.unlink()
    weights.symlink_to("/dev/zero")  # not a regular file: never read
    with pytest.raises(ModelFileError, match="model.safetensors is missing"):
        load_model(folder)
    weights.unlink()
    inside.rename(tmp_path / "outside.bin")
    weights.symlink_to(tmp_path / "outside.bin")
    with pytest.raises(ModelFileError, match="points outside"):
        load_model(folder)
    weights.unlink()
    weights.symlink_to(tmp_path)
    with pytest.raises(ModelFileError, match="model.safetensors is missing"):
        load_model(folder)
    spec = folder / "spec.json"
    spec.rename(tmp_path / "elsewhere.json")
    spec.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ModelFileError, match="points outside"):
        load_model(folder)
