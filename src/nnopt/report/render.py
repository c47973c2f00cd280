"""Render Reports to results.json, report.md, report.html (self-contained) and figures/*.png."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnopt.core.fileio import atomic_write_json, atomic_write_text
from nnopt.core.registry import SECTIONS
from nnopt.measure.quantity import change, fmt, order  # noqa: F401  (fmt, change: for sections)
from nnopt.report import plots
from nnopt.report.answer import answer, main_table
from nnopt.report.doc import Doc
from nnopt.report.model import RESULTS, Report, StageRecord
from nnopt.report.summary import deployed_text, summarize


def metric_columns(rows: list[dict[str, float]]) -> list[str]:
    """The metric columns of a table, in the order of the metrics that produce them."""
    return order({k for r in rows for k in r})


# -- sections that techniques add -------------------------------------------------------------

Section = Callable[["Doc", list[str], list[StageRecord], Path], None]


def register_section(fn: Section) -> Section:
    """Register a report section in SECTIONS: ``fn(doc, labels, stage_records, figure_dir)``
    renders what it finds in the stages' details (and nothing when they hold none of its
    data). Sections render in registration order: the manifest's, then plugins'."""
    SECTIONS.add(f"{fn.__module__.removeprefix('nnopt.')}:{fn.__name__}", fn)
    return fn


def _sections(doc: Doc, labels: list[str], records: list[StageRecord], fig_dir: Path) -> None:
    for entry in SECTIONS.in_order():
        entry.fn(doc, labels, records, fig_dir)


def _warnings(doc: Doc, labels: list[str], records: list[StageRecord]) -> None:
    rows = [[lab, w] for lab, s in zip(labels, records) for w in s.details.get("warnings", [])]
    rows += [[lab, f"OOD set '{name}' {flag}"] for lab, s in zip(labels, records)
             for name, flag in (s.details.get("ood_flags") or {}).items()]
    if rows:
        doc.h2("Warnings")
        doc.table(["stage", "warning"], rows)


def metrics_tables(doc: Doc, labels: list[str], steps: list[str],
                   seconds: list[float], metrics: list[dict[str, float]], first: str,
                   records: list[StageRecord] | None = None) -> None:
    """Every metric of every row, then each row's change against the first. Latency changes
    are the paired speed-ups of the timing pass when the records hold them (a noisy one says
    so instead of a number)."""
    cols = metric_columns(metrics)
    doc.table([first, "step", "time (s)"] + cols,
              [[lab, st, f"{sec:.1f}"] + [fmt(c, m.get(c)) for c in cols]
               for lab, st, sec, m in zip(labels, steps, seconds, metrics)])
    if len(metrics) > 1:
        ref = metrics[0]
        doc.p(f"Change of each row against the first ({labels[0]}); latency: the paired "
              "speed-up from the same timing rounds:")
        rows = []
        for i, (lab, m) in enumerate(zip(labels[1:], metrics[1:]), start=1):
            rec = records[i] if records else None
            rows.append([lab] + [_change(c, m, ref, rec) for c in cols])
        doc.table([first] + cols, rows)


def _change(col: str, m: dict[str, float], ref: dict[str, float],
            rec: StageRecord | None) -> str:
    if col not in m or col not in ref:
        return "-"
    if col.startswith("latency_ms/") and rec is not None:
        vs = ((rec.details.get("latency") or {}).get(col.split("/", 1)[1]) or {}).get("vs_first")
        if vs:
            if vs["noisy"]:
                return "noisy"
            r = vs["ratio"]
            return f"{r:.2f}x faster" if r >= 1 else f"{1 / r:.2f}x slower"
    return change(col, m[col], ref[col])


def _latency_table(doc: Doc, labels: list[str], records: list[StageRecord]) -> None:
    rows, loads = [], {}
    for lab, s in zip(labels, records):
        for target, r in (s.details.get("latency") or {}).items():
            how = deployed_text(r.get("deployed", {})) if "deployed" in r else r.get("runtime")
            if "skipped" in r:
                rows.append([lab, target, how or "-", "-", "-", "-", "-", "-", "-", r["skipped"]])
                continue
            if r.get("load"):
                loads[target] = r["load"]
            vs = r.get("vs_first")
            rows.append([lab, target, how if str(how).startswith(r["runtime"]) else
                         f"{r['runtime']} ({how})",
                         f"{r['threads']} / {r['batch_size']}", f"{r['median_ms']:.3f}",
                         f"{r['p10_ms']:.3f}-{r['p90_ms']:.3f}",
                         f"{r.get('rounds', 1)} / {r['repeats']}",
                         f"{vs['ratio']:.2f}x ({vs['p10']:.2f}-{vs['p90']:.2f})" if vs else "-",
                         "noisy" if r.get("noisy") else "ok", r.get("noisy_why", "")])
    if rows:
        doc.h2("Latency")
        doc.p("Every stage on every target in one timing pass after the stages, interleaved "
              "over rounds (paired): the median of all calls is the figure, p10-p90 its spread; "
              "speed-ups are medians of per-round ratios. A figure whose round medians spread "
              "more than 1.5x, or that was timed while other processes used over 25% of the "
              "CPUs, is flagged noisy and never headlined.")
        doc.table(["stage", "target", "deployed as", "threads / batch", "median ms",
                   "p10-p90 ms", "rounds / calls", "vs first (p10-p90)", "trust", "why"], rows)
        if loads:
            doc.p("Machine load while timing: " + "; ".join(
                f"{t}: load average {ld.get('loadavg_1m')}, other processes "
                f"{100 * ld.get('other_cpu', 0):.0f}% of {ld.get('cpus')} CPUs"
                for t, ld in loads.items()) + ".")


def figures(doc: Doc, points: list[plots.Point], targets: list[str], fig_dir: Path) -> None:
    made = [(plots.accuracy_vs_latency(points, targets, fig_dir / "accuracy_vs_latency.png"),
             "Accuracy against measured latency, with the Pareto front"),
            (plots.accuracy_vs_size(points, fig_dir / "accuracy_vs_size.png"),
             "Accuracy against size on disk, with the Pareto front"),
            (plots.training_curves(points, fig_dir / "training_curves.png"),
             "Training curves (loss and accuracy per epoch)")]
    made = [m for m in made if m[0] is not None]
    if made:
        doc.h2("Figures")
        for path, caption in made:
            doc.figure(path, caption)


def _environment(doc: Doc, env: dict[str, Any]) -> None:
    doc.h2("Environment")
    doc.table(["key", "value"], [[k, str(v)] for k, v in env.items() if k != "executable"])


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


def _write(doc: Doc, folder: Path) -> None:
    atomic_write_text(folder / "report.md", doc.markdown(folder))
    atomic_write_text(folder / "report.html", doc.html())


def _meta(report: Report) -> list[tuple[str, str]]:
    run = report.run or {}
    d = report.data
    out = [("recipe", str(run.get("recipe_file") or report.name)),
           ("seed", str(report.recipe.get("seed"))), ("date", str(run.get("date", "-"))),
           ("nnopt", report.nnopt_version)]
    if run.get("git_revision"):
        out.append(("revision", run["git_revision"]))
    out.append(("data", f"{d.get('name')} (train {d.get('train')}, val {d.get('val')}, test "
                        f"{d.get('test')})"))
    out.append(("model", str(report.recipe.get("model", {}).get("name"))))
    return out


def write_report(report: Report, folder: str | Path) -> None:
    """Write results.json, report.md, report.html and figures/ for one run."""
    folder = Path(folder)
    if not report.summary:
        report.summary = summarize(report)
    atomic_write_json(folder / RESULTS, report.to_dict())
    doc = Doc(f"nnopt report: {report.name}", meta=_meta(report))
    labels = [s.name for s in report.stages]
    targets = [t["name"] for t in report.recipe.get("targets", [])]
    answer(doc, report.summary, labels[0])
    doc.h2("Stages")
    doc.p("Accuracy and NLL are on the test split; model selection used the validation split "
          "only. Latency per target is that of the artifact the stage deploys there.")
    main_table(doc, labels, report.stages, targets)
    _body(doc, labels, report.stages, folder, targets, "stage")
    _environment(doc, report.environment)
    _write(doc, folder)


def _body(doc: Doc, labels: list[str], records: list[StageRecord], folder: Path,
          targets: list[str], first: str) -> None:
    doc.h2("All metrics")
    metrics_tables(doc, labels, [s.step for s in records], [s.seconds for s in records],
                   [s.metrics for s in records], first, records)
    _warnings(doc, labels, records)
    _latency_table(doc, labels, records)
    _training(doc, labels, records)
    _sections(doc, labels, records, folder / "figures")
    points = [plots.Point(lab, s.metrics, s.details.get("history"))
              for lab, s in zip(labels, records)]
    figures(doc, points, targets, folder / "figures")


def _training(doc: Doc, labels: list[str], records: list[StageRecord]) -> None:
    rows = []
    for lab, s in zip(labels, records):
        hist = s.details.get("history")
        if not hist:
            if s.details.get("distributed"):  # a stage without training, under several processes
                rows.append([lab] + ["-"] * 7 + [str(s.details["distributed"])])
            continue
        notes = s.details.get("training", {})
        last = hist[-1]
        rate = throughput(hist)
        rows.append([lab, str(len(hist)), str(notes.get("best_epoch", "-")),
                     fmt("accuracy", last.get("train_accuracy")),
                     fmt("accuracy", last.get("val_accuracy")),
                     fmt("accuracy", notes.get("best_val_accuracy")),
                     f"{sum(h['train_seconds'] for h in hist):.1f}",
                     f"{rate:,.0f}" if rate else "-", computed_on(s.details)])
    if rows:
        doc.h2("Training")
        doc.table(["stage", "epochs", "best epoch", "last train acc", "last val acc",
                   "best val acc", "train time (s)", "examples/s", "computed on"], rows)


def throughput(history: list[dict[str, Any]]) -> float | None:
    """Training examples per second over a fit's epochs (all processes together), or None for
    a history written before epochs counted their examples."""
    seconds = sum(h.get("train_seconds", 0.0) for h in history)
    if not seconds or any("examples" not in h for h in history):
        return None
    return sum(h["examples"] for h in history) / seconds


def computed_on(details: dict[str, Any]) -> str:
    """Where and how a stage trained: device, precision, options, processes."""
    notes = details.get("training", {})
    text = str(notes.get("compute", "-"))
    parallel = str(notes.get("distributed", details.get("distributed", "")))
    return f"{text}; {parallel}" if parallel else text


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


def write_comparison(reports: list[tuple[str, Report]], folder: str | Path) -> None:
    """One report comparing every stage of several runs (``nnopt report DIR...``): what
    differs between their recipes, each run's answer, then every section of every run."""
    folder = Path(folder)
    recs = [(f"{run}/{s.name}", s) for run, r in reports for s in r.stages]
    atomic_write_json(folder / "comparison.json", {
        "runs": [{"folder": run, **r.to_dict()} for run, r in reports]})
    doc = Doc(f"nnopt comparison of {len(reports)} runs",
              meta=[(run, f"{r.name}, data {r.data.get('name')}, model "
                          f"{r.recipe.get('model', {}).get('name')}, "
                          f"{(r.run or {}).get('date', 'date unknown')}")
                    for run, r in reports])
    envs = {(r.environment.get("cpu"), r.environment.get("torch")) for _, r in reports}
    doc.h2("What differs")
    diff = recipe_difference([r.recipe for _, r in reports])
    doc.p("Recipe keys whose values differ between the runs" + (":" if diff else ": none."))
    if diff:
        doc.table(["recipe key"] + [run for run, _ in reports], diff)
    if len(envs) > 1:
        doc.p("Warning: these runs were measured on different machines or versions; their "
              "latencies were not timed side by side: compare them with care.")
    for run, r in reports:
        summary = r.summary or summarize(r)
        doc.ul([f"**{run}**: on {x['target']} recommend {x['stage'] or 'none'} "
                f"({deployed_text(x.get('deployed', {}))}, "
                f"{fmt('latency_ms/', x.get('latency_ms'))})"
                for x in summary.get("recommendations", [])])
    _how_computed(doc, reports)
    labels = [lab for lab, _ in recs]
    targets = sorted({t["name"] for _, r in reports for t in r.recipe.get("targets", [])})
    doc.h2("Stages")
    main_table(doc, labels, [s for _, s in recs], targets)
    _body(doc, labels, [s for _, s in recs], folder, targets, "run/stage")
    _environment(doc, reports[0][1].environment)
    _write(doc, folder)
