"""The answer a user acts on: paired timing, per-target deployment, the recommendation and
conclusions, the report a person reads (including in a real browser)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import tiny_raw
from nnopt.cli import main
from nnopt.compress.quantize.export import onnx_bytes
from nnopt.compress.quantize.onnx_model import OnnxModel
from nnopt.core.errors import ModelFileError
from nnopt.measure import paired
from nnopt.measure.decide import DecideConfig, recommend
from nnopt.measure.paired import Paired, quantile, time_paired
from nnopt.models import build_model, load_model, save_model
from nnopt.models.deployed import Deployed, for_target
from nnopt.report.compare import recipe_difference
from nnopt.trust.ood_metric import indistinct


def test_quantile_matches_numpy():
    import numpy as np

    vals = [5.0, 1.0, 3.0, 2.0, 8.0, 13.0, 0.5]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert quantile(vals, q) == pytest.approx(float(np.quantile(vals, q)))


def test_paired_ratios_come_from_the_same_rounds():
    # the machine slows down 3x in the second half: both candidates alike
    slow = [[1.0 * (3 if r >= 4 else 1)] * 5 for r in range(8)]
    fast = [[0.5 * (3 if r >= 4 else 1)] * 5 for r in range(8)]
    p = Paired({"a": slow, "b": fast}, load={"busy": False})
    r = p.ratio("a", "b")
    assert r["ratio"] == 2.0 and r["p10"] == 2.0 and r["p90"] == 2.0
    # each figure alone moved 3x between rounds: too noisy to headline
    assert p.figure("a")["noisy"] and "spread" in p.figure("a")["noisy_why"]
    quiet = Paired({"a": [[1.0] * 3] * 7, "b": [[0.5] * 3] * 7}, load={"busy": False})
    assert not quiet.figure("a")["noisy"] and not quiet.ratio("a", "b")["noisy"]
    busy = Paired(quiet.rounds, load={"busy": True, "other_cpu": 0.8})
    assert busy.ratio("a", "b")["noisy"] and "busy" in busy.ratio("a", "b")["noisy_why"]


def test_time_paired_adds_rounds_only_while_wide(monkeypatch):
    calls = {"n": 0}

    def fake_calls(fn, n):
        calls["n"] += 1
        return [fn()] * n

    @contextlib.contextmanager
    def quiet_machine():  # the real probe would see the other test worker
        yield {"cpus": 2, "other_cpu": 0.0, "busy": False}

    monkeypatch.setattr(paired, "_calls", fake_calls)
    monkeypatch.setattr(paired, "machine_load", quiet_machine)
    steady = time_paired({"a": lambda: 1.0, "b": lambda: 2.0}, block_seconds=0)
    assert [len(steady.rounds[k]) for k in "ab"] == [7, 7]
    seq = iter([1.0, 3.0] * 1000)
    wide = time_paired({"a": lambda: next(seq), "b": lambda: 2.0}, block_seconds=0)
    assert len(wide.rounds["a"]) == 21 and wide.figure("a")["noisy"]
    assert not wide.figure("b")["noisy"]


def test_machine_load_sees_other_processes():
    burn = "import time\nt = time.time()\nwhile time.time() - t < 3: pass"
    procs = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]
    try:
        time.sleep(0.5)
        with paired.machine_load() as load:
            time.sleep(1.0)
    finally:
        for p in procs:
            p.kill()
    assert load["other_cpu"] > paired.BUSY and load["busy"]
    assert len(load["loadavg_1m"]) == 2


def _stage(name, acc, lat=None, vs=1.0, noisy=False, **metrics):
    rec = {}
    if lat is not None:
        rec = {"edge": {"median_ms": lat, "p10_ms": lat, "p90_ms": lat, "noisy": noisy,
                        "deployed": {"runtime": "onnxruntime", "precision": "int8"},
                        **({"vs_first": {"ratio": vs, "p10": vs, "p90": vs, "noisy": noisy}}
                           if name != "train" else {})}}
    return {"name": name, "metrics": {"accuracy": acc, **metrics}, "latency": rec}


def test_recommend_is_the_fastest_stage_meeting_every_constraint():
    stages = [_stage("train", 0.90, 10.0, ece=0.05), _stage("prune", 0.895, 5.0, 2.0, ece=0.04),
              _stage("quantize", 0.87, 2.0, 5.0, ece=0.03),
              _stage("calibrate", 0.895, 4.9, 2.04, ece=0.01)]
    r = recommend(stages, "edge", DecideConfig())
    # quantize is fastest but 3 pt down; calibrate is within 5% of prune: the earlier one wins
    assert r["stage"] == "prune" and r["speedup"] == 2.0
    assert "quantize" in r["rejected"] and "pt below" in r["rejected"]["quantize"][0]
    r = recommend(stages, "edge", DecideConfig(max_ece=0.02))
    assert r["stage"] == "calibrate"
    r = recommend(stages, "edge", DecideConfig(max_accuracy_drop=0.05))
    assert r["stage"] == "quantize"
    r = recommend(stages, "edge", DecideConfig(latency_budget_ms=1.0))
    assert r["stage"] is None and len(r["rejected"]) == 4
    r = recommend(stages, "edge", DecideConfig(min_robust_accuracy=0.1))
    assert r["stage"] is None and "add 'robust'" in r["rejected"]["train"][-1]
    # a target that runs another artifact is judged on that artifact's accuracy
    stages[2]["accuracy_by_target"] = {"edge": 0.899}
    assert recommend(stages, "edge", DecideConfig())["stage"] == "quantize"


def test_ood_set_from_the_training_distribution_is_flagged():
    rows = {"msp": {"auroc": 0.51}, "energy": {"auroc": 0.49}}
    assert "training dataset itself" in indistinct("digits", "digits", rows)
    assert "cannot be told" in indistinct("digits", "fashion-mnist", rows)
    assert indistinct("noise", "fashion-mnist", {"energy": {"auroc": 0.93}}) == ""


def test_deployed_saves_reloads_and_refuses_a_path_as_target(tmp_path):
    model = build_model(_cfg(), (1, 8, 8), 3)
    onnx = OnnxModel(onnx_bytes(model, torch.rand(1, 1, 8, 8)), {"precision": "fp32",
                                                                  "runtime": "onnxruntime"})
    d = Deployed({"edge": onnx, "server": model},
                 {"edge": {"runtime": "onnxruntime", "precision": "fp32", "reason": "r"},
                  "server": {"runtime": "torch", "precision": "fp32", "reason": "r"},
                  "phone": {"reason": "cannot run it"}}, "server")
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(d(x), model.eval()(x)) and for_target(d, "phone") is None
    save_model(d, tmp_path / "d")
    again = load_model(tmp_path / "d")
    assert isinstance(again, Deployed) and again.primary == "server"
    assert torch.allclose(again.for_target("edge")(x), onnx(x), atol=1e-6)
    assert again.choices["edge"]["file"] == "edge/model.onnx"
    spec = json.loads((tmp_path / "d/spec.json").read_text())
    spec["deployed"]["../evil"] = {"file": "x"}
    (tmp_path / "d/spec.json").write_text(json.dumps(spec))
    with pytest.raises(ModelFileError, match="not a plain name"):
        load_model(tmp_path / "d")


def _cfg():
    from nnopt.recipe import resolve

    return resolve(tiny_raw()).model


def test_recipe_difference_lists_only_what_differs():
    a = {"seed": 0, "stages": [{"prune": {"amount": 0.5}}], "name": "x"}
    b = {"seed": 0, "stages": [{"prune": {"amount": 0.7}}], "name": "x"}
    assert recipe_difference([a, b]) == [["stages.0.prune.amount", "0.5", "0.7"]]


TWO_TARGETS = [{"name": "edge", "runtime": "onnxruntime", "runtimes": ["onnxruntime"],
                "batch_size": 1, "threads": 1, "warmup": 1, "min_seconds": 0.0},
               {"name": "server", "runtime": "torch", "batch_size": 8, "threads": 1,
                "warmup": 1, "min_seconds": 0.0}]


@pytest.fixture(scope="module")
def answered(tmp_path_factory):
    """A tiny run: train, int8 by torch.ao (which the edge target cannot run), calibrate."""
    tmp = tmp_path_factory.mktemp("answer")
    raw = tiny_raw(targets=TWO_TARGETS,
                   evaluate=["accuracy", "nll", "ece", "size", "macs", "latency", "robust"],
                   metric_options={"robust": {"examples": 16, "steps": 2, "curve": [],
                                              "attacks": ["fgsm", "pgd"]}},
                   stages=[{"train": {"epochs": 1, "batch_size": 32}},
                           {"quantize": {"method": "torch-static", "calibration_size": 32,
                                         "target": "server"}},
                           {"calibrate": {}}])
    (tmp / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp / "r.yaml"), "--out", str(tmp / "o"), "--quiet"]) == 0
    return tmp / "o", json.loads((tmp / "o/results.json").read_text())


def test_every_stage_says_how_it_ships_to_every_target(answered):
    out, res = answered
    train, quant, cal = res["stages"]
    assert set(train["details"]["deployed"]) == {"edge", "server"}
    assert quant["details"]["deployed"]["server"]["precision"] == "int8"
    assert (out / quant["details"]["deployed"]["server"]["file"]).is_file()
    edge = quant["details"]["deployed"]["edge"]
    assert "runtime" not in edge and "cannot run" in edge["reason"]
    assert "latency_ms/edge" not in quant["metrics"] and "latency_ms/server" in quant["metrics"]
    assert quant["details"]["latency"]["edge"]["skipped"]
    assert any("no deployment for target 'edge'" in w for w in quant["details"]["warnings"])
    for s in (train, quant, cal):
        assert "latency_ms/server" in s["metrics"]
        lat = s["details"]["latency"]["server"]
        assert {"p10_ms", "p90_ms", "rounds", "noisy", "load"} <= set(lat)
    assert cal["details"]["latency"]["server"]["vs_parent"]["stage"] == "quantize"
    # the calibrated int8 stage is attacked through the float model it descends from
    assert cal["details"]["robustness"]["gradients"] == \
        "BPDA through the float model of stage 'train'"


def test_summary_recommends_per_target_and_concludes(answered):
    out, res = answered
    s = res["summary"]
    assert [r["target"] for r in s["recommendations"]] == ["edge", "server"]
    edge = s["recommendations"][0]
    assert edge["stage"] == "train"  # the only stage the edge target can run
    assert "no latency on 'edge'" in edge["rejected"]["quantize"][0]
    assert s["conclusions"] and s["decide"]["max_accuracy_drop"] == 0.01
    assert res["run"]["seed"] == 0 and res["run"]["recipe_file"].endswith("r.yaml")
    md = (out / "report.md").read_text()
    assert md.index("## Answer") < md.index("## Stages") < md.index("## All metrics")
    assert "edge deployed as" in md and "server deployed as" in md
    assert re.search(r"\| server \| \w+ \| torch", md) or "| server |" in md


def test_report_of_two_runs_keeps_sections_and_shows_the_difference(answered, tmp_path):
    out, _ = answered
    other = tmp_path / "b"
    shutil.copytree(out, other)
    res = json.loads((other / "results.json").read_text())
    res["recipe"]["seed"] = 7
    (other / "results.json").write_text(json.dumps(res))
    assert main(["report", str(out), str(other), "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp/report.md").read_text()
    assert "## What differs" in md and "| seed | 0 | 7 |" in md
    for section in ("Quantization (", "Adversarial robustness", "Post-hoc calibration",
                    "Latency"):
        assert section in md, section


CHECK = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  const out = document.createElement('pre'); out.id = 'nnopt-check';
  out.textContent = JSON.stringify({images: imgs.length, broken: bad,
    width: document.documentElement.scrollWidth});
  document.body.appendChild(out);
});</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (make browser installs it)")
def test_report_in_a_real_browser(answered, tmp_path):
    out, _ = answered
    page = tmp_path / "report.html"
    page.write_text((out / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1280,800", "--virtual-time-budget=5000"]
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    found = re.search(r'<pre id="nnopt-check">(.*?)</pre>', dom)
    assert found, dom[-500:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] >= 1 and check["broken"] == 0
    assert check["width"] <= 1280
    shot = out.parent / "first-screen.png"  # kept beside the run for a person to look at
    subprocess.run(base + [f"--screenshot={shot}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_every_step_says_when_it_pays_off_and_what_it_costs():
    from nnopt.core.registry import STEPS
    from nnopt.guide import guide_lines

    for name in STEPS.names():
        lines = guide_lines(name, STEPS.get(name).meta)
        assert [ln.split(":")[0] for ln in lines] == ["pays off", "costs", "paper"], name


def test_quantize_names_a_target_that_is_not_in_the_recipe(tmp_path, capsys):
    raw = tiny_raw(stages=[{"train": {"epochs": 1}},
                           {"quantize": {"method": "ort-static", "target": "nope"}}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "quantize target 'nope' is not a recipe target; targets: cpu" in \
        capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_timing_one_stage_alone_uses_its_target_deployment(answered):
    from nnopt.core.errors import NnoptError
    from nnopt.data import load_data
    from nnopt.measure import Measurement
    from nnopt.measure.latency import measure_target
    from nnopt.measure.target import Target
    from nnopt.recipe import resolve

    out, _ = answered
    model = load_model(out / "models/quantize")
    data = load_data(resolve(tiny_raw()).data)
    server, edge = (Target(**{**t, "repeats": 5}) for t in reversed(TWO_TARGETS))
    rec = measure_target(Measurement(model, data, [server], out / "models/quantize"), server)
    assert rec["runtime"] == "torch" and rec["median_ms"] > 0
    with pytest.raises(NnoptError, match="deployed nothing to target 'edge'"):
        measure_target(Measurement(model, data, [edge], out / "models/quantize"), edge)


def test_report_redraws_a_results_file_written_before_the_answer(answered, tmp_path):
    """A results.json of an older nnopt (no run metadata, no summary, latency without paired
    figures) still draws a report, with its answer computed from what it holds."""
    out, res = answered
    res = json.loads(json.dumps(res))  # the fixture's copy stays as it was
    old = tmp_path / "old"
    shutil.copytree(out, old)
    del res["run"], res["summary"]
    for s in res["stages"]:
        for t, lat in s["details"].get("latency", {}).items():
            s["details"]["latency"][t] = {k: v for k, v in lat.items()
                                          if k in ("runtime", "median_ms", "p10_ms", "p90_ms",
                                                   "threads", "batch_size", "repeats",
                                                   "skipped")}
        s["details"].pop("deployed", None)
    (old / "results.json").write_text(json.dumps(res))
    assert main(["report", str(old), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again/results.json").read_text())
    assert [r["target"] for r in again["summary"]["recommendations"]] == ["edge", "server"]
    assert "## Answer" in (tmp_path / "again/report.md").read_text()
