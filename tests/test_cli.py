"""The CLI end to end on tiny recipes: contracts of the run folder and of bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_raw
from nnopt.cli import main
from nnopt.core.registry import STEPS
from nnopt.models import load_model, save_model

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run shared by the contract tests."""
    import yaml

    folder = tmp_path_factory.mktemp("run")
    recipe = folder / "tiny.yaml"
    raw = tiny_raw(targets=[
        {"name": "edge", "runtime": "onnxruntime", "batch_size": 1, "threads": 1, "warmup": 1,
         "repeats": 5, "min_seconds": 0.0},
        {"name": "server", "runtime": "torch", "batch_size": 4, "threads": 1, "warmup": 1,
         "repeats": 5, "min_seconds": 0.0}])
    raw["evaluate"].append("peak_memory")
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["run", str(recipe), "--out", str(folder / "out"), "--quiet"]) == 0
    return recipe, folder / "out"


def test_run_writes_the_contracted_files(tiny_run):
    _, out = tiny_run
    for name in ["results.json", "report.md", "report.html", "figures/accuracy_vs_latency.png",
                 "figures/accuracy_vs_size.png", "figures/training_curves.png",
                 "models/train/model.safetensors", "models/train/spec.json"]:
        assert (out / name).is_file(), name
    assert not list(out.parent.glob(".out.partial-*"))


def test_results_json_contract(tiny_run):
    _, out = tiny_run
    res = json.loads((out / "results.json").read_text())
    assert {"nnopt_version", "recipe", "environment", "stages"} <= set(res)
    assert {"python", "torch", "onnxruntime", "cpu", "torch_threads", "gpu"} <= set(res["environment"])
    stage = res["stages"][0]
    assert {"name", "step", "seconds", "artifact", "metrics"} <= set(stage)
    assert stage["artifact"] == "models/train"
    assert {"accuracy", "nll", "params", "nonzero_params", "size_bytes", "compressed_size_bytes",
            "macs", "peak_memory_bytes", "latency_ms/edge", "latency_ms/server"} == set(stage["metrics"])
    assert all(isinstance(v, (int, float)) for v in stage["metrics"].values())
    assert res["recipe"]["stages"][0]["train"]["optimizer"] == "adamw"  # resolved with defaults
    assert stage["details"]["latency"]["edge"]["runtime"] == "onnxruntime"
    assert len(stage["details"]["history"]) == 2


def test_html_report_is_self_contained(tiny_run):
    html = (tiny_run[1] / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "src='figures/" not in html
    md = (tiny_run[1] / "report.md").read_text()
    assert "| train | train |" in md and "](figures/accuracy_vs_size.png)" in md


def test_saved_stage_model_reloads_bit_identical(tiny_run, tmp_path):
    _, out = tiny_run
    a, b = load_model(out / "models/train"), load_model(out / "models/train")
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(a(x), b(x))
    save_model(a, tmp_path / "again")
    assert (tmp_path / "again/model.safetensors").read_bytes() == \
        (out / "models/train/model.safetensors").read_bytes()


def test_saved_model_as_recipe_input_measures_it(tiny_run, tmp_path, write_recipe, capsys):
    _, out = tiny_run
    raw = tiny_raw(model={"path": str(out / "models/train")}, stages=[],
                   evaluate=["accuracy", "params"])
    code, stdout, _ = run_cli(capsys, "run", write_recipe(raw), "--out", tmp_path / "o", "--quiet")
    assert code == 0 and "input" in stdout
    before = json.loads((out / "results.json").read_text())["stages"][0]["metrics"]["accuracy"]
    after = json.loads((tmp_path / "o/results.json").read_text())["stages"][0]["metrics"]
    assert after["accuracy"] == before


def test_rerun_replaces_and_foreign_folders_are_refused(tiny_run, tmp_path, capsys):
    recipe, _ = tiny_run
    out = tmp_path / "o"
    assert run_cli(capsys, "run", recipe, "--out", out, "--quiet", "--set",
                   "stages.train.epochs=1")[0] == 0
    assert run_cli(capsys, "run", recipe, "--out", out, "--quiet", "--set",
                   "stages.train.epochs=1")[0] == 0
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    code, _, err = run_cli(capsys, "run", recipe, "--out", foreign, "--quiet")
    assert code == 2 and "refusing to replace" in err
    assert (foreign / "thesis.tex").read_text() == "precious"


BAD = {
    "unknown step": (dict(stages=[{"prnue": {}}]), "unknown step 'prnue'"),
    "unknown field": (dict(model={"name": "cnn", "witdh": 3}), "unknown field 'witdh'"),
    "wrong type": (dict(stages=[{"train": {"epochs": "ten"}}]), "stages[0].train.epochs"),
    "missing dataset": (dict(data={"name": "fashion-mnist", "root": "/nonexistent/fm"}),
                        "dataset 'fashion-mnist' not found"),
    "shape mismatch": (dict(model={"factory": "helpers.user_models:small_net",
                                   "kwargs": {"input_shape": [1, 4, 4]}}),
                       "does not fit dataset 'synthetic' (input shape (1, 8, 8)): mat1 and mat2"),
    "wrong input kind": (dict(model={"name": "cnn1d"}), "needs sequence inputs (C, L)"),
    "model cannot be built": (dict(model={"name": "vit", "patch_size": 3}),
                              "patch_size 3 does not divide"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_in_one_line_without_output(case, write_recipe, tmp_path, capsys):
    changes, needle = BAD[case]
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "run", write_recipe(tiny_raw(**changes)), "--out", out)
    assert code == 2
    assert err.startswith("nnopt: error: ") and needle in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_corrupt_model_file_fails_cleanly(tiny_run, tmp_path, write_recipe, capsys):
    _, run = tiny_run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "spec.json").write_text((run / "models/train/spec.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x12" * 64)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", write_recipe(tiny_raw(model={"path": str(broken)})),
                           "--out", out)
    assert code == 2 and "is corrupt" in err and err.count("\n") == 1
    assert not out.exists()


def test_interrupted_run_leaves_nothing(tiny_run, tmp_path, monkeypatch, capsys):
    recipe, _ = tiny_run

    def boom(model, cfg, ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(STEPS._entries, "train", dataclasses.replace(STEPS.get("train"), fn=boom))
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", recipe, "--out", out)
    assert code == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_entry_point_exit_code_and_one_line(tmp_path, write_recipe):
    path = write_recipe(tiny_raw(stages=[{"trian": {}}]))
    proc = subprocess.run([sys.executable, "-m", "nnopt", "run", str(path), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "did you mean 'train'" in proc.stderr


def test_validate_list_explain(capsys, write_recipe):
    code, out, _ = run_cli(capsys, "validate", write_recipe(tiny_raw()))
    assert code == 0 and out.startswith("ok:") and "train (train)" in out
    code, out, _ = run_cli(capsys, "list")
    for name in ["train", "cnn", "resnet", "vit", "fashion-mnist", "mnist1d", "latency", "macs"]:
        assert f"  {name} " in out
    code, out, _ = run_cli(capsys, "explain", "train")
    assert code == 0 and "epochs" in out and "cosine" in out and "best validation" in out
    code, _, err = run_cli(capsys, "explain", "trian")
    assert code == 2 and "did you mean 'train'" in err


def test_report_merges_runs(tiny_run, tmp_path, capsys):
    recipe, out = tiny_run
    other = tmp_path / "other"
    assert run_cli(capsys, "run", recipe, "--out", other, "--quiet", "--set",
                   "model.width=2")[0] == 0
    code, stdout, _ = run_cli(capsys, "report", out, other, "--out", tmp_path / "cmp")
    assert code == 0 and f"{other}/train" in stdout
    comp = json.loads((tmp_path / "cmp/comparison.json").read_text())
    assert len(comp["runs"]) == 2
    assert (tmp_path / "cmp/figures/accuracy_vs_latency.png").is_file()
    code, _, err = run_cli(capsys, "report", tmp_path / "nothing", "--out", tmp_path / "c2")
    assert code == 2 and "no results.json" in err


def test_sweep_runs_variants_and_writes_curves(tiny_run, tmp_path, capsys):
    recipe, _ = tiny_run
    out = tmp_path / "sweep"
    code, stdout, err = run_cli(capsys, "sweep", recipe, "--grid", "model.width=2,4",
                                "--set", "stages.train.epochs=1", "--out", out)
    assert code == 0 and err.count("ok") == 2
    sweep = json.loads((out / "sweep.json").read_text())
    assert [v["values"] for v in sweep["variants"]] == [{"model.width": 2}, {"model.width": 4}]
    params = [v["metrics"]["params"] for v in sweep["variants"]]
    assert params[0] < params[1]
    assert (out / "figures/sweep_metrics.png").is_file() and (out / "report.html").is_file()
    assert all((Path(v["out"]) / "results.json").is_file() for v in sweep["variants"])
    md = (out / "report.md").read_text()  # each variant's report linked, its deployment shown
    for v in sweep["variants"]:
        link = Path(v["out"]).resolve().relative_to(out.resolve()).as_posix() + "/report.html"
        assert f"[report]({link})" in md and (out / link).is_file()
        assert v["deployed"] and all(d.endswith("fp32") for d in v["deployed"].values())
    assert "deployed as" in md and "recommended" in md
    assert "<a href='variants/" in (out / "report.html").read_text()
    code, _, err = run_cli(capsys, "sweep", recipe, "--grid", "model.width=2,4", "--set",
                           "stages.train.epochs=1", "--out", out, "--resume")
    assert code == 0 and err.count("skipped") == 2
    code, _, err = run_cli(capsys, "sweep", recipe, "--grid", "model.widht=2", "--out", out)
    assert code == 2 and "unknown field 'widht'" in err
    code, _, err = run_cli(capsys, "sweep", recipe, "--grid", "model.width=2", "--out", out,
                           "--executor", "slurm")
    assert code == 2 and "valid choices: local" in err
