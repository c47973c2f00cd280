"""Sweeps: run a recipe's variants over a grid of overrides and compare them in one report."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nnopt.core.errors import NnoptError, RecipeError
from nnopt.core.fileio import (
    StagedFolder,
    atomic_write_json,
    atomic_write_text,
    clean_stale,
    read_marker,
    write_marker,
)
from nnopt.core.yaml_io import safe_yaml
from nnopt.recipe import load_recipe
from nnopt.report import plots
from nnopt.report.compare import MACHINE
from nnopt.report.model import RESULTS, Report, load_report
from nnopt.report.render import Doc, figures, fmt, metric_columns, metrics_tables
from nnopt.report.summary import deployed_text
from nnopt.runner import run_recipe
from nnopt.search.executors import Executor
from nnopt.train.launch import run_torchrun, torchrun_command
from nnopt.train.tracking import Tracker, TrackingConfig, logged, open_tracker


def parse_grid(specs: list[str]) -> list[tuple[str, list[Any]]]:
    """``key=v1,v2,...`` strings into (key, values); values are parsed as YAML scalars."""
    out = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise RecipeError(f"--grid '{spec}': expected KEY=V1,V2,... e.g. data.limit=500,1000")
        parsed = []
        for v in values.split(","):
            try:
                parsed.append(safe_yaml(v) if v.strip() else None)
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise RecipeError(f"--grid '{key.strip()}': value '{v[:40]}' is not valid YAML "
                                  f"({problem}); values are split at commas, so a list "
                                  "value is written [16] or 16+32 is not one") from None
        out.append((key.strip(), parsed))
    keys = [k for k, _ in out]
    if len(set(keys)) != len(keys):
        raise RecipeError("--grid: each key may appear once")
    return out


@dataclass
class Variant:
    """One point of the grid: its values, the overrides that make it and its output folder."""

    name: str
    values: dict[str, Any]
    overrides: list[str]
    out: str
    recipe_path: str
    resume: bool = False
    trust: tuple[str, ...] = ()
    nproc: int = 1  # data-parallel processes of this variant (torchrun) when above 1


@dataclass
class VariantResult:
    name: str
    values: dict[str, Any]
    out: str
    ok: bool
    error: str | None = None
    skipped: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    deployed: dict[str, str] = field(default_factory=dict)  # last stage: target -> how
    warnings: list[str] = field(default_factory=list)  # every stage's, "stage: text"
    recommended: dict[str, str] = field(default_factory=dict)  # target -> stage
    noisy: list[str] = field(default_factory=list)  # targets whose last-stage latency is noisy
    machine: dict[str, Any] = field(default_factory=dict)  # what it was timed on


def variants(recipe_path: str, grid: list[tuple[str, list[Any]]], base: list[str],
             out: Path, resume: bool = False, trust: tuple[str, ...] = (), nproc: int = 1
             ) -> list[Variant]:
    keys = [k for k, _ in grid]
    result = []
    for i, combo in enumerate(itertools.product(*[v for _, v in grid])):
        values = dict(zip(keys, combo))
        short = "_".join(f"{k.split('.')[-1]}={_compact(v)}" for k, v in values.items())
        name = f"v{i:02d}-" + re.sub(r"[^A-Za-z0-9_.=+-]+", "-", short)[:80]
        sets = base + [f"{k}={_flow(v)}" for k, v in values.items()]
        result.append(Variant(name, values, sets, str(out / "variants" / name), recipe_path,
                              resume, trust, nproc))
    return result


def _flow(value: Any) -> str:
    """A value as one line of YAML (what --set parses back)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _compact(value: Any) -> str:
    """[16, 32] -> 16+32, {a: 1} -> a:1: short enough for a folder name."""
    return re.sub(r"[\[\]{}\s]", "", _flow(value)).replace(",", "+")


def run_variant(v: Variant) -> VariantResult:
    """Run one variant in its own folder (a plain function, so any executor can ship it)."""

    marker = read_marker(Path(v.out))
    if v.resume and marker is not None and marker.get("kind") == "run" \
            and (Path(v.out) / RESULTS).is_file():
        try:
            return _finished(v, load_report(v.out), skipped=True)
        except NnoptError:
            pass  # an unreadable result is run again
    try:
        rep = (_run_distributed(v) if v.nproc > 1 else
               run_recipe(load_recipe(v.recipe_path, v.overrides, trust=v.trust), v.out))
    except NnoptError as exc:
        return VariantResult(v.name, v.values, v.out, False, error=str(exc))
    except Exception as exc:  # a failed variant must not lose the others
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return VariantResult(v.name, v.values, v.out, False, error=last)
    return _finished(v, rep)


def _run_distributed(v: Variant) -> Report:
    """A variant run data-parallel on ``v.nproc`` processes; its report read back."""
    code, err = run_torchrun(torchrun_command(v.recipe_path, v.out, v.nproc, v.overrides,
                                              v.trust, quiet=True),
                             v.nproc, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    if code:
        lines = [ln for ln in (err or "").splitlines() if ln.startswith("nnopt: error")]
        raise NnoptError(lines[0].removeprefix("nnopt: error: ") if lines else
                         f"the {v.nproc}-process run failed (exit {code})")
    return load_report(v.out)


def _finished(v: Variant, rep: Report, skipped: bool = False) -> VariantResult:
    """A variant's last-stage metrics and total stage time, from its report."""
    last = rep.stages[-1].details.get("deployed", {}) if rep.stages else {}
    return VariantResult(
        v.name, v.values, v.out, True, skipped=skipped,
        metrics=rep.stages[-1].metrics if rep.stages else {},
        seconds=sum(st.seconds for st in rep.stages),
        deployed={t: deployed_text(d) for t, d in last.items()},
        warnings=[f"{st.name}: {w}" for st in rep.stages for w in st.details.get("warnings", [])],
        recommended={r["target"]: r["stage"] or "none"
                     for r in (rep.summary or {}).get("recommendations", [])},
        noisy=sorted(t for t, lat in ((rep.stages[-1].details.get("latency") or {})
                                      if rep.stages else {}).items()
                     if isinstance(lat, dict) and lat.get("noisy")),
        machine={k: rep.environment.get(k) for k in MACHINE})


def run_sweep(recipe_path: str, grid_specs: list[str], out: str | Path, executor: Executor, *,
              overrides: list[str] | None = None, resume: bool = False,
              on_result: Any = None, trust: list[str] | tuple[str, ...] = (), nproc: int = 1,
              on_tracking: Callable[[dict[str, str]], None] | None = None
              ) -> list[VariantResult]:
    """Validate every variant first, run them on ``executor``, then write the sweep report.

    ``out`` follows the rule of run folders: it is written only when it is absent, empty or a
    sweep folder holding nothing but what nnopt wrote there (its marker lists every file).
    Variants are run folders of their own, replaced whole, so an interrupted sweep resumes.
    """
    staged = StagedFolder(out, "sweep")
    out = staged.target
    grid = parse_grid(grid_specs)
    jobs = variants(recipe_path, grid, list(overrides or []), out, resume, tuple(trust), nproc)
    for v in jobs:  # fail fast on a bad grid value, before anything runs
        try:
            load_recipe(recipe_path, v.overrides, trust=v.trust)
        except RecipeError as exc:
            raise RecipeError(f"variant {v.name}: {exc}") from None
    staged.check()
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnoptError(f"--out {out}: cannot write there: {exc.strerror or exc}") from None
    try:
        tracker = _parent_run(recipe_path, list(overrides or []), trust, out, jobs, grid)
    except BaseException:
        if made:  # nothing of the sweep ran: the folder it made goes again
            shutil.rmtree(out, ignore_errors=True)
        raise
    if tracker is not None and on_tracking is not None:
        on_tracking(tracker.where())
    try:
        with logged(tracker, out):
            done = _run_variants(jobs, executor, out, recipe_path, grid, on_result)
            if tracker is not None:  # each variant's last-stage metrics, beside its child run's
                for i, res in enumerate(done):
                    tracker.stage(i, res.name, res.metrics)
    finally:
        if tracker is not None and out.is_dir():  # the store in the folder changed since
            write_marker(out, "sweep")
    return done


def _parent_run(recipe_path: str, overrides: list[str], trust: Any, out: Path,
                jobs: list[Variant], grid: list[tuple[str, list[Any]]]) -> Tracker | None:
    """With MLflow tracking in the recipe: the sweep's own run, and each variant told to log
    as its child in the same store."""
    recipe = load_recipe(recipe_path, overrides, trust=trust).recipe
    ml = recipe.tracking.mlflow if recipe.tracking else None
    if ml is None:
        return None
    tracker = open_tracker(TrackingConfig(mlflow=ml), out, recipe.name,
                           {"nnopt.sweep": "true", "nnopt.recipe": str(Path(recipe_path).resolve())})
    assert tracker is not None and tracker.mlflow is not None
    try:
        tracker.params({"grid": dict(grid), "overrides": overrides or None})
    except BaseException:
        tracker.close(ok=False)
        raise
    for v in jobs:
        v.overrides += [f"tracking.mlflow.uri='{tracker.mlflow.uri}'",
                        f"tracking.mlflow.parent='{tracker.mlflow.run_id}'",
                        f"tracking.mlflow.experiment='{ml.experiment or recipe.name}'"]
    return tracker


def _run_variants(jobs: list[Variant], executor: Executor, out: Path, recipe_path: str,
                  grid: list[tuple[str, list[Any]]], on_result: Any) -> list[VariantResult]:
    clean_stale(out / "variants")
    write_marker(out, "sweep")
    results: list[VariantResult | None] = [None] * len(jobs)
    try:
        for i, res in executor.map(run_variant, jobs):
            results[i] = res
            write_marker(out, "sweep")
            if on_result is not None:
                on_result(res)
        done = [r for r in results if r is not None]
        write_sweep_report(recipe_path, grid, done, out)
    finally:
        write_marker(out, "sweep")
    return done


def _relative(path: str, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def write_sweep_report(recipe_path: str, grid: list[tuple[str, list[Any]]],
                       results: list[VariantResult], out: Path) -> None:
    """sweep.json, report.md/html and a curve per metric over the first grid key."""
    atomic_write_json(out / "sweep.json", {
        "recipe": recipe_path, "grid": {k: v for k, v in grid},
        "variants": [r.__dict__ for r in results]})
    doc = Doc(f"nnopt sweep: {Path(recipe_path).name}")
    doc.p("Grid: " + "; ".join(f"{k} in {v}" for k, v in grid) + ". Each variant is a full run "
          "in variants/<name>; the metrics below are those of its last stage.")
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    if ok:
        doc.h2("Variants")
        targets = sorted({t for r in ok for t in r.deployed})
        doc.table(["variant", "report"] + [f"{t} deployed as" for t in targets]
                  + [f"{t} recommended" for t in targets] + ["warnings"],
                  [[r.name, doc.link(_relative(r.out, out) + "/report.html", "report")]
                   + [r.deployed.get(t, "-") for t in targets]
                   + [r.recommended.get(t, "-") for t in targets] + [str(len(r.warnings))]
                   for r in ok])
        warned = [[r.name, w] for r in ok for w in r.warnings]
        if warned:
            doc.h2("Warnings of the variants")
            doc.table(["variant", "warning"], warned)
        doc.h2("Metrics of the variants")
        def flags(i: int, target: str) -> list[str]:
            why = [f"{r.name} noisy" for r in (ok[0], ok[i]) if target in r.noisy]
            return why + (["different machines"] if ok[i].machine != ok[0].machine else [])

        metrics_tables(doc, [r.name for r in ok], ["-"] * len(ok),
                       [r.seconds for r in ok], [r.metrics for r in ok], "variant", flags=flags)
    if failed:
        doc.h2("Failed variants")
        doc.table(["variant", "error"], [[r.name, r.error or ""] for r in failed])
    key, xs = grid[0]
    if ok:
        cols = metric_columns([r.metrics for r in ok])
        by_first: dict[str, list[float | None]] = {c: [] for c in cols}
        xs_ok: list[Any] = []
        for x in xs:  # first grid key on x; other keys averaged would hide effects: take first
            match = [r for r in ok if r.values[key] == x]
            if not match:
                continue
            xs_ok.append(x)
            for c in cols:
                by_first[c].append(match[0].metrics.get(c))
        fig = plots.sweep_curves(xs_ok, by_first, key, out / "figures" / "sweep_metrics.png")
        doc.h2("Figures")
        if fig:
            extra = "" if len(grid) == 1 else " (other grid keys at their first value)"
            doc.figure(fig, f"Each metric that varies, against {key}{extra}")
        constant = [c for c, ys in by_first.items() if len({y for y in ys if y is not None}) == 1]
        if constant:
            doc.p("The same in every variant: " + ", ".join(
                f"{c} = {fmt(c, by_first[c][0])}" for c in constant) + ".")
        points = [plots.Point(r.name, r.metrics) for r in ok]
        targets = sorted({k.split("/", 1)[1] for r in ok for k in r.metrics
                          if k.startswith("latency_ms/")})
        figures(doc, points, targets, out / "figures")
    atomic_write_text(out / "report.md", doc.markdown(out))
    atomic_write_text(out / "report.html", doc.html())

