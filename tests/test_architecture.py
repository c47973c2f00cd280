"""The house rules that keep the floors one-way (README, "Architecture"): no nnopt import inside a
function, no global setting changed by importing nnopt or left changed by a computation, one
registry that is complete before any lookup, missing extras named in one line."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnopt.core.errors import NnoptError
from nnopt.core.extras import require
from nnopt.core.registry import REGISTRIES, SECTIONS, STEPS, TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "nnopt"


def _function_level_nnopt_imports(path: Path) -> list[int]:
    found = []

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            here = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if inside and isinstance(child, ast.ImportFrom) and (child.module or "").startswith(
                    "nnopt") or inside and isinstance(child, ast.Import) and any(
                    a.name.startswith("nnopt") for a in child.names):
                found.append(child.lineno)
            visit(child, here)

    visit(ast.parse(path.read_text()), False)
    return found


def test_no_nnopt_import_inside_a_function():
    """Function-level imports are for optional third-party packages only: an nnopt module
    imported inside a function is a floor violation waiting to happen (and hides cycles)."""
    bad = {str(p.relative_to(SRC)): lines for p in SRC.rglob("*.py")
           if (lines := _function_level_nnopt_imports(p))}
    assert not bad, f"nnopt imports inside functions: {bad}"


def test_the_scan_finds_a_function_level_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from nnopt.runner import run_recipe\n    return run_recipe\n")
    assert _function_level_nnopt_imports(probe) == [2]


def test_importing_nnopt_changes_no_global_setting():
    """In a fresh interpreter: importing every module of nnopt (the manifest) sets no
    environment variable, leaves matplotlib's backend and torch's quantized engine alone, and
    building and running a torch int8 model restores the engine it found."""
    code = r"""
import json, os, sys
env = dict(os.environ)
import matplotlib
backend = dict.__getitem__(matplotlib.rcParams, "backend")  # raw: resolving it imports pyplot
import torch
engines = torch.backends.quantized.supported_engines
start = "qnnpack" if "qnnpack" in engines else torch.backends.quantized.engine
torch.backends.quantized.engine = start
from nnopt.core.registry import load_all
load_all()
from nnopt.compress.quantize.torch_int8 import TorchInt8Model, build
from nnopt.models.base import build_model
from nnopt.models.mlp import MlpConfig
model = build_model(MlpConfig(hidden=[8]), (1, 4, 4), 3)
q = TorchInt8Model(build(model, "torch-static", torch.randn(16, 1, 4, 4)), {})
q(torch.randn(2, 1, 4, 4))
print(json.dumps({"env": sorted(set(os.environ.items()) ^ set(env.items())),
                  "backend": [str(backend), str(dict.__getitem__(matplotlib.rcParams, "backend"))],
                  "pyplot": "matplotlib.pyplot" in sys.modules,
                  "engine": [start, torch.backends.quantized.engine]}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["env"] == []
    assert got["backend"][0] == got["backend"][1] and not got["pyplot"]
    assert got["engine"][0] == got["engine"][1]


def test_registry_is_complete_before_the_first_lookup():
    # any lookup loads the manifest: every kind has its built-ins, sections in manifest order
    assert {"steps", "models", "datasets", "metrics", "tasks", "sections", "formats",
            "transforms", "strategies", "executors", "corruptions", "heads",
            "commands"} <= set(REGISTRIES)
    assert {"classify", "adversarial", "coteaching", "elr"} <= set(TASKS.names())
    assert "train" in STEPS and all(len(r.names()) for r in REGISTRIES.values())
    order = [e.name for e in SECTIONS.in_order()]
    assert order.index("compress.prune.report:sparsity_section") < order.index(
        "trust.calibration.report:reliability_section")


def test_a_name_that_is_not_a_string_is_unknown(tmp_path):
    """A recipe value of another type where a name goes (found by the recipe fuzz test: a
    distill student named [] crashed the membership check)."""
    assert [] not in STEPS and {"a": 1} not in STEPS and None not in STEPS
    with pytest.raises(NnoptError, match="unknown step"):
        STEPS.get([])  # type: ignore[arg-type]
    from nnopt.recipe import resolve

    raw = {"data": {"name": "synthetic"}, "model": {"name": "mlp"},
           "stages": [{"distill": {"student": {"name": []}}}]}
    with pytest.raises(NnoptError, match="student"):
        resolve(raw)


def test_names_are_unique_within_a_kind():
    with pytest.raises(ValueError, match="registered twice"):
        STEPS.add("train", lambda m, c, x: m)


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    with pytest.raises(NnoptError, match=r"the tpe strategy needs the optional package "
                       r"'optuna': pip install 'nnopt\[search\]'"):
        require("optuna", "the tpe strategy")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(NnoptError, match=r"nnopt\[data\]"):
        require("sklearn", "the digits dataset", extra="data")
    assert require("torch") is torch


def test_typed_records_round_trip_through_json():
    """Every registered record: written as JSON (what results.json holds), read back equal;
    keys it does not know are ignored, a missing required field is one clear ValueError."""
    from nnopt.core.registry import RECORDS
    from nnopt.trust.calibration.records import CalibrationRecord

    assert {"calibration", "distillation", "fusion", "pruning"} <= set(RECORDS.names())
    rec = CalibrationRecord(method="temperature", fitted_on="validation (10 examples)",
                            val_ece_before=0.1, val_ece_after=0.05, temperature=1.5)
    details = json.loads(json.dumps({rec.KEY: rec.to_json()}))
    assert CalibrationRecord.of(details) == rec
    assert CalibrationRecord.of({}) is None
    details["calibration"]["from_a_newer_nnopt"] = 1
    assert CalibrationRecord.of(details) == rec
    with pytest.raises(ValueError, match="details\\['calibration'\\]"):
        CalibrationRecord.of({"calibration": {"method": "temperature"}})
    for entry in RECORDS.entries():
        assert entry.fn().KEY == entry.name and entry.doc


BLOCK_EXTRAS = r"""
import importlib.abc, importlib.machinery, sys
BLOCKED = {"torch_pruning", "optuna", "ray", "cleanlab", "sklearn", "mnist1d", "tokenizers"}
class Missing(importlib.abc.Loader):  # found without a location, fails like a missing package
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}", name=module.__name__)
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, Missing(), origin=None)
        return None
sys.meta_path.insert(0, Block())
"""


def test_the_core_install_runs_and_names_missing_extras(tmp_path):
    """With every optional package hidden (as in a core-only install): nnopt loads, lists and
    runs a recipe of core techniques; a step that needs an extra says which, in one line."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_EXTRAS)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: core\nseed: 0\ndata: {name: synthetic, shape: [1, 8, 8], train_size: 256}\n"
        "model: {name: mlp, hidden: [16]}\ntargets: [{name: cpu, warmup: 1, repeats: 5, "
        "min_seconds: 0}]\nevaluate: [accuracy, nll, ece, params, size, latency]\n"
        "stages:\n  - train: {epochs: 1, batch_size: 32}\n"
        "  - prune: {method: magnitude, amount: 0.5}\n  - calibrate: {method: temperature}\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}

    def nnopt(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nnopt", *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=300)

    probe = subprocess.run([sys.executable, "-c", "import sklearn"], env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0  # the blocker works
    assert nnopt("list").returncode == 0
    done = nnopt("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run/results.json").read_text())["stages"][2]["name"] == \
        "calibrate"
    channel = nnopt("run", recipe, "--out", tmp_path / "run2", "--quiet", "--set",
                    "stages.1.prune={method: channel, amount: 0.5}")
    assert channel.returncode == 2
    assert channel.stderr.strip() == ("nnopt: error: channel pruning needs the optional package "
                                      "'torch-pruning': pip install 'nnopt[prune]' (or nnopt[all])")
    assert not (tmp_path / "run2").exists()
