"""OpenVINO (IR, NNCF int8) and ExecuTorch (XNNPACK .pte) artifacts, GPU targets without a GPU,
and missing extras: outputs against PyTorch, save/reload, calibration heads, clear lines."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest
import torch
import yaml

from conftest import tiny_raw
from nnopt.compress.quantize import executorch as et
from nnopt.compress.quantize.export import onnx_bytes
from nnopt.compress.quantize.openvino import from_onnx_bytes, nncf_int8
from nnopt.core.compute import predict
from nnopt.core.errors import ModelFileError, NnoptError
from nnopt.measure.executorch_rt import load, set_threads
from nnopt.measure.latency import skip_reason
from nnopt.measure.runtimes import unavailable
from nnopt.measure.target import Target
from nnopt.models import load_model, save_model
from nnopt.trust.calibration.scaling import fit_head

pytest.importorskip("openvino")
pytest.importorskip("executorch")



def _agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(1) == b.argmax(1)).float().mean().item()


def test_openvino_fp32_equals_pytorch_and_reloads_as_data(trained, tmp_path):
    model, data = trained
    x = data.test.x[:100]
    ov = from_onnx_bytes(onnx_bytes(model, x[:1]), {"params": 7})
    ref = predict(model, x)
    assert torch.allclose(predict(ov, x), ref, rtol=1e-5, atol=1e-4)
    assert ov.spec["runtime"] == "openvino" and ov.spec["inference_precision"] == "f32"
    save_model(ov, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.bin", "model.xml",
                                                                  "spec.json"]
    back = load_model(tmp_path / "m")
    assert type(back) is type(ov) and back.param_count() == 7
    assert torch.allclose(predict(back, x), ref, rtol=1e-5, atol=1e-4)
    # the runner compiles the example's static shape and runs it
    fn = back.runner(x[:4], 1)
    assert fn() is not None


def test_openvino_files_are_checked(trained, tmp_path):
    model, data = trained
    ov = from_onnx_bytes(onnx_bytes(model, data.test.x[:1]), {})
    save_model(ov, tmp_path / "m")
    xml = tmp_path / "m/model.xml"
    xml.write_bytes(xml.read_bytes().replace(b"<net", b"<nxt", 1))
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_model(tmp_path / "m")
    spec = json.loads((tmp_path / "m/spec.json").read_text())
    spec.pop("xml_sha256")
    (tmp_path / "m/spec.json").write_text(json.dumps(spec))
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(tmp_path / "m")


def test_openvino_calibration_head_is_part_of_the_ir(trained, tmp_path):
    model, data = trained
    ov = from_onnx_bytes(onnx_bytes(model, data.test.x[:1]), {})
    head = fit_head("vector", predict(model, data.val.x), data.val.y)
    cal = ov.with_calibration(head, {"method": "vector"}, data.num_classes)
    x = data.test.x[:64]
    with torch.no_grad():
        want = head(predict(model, x))
    assert torch.allclose(predict(cal, x), want, rtol=1e-5, atol=1e-4)
    save_model(cal, tmp_path / "c")
    back = load_model(tmp_path / "c")
    assert torch.allclose(predict(back, x), want, rtol=1e-5, atol=1e-4)
    with pytest.raises(NnoptError, match="already calibrated"):
        back.with_calibration(head, {"method": "vector"}, data.num_classes)


def test_nncf_int8_is_close_and_switches_to_accuracy_control(trained):
    model, data = trained
    ov = from_onnx_bytes(onnx_bytes(model, data.test.x[:1]), {})
    q = nncf_int8(ov, data.train.x[:64])
    assert q.spec["precision"] == "int8" and q.spec["quantization"]["mode"] == "post-training"
    assert _agree(predict(q, data.test.x), predict(model, data.test.x)) > 0.9
    assert q.xml != ov.xml  # a real int8 graph (FakeQuantize/convert ops), not the fp32 one
    # a plain int8 that "lost" more than the budget (fp32 said to be 100%) runs NNCF's
    # accuracy-aware mode, which says so in the record
    aa = nncf_int8(ov, data.train.x[:64], validation=data.val, fp32_accuracy=1.0, max_drop=0.001)
    assert aa.spec["quantization"]["mode"].startswith("accuracy-aware")


def test_executorch_programs_match_pytorch_and_reload(trained, tmp_path):
    model, data = trained
    x = data.test.x[:10]
    fp32 = et.build(model, 4, x, {})
    assert fp32.spec["batch_size"] == 4 and fp32.spec["delegate"] == "xnnpack"
    ref = predict(model, x)
    assert torch.allclose(predict(fp32, x, batch_size=10), ref, rtol=1e-5, atol=1e-4)  # padded chunks
    q = et.build(model, 4, x, {}, calibration=data.train.x[:64])
    assert q.spec["precision"] == "int8"
    assert _agree(predict(q, data.test.x), predict(model, data.test.x)) > 0.9
    save_model(q, tmp_path / "q")
    back = load_model(tmp_path / "q")
    assert torch.equal(predict(back, x), predict(q, x))
    with pytest.raises(NnoptError, match="reloaded ExecuTorch program"):
        back.with_calibration(torch.nn.Identity(), {}, data.num_classes)
    (tmp_path / "q/model.pte").write_bytes(b"not a program")
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "q")


def test_executorch_calibration_relowers_with_the_head(trained):
    model, data = trained
    prog = et.build(model, 2, data.test.x, {})
    head = fit_head("temperature", predict(model, data.val.x), data.val.y)
    cal = prog.with_calibration(head, {"method": "temperature"}, data.num_classes)
    x = data.test.x[:6]
    with torch.no_grad():
        want = head(predict(model, x))
    assert torch.allclose(predict(cal, x), want, rtol=1e-5, atol=1e-4)


def test_executorch_survives_thread_pool_resets(trained):
    """Resizing XNNPACK's pool freed memory that loaded methods used (a heap corruption here);
    every loaded program must reload after a reset and give the same outputs."""
    model, data = trained
    prog = et.build(model, 2, data.test.x, {})
    x = data.test.x[:2].contiguous()
    a = load(prog.pte, 1)
    first = a.execute([x])[0].clone()
    b = load(prog.pte, 2)
    b.execute([x])
    set_threads(1)
    assert torch.equal(a.execute([x])[0], first) and torch.equal(b.execute([x])[0], first)
    assert torch.equal(predict(prog, x), first)


def test_gpu_targets_say_why_they_are_skipped_here(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="cuda target runs torch or onnxruntime"):
        Target(name="g", runtime="openvino", device="cuda")
    with pytest.raises(ValueError, match="tensorrt needs"):
        Target(name="g", runtime="torch", device="cuda", tensorrt=True)
    gpu = Target(name="g", runtime="torch", device="cuda")
    why = skip_reason(model, gpu)
    if torch.cuda.is_available():
        assert why == ""
    else:
        assert "no CUDA device" in why and "\n" not in why


def test_a_missing_extra_is_one_line(monkeypatch, write_recipe, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    assert unavailable("openvino") == ("the openvino runtime is not installed: "
                                       "pip install 'nnopt[openvino]'")
    from nnopt.cli import main

    raw = tiny_raw(stages=[{"train": {"epochs": 1}},
                           {"quantize": {"method": "openvino-fp32", "calibration_size": 8}}])
    assert main(["run", str(write_recipe(raw)), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert not (tmp_path / "o").exists()


def test_auto_deploys_openvino_and_executorch_where_targets_ship_only_them(tmp_path):
    """A target limited to OpenVINO gets an OpenVINO artifact and one limited to ExecuTorch a
    program at its batch; both are timed in the pass after the stages and reload."""
    from nnopt.cli import main

    targets = [{"name": "ov", "runtime": "openvino", "runtimes": ["openvino"], "batch_size": 2,
                "threads": 1, "warmup": 1, "repeats": 5, "min_seconds": 0.0},
               {"name": "phone", "runtime": "executorch", "runtimes": ["executorch"],
                "batch_size": 1, "threads": 1, "warmup": 1, "repeats": 5, "min_seconds": 0.0}]
    raw = tiny_raw(targets=targets, evaluate=["accuracy", "nll", "ece", "size", "latency"],
                   stages=[{"train": {"epochs": 1}},
                           {"quantize": {"calibration_size": 16, "tolerance": 1.0}},
                           {"calibrate": {"method": "temperature"}}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    res = json.loads((tmp_path / "o/results.json").read_text())
    for stage in ("quantize", "calibrate"):
        dep = next(s for s in res["stages"] if s["name"] == stage)["details"]["deployed"]
        assert dep["ov"]["runtime"] == "openvino" and dep["phone"]["runtime"] == "executorch"
    q = res["stages"][1]["details"]
    assert {r["runtime"] for r in q["deployment"]} >= {"onnxruntime", "openvino", "executorch"}
    lat = res["stages"][0]["details"]["latency"]  # the PyTorch stage on each target's runtime
    assert lat["ov"]["runtime"] == "openvino" and lat["phone"]["runtime"] == "executorch"
    back = load_model(tmp_path / "o/models/calibrate")
    assert back.for_target("phone").runtime == "executorch"
    assert back.for_target("ov").spec["calibration"]["method"] == "temperature"


def test_preflight_times_other_runtimes_and_says_why_a_gpu_is_not_measured(trained):
    from nnopt.compress.prune.preflight import is_two_four, preflight

    model, data = trained
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        for m in pruned.modules():
            if isinstance(m, torch.nn.Linear):
                w = m.weight.view(-1, 4)
                w[:, :2] = 0  # 2:4 in every group of four inputs
    assert is_two_four(pruned.net[-1].weight) and not is_two_four(model.net[-1].weight)
    targets = [Target(name="ov", runtime="openvino", batch_size=2, threads=1),
               Target(name="gpu", runtime="torch", device="cuda", batch_size=2)]
    rows, _ = preflight(model, pruned, lambda b: data.test.x[:b], targets)
    assert rows[0]["method"].startswith("whole model on openvino") and rows[0]["dense_ms"] > 0
    if not torch.cuda.is_available():
        assert "no CUDA device" in rows[1]["skipped"]


def test_openvino_and_nncf_write_nothing_in_home(tmp_path):
    """Importing openvino writes a telemetry id under ~/intel, and NNCF sends events, unless
    told not to: nnopt imports them with both off and gives the environment back."""
    import os
    import subprocess
    import sys

    code = ("import os; from nnopt.measure.openvino_rt import openvino; openvino(); "
            "import nncf; assert 'CI' not in os.environ and 'NNCF_CI' not in os.environ")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI")}
    subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(tmp_path)}, check=True)
    assert list(tmp_path.iterdir()) == []


def test_hostile_runtime_specs_are_one_clear_error(trained, tmp_path):
    """A model folder is data: a spec value that would reach OpenVINO's compiler or size
    ExecuTorch's chunks is checked at load, with the folder named."""
    model, data = trained
    ov = from_onnx_bytes(onnx_bytes(model, data.test.x[:1]), {})
    save_model(ov, tmp_path / "ov")
    prog = et.build(model, 2, data.test.x, {})
    save_model(prog, tmp_path / "et")
    for folder, key, value in (("ov", "inference_precision", "u1; rm -rf /"),
                               ("ov", "params", "many"), ("et", "batch_size", 0),
                               ("et", "batch_size", "2")):
        spec_file = tmp_path / folder / "spec.json"
        spec = json.loads(spec_file.read_text())
        bad = {**spec, key: value}
        spec_file.write_text(json.dumps(bad))
        with pytest.raises(ModelFileError, match="invalid spec"):
            load_model(tmp_path / folder)
        spec_file.write_text(json.dumps(spec))
        assert load_model(tmp_path / folder) is not None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's answer")
def test_a_cuda_target_is_skipped_with_one_line_on_a_cpu_machine(tmp_path):
    from nnopt.cli import main

    targets = [{"name": "cpu", "runtime": "torch", "batch_size": 2, "threads": 1, "warmup": 1,
                "repeats": 5, "min_seconds": 0.0},
               {"name": "gpu", "runtime": "torch", "device": "cuda", "batch_size": 2}]
    raw = tiny_raw(targets=targets, evaluate=["accuracy", "latency"],
                   stages=[{"train": {"epochs": 1}},
                           {"quantize": {"method": "ort-static", "calibration_size": 8}}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    res = json.loads((tmp_path / "o/results.json").read_text())
    for s in res["stages"]:
        assert "no CUDA device" in s["details"]["latency"]["gpu"]["skipped"]
        assert "latency_ms/cpu" in s["metrics"] and "latency_ms/gpu" not in s["metrics"]
    assert "no CUDA device" in res["stages"][1]["details"]["deployed"]["gpu"]["reason"]


def test_every_method_is_a_config_choice():
    import typing

    from nnopt.compress.quantize.candidates import METHODS
    from nnopt.compress.quantize.step import QuantizeConfig

    choices = typing.get_args(QuantizeConfig.model_fields["method"].annotation)
    assert set(choices) == {"auto", *METHODS}


def test_a_cast_deployment_says_its_half_precision(trained):
    from nnopt.compress.quantize.cast import torch_cast
    from nnopt.compress.quantize.step import precision_of

    model, _ = trained
    assert precision_of(torch_cast(model, "bf16")) == "bf16"
    assert precision_of(torch_cast(model, "fp16")) == "fp16"
    assert precision_of(from_onnx_bytes(onnx_bytes(model, torch.zeros(1, 1, 8, 8)), {})) == "fp32"
