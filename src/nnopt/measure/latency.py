"""Latency measured on each target's runtime: warm-up, many timed calls, median and spread.

Never inferred from MACs. Timing uses ``time.perf_counter_ns`` around single calls with the
garbage collector paused; the median is the figure, p10/p90 the spread.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from nnopt.core.errors import NnoptError
from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement, is_artifact, is_stochastic, runtime_of
from nnopt.measure.executorch_rt import et_runner, lower
from nnopt.measure.openvino_rt import core, ov_runner
from nnopt.measure.quantity import MS
from nnopt.measure.runtimes import (
    export_onnx,
    onnx_runner,
    torch_runner,
    torch_threads,
    unavailable,
)
from nnopt.measure.sparse_exec import to_sparse
from nnopt.measure.target import Target
from nnopt.models.deployed import deployment_choices, for_target
from nnopt.models.saving import SPEC, WEIGHTS


def time_calls(fn: Callable[[], object], *, warmup: int = 10, repeats: int = 50,
               min_seconds: float = 0.5, max_repeats: int = 10_000) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then at least ``repeats`` times and ``min_seconds``.

    Returns median, p10, p90, mean and min in milliseconds, and the number of timed calls.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < max_repeats and (
                len(times) < repeats or time.perf_counter() - start < min_seconds):
            t0 = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        if gc_was:
            gc.enable()
    q = statistics.quantiles(times, n=10, method="inclusive")
    return {"median_ms": statistics.median(times), "p10_ms": q[0], "p90_ms": q[-1],
            "mean_ms": statistics.fmean(times), "min_ms": min(times), "repeats": len(times)}


def skip_reason(model: Any, target: Target) -> str:
    """Why ``model`` cannot be timed on ``target`` ('' when it can)."""
    own = runtime_of(model)
    runs_on = own if own != "torch" else target.runtime
    if is_artifact(model) and not target.allows(own):
        return (f"this {own} artifact does not run on a target limited to "
                f"{', '.join(target.allowed)}")
    if target.device == "cuda" and own in ("openvino", "executorch"):
        return f"this {own} artifact runs on the CPU, not on a cuda target"
    if target.device == "cuda" and own == "torch" and is_artifact(model) \
            and getattr(model, "spec", {}).get("precision") == "int8":
        return "torch.ao int8 kernels run on the CPU only"
    if is_stochastic(model) and runs_on != "torch":
        return "a sampling model (MC dropout, Bayesian layers) is deployed with PyTorch"
    return unavailable(runs_on, target.device)


def shipped(model: Any, target: Target) -> tuple[Any, str]:
    """What ``target`` runs of a stage's model (its deployment there, when the stage deployed
    per target) and why it cannot be timed there ('' when it can)."""
    out = for_target(model, target.name)
    if out is None:
        return None, deployment_choices(model)[target.name].get("reason", "no deployment")
    return out, skip_reason(out, target)


def target_runner(model: Any, target: Target, example: Any, work_dir: Path
                  ) -> tuple[Callable[[], object], str]:
    """A no-argument callable running one batch of ``model`` as ``target`` runs it (a deployed
    artifact on its own runtime, a PyTorch model on the target's runtime, exported to
    ``work_dir`` if need be: ONNX for ONNX Runtime and OpenVINO, a ``.pte`` for ExecuTorch),
    and the runtime's name. Call it under ``torch_threads(target.threads)``."""
    own = runtime_of(model)
    if is_artifact(model) and own not in ("torch", "onnxruntime"):
        return model.runner(example, target.threads), own
    gpu = {"device": target.device, "tensorrt": target.tensorrt}
    if target.runtime in ("onnxruntime", "openvino") or own == "onnxruntime":
        onnx = model.exported_onnx() if is_artifact(model) else None
        if onnx is None:
            path = work_dir / "model.onnx"
            if not path.is_file():
                export_onnx(model, path, example[:1])
            onnx = path.read_bytes()
        if target.runtime == "openvino" and own == "torch":
            return ov_runner(core().read_model(model=onnx), example, target.threads), "openvino"
        return onnx_runner(onnx, example, target.threads, **gpu), "onnxruntime"
    if target.runtime == "executorch":
        path = work_dir / f"model-b{len(example)}.pte"
        if not path.is_file():
            path.write_bytes(lower(model, example))
        return et_runner(path.read_bytes(), example, target.threads), "executorch"
    if target.sparse:
        return torch_runner(to_sparse(model), example), "torch+csr"
    return torch_runner(model, example, target.device, target.compile), "torch"


def shipped_files(model: Any, target: Target, runtime: str, work_dir: Path) -> list[Path]:
    """The files ``target`` ships of a stage whose model and folder are given, once it was
    timed there on ``runtime`` (``target_runner`` writes the exports it needs): a per-target
    deployment's own folder; an artifact's folder; a PyTorch model's weights and spec, or the
    ONNX file (ONNX Runtime, OpenVINO) or ExecuTorch program it was exported to."""
    if deployment_choices(model):
        folder = work_dir / target.name
        return sorted(f for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else []
    if is_artifact(model):
        return sorted(f for f in work_dir.iterdir() if f.is_file())
    if runtime in ("onnxruntime", "openvino"):
        files = [work_dir / "model.onnx"]
    elif runtime == "executorch":
        files = [work_dir / f"model-b{target.batch_size}.pte"]
    else:
        files = [work_dir / WEIGHTS, work_dir / SPEC]
    return [f for f in files if f.is_file()]


def measure_target(m: Measurement, target: Target) -> dict[str, Any]:
    """Time the stage's model alone on one target (its deployment there, when the stage deployed
    per target); the record names runtime, threads and batch."""
    model, why = shipped(m.model, target)
    if model is None:
        raise NnoptError(f"this stage deployed nothing to target '{target.name}': {why}")
    example = m.example(target.batch_size)
    with torch_threads(target.threads):
        fn, runtime = target_runner(model, target, example, m.work_dir)
        stats = time_calls(fn, warmup=target.warmup, repeats=target.repeats,
                           min_seconds=target.min_seconds)
    return {"runtime": runtime, "threads": target.threads, "batch_size": target.batch_size,
            **stats}


@METRICS.register("latency", produces=["latency_ms/<target>"], quantity=MS)
def latency(m: Measurement) -> dict[str, float]:
    """Median latency in ms of one batch on each recipe target (details hold p10/p90, repeats).
    A run times every stage side by side after the stages instead (``nnopt.timing``)."""
    out, details = {}, {}
    for target in m.targets:
        model, why = shipped(m.model, target)
        if why:
            details[target.name] = {"runtime": target.runtime, "skipped": why}
            continue
        rec = measure_target(replace(m, model=model), target)
        details[target.name] = rec
        out[f"latency_ms/{target.name}"] = rec["median_ms"]
    m.details["latency"] = details
    return out


def latency_probe(data: Any, targets: list[Target], name: str | None
                  ) -> Callable[[Any], float]:
    """A quick median-latency function on the named recipe target, for budget searches
    (20 calls and 0.2 s per model; the stage's own measurement afterwards is the full one)."""
    target = next((t for t in targets if t.name == name), None)
    if target is None:
        raise NnoptError(f"budget_target '{name}' is not a recipe target; targets: "
                         + (", ".join(t.name for t in targets) or "none"))
    fast = target.model_copy(update={"repeats": 20, "min_seconds": 0.2})

    def median_ms(model: Any) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            return measure_target(Measurement(model, data, [fast], Path(tmp)), fast)["median_ms"]

    return median_ms
