"""Render Reports to results.json, report.md, report.html (self-contained) and figures/*.png."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnopt.core.fileio import atomic_write_json, atomic_write_text
from nnopt.core.registry import SECTIONS
from nnopt.measure.decide import claimed
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


# the paired speed-up of row i against row 0 on a target, from one timing pass (None: the two
# rows were not timed in one pass), and the reasons to distrust a ratio of separate runs
Paired = Callable[[int, str], "dict[str, Any] | None"]
Flags = Callable[[int, str], "list[str]"]


def metrics_tables(doc: Doc, labels: list[str], steps: list[str],
                   seconds: list[float], metrics: list[dict[str, float]], first: str, *,
                   paired: Paired | None = None, flags: Flags | None = None) -> None:
    """Every metric of every row, then each row's change against the first. A latency change
    is the paired speed-up (``paired``) where the two rows were timed in one pass; otherwise
    it is a ratio of medians from separate runs, said to be one, and flagged where ``flags``
    gives reasons (either run noisy, different machines)."""
    cols = metric_columns(metrics)
    doc.table([first, "step", "time (s)"] + cols,
              [[lab, st, f"{sec:.1f}"] + [fmt(c, m.get(c)) for c in cols]
               for lab, st, sec, m in zip(labels, steps, seconds, metrics)])
    if len(metrics) < 2:
        return
    ref = metrics[0]
    rows, separate = [], False
    for i, (lab, m) in enumerate(zip(labels[1:], metrics[1:]), start=1):
        row = [lab]
        for c in cols:
            if c not in m or c not in ref or not c.startswith("latency_ms/"):
                row.append(change(c, m[c], ref[c]) if c in m and c in ref else "-")
                continue
            target = c.split("/", 1)[1]
            vs = paired(i, target) if paired is not None else None
            if vs:
                row.append("noisy" if vs["noisy"] else speed_words(vs["ratio"]))
                continue
            separate = True
            why = flags(i, target) if flags is not None else []
            row.append(change(c, m[c], ref[c]) + " (separate runs, not paired" +
                       (f"; flagged: {', '.join(why)})" if why else ")"))
        rows.append(row)
    doc.p(f"Change of each row against the first ({labels[0]}); latency: "
          + ("the paired speed-up from the same timing rounds" if not separate else
             "the paired speed-up where both rows were timed in one pass, else the ratio of "
             "medians timed in separate runs, which is not paired (machine states differ "
             "between runs) and is flagged where either run was noisy or the machines "
             "differ") + ":")
    doc.table([first] + cols, rows)


def speed_words(ratio: float) -> str:
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def vs_first(figs: list[dict[str, Any]], i: int) -> dict[str, Any] | None:
    """Row i's paired ratio over row 0 from one timing pass (``figs``: each row's figure on a
    target), noisy by the answer's rule: the ratio or either figure flagged."""
    vs = figs[i].get("vs_first")
    return {**vs, "noisy": not claimed(figs[i], figs[0], vs)} if vs else None


def own_pass(records: list[StageRecord], runs: list[str] | None = None) -> Paired:
    """The paired ratio of row i against row 0 from the stages' own timing pass: valid when
    row 0 is the first stage of row i's run (its ``vs_first``)."""
    def vs(i: int, target: str) -> dict[str, Any] | None:
        if runs is not None and runs[i] != runs[0]:
            return None
        return vs_first([((r.details.get("latency") or {}).get(target) or {})
                         for r in (records[0], records[i])], 1)
    return vs


def _latency_table(doc: Doc, labels: list[str], records: list[StageRecord],
                   vs_header: str = "vs first (p10-p90)") -> None:
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
                   "p10-p90 ms", "rounds / calls", vs_header, "trust", "why"], rows)
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


def environment_section(doc: Doc, env: dict[str, Any]) -> None:
    doc.h2("Environment")
    doc.table(["key", "value"], [[k, str(v)] for k, v in env.items() if k != "executable"])


def write_doc(doc: Doc, folder: Path) -> None:
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
    body(doc, labels, report.stages, folder, targets, "stage")
    environment_section(doc, report.environment)
    write_doc(doc, folder)


def body(doc: Doc, labels: list[str], records: list[StageRecord], folder: Path,
          targets: list[str], first: str, *, paired: Paired | None = None,
          flags: Flags | None = None, vs_header: str = "vs first (p10-p90)") -> None:
    doc.h2("All metrics")
    metrics_tables(doc, labels, [s.step for s in records], [s.seconds for s in records],
                   [s.metrics for s in records], first,
                   paired=paired if paired is not None else own_pass(records), flags=flags)
    _warnings(doc, labels, records)
    _latency_table(doc, labels, records, vs_header)
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


