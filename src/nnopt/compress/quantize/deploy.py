"""Which deployment each target gets, and why: every option (PyTorch, ONNX Runtime, OpenVINO,
ExecuTorch; fp32, int8, half) timed side by side on the target, the fastest one within the
accuracy tolerance that the target can run chosen; the runtime effect (PyTorch fp32 -> a
runtime's fp32) kept apart from the precision effect (fp32 -> int8 on the same runtime)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from nnopt.measure.base import example_batch
from nnopt.measure.latency import skip_reason, target_runner
from nnopt.measure.paired import Paired, paced, time_paired
from nnopt.measure.runtimes import torch_threads
from nnopt.measure.target import Target

MARGIN = 1.05  # a lower precision must be >= 5% faster than fp32 in 9 of 10 paired rounds
TORCH_FP32, ORT_FP32 = "torch-fp32", "onnxruntime-fp32"
INT8 = {"onnxruntime": ("ort-static", "ort-dynamic"), "openvino": ("openvino-int8", "openvino-qdq"),
        "executorch": ("executorch-int8",), "torch": ("torch-static", "torch-dynamic")}
FP32 = {"onnxruntime": ORT_FP32, "openvino": "openvino-fp32", "executorch": "executorch-fp32",
        "torch": TORCH_FP32}


@dataclass
class Option:
    """One way to deploy the stage: the model, the runtime that runs it, its precision and
    its validation accuracy."""

    model: nn.Module
    runtime: str
    precision: str
    accuracy: float


def on_runtime(target: Target, runtime: str) -> Target:
    """``target`` running ``runtime`` (same batch, threads and device)."""
    return target.model_copy(update={"runtime": runtime, "runtimes": None, "sparse": False,
                                     "tensorrt": target.tensorrt and runtime == "onnxruntime"})


def runnable(options: dict[str, Option], target: Target) -> dict[str, Option]:
    """The options that can be timed on ``target``'s machine at all (a CPU-only artifact is not
    timed on a cuda target; a runtime whose extra is missing is not timed)."""
    return {k: o for k, o in options.items()
            if not skip_reason(o.model, on_runtime(target, o.runtime))}


def time_options(options: dict[str, Option], x: Any, target: Target,
                 on_round: Callable[[int, int], None] | None = None) -> Paired:
    """Every option at ``target``'s batch and threads, on its own runtime, side by side."""
    example = example_batch(x, target.batch_size)
    with tempfile.TemporaryDirectory() as tmp, torch_threads(target.threads):
        fns = {}
        for name, o in options.items():
            t = on_runtime(target, o.runtime)
            work = Path(tmp) / name
            work.mkdir()
            fns[name] = target_runner(o.model, t, example, work)[0]
        return time_paired(fns, **paced(target), on_round=on_round)


def option_table(options: dict[str, Option], timing: Paired, target: Target, tolerance: float,
                 fp32_accuracy: float) -> list[dict[str, Any]]:
    """Every option's figures on one target: latency and spread, paired speed-up over PyTorch
    fp32 (ONNX Runtime fp32 when there is no PyTorch model), whether the target can run it and
    whether its validation accuracy is within ``tolerance`` of fp32."""
    base = TORCH_FP32 if TORCH_FP32 in options else ORT_FP32
    table = []
    for name, o in options.items():
        fig = timing.figure(name)
        r = timing.ratio(base, name)
        table.append({"deployment": name, "runtime": o.runtime, "precision": o.precision,
                      "latency_ms": fig["median_ms"], "p10_ms": fig["p10_ms"],
                      "p90_ms": fig["p90_ms"], "speedup": r["ratio"],
                      "speedup_p10": r["p10"], "speedup_p90": r["p90"],
                      "noisy": r["noisy"], "validation_accuracy": o.accuracy,
                      "runs_here": target.allows(o.runtime),
                      "eligible": fp32_accuracy - o.accuracy <= tolerance})
    return table


def choose(options: dict[str, Option], timing: Paired, target: Target, tolerance: float,
           fp32_accuracy: float) -> tuple[str | None, str, list[dict[str, Any]]]:
    """(chosen option, reason, table) on one target: the fastest option the target can run
    whose validation accuracy is within ``tolerance`` of fp32; a lower precision only when it
    beats the fastest fp32 option by ``MARGIN`` in at least 9 of 10 paired rounds (the p10 of
    the per-round ratios), so that noise never changes the precision."""
    base = TORCH_FP32 if TORCH_FP32 in options else ORT_FP32
    table = option_table(options, timing, target, tolerance, fp32_accuracy)
    fit = [r for r in table if r["eligible"] and r["runs_here"]]
    if not fit:
        return None, (f"no deployment that '{target.name}' can run "
                      f"({', '.join(target.allowed)}) is within tolerance"), table
    best = min(fit, key=lambda r: r["latency_ms"])
    fp32 = [r for r in fit if r["precision"] == "fp32"]
    note = ""
    if best["precision"] != "fp32" and fp32:
        top = min(fp32, key=lambda r: r["latency_ms"])
        gain = timing.ratio(top["deployment"], best["deployment"])
        if gain["p10"] < MARGIN:
            note = (f"; {best['deployment']} ({best['precision']}) was {gain['ratio']:.2f}x "
                    f"faster than {top['deployment']} by median but {gain['p10']:.2f}x in the "
                    f"slowest tenth of paired rounds, under the {MARGIN:.2f}x a change of "
                    "precision must buy in 9 rounds of 10, so fp32 is kept")
            best = top
    noisy = " (noisy: do not trust this ranking)" if best["noisy"] else ""
    reason = (f"fastest of {len(fit)} deployments '{target.name}' can run within "
              f"{100 * tolerance:.1f} pt of fp32 validation accuracy: {best['latency_ms']:.3f} "
              f"ms, {best['speedup']:.2f}x over {base} (p10-p90 {best['speedup_p10']:.2f}-"
              f"{best['speedup_p90']:.2f}x, {timing.figure(base)['rounds']} paired rounds)"
              f"{noisy}{note}")
    return best["deployment"], reason, table


def effect_pairs(options: dict[str, Option], timing: Paired) -> list[tuple[str, str]]:
    """(fp32, int8) option pairs, one per runtime that has both; of several int8 options on
    one runtime, the fastest."""
    out = []
    for runtime, fp in FP32.items():
        q = [k for k in INT8[runtime] if k in options]
        if fp in options and q:
            out.append((fp, min(q, key=lambda k: timing.figure(k)["median_ms"])))
    return out


def effects(timing: Paired, target: Target, int8: str, fp32: str = ORT_FP32,
            runtime: str = "onnxruntime") -> dict[str, Any]:
    """The target's row of the runtime-vs-precision table for one runtime, from the paired
    timing of the options: its fp32 against PyTorch fp32, its int8 against its own fp32."""
    a, b, c = (timing.figure(k)["median_ms"] for k in (TORCH_FP32, fp32, int8))
    rt, precision = timing.ratio(TORCH_FP32, fp32), timing.ratio(fp32, int8)
    total = timing.ratio(TORCH_FP32, int8)
    return {"target": target.name, "runtime": runtime, "fp32": fp32, "int8": int8,
            "batch_size": target.batch_size, "threads": target.threads,
            "torch_fp32_ms": a, "fp32_ms": b, "int8_ms": c,
            "runtime_effect": rt["ratio"], "precision_effect": precision["ratio"],
            "total": total["ratio"], "int8_faster": precision["ratio"] >= MARGIN,
            "noisy": rt["noisy"] or precision["noisy"]}
