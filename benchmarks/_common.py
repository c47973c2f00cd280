"""Helpers of the benchmark scripts: a finished run (run once if missing), side-by-side
latency (models timed alternately over rounds, medians), acceptance checks and the parts a
script runs."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnopt.measure import Measurement
from nnopt.measure.latency import measure_target
from nnopt.measure.target import Target
from nnopt.report import Report, load_report


def finished_run(recipe: str, out: str | Path, sets: tuple[str, ...] = ()) -> Report:
    """The report of ``recipe`` (with ``--set`` overrides) run into ``out``, running it first
    unless it already finished."""
    out = Path(out)
    if not (out / "results.json").is_file():
        extra = [a for s in sets for a in ("--set", s)]
        subprocess.run([sys.executable, "-m", "nnopt", "run", recipe, "--out", str(out),
                        "--quiet", *extra], check=True)
    return load_report(out)


def side_by_side(models: dict[str, Any], data: Any, targets: list[Target], rounds: int = 5
                 ) -> dict[str, dict[str, float]]:
    """``{target: {model: median over rounds of each round's median ms}}``; every round times
    every model on every target in turn, so machine noise hits them alike."""
    times: dict[str, dict[str, list[float]]] = {t.name: {k: [] for k in models} for t in targets}
    with tempfile.TemporaryDirectory() as tmp:
        meas = {k: Measurement(m, data, targets, Path(tmp) / k.replace("/", "_"))
                for k, m in models.items()}
        for _ in range(rounds):
            for t in targets:
                for k in models:
                    times[t.name][k].append(measure_target(meas[k], t)["median_ms"])
    return {t: {k: statistics.median(v) for k, v in per.items()} for t, per in times.items()}


def recipe_latency(recipe: str, models: dict[str, Any], target: str = "server",
                   rounds: int = 5) -> dict[str, float]:
    """``{model: median ms}`` on one of ``recipe``'s targets, timed side by side on its data."""
    from nnopt.recipe import load_recipe
    from nnopt.runner import prepare

    resolved = load_recipe(recipe)
    data, _ = prepare(resolved)
    return side_by_side(models, data, resolved.recipe.targets, rounds)[target]


class Checks:
    """A benchmark's acceptance checks: one PASS/FAIL line each; ``failures`` collects the rest."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, ok: bool, text: str) -> None:
        print(("PASS " if ok else "FAIL ") + text)
        if not ok:
            self.failures.append(text)


def run_parts(parts: dict[str, Callable[[Checks], None]]) -> int:
    """Run the parts named on the command line (all, in order, by default) with one Checks;
    the exit status is 1 if any check failed."""
    names = sys.argv[1:] or list(parts)
    unknown = [n for n in names if n not in parts]
    if unknown:
        raise SystemExit(f"unknown part {', '.join(unknown)}; parts: {', '.join(parts)}")
    check = Checks()
    for name in names:
        parts[name](check)
        print()
    return 1 if check.failures else 0
