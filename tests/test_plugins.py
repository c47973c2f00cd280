"""Plugins and the registry manifest, each in a fresh process (what a user's shell sees).

A separate package (tests/plugin, installed here into a temporary folder with pip) registers a
model, a dataset, a step and a metric through the ``nnopt.plugins`` entry-point group; `nnopt
list` shows them and a recipe uses all four. `nnopt report RUN` in a fresh process draws every
section of the run's own report (registration no longer depends on what was imported first).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def nnopt(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
          ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnopt", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """tests/plugin installed (as pip installs any package) into a folder of its own."""
    tmp = tmp_path_factory.mktemp("plugin")
    src, site = tmp / "src", tmp / "site"
    shutil.copytree(ROOT / "tests/plugin", src)  # pip's build writes next to the sources
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (next(site.glob("*.dist-info")) / "entry_points.txt").read_text().count("nnopt.plugins")
    return site


def test_plugin_is_listed_and_explained(plugin_site):
    env = {"PYTHONPATH": str(plugin_site)}
    out = nnopt("list", env=env)
    assert out.returncode == 0, out.stderr
    for name in ("tinynet", "stripes", "scale_logits", "mean_confidence"):
        assert re.search(rf"^\s+{name}\s", out.stdout, re.M), name
    assert "demo = nnopt_demo_plugin" in out.stdout
    out = nnopt("explain", "tinynet", env=env)
    assert out.returncode == 0 and "from nnopt_demo_plugin" in out.stdout and "hidden" in out.stdout
    # without the plugin on the path none of it exists
    bare = nnopt("list", "models")
    assert bare.returncode == 0 and "tinynet" not in bare.stdout


def test_recipe_uses_the_plugin(plugin_site, tmp_path):
    recipe = tmp_path / "plugin.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "plugin", "seed": 0, "data": {"name": "stripes", "size": 200},
        "model": {"name": "tinynet", "hidden": 8},
        "evaluate": ["accuracy", "mean_confidence"],
        "stages": [{"train": {"epochs": 3, "batch_size": 32, "lr": 0.01}},
                   {"scale_logits": {"factor": 3.0}}]}))
    out = nnopt("run", recipe, "--out", tmp_path / "run", "--quiet",
                env={"PYTHONPATH": str(plugin_site)})
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "run/results.json").read_text())
    trained, scaled = res["stages"]
    assert trained["metrics"]["accuracy"] > 0.9  # stripes are easy
    # scaling logits by 3 keeps every prediction and sharpens every softmax
    assert scaled["metrics"]["accuracy"] == trained["metrics"]["accuracy"]
    assert scaled["metrics"]["mean_confidence"] > trained["metrics"]["mean_confidence"]
    assert scaled["details"]["scale_logits"] == {"factor": 3.0}


def test_a_broken_plugin_is_one_line(plugin_site, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(plugin_site, site)
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nnopt.plugins]\nbroken = no_such_module_here\n")
    out = nnopt("list", env={"PYTHONPATH": str(site)})
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "plugin 'broken' (no_such_module_here) failed to load" in out.stderr


def _headings(md: Path) -> list[str]:
    return [line for line in md.read_text().splitlines() if line.startswith("#")]


def test_report_in_a_fresh_process_has_every_section(tmp_path):
    """A run with prune, quantize, calibrate and fuse stages; `nnopt report` on it, in a new
    process, draws the same sections as the run's own report."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "sections", "seed": 0, "data": {"name": "digits", "limit": 400},
        "model": {"name": "cnn", "width": 4, "hidden": 16},
        "targets": [{"name": "cpu", "runtime": "onnxruntime", "warmup": 1, "repeats": 5,
                     "min_seconds": 0}],
        "evaluate": ["accuracy", "nll", "ece", "params", "size", "latency"],
        "stages": [{"train": {"epochs": 1, "batch_size": 64}},
                   {"prune": {"method": "magnitude", "amount": 0.5,
                              "finetune": {"epochs": 1, "batch_size": 64}}},
                   {"calibrate": {"method": "temperature"}},
                   {"quantize": {"method": "ort-static"}}]}))
    run = nnopt("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert run.returncode == 0, run.stderr
    again = nnopt("report", tmp_path / "run", "--out", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    own = _headings(tmp_path / "run/report.md")
    # a comparison labels stages 'RUN/stage'; otherwise the headings are the run's own
    redrawn = [h.replace(f"{tmp_path / 'run'}/", "") for h in _headings(tmp_path / "again/report.md")]
    sections = [h for h in own if h.startswith("## ")]
    assert len(sections) >= 8  # stages, training, pruning, calibration, quantization, ...
    assert [h for h in redrawn if h.startswith("## ")] == sections
    assert len(redrawn) == len(own)
