"""Figures a user acts on are true: a deployed artifact's size is the bytes of all its files on
every runtime; ratios between runs are never called paired; the terminal, the answer and the
conclusions say one thing per fact by one rule; small test sets say how little they prove; a
target ships only what its runtime implies; the figures draw what their legends name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg

from conftest import tiny_raw
from nnopt.cli import main
from nnopt.commands import _print_answer
from nnopt.measure.decide import DecideConfig, close_call, recommend
from nnopt.measure.target import Target
from nnopt.report import Report, StageRecord
from nnopt.report.plots import Point, _scatter, accuracy_vs_size, subplots
from nnopt.report.summary import summarize

FAST = {"batch_size": 2, "threads": 1, "warmup": 1, "repeats": 5, "min_seconds": 0.0}
TARGETS = [{"name": "ort", "runtime": "onnxruntime", **FAST},
           {"name": "ov", "runtime": "openvino", **FAST},
           {"name": "et", "runtime": "executorch", **FAST},
           {"name": "pt", "runtime": "torch", "runtimes": ["torch"], **FAST}]


@pytest.fixture(scope="module")
def every_runtime(tmp_path_factory):
    """A tiny run deployed per target to each of the four runtimes."""
    pytest.importorskip("openvino")
    pytest.importorskip("executorch")
    tmp = tmp_path_factory.mktemp("runtimes")
    raw = tiny_raw(targets=TARGETS, evaluate=["accuracy", "size", "latency"],
                   stages=[{"train": {"epochs": 1, "batch_size": 32}},
                           {"quantize": {"method": "auto", "target": "ov",
                                         "calibration_size": 32}}])
    (tmp / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp / "r.yaml"), "--out", str(tmp / "o"), "--quiet"]) == 0
    return tmp / "o", json.loads((tmp / "o" / "results.json").read_text())


def _bytes(out: Path, files: list[str]) -> int:
    return sum((out / f).stat().st_size for f in files)


def test_size_is_every_file_of_the_artifact_on_every_runtime(every_runtime):
    out, res = every_runtime
    train, quant = res["stages"]
    for t in ("ort", "ov", "et", "pt"):
        d = quant["details"]["deployed"][t]
        folder = out / "models" / "quantize" / t  # the target's artifact has a folder of its own
        assert sorted(d["files"]) == sorted(f.relative_to(out).as_posix()
                                            for f in folder.iterdir())
        assert d["size_bytes"] == sum(f.stat().st_size for f in folder.iterdir()), t
        assert d["runtime"] == {"ort": "onnxruntime", "ov": "openvino", "et": "executorch",
                                "pt": "torch"}[t]
    ov = quant["details"]["deployed"]["ov"]
    assert {Path(f).name for f in ov["files"]} >= {"model.xml", "model.bin"}  # not xml alone
    assert quant["metrics"]["size_bytes"] == ov["size_bytes"]  # the primary target's artifact
    # the trained model: its weights and spec for PyTorch, the file each runtime was given
    shipped = {t: {Path(f).name for f in train["details"]["deployed"][t]["files"]}
               for t in ("ort", "ov", "et", "pt")}
    assert shipped == {"ort": {"model.onnx"}, "ov": {"model.onnx"}, "et": {"model-b2.pte"},
                       "pt": {"model.safetensors", "spec.json"}}
    for t in shipped:
        d = train["details"]["deployed"][t]
        assert d["size_bytes"] == _bytes(out, d["files"])
    assert train["metrics"]["size_bytes"] == train["details"]["deployed"]["pt"]["size_bytes"]


def test_a_target_ships_only_what_its_runtime_implies(every_runtime):
    _, res = every_runtime
    q = res["stages"][1]["details"]["quantization"]
    for t, runtime in (("ort", "onnxruntime"), ("ov", "openvino"), ("et", "executorch")):
        assert {r["runtime"] for r in q["candidates"][t] if r["runs_here"]} == {runtime}, t
    assert Target(name="a", runtime="onnxruntime").allowed == ["onnxruntime"]
    assert set(Target(name="a").allowed) == {"torch", "onnxruntime", "openvino", "executorch"}
    assert Target(name="a", device="cuda").allowed == ["torch", "onnxruntime"]


def test_the_answer_names_the_files_to_ship_and_why_not_the_others(every_runtime):
    out, res = every_runtime
    md = (out / "report.md").read_text()
    for r in res["summary"]["recommendations"]:
        assert r["stage"] in ("train", "quantize")
        files = r["deployed"]["files"]
        assert files and all((out / f).is_file() for f in files)
        row = next(line for line in md.splitlines() if line.startswith(f"| {r['target']} |"))
        assert " + ".join(files) in row
        other = "train" if r["stage"] == "quantize" else "quantize"
        reasons = {**r["rejected"], **r["slower"]}
        assert other in reasons and other in row  # said why it was not chosen


def _lat(ms: float, vs: float | None, noisy: bool = False) -> dict:
    rec = {"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "noisy": noisy, "rounds": 7,
           "deployed": {"runtime": "openvino", "precision": "int8"}}
    if vs is not None:
        rec["vs_first"] = rec["vs_parent"] = {"stage": "train", "ratio": vs, "p10": vs * 0.9,
                                              "p90": vs * 1.1, "noisy": noisy}
    return rec


def _report(noisy_pass: bool, test: int = 10000, acc: float = 0.9147) -> Report:
    """A trained stage and its deployment: the timing pass (noisy or not) and the selection
    timing inside quantize, which was noisy."""
    quant = {"from": "train", "latency": {"server": _lat(2.6, 5.74, noisy_pass)},
             "quantization": {"chosen": {"server": "openvino-int8"}, "candidates": {"server": [
                 {"deployment": "openvino-int8", "runtime": "openvino", "precision": "int8",
                  "noisy": True, "speedup": 10.03, "speedup_p10": 5.99, "speedup_p90": 20.38,
                  "runs_here": True}]}},
             "deployed": {"server": {"runtime": "openvino", "precision": "int8",
                                     "files": ["models/quantize/server/model.xml",
                                               "models/quantize/server/model.bin"],
                                     "size_bytes": 460000}}}
    stages = [StageRecord("train", "train", 1.0, "models/train", {"accuracy": 0.9144},
                          {"latency": {"server": _lat(14.4, None)}}),
              StageRecord("quantize", "quantize", 1.0, "models/quantize",
                          {"accuracy": acc}, quant)]
    return Report("0", {"targets": [{"name": "server"}]}, {}, {"test": test}, stages)


def test_conclusions_say_each_fact_once_by_one_rule(capsys):
    s = summarize(_report(noisy_pass=False))
    lines = s["conclusions"]
    speed = [ln for ln in lines if "5.74x" in ln]
    assert len(speed) == 1 and "on server 5.74x faster" in speed[0]
    choice = next(ln for ln in lines if "server gets openvino-int8" in ln)
    assert "x over" not in choice and "not claimed" not in choice  # its speed is said once
    assert not any("not claimed" in ln for ln in lines)
    _print_answer(s)
    assert "speed-up vs the first stage 5.74x" in capsys.readouterr().out
    noisy = summarize(_report(noisy_pass=True))  # the timing pass noisy: nothing claims 5.74x
    assert not any("5.74x" in ln for ln in noisy["conclusions"])
    assert any("on server no speed-up is claimed" in ln for ln in noisy["conclusions"])
    _print_answer(noisy)
    out = capsys.readouterr().out
    assert "not claimed (noisy)" in out and "5.74" not in out  # the terminal follows the report


def test_a_decision_within_two_standard_errors_says_so():
    first = {"name": "train", "metrics": {"accuracy": 0.90}}
    near = {"name": "quantize", "metrics": {"accuracy": 0.891}}
    call = close_call(near, first, "edge", DecideConfig(), 450)  # 0.9 pt against 1 pt
    assert call["accepted"] and call["test_examples"] == 450
    lo, hi = call["drop_ci95"]
    assert lo < 0.01 < hi and call["se"] == pytest.approx((0.09 + 0.891 * 0.109) ** 0.5 / 450 ** .5)
    assert close_call(near, first, "edge", DecideConfig(), 1_000_000) is None  # enough examples
    lines = summarize(_report(False, test=450, acc=0.9144 - 0.009))["conclusions"]
    assert any("within 2 standard errors of the 1.00 pt budget on 450 test examples" in ln
               for ln in lines)
    rec = summarize(_report(False, test=450))["recommendations"][0]
    lo, hi = rec["accuracy_ci95"]
    assert lo < rec["accuracy"] < hi and rec["test_examples"] == 450


def test_recommendation_says_why_a_slower_stage_was_not_chosen():
    def stage(name, vs):
        lat = {"median_ms": 10 / vs, "p10_ms": 1, "p90_ms": 1, "noisy": False}
        if name != "train":
            lat["vs_first"] = {"ratio": vs, "p10": vs, "p90": vs, "noisy": False}
        return {"name": name, "metrics": {"accuracy": 0.9}, "latency": {"edge": lat}}

    r = recommend([stage("train", 1.0), stage("prune", 3.0), stage("cal", 3.05)], "edge",
                  DecideConfig())
    assert r["stage"] == "prune"
    assert r["slower"]["train"] == "3.00x slower than prune (paired)"
    assert "the same speed as prune within 5%" in r["slower"]["cal"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    raw = tiny_raw(stages=[{"train": {"epochs": 1, "batch_size": 32}}])
    (tmp / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp / "r.yaml"), "--out", str(tmp / "quiet"), "--quiet"]) == 0
    shutil.copytree(tmp / "quiet", tmp / "busy")
    res = json.loads((tmp / "busy" / "results.json").read_text())
    lat = res["stages"][0]["details"]["latency"]["cpu"]
    lat.update(noisy=True, noisy_why="the machine was busy")
    res["environment"]["cpu"] = "another CPU"
    (tmp / "busy" / "results.json").write_text(json.dumps(res))
    return tmp


def test_ratios_between_runs_are_not_called_paired(two_runs):
    tmp = two_runs
    assert main(["report", str(tmp / "quiet"), str(tmp / "busy"), "--out",
                 str(tmp / "cmp")]) == 0
    md = (tmp / "cmp" / "report.md").read_text()
    row = next(ln for ln in md.splitlines() if ln.startswith(f"| {tmp / 'busy'}/train |")
               and "separate runs" in ln)
    assert "(separate runs, not paired; flagged: " in row
    assert "busy noisy" in row and "different machines" in row
    assert "| cpu |" in md and "another CPU" in md  # what differs between the machines
    assert "the paired speed-up from the same timing rounds" not in md


def test_report_time_retimes_the_runs_side_by_side(two_runs):
    tmp = two_runs
    assert main(["report", str(tmp / "quiet"), str(tmp / "busy"), "--out", str(tmp / "t"),
                 "--time"]) == 0
    md = (tmp / "t" / "report.md").read_text()
    assert "## Latency re-timed side by side" in md and "separate runs" not in md
    retimed = json.loads((tmp / "t" / "comparison.json").read_text())["retimed"]
    busy = retimed[f"{tmp / 'busy'}/train"]["cpu"]
    assert busy["vs_first"]["stage"] == f"{tmp / 'quiet'}/train" and busy["median_ms"] > 0
    assert sorted(p.name for p in (tmp / "busy").iterdir()) == sorted(
        p.name for p in (tmp / "quiet").iterdir())  # the run folders were only read


def test_figures_draw_what_their_legend_names(tmp_path):
    points = [Point("train", {"accuracy": 0.9144, "size_bytes": 1.6e6}),
              Point("quantize", {"accuracy": 0.9147, "size_bytes": 4.6e5})]
    fig, ax = subplots()
    assert _scatter(ax, points, "size_bytes", "accuracy", "size (KiB)", 1024)
    labels = [h.get_label() for h in ax.get_legend().legend_handles]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for lab in labels:  # a line in the legend has two points or more; one model is a ring
        assert lab not in lines or len(lines[lab].get_xdata()) > 1
    assert "Pareto front (one model dominates)" in labels
    lo, hi = ax.get_ylim()
    assert hi - lo >= 1.0  # 0.03 pt does not fill the panel
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    for text in ax.texts:  # no point label under the legend
        assert not legend.overlaps(text.get_window_extent(renderer))
    assert accuracy_vs_size(points, tmp_path / "s.png").is_file()
