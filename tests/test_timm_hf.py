"""Models from timm and Hugging Face transformers through nnopt's steps (issue 28): a timm ResNet-18
and MobileNetV3-small at 32x32 through channel pruning -> int8 -> temperature scaling, saved and
reloaded; a tiny BERT built from a config through head/FFN pruning -> int8 -> distillation."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import save_file

from conftest import tiny_raw
from nnopt.core.errors import ModelFileError, RecipeError
from nnopt.data import load_data
from nnopt.models import build_model
from nnopt.models.saving import load_model
from nnopt.recipe import resolve
from nnopt.runner import run_recipe

pytest.importorskip("transformers")

ORT = [{"name": "cpu", "runtime": "onnxruntime", "batch_size": 4, "threads": 1}]


def _accuracy(model: torch.nn.Module, data) -> float:  # noqa: ANN001
    with torch.no_grad():
        return (model.eval()(data.test.x).argmax(1) == data.test.y).double().mean().item()


def _reloads(out, report, data) -> None:  # noqa: ANN001
    """Every stage's saved model reloads and scores what the run measured."""
    for stage in report.stages:
        again = load_model(out / "models" / stage.name)
        assert _accuracy(again, data) == pytest.approx(stage.metrics["accuracy"], abs=1e-9)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_100"])
def test_timm_model_through_channel_pruning_int8_and_temperature(tmp_path, name):
    raw = tiny_raw(data={"name": "synthetic", "shape": [1, 32, 32], "num_classes": 4,
                         "train_size": 64, "test_size": 32},
                   model={"timm": name}, targets=ORT, evaluate=["accuracy", "nll", "params"],
                   stages=[{"train": {"epochs": 1, "batch_size": 32, "lr": 0.01}},
                           {"prune": {"method": "channel", "amount": 0.5,
                                      "finetune": {"epochs": 1, "batch_size": 32}}},
                           {"quantize": {"method": "ort-static", "calibration_size": 16}},
                           {"calibrate": {"method": "temperature"}}])
    resolved = resolve(raw)
    report = run_recipe(resolved, tmp_path / "run")
    train, prune, quant, cal = report.stages
    assert prune.metrics["params"] < 0.5 * train.metrics["params"]
    channels = prune.details["channels"]
    if name.startswith("mobilenet"):  # depthwise and squeeze-excitation layers were pruned too
        assert any(".conv_dw." in k for k in channels) and any(".se." in k for k in channels)
    else:  # residual blocks: the block outputs that the shortcut adds to shrank together
        assert any("downsample" in k for k in channels)
    assert quant.details["deployed"]["cpu"]["precision"] == "int8"
    assert cal.details["calibration"]["temperature"] > 0
    assert "model.safetensors" in {p.name for p in (tmp_path / "run/models/train").iterdir()}
    _reloads(tmp_path / "run", report, load_data(resolved.data))


def test_a_timm_teacher_distils_into_a_timm_student_that_is_attacked(tmp_path):
    raw = tiny_raw(data={"name": "synthetic", "shape": [3, 32, 32], "num_classes": 3,
                         "train_size": 48, "test_size": 16},
                   model={"timm": "mobilenetv3_large_100"},
                   evaluate=["accuracy", "params", "robust"],
                   metric_options={"robust": {"attacks": ["fgsm", "pgd"], "examples": 8,
                                              "steps": 2, "curve": []}},
                   stages=[{"train": {"epochs": 1, "batch_size": 16, "lr": 0.01}},
                           {"distill": {"teacher": "train",
                                        "student": {"timm": "mobilenetv3_small_050"},
                                        "train": {"epochs": 1, "batch_size": 16}}}])
    report = run_recipe(resolve(raw), tmp_path / "run")
    teacher, student = report.stages
    assert student.details["distillation"]["teacher_params"] == teacher.metrics["params"]
    assert student.metrics["params"] < teacher.metrics["params"] / 5
    for stage in report.stages:  # both attacked (white-box, through their own gradients)
        for attack in ("fgsm", "pgd"):
            assert 0 <= stage.metrics[f"robust_accuracy/{attack}"] <= \
                stage.metrics["clean_accuracy_attacked"]
    spec = json.loads((tmp_path / "run/models/distill/spec.json").read_text())
    assert spec["model"] == {"name": "timm", "timm": "mobilenetv3_small_050", "kwargs": {}}


def test_timm_weights_from_a_local_safetensors_file(tmp_path):
    """Pretrained weights (here: another model's, saved as safetensors) are loaded; the
    classifier for another class count keeps fresh weights; the saved spec does not point at
    the file (a reload reads the run's own weights)."""
    donor = build_model(resolve(tiny_raw(model={"timm": "resnet18"})).model, (3, 32, 32), 1000)
    save_file({k.removeprefix("net."): v.contiguous() for k, v in donor.state_dict().items()
               if k.startswith("net.")}, tmp_path / "w.safetensors")
    cfg = resolve(tiny_raw(model={"timm": "resnet18", "weights": str(tmp_path / "w.safetensors")}
                           )).model
    model = build_model(cfg, (1, 32, 32), 4)
    stem = donor.net.conv1.weight.sum(1, keepdim=True)  # RGB stem summed for one channel
    torch.testing.assert_close(model.net.conv1.weight, stem)
    torch.testing.assert_close(model.net.layer1[0].conv1.weight, donor.net.layer1[0].conv1.weight)
    assert model.net.fc.weight.shape == (4, 512) and "weights" not in model.spec["model"]


def test_timm_config_refuses_what_would_unpickle_or_download():
    with pytest.raises(RecipeError, match="may not set pretrained"):
        resolve(tiny_raw(model={"timm": "resnet18", "kwargs": {"pretrained": True}}))
    with pytest.raises(RecipeError, match="model.timm"):
        resolve(tiny_raw(model={"timm": "hf-hub:timm/resnet18.a1_in1k"}))
    with pytest.raises(RecipeError, match="unknown timm model 'resnet1'"):
        run_recipe(resolve(tiny_raw(data={"name": "synthetic", "shape": [3, 8, 8]},
                                    model={"timm": "resnet1"})), "unused")
    assert not any(n.split(".")[0] == "torchvision" for n in sys.modules)  # stand-in removed


BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 32}


def test_tiny_bert_through_head_pruning_int8_and_distillation(tmp_path):
    small = {**BERT, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32}
    raw = tiny_raw(data={"name": "sentences", "size": 200, "max_length": 16},
                   model={"hf": BERT}, targets=ORT, evaluate=["accuracy", "nll", "params"],
                   stages=[{"train": {"epochs": 2, "batch_size": 32, "lr": 0.003}},
                           {"prune": {"method": "heads", "heads": 0.5, "ffn": 0.5,
                                      "finetune": {"epochs": 1, "batch_size": 32}}},
                           {"quantize": {"method": "ort-dynamic"}},
                           {"from": "train", "distill": {
                               "teacher": "train", "student": {"hf": small},
                               "train": {"epochs": 1, "batch_size": 32}}},
                           {"calibrate": {"method": "temperature"}}])
    resolved = resolve(raw)
    report = run_recipe(resolved, tmp_path / "run")
    train, prune, quant, distill, cal = report.stages
    assert prune.details["heads"] == {f"net.model.bert.encoder.layer.{i}": {
        "heads": [4, 2], "ffn": [64, 32]} for i in range(2)}
    # 2 of 4 heads of 8: 16 rows (and biases) of query/key/value, 16 inputs of the output
    # projection; 32 of 64 FFN neurons: rows (and biases) in, inputs out, each 32 wide
    per_layer = 3 * (16 * 32 + 16) + 16 * 32 + 32 * 32 + 32 + 32 * 32
    assert train.metrics["params"] - prune.metrics["params"] == 2 * per_layer
    assert "| prune | net.model.bert.encoder.layer.1 | 4 -> 2 | 64 -> 32 |" in \
        (tmp_path / "run/report.md").read_text()
    assert quant.details["deployed"]["cpu"]["precision"] == "int8"
    assert distill.metrics["params"] < 0.6 * train.metrics["params"]
    spec = json.loads((tmp_path / "run/models/distill/spec.json").read_text())
    assert spec["model"]["hf"]["hidden_size"] == 16
    assert cal.details["calibration"]["temperature"] > 0  # a temperature keeps every argmax:
    assert cal.metrics["accuracy"] == distill.metrics["accuracy"]
    _reloads(tmp_path / "run", report, load_data(resolved.data))


def test_hf_model_from_a_local_folder_and_a_spec_that_is_data(tmp_path):
    """A folder with config.json and safetensors weights of the bare encoder loads under the
    classifier; a spec whose config names remote code is refused."""
    from transformers import BertConfig, BertModel

    encoder = BertModel(BertConfig(**{k: v for k, v in BERT.items() if k != "model_type"}))
    folder = tmp_path / "bert"
    encoder.save_pretrained(folder)  # config.json + model.safetensors
    model = build_model(resolve(tiny_raw(model={"hf": str(folder)})).model, (16,), 3)
    emb = model.net.model.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(emb, encoder.embeddings.word_embeddings.weight)
    assert model.spec["model"]["hf"]["hidden_size"] == 32  # the config itself, not the path
    text = resolve(tiny_raw(model={"hf": str(folder)}, data={
        "name": "hf-dataset", "train": "t.parquet", "text": "review"}))
    assert text.data.tokenizer == str(folder)  # the model folder's tokenizer by default
    with pytest.raises(RecipeError, match="may not set auto_map"):
        resolve(tiny_raw(model={"hf": {**BERT, "auto_map": {"AutoModel": "x.Y"}}}))
    bad = tmp_path / "saved"
    bad.mkdir()
    (bad / "spec.json").write_text(json.dumps({
        "format": "nnopt-model", "model": {"name": "hf", "hf": {**BERT, "auto_map": {}}},
        "input_shape": [16], "num_classes": 3}))
    (bad / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError):
        load_model(bad)


def _equal_after_pruning(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Zero one head's output columns (and q/k/v rows) and half the FFN neurons' output columns
    in every layer: magnitude pruning must remove exactly those, leaving the outputs unchanged."""
    from nnopt.compress.prune.heads import encoder_layers, head_size, prune_heads_ffn

    with torch.no_grad():
        for _, layer in encoder_layers(model):
            size = head_size(layer.attention.self)
            for k in ("query", "key", "value"):
                getattr(layer.attention.self, k).weight[size:2 * size] = 0
                getattr(layer.attention.self, k).bias[size:2 * size] = 0
            layer.attention.output.dense.weight[:, size:2 * size] = 0
            n = layer.intermediate.dense.out_features
            layer.intermediate.dense.weight[::2] = 0
            layer.output.dense.weight[:, ::2] = 0
        before = model.eval()(x)
    info = prune_heads_ffn(model, heads=0.25, ffn=0.5, importance="magnitude", data=None)
    assert all(v == {"heads": [4, 3], "ffn": [n, n // 2]} for v in info.values())
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_head_and_ffn_pruning_removes_exactly_the_dead_heads_and_neurons():
    ids = torch.randint(1, 30000, (3, 12)).float()
    ids[1, 8:] = 0  # padding
    bert = build_model(resolve(tiny_raw(model={"hf": BERT})).model, (12,), 3)
    _equal_after_pruning(bert, ids)
    from nnopt.models.minilm import MiniLM  # nnopt's own BERT-style encoder

    minilm = MiniLM({"vocab_size": 30522, "hidden_size": 32, "layer_norm_eps": 1e-12,
                     "max_position_embeddings": 32, "type_vocab_size": 2,
                     "num_attention_heads": 4, "intermediate_size": 64, "num_hidden_layers": 2})
    _equal_after_pruning(minilm, ids)
