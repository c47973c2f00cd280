"""Render Reports to results.json, report.md, report.html (self-contained) and figures/*.png."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnopt.core.fileio import atomic_write_json, atomic_write_text
from nnopt.core.registry import SECTIONS
from nnopt.measure.quantity import change, fmt, order  # noqa: F401  (fmt, change: for sections)
from nnopt.report import plots
from nnopt.report.model import RESULTS, Report, StageRecord


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
    if rows:
        doc.h2("Warnings")
        doc.table(["stage", "warning"], rows)


# -- documents ---------------------------------------------------------------------------------

@dataclass
class Doc:
    """A report as blocks, rendered to Markdown and to HTML from the same content."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        for kind, val in self.blocks:
            if kind == "h2":
                out += [f"## {val}", ""]
            elif kind == "p":
                out += [val, ""]
            elif kind == "table":
                header, rows = val
                out.append("| " + " | ".join(h.replace("|", "\\|") for h in header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
                out.append("")
            elif kind == "figure":
                path, caption = val
                out += [f"![{caption}]({path.relative_to(base).as_posix()})", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(self.title)}"
                 f"</title><style>{CSS}</style></head><body><h1>{e(self.title)}</h1>"]
        for kind, val in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{e(val)}</h2>")
            elif kind == "p":
                parts.append(f"<p>{e(val)}</p>")
            elif kind == "table":
                header, rows = val
                parts.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header)
                             + "</tr></thead><tbody>")
                parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
                parts.append("</tbody></table>")
            elif kind == "figure":
                path, caption = val
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{e(caption)}'>"
                             f"<figcaption>{e(caption)}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)


CSS = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
       "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
       "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
       "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}"
       "img{max-width:100%}figcaption{color:#555;font-size:13px}")


def metrics_tables(doc: Doc, labels: list[str], steps: list[str],
                   seconds: list[float], metrics: list[dict[str, float]], first: str) -> None:
    cols = metric_columns(metrics)
    doc.table([first, "step", "time (s)"] + cols,
              [[lab, st, f"{sec:.1f}"] + [fmt(c, m.get(c)) for c in cols]
               for lab, st, sec, m in zip(labels, steps, seconds, metrics)])
    if len(metrics) > 1:
        ref = metrics[0]
        doc.p(f"Change of each row against the first ({labels[0]}):")
        doc.table([first] + cols,
                  [[lab] + [change(c, m[c], ref[c]) if c in m and c in ref else "-" for c in cols]
                   for lab, m in zip(labels[1:], metrics[1:])])


def _latency_table(doc: Doc, labels: list[str], records: list[StageRecord]) -> None:
    rows = []
    for lab, s in zip(labels, records):
        for target, r in (s.details.get("latency") or {}).items():
            if "skipped" in r:
                rows.append([lab, target, r["runtime"], "-", "-", "-", "-", "-", r["skipped"]])
                continue
            rows.append([lab, target, r["runtime"], str(r["threads"]), str(r["batch_size"]),
                         f"{r['median_ms']:.3f}", f"{r['p10_ms']:.3f}", f"{r['p90_ms']:.3f}",
                         str(r["repeats"])])
    if rows:
        doc.h2("Latency")
        doc.p("Measured on each target's runtime: warm-up calls, then timed single calls; the "
              "median is the figure, p10-p90 the spread.")
        doc.table(["model", "target", "runtime", "threads", "batch", "median ms", "p10 ms",
                   "p90 ms", "calls"], rows)


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


def _write(doc: Doc, folder: Path) -> None:
    atomic_write_text(folder / "report.md", doc.markdown(folder))
    atomic_write_text(folder / "report.html", doc.html())


def write_report(report: Report, folder: str | Path) -> None:
    """Write results.json, report.md, report.html and figures/ for one run."""
    folder = Path(folder)
    atomic_write_json(folder / RESULTS, report.to_dict())
    doc = Doc(f"nnopt report: {report.name}")
    d = report.data
    doc.p(f"Data: {d.get('name')} (train {d.get('train')}, val {d.get('val')}, test "
          f"{d.get('test')}; input {d.get('input_shape')}, {d.get('num_classes')} classes). "
          f"Model: {report.recipe.get('model', {}).get('name')}. Accuracy and NLL are on the "
          "test split; model selection used the validation split only.")
    doc.h2("Stages")
    labels = [s.name for s in report.stages]
    metrics_tables(doc, labels, [s.step for s in report.stages],
                    [s.seconds for s in report.stages], [s.metrics for s in report.stages],
                    "stage")
    _warnings(doc, labels, report.stages)
    _latency_table(doc, labels, report.stages)
    _training(doc, labels, report.stages)
    _sections(doc, labels, report.stages, folder / "figures")
    points = [plots.Point(s.name, s.metrics, s.details.get("history")) for s in report.stages]
    targets = [t["name"] for t in report.recipe.get("targets", [])]
    figures(doc, points, targets, folder / "figures")
    _environment(doc, report.environment)
    _write(doc, folder)


def _training(doc: Doc, labels: list[str], records: list[StageRecord]) -> None:
    rows = []
    for lab, s in zip(labels, records):
        hist = s.details.get("history")
        if not hist:
            continue
        notes = s.details.get("training", {})
        last = hist[-1]
        rows.append([lab, str(len(hist)), str(notes.get("best_epoch", "-")),
                     fmt("accuracy", last.get("train_accuracy")),
                     fmt("accuracy", last.get("val_accuracy")),
                     fmt("accuracy", notes.get("best_val_accuracy")),
                     f"{sum(h['train_seconds'] for h in hist):.1f}"])
    if rows:
        doc.h2("Training")
        doc.table(["stage", "epochs", "best epoch", "last train acc", "last val acc",
                   "best val acc", "train time (s)"], rows)


def write_comparison(reports: list[tuple[str, Report]], folder: str | Path) -> None:
    """One report comparing every stage of several runs (``nnopt report DIR...``)."""
    folder = Path(folder)
    recs = [(f"{run}/{s.name}", s) for run, r in reports for s in r.stages]
    atomic_write_json(folder / "comparison.json", {
        "runs": [{"folder": run, **r.to_dict()} for run, r in reports]})
    doc = Doc(f"nnopt comparison of {len(reports)} runs")
    doc.p("Runs: " + "; ".join(f"{run} ({r.name}, data {r.data.get('name')}, "
                               f"model {r.recipe.get('model', {}).get('name')})"
                               for run, r in reports))
    envs = {(r.environment.get("cpu"), r.environment.get("torch")) for _, r in reports}
    if len(envs) > 1:
        doc.p("Warning: these runs were measured on different machines or versions; "
              "compare their latencies with care.")
    doc.h2("Stages")
    labels = [lab for lab, _ in recs]
    metrics_tables(doc, labels, [s.step for _, s in recs], [s.seconds for _, s in recs],
                    [s.metrics for _, s in recs], "run/stage")
    _warnings(doc, labels, [s for _, s in recs])
    _latency_table(doc, labels, [s for _, s in recs])
    _training(doc, labels, [s for _, s in recs])
    _sections(doc, labels, [s for _, s in recs], folder / "figures")
    points = [plots.Point(lab, s.metrics, s.details.get("history")) for lab, s in recs]
    targets = sorted({t["name"] for _, r in reports for t in r.recipe.get("targets", [])})
    figures(doc, points, targets, folder / "figures")
    _environment(doc, reports[0][1].environment)
    _write(doc, folder)
