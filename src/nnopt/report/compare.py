"""A comparison of several runs (``nnopt report A B ...``): what differs between their recipes
and their machines, each run's answer, how each run computed, then every section of every run.

Latencies of separate runs were timed in separate machine states: a ratio between them is never
called paired; it is marked "separate runs, not paired" and flagged where either run was noisy
or the machines differ. ``--time`` times every run's artifacts again, side by side in one pass
on this machine, and the comparison's speed-ups are then paired like a run's own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnopt.core.errors import NnoptError
from nnopt.core.fileio import atomic_write_json
from nnopt.measure.quantity import fmt
from nnopt.measure.side_by_side import retime
from nnopt.measure.target import Target
from nnopt.report.doc import Doc
from nnopt.report.model import Report
from nnopt.report.render import (
    body,
    environment_section,
    main_table,
    own_pass,
    throughput,
    vs_first,
    write_doc,
)
from nnopt.report.summary import deployed_text, summarize

# what makes two runs' timings come from different machines
MACHINE = ("host", "cpu", "cpu_flags", "cpu_count", "gpu", "torch", "onnxruntime", "openvino",
           "executorch")


def _how_computed(doc: Doc, reports: list[tuple[str, Report]]) -> None:
    """Centralised against distributed: each run's device, processes and backend, its training
    time and rate, and its last stage's test accuracy; a conclusion when the process counts
    differ."""
    rows, figures = [], []
    for run, r in reports:
        env = r.environment
        hist = [h for s in r.stages for h in s.details.get("history") or []]
        seconds = sum(h.get("train_seconds", 0.0) for h in hist)
        rate = throughput(hist) if hist else None
        acc = r.stages[-1].metrics.get("accuracy") if r.stages else None
        size = int(env.get("world_size") or 1)
        figures.append((run, size, seconds, rate, acc))
        rows.append([run, str(env.get("device", "-")), str(size), str(env.get("backend") or "-"),
                     f"{seconds:.1f}", f"{rate:,.0f}" if rate else "-", fmt("accuracy", acc)])
    doc.h2("How each run computed")
    doc.table(["run", "device", "processes", "backend", "train time (s)", "examples/s",
               "last stage accuracy"], rows)
    sizes = {f[1] for f in figures}
    if len(sizes) > 1 and all(f[2] and f[4] is not None for f in figures):
        base = min(figures, key=lambda f: f[1])
        lines = []
        for run, size, seconds, rate, acc in figures:
            if run == base[0]:
                continue
            lines.append(
                f"{run} ({size} processes) trained in {seconds:.1f} s against {base[2]:.1f} s "
                f"for {base[0]} ({base[1]} process{'es' if base[1] > 1 else ''}): "
                f"{base[2] / seconds:.2f}x the speed; its last stage's test accuracy differs by "
                f"{100 * (acc - base[4]):+.2f} points. Training times come from separate runs "
                "(not timed side by side): on a shared machine, repeat them before trusting "
                "a small difference.")
        doc.ul(lines)



def recipe_difference(recipes: list[dict[str, Any]]) -> list[list[str]]:
    """The recipe keys whose values differ between runs: [key, value per run]."""
    flat = [dict(_flatten(r)) for r in recipes]
    keys = sorted({k for f in flat for k in f})
    return [[k] + [f.get(k, "-") for f in flat] for k in keys
            if len({f.get(k, "-") for f in flat}) > 1]


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _flatten(v, f"{prefix}{k}.")]
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        return [kv for i, v in enumerate(obj) for kv in _flatten(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), json.dumps(obj, sort_keys=True))]


def retime_reports(reports: list[tuple[str, Report]], work: Path, trust: tuple[str, ...] = (),
                   bar: Callable[[str], Any] = lambda _: None) -> dict[str, dict[str, Any]]:
    """``nnopt report --time``: every stage of every run loaded from its folder and timed again
    on every target of the runs (a target named in several runs: the first run's), side by
    side in one pass; labelled run/stage, paired against the first run's first stage. Exports
    go to ``work``: the run folders are only read."""
    shapes = {tuple(r.data.get("input_shape") or ()) for _, r in reports}
    if len(shapes) != 1 or not next(iter(shapes)):
        raise NnoptError("--time: the runs take different inputs (" + ", ".join(
            f"{run}: {r.data.get('input_shape')}" for run, r in reports) + "); only models of "
            "the same input shape can be timed side by side")
    targets: dict[str, Target] = {}
    for _, r in reports:
        for t in r.recipe.get("targets", []):
            targets.setdefault(t["name"], Target(**t))
    folders = {}
    for run, r in reports:
        for s in r.stages:
            folder = Path(run) / (s.artifact or f"models/{s.name}")
            if not (folder / "spec.json").is_file():
                raise NnoptError(f"--time: {folder} holds no saved model (spec.json); the "
                                 "run's models/ folder is needed to time it again")
            folders[f"{run}/{s.name}"] = folder
    return retime(folders, list(targets.values()), list(next(iter(shapes))), work, trust,
                  bar=bar)


def machine_difference(envs: list[dict[str, Any]]) -> list[list[str]]:
    """The machine keys (host, CPU, versions of the runtimes) whose values differ."""
    return [[k] + [str(e.get(k, "-")) for e in envs] for k in MACHINE
            if len({str(e.get(k, "-")) for e in envs}) > 1]


def _noisy_targets(r: Report) -> set[str]:
    return {t for s in r.stages for t, lat in (s.details.get("latency") or {}).items()
            if isinstance(lat, dict) and lat.get("noisy")}


def write_comparison(reports: list[tuple[str, Report]], folder: str | Path,
                     retimed: dict[str, dict[str, Any]] | None = None) -> None:
    """One report comparing every stage of several runs (``nnopt report DIR...``): what
    differs between their recipes and machines, each run's answer, then every section of every
    run. ``retimed`` holds the figures of ``--time`` (every stage timed again side by side,
    labelled run/stage)."""
    folder = Path(folder)
    recs = [(f"{run}/{s.name}", s) for run, r in reports for s in r.stages]
    runs = [run for run, r in reports for _ in r.stages]
    atomic_write_json(folder / "comparison.json", {
        "runs": [{"folder": run, **r.to_dict()} for run, r in reports],
        **({"retimed": retimed} if retimed is not None else {})})
    doc = Doc(f"nnopt comparison of {len(reports)} runs",
              meta=[(run, f"{r.name}, data {r.data.get('name')}, model "
                          f"{r.recipe.get('model', {}).get('name')}, "
                          f"{(r.run or {}).get('date', 'date unknown')}")
                    for run, r in reports])
    doc.h2("What differs")
    diff = recipe_difference([r.recipe for _, r in reports])
    doc.p("Recipe keys whose values differ between the runs" + (":" if diff else ": none."))
    if diff:
        doc.table(["recipe key"] + [run for run, _ in reports], diff)
    machines = machine_difference([r.environment for _, r in reports])
    noisy = {run: _noisy_targets(r) for run, r in reports}
    if machines:
        doc.p("These runs were timed on different machines or runtime versions:")
        doc.table(["machine"] + [run for run, _ in reports], machines)
    if any(noisy.values()):
        doc.p("Runs timed while the machine was busy (latency flagged noisy): " + "; ".join(
            f"{run} on {', '.join(sorted(ts))}" for run, ts in noisy.items() if ts) + ".")
    if retimed is None:
        doc.p("Latencies below come from each run's own timing pass: speed-ups between stages "
              "of one run are paired, those between runs are not (separate runs)"
              + (", and the machines or their load differ: rerun with --time to time them "
                 "side by side" if machines or any(noisy.values()) else "") + ".")
    for run, r in reports:
        summary = r.summary or summarize(r)
        doc.ul([f"**{run}**: on {x['target']} recommend {x['stage'] or 'none'} "
                f"({deployed_text(x.get('deployed', {}))}, "
                f"{fmt('latency_ms/', x.get('latency_ms'))} in its own run)"
                for x in summary.get("recommendations", [])])
    _how_computed(doc, reports)
    labels = [lab for lab, _ in recs]
    records = [s for _, s in recs]
    targets = sorted({t["name"] for _, r in reports for t in r.recipe.get("targets", [])})
    if retimed is not None:
        _retimed(doc, labels, retimed, targets)
    doc.h2("Stages")
    main_table(doc, labels, records, targets)
    env_of = {run: r.environment for run, r in reports}

    def flags(i: int, target: str) -> list[str]:
        a, b = runs[0], runs[i]
        why = [f"{run} noisy" for run in dict.fromkeys((a, b)) if target in noisy[run]]
        if machine_difference([env_of[a], env_of[b]]):
            why.append("different machines")
        return why

    if retimed is not None:
        def paired(i: int, target: str) -> dict[str, Any] | None:
            return vs_first([(retimed.get(labels[j]) or {}).get(target) or {}
                             for j in (0, i)], 1)
    else:
        paired = own_pass(records, runs)
    body(doc, labels, records, folder, targets, "run/stage", paired=paired, flags=flags,
         vs_header="vs its run's first (paired)")
    environment_section(doc, reports[0][1].environment)
    write_doc(doc, folder)


def _retimed(doc: Doc, labels: list[str], retimed: dict[str, dict[str, Any]],
             targets: list[str]) -> None:
    rows = []
    for lab in labels:
        for t in targets:
            r = (retimed.get(lab) or {}).get(t)
            if not r:
                continue
            if "skipped" in r:
                rows.append([lab, t, "-", "-", "-", "-", r["skipped"]])
                continue
            vs = r.get("vs_first")
            rows.append([lab, t, f"{r['median_ms']:.3f}", f"{r['p10_ms']:.3f}-{r['p90_ms']:.3f}",
                         f"{vs['ratio']:.2f}x ({vs['p10']:.2f}-{vs['p90']:.2f})" if vs else "-",
                         "noisy" if r.get("noisy") else "ok", r.get("noisy_why", "")])
    doc.h2("Latency re-timed side by side")
    doc.p(f"Every stage of every run timed again on this machine, in one pass interleaved over "
          f"rounds (--time): these speed-ups against {labels[0]} are paired, like a run's own.")
    doc.table(["run/stage", "target", "median ms", "p10-p90 ms", f"vs {labels[0]} (p10-p90)",
               "trust", "why"], rows)
