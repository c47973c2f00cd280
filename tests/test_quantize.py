from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_raw
from nnopt.compress.quantize import deploy, ort
from nnopt.compress.quantize.export import onnx_bytes
from nnopt.compress.quantize.fake_quant import (
    act_qparams,
    dequantize,
    fake_quant,
    lsq_fake_quant,
    qrange,
    quantize,
    sqnr_db,
    weight_scale,
)
from nnopt.compress.quantize.mixed import assign_bits, quantized_weight
from nnopt.compress.quantize.onnx_model import OnnxModel
from nnopt.compress.quantize.qat import apply_plan, plan, snap_for_deploy
from nnopt.core.compute import predict
from nnopt.measure.paired import Paired
from nnopt.measure.target import Target
from nnopt.models import load_model, save_model
from nnopt.train import TrainConfig, fit


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 10_000), signed=st.booleans())
def test_quantize_dequantize_error_is_at_most_half_a_step(bits, seed, signed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, generator=g) * 3
    if signed:
        scale, zp = weight_scale(x, bits, per_channel=False), 0.0
    else:
        scale, zp = act_qparams(x.min(), x.max(), bits)
    qmin, qmax = qrange(bits, signed)
    q = quantize(x, scale, zp, qmin, qmax)
    assert torch.equal(q, q.round()) and q.min() >= qmin and q.max() <= qmax
    err = (dequantize(q, scale, zp) - x).abs().max()
    assert err <= scale.max() / 2 + 1e-5


def test_fake_quant_has_a_straight_through_gradient():
    x = torch.linspace(-1, 1, 11, requires_grad=True)
    fake_quant(x, torch.tensor(0.1), 0.0, -127, 127).sum().backward()
    assert torch.equal(x.grad, torch.ones(11))


def test_lsq_gradient_follows_the_paper():
    w = torch.tensor([0.26, -0.74, 5.0])  # codes 2.6 (inside), -7.4 and 50 (clamped)
    s = torch.tensor([0.1], requires_grad=True)
    qmin, qmax = qrange(4, True)
    lsq_fake_quant(w, s, qmin, qmax).sum().backward()
    g = 1 / math.sqrt(3 * qmax)
    inside = 2.6
    expected = (round(inside) - inside) + qmin + qmax  # round(v) - v inside, the bound outside
    assert s.grad.item() == pytest.approx(g * expected, rel=1e-4)


@pytest.mark.parametrize("bits,floor_db", [(8, 38.0), (6, 26.0), (4, 14.0), (3, 8.0), (2, 1.5)])
def test_weight_sqnr_floors_per_bit_width(bits, floor_db):
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    assert sqnr_db(w, quantized_weight(w, bits, per_channel=True)) >= floor_db


def test_per_channel_beats_per_tensor_on_uneven_rows():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 64, generator=g) * torch.logspace(-2, 0, 32)[:, None]
    assert sqnr_db(w, quantized_weight(w, 8, True)) > sqnr_db(w, quantized_weight(w, 8, False)) + 6



@pytest.mark.parametrize("mode,method", [("static", "minmax"), ("static", "percentile"),
                                         ("static", "entropy"), ("dynamic", "minmax")])
def test_ort_int8_is_real_and_close_to_fp32(trained, mode, method):
    model, data = trained
    fp32 = onnx_bytes(model, data.test.x[:1])
    blob = ort.quantize_onnx(fp32, mode=mode, weight_type="int8", per_channel=True,
                             reduce_range=False, calibration=data.train.x[:256],
                             calibrate_method=method)
    ops = ort.integer_ops(blob)
    kernels = {"QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger",
               "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
    assert kernels & set(ops), ops
    ref = predict(model, data.test.x)
    got = OnnxModel(blob, {})(data.test.x)
    assert sqnr_db(ref, got) >= (20.0 if mode == "static" else 15.0)
    assert (ref.argmax(1) == got.argmax(1)).float().mean() >= 0.95


def test_onnx_artifact_saves_and_reloads(trained, tmp_path):
    model, data = trained
    art = OnnxModel(onnx_bytes(model, data.test.x[:1]), {"precision": "fp32"})
    save_model(art, tmp_path / "a")
    again = load_model(tmp_path / "a")
    assert isinstance(again, OnnxModel) and torch.equal(again(data.test.x), art(data.test.x))
    (tmp_path / "a" / "model.onnx").write_bytes(b"junk")
    with pytest.raises(Exception, match="corrupt"):
        load_model(tmp_path / "a")


def test_qat_model_deploys_to_int8_matching_fake_quant(trained, tmp_path):
    model, data = trained
    qmodel = copy.deepcopy(model)
    layers = plan(qmodel, 4, 8, True, False)
    apply_plan(qmodel, layers)
    qmodel.spec = {**qmodel.spec, "transforms": [{"kind": "qat", "layers": layers}]}
    fit(qmodel, data.train, config=TrainConfig(epochs=2, lr=0.002))
    qmodel.eval()
    save_model(qmodel, tmp_path / "q")
    again = load_model(tmp_path / "q")
    assert torch.equal(again(data.test.x), qmodel(data.test.x))
    snapped = snap_for_deploy(qmodel)
    for m in snapped.modules():
        if isinstance(m, torch.nn.Conv2d):  # weights lie on the 4-bit grid
            s = weight_scale(m.weight, 4, True).view(-1, 1, 1, 1)
            codes = m.weight / s
            # on the grid up to division round-off, within the signed 4-bit range
            assert torch.allclose(codes, codes.round(), atol=1e-3)
            assert codes.round().abs().max() <= 7
    blob = ort.quantize_onnx(onnx_bytes(snapped, data.test.x[:1]), mode="static",
                             weight_type="int8", per_channel=True, reduce_range=False,
                             calibration=data.train.x[:256])
    fq, deployed = predict(qmodel, data.test.x), OnnxModel(blob, {})(data.test.x)
    assert (fq.argmax(1) == deployed.argmax(1)).float().mean() >= 0.95
    assert sqnr_db(fq, deployed) >= 15.0


def test_weight_type_follows_vnni(monkeypatch):
    monkeypatch.setattr(ort, "cpu_flags", lambda: ["avx2", "avx512_vnni"])
    assert ort.choose_weight_type("auto")[0] == "int8"
    monkeypatch.setattr(ort, "cpu_flags", lambda: ["avx2"])
    assert ort.choose_weight_type("auto") == ("uint8", ort.choose_weight_type("auto")[1])
    assert "lacks VNNI" in ort.choose_weight_type("auto")[1]
    assert ort.choose_weight_type("int8") == ("int8", "set in the recipe")


def test_mixed_precision_meets_the_budget_and_spares_sensitive_layers():
    sens = {"base_accuracy": 0.9, "layers": {
        "big": {"params": 1000, "bits": {b: {"accuracy": 0.9 - (0.01 if b == 2 else 0)}
                                         for b in (2, 4, 8)}},
        "small": {"params": 100, "bits": {b: {"accuracy": 0.9 - (0.3 if b < 8 else 0)}
                                          for b in (2, 4, 8)}}}}
    bits = assign_bits(sens, 4.0, [2, 4, 8])
    assert bits["small"] == 8 and bits["big"] <= 4
    assert (1000 * bits["big"] + 100 * bits["small"]) / 1100 <= 4.0


def _paired(ms: dict[str, float], rounds: int = 7) -> Paired:
    """A paired timing whose every call of ``k`` took ``ms[k]``."""
    return Paired({k: [[v] * 3 for _ in range(rounds)] for k, v in ms.items()},
                  load={"busy": False, "other_cpu": 0.0})


def test_effects_split_runtime_from_precision():
    a = _paired({"torch-fp32": 10.0, "onnxruntime-fp32": 4.0, "ort-static": 2.0})
    b = _paired({"torch-fp32": 1.0, "onnxruntime-fp32": 0.5, "ort-static": 0.49})
    row = deploy.effects(a, Target(name="a"), "ort-static")
    assert row["runtime_effect"] == 2.5 and row["precision_effect"] == 2.0
    assert row["total"] == 5.0 and row["int8_faster"] and not row["noisy"]
    row = deploy.effects(b, Target(name="b"), "ort-static")
    assert not row["int8_faster"] and row["runtime"] == "onnxruntime"
    c = _paired({"torch-fp32": 8.0, "openvino-fp32": 4.0, "openvino-int8": 3.0,
                 "openvino-qdq": 3.5})
    opts = dict.fromkeys(["torch-fp32", "openvino-fp32", "openvino-int8", "openvino-qdq"])
    assert deploy.effect_pairs(opts, c) == [("openvino-fp32", "openvino-int8")]
    row = deploy.effects(c, Target(name="c"), "openvino-int8", "openvino-fp32", "openvino")
    assert row["runtime_effect"] == 2.0 and row["int8_faster"]


def test_choose_keeps_fp32_unless_a_lower_precision_clearly_pays():
    opts = {"torch-fp32": deploy.Option(None, "torch", "fp32", 0.90),
            "onnxruntime-fp32": deploy.Option(None, "onnxruntime", "fp32", 0.90),
            "ort-static": deploy.Option(None, "onnxruntime", "int8", 0.899),
            "torch-static": deploy.Option(None, "torch", "int8", 0.80)}
    edge = Target(name="edge", runtime="onnxruntime", runtimes=["onnxruntime"])
    # int8 only 3% faster than ORT fp32: fp32 is kept (noise must not change the precision)
    t = _paired({"torch-fp32": 10.0, "onnxruntime-fp32": 4.0, "ort-static": 3.9,
                 "torch-static": 1.0})
    name, reason, table = deploy.choose(opts, t, edge, 0.005, 0.90)
    assert name == "onnxruntime-fp32" and "fp32 is kept" in reason
    # 2x faster int8 wins; torch-static is fastest but inaccurate and cannot run on edge
    t = _paired({"torch-fp32": 10.0, "onnxruntime-fp32": 4.0, "ort-static": 2.0,
                 "torch-static": 1.0})
    name, reason, table = deploy.choose(opts, t, edge, 0.005, 0.90)
    assert name == "ort-static" and "5.00x over torch-fp32" in reason
    rows = {r["deployment"]: r for r in table}
    assert not rows["torch-static"]["eligible"] and not rows["torch-static"]["runs_here"]
    assert rows["torch-fp32"]["runs_here"] is False and rows["ort-static"]["speedup"] == 5.0
    # a server that runs everything, with a tolerance that admits torch-static
    name, _, _ = deploy.choose(opts, t, Target(name="server"), 0.2, 0.90)
    assert name == "torch-static"


def test_quantize_step_records_effects_and_choice(tmp_path):
    import json

    import yaml

    from nnopt.cli import main

    raw = tiny_raw(stages=[{"train": {"epochs": 1}}, {"quantize": {"calibration_size": 64}}],
                   evaluate=["accuracy", "size", "latency"])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    res = json.loads((tmp_path / "o/results.json").read_text())
    q = res["stages"][1]["details"]
    from nnopt.measure.openvino_rt import has_bf16

    names = {"torch-fp32", "onnxruntime-fp32", "ort-static", "ort-dynamic", "torch-static",
             "torch-dynamic", "ort-fp16", "torch-bf16", "openvino-fp32", "openvino-int8",
             "openvino-qdq", "executorch-fp32", "executorch-int8"} | (
        {"openvino-bf16"} if has_bf16() else set())
    target = raw["targets"][0]["name"]
    assert q["quantization"]["chosen"][target] in names
    assert names == {c["deployment"] for c in q["quantization"]["candidates"][target]}
    # one runtime-vs-precision row per runtime that has fp32 and int8
    assert {r["runtime"] for r in q["deployment"]} == {"onnxruntime", "openvino", "executorch",
                                                        "torch"}
    assert all("precision_effect" in r for r in q["deployment"])
    choice = json.loads((tmp_path / "o/models/quantize/spec.json").read_text())["deployed"]
    artifact = tmp_path / "o/models/quantize" / choice[target]["file"]
    # the size is every file of the target's artifact folder (its spec with it), on disk
    assert res["stages"][1]["metrics"]["size_bytes"] == sum(
        f.stat().st_size for f in artifact.parent.iterdir())
    lat = q["latency"][target]
    assert lat["deployed"]["runtime"] == choice[target]["runtime"]
    assert lat["vs_first"]["stage"] == "train" and lat["rounds"] >= 7
    assert "load" in lat and "noisy" in lat
    assert "Runtime effect vs precision effect" in (tmp_path / "o/report.md").read_text()


@pytest.mark.parametrize("method", ["torch-static", "torch-dynamic"])
def test_torch_int8_runs_saves_and_reloads(trained, tmp_path, method):
    from safetensors.torch import load_file

    from nnopt.compress.quantize.torch_int8 import TorchInt8Model, build

    model, data = trained
    q = TorchInt8Model(build(model, method, data.train.x[:256]),
                       {"source": model.spec, "quantization": {"method": method}})
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized" in k for k in kinds), kinds
    ref, got = predict(model, data.test.x), q(data.test.x)
    assert (ref.argmax(1) == got.argmax(1)).float().mean() >= 0.95
    save_model(q, tmp_path / "t")
    again = load_model(tmp_path / "t")
    assert torch.equal(again(data.test.x), got)
    tensors = load_file(tmp_path / "t" / "model.safetensors")
    assert any(v.dtype == torch.int8 for v in tensors.values())
    if method == "torch-static":  # every conv and linear is int8 on disk
        save_model(model, tmp_path / "f")
        assert (tmp_path / "t/model.safetensors").stat().st_size < \
            0.4 * (tmp_path / "f/model.safetensors").stat().st_size


def test_half_precision_casts_save_reload_and_stay_close(trained, tmp_path):
    from nnopt.compress.quantize.cast import onnx_fp16, torch_cast

    model, data = trained
    ref = predict(model, data.test.x)
    for dtype in ("bf16", "fp16"):
        half = torch_cast(model, dtype)
        assert next(half.parameters()).dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        out = half(data.test.x)
        assert out.dtype == torch.float32 and (out.argmax(1) == ref.argmax(1)).float().mean() > 0.95
        save_model(half, tmp_path / dtype)
        assert torch.equal(load_model(tmp_path / dtype)(data.test.x), out)
    fp32 = onnx_bytes(model, data.test.x[:1])
    fp16 = onnx_fp16(fp32)
    assert len(fp16) < 0.6 * len(fp32)
    save_model(OnnxModel(fp16, {"precision": "fp16"}), tmp_path / "o16")  # passes onnx.checker
    assert torch.equal(load_model(tmp_path / "o16")(data.test.x), OnnxModel(fp16, {})(data.test.x))
    assert sqnr_db(ref, OnnxModel(fp16, {})(data.test.x)) >= 40.0
