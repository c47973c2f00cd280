from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from conftest import tiny_raw
from nnopt.core.errors import ModelFileError, RecipeError
from nnopt.core.registry import MODELS
from nnopt.measure.runtimes import export_onnx
from nnopt.models import build_model, load_model, save_model
from nnopt.recipe import resolve

ZOO = [e.name for e in MODELS.entries() if "tiny" in e.meta]


def tiny_model(name: str, num_classes: int = 5) -> tuple[nn.Module, tuple[int, ...]]:
    entry = MODELS.get(name)
    shape = (2, 24) if entry.meta.get("inputs") == "sequence" else (1, 16, 16)
    cfg = entry.config.model_validate({"name": name, **entry.meta["tiny"]})
    torch.manual_seed(0)
    model = build_model(cfg, shape, num_classes, [0.5] * shape[0], [0.2] * shape[0])
    return model, shape


def test_zoo_covers_the_issue():
    assert {"mlp", "lenet5", "cnn", "resnet", "cnn1d", "vit", "capsnet", "wann",
            "convattn"} <= set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_forward_shape_and_train_step(name):
    model, shape = tiny_model(name)
    x = torch.rand(4, *shape)
    out = model(x)
    assert out.shape == (4, 5)
    own = getattr(model.net, "training_task", None)  # a model's own loss (capsnet's margin)
    if own is not None:
        step = own()(model, x, torch.tensor([0, 1, 2, 3]))
        assert torch.allclose(step["output"], out)
        step["loss"].backward()
    else:
        out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ZOO)
def test_save_reload_is_bit_identical(tmp_path, name):
    model, shape = tiny_model(name)
    model.train()
    model(torch.rand(8, *shape))  # move BN running stats away from their init
    model.eval()
    save_model(model, tmp_path / name)
    again = load_model(tmp_path / name)
    x = torch.rand(6, *shape)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert json.loads((tmp_path / name / "spec.json").read_text())["model"]["name"] == name


@pytest.mark.parametrize("name", ZOO)
def test_onnx_export_matches_torch(tmp_path, name):
    model, shape = tiny_model(name)
    model.eval()
    path = export_onnx(model, tmp_path / "m.onnx", torch.rand(1, *shape))
    x = torch.rand(3, *shape)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_normalisation_lives_inside_the_model():
    model, shape = tiny_model("mlp")
    x = torch.rand(2, *shape)
    assert torch.allclose(model.normalize(x), (x - 0.5) / 0.2)


def test_lenet5_is_the_classic_shape():
    cfg = MODELS.get("lenet5").config(name="lenet5")
    model = build_model(cfg, (1, 28, 28), 10)
    n = sum(p.numel() for p in model.parameters())
    assert n == 61706  # LeNet-5 with padding on 28x28 inputs, as in the literature


def test_mlp_default_is_lenet_300_100():
    model = build_model(MODELS.get("mlp").config(name="mlp"), (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 266610


def test_resnet20_parameter_count():
    model = build_model(MODELS.get("resnet").config(name="resnet", depth=20), (3, 32, 32), 10)
    assert abs(sum(p.numel() for p in model.parameters()) - 272_474) < 1000  # He et al.: 0.27M


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(RecipeError, match="6n\\+2"):
        resolve(tiny_raw(model={"name": "resnet", "depth": 21}))


def test_user_factory_model_saves_and_reloads(tmp_path):
    r = resolve(tiny_raw(model={"factory": "helpers.user_models:small_net", "kwargs": {"hidden": 3}}))
    model = build_model(r.model, (1, 4, 4), 3)
    assert model(torch.rand(2, 1, 4, 4)).shape == (2, 3)
    save_model(model, tmp_path / "f")
    with pytest.raises(ModelFileError, match="built by the factory 'helpers.user_models"):
        load_model(tmp_path / "f")  # a folder cannot vouch for the code it names
    again = load_model(tmp_path / "f", trust=["helpers.user_models:small_net"])
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(model.eval()(x), again(x))


def test_bad_factories_are_named():
    for ref, needle in [("helpers.nope:f", "cannot import"),
                        ("helpers.user_models:missing", "has no attribute"),
                        ("helpers.user_models:not_a_model", "not an nn.Module")]:
        r = resolve(tiny_raw(model={"factory": ref}))
        with pytest.raises(RecipeError, match=needle):
            build_model(r.model, (1, 4, 4), 3)


def test_corrupt_or_mismatched_model_files(tmp_path):
    model, _ = tiny_model("mlp")
    save_model(model, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(b"\x00" * 40)
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "spec.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="spec.json is corrupt"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelFileError, match="spec.json is missing"):
        load_model(tmp_path / "empty")
    save_model(model, tmp_path / "n")
    spec = json.loads((tmp_path / "n" / "spec.json").read_text())
    spec["model"]["hidden"] = [9]
    (tmp_path / "n" / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ModelFileError, match="do not match the spec"):
        load_model(tmp_path / "n")


def test_cnn_without_the_last_pool_averages_the_whole_last_map():
    cfg = MODELS.get("cnn").config(name="cnn", width=4, depth=4, hidden=0, dropout=0,
                                   head="avgpool", pool_last=False)
    model = build_model(cfg, (1, 28, 28), 10)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3  # 28 -> 14 -> 7 -> 3; the global average sees all 3x3 positions
    features = model.net[0]
    x = model.normalize(torch.randn(2, 1, 28, 28))
    model.eval()
    with torch.no_grad():
        fmap = features[:-2](x)  # up to the global average
        assert fmap.shape[-2:] == (3, 3)
        pooled = features(x)
    assert torch.allclose(pooled, fmap.mean((2, 3)), atol=1e-6)
