"""Run a recipe: load data, build the model, apply stage after stage, measure each, report."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.context import RunContext
from nnopt.core.compute import (
    compute_device,
    on_device,
    predict,
    resolve_device,
    seed_everything,
)
from nnopt.core.environment import environment, memory_bytes
from nnopt.core.errors import DataError, NnoptError
from nnopt.core.fileio import StagedFolder
from nnopt.core.registry import STEPS
from nnopt.core.version import __version__
from nnopt.data import load_data
from nnopt.data.base import DataSplits
from nnopt.measure import Measurement, measure
from nnopt.measure.base import is_artifact
from nnopt.measure.latency import shipped_files
from nnopt.measure.quantity import order
from nnopt.measure.side_by_side import deployed_as, time_stages
from nnopt.models import build_model, save_model
from nnopt.models.base import check_fits, weightless_count
from nnopt.models.deployed import Deployed
from nnopt.models.saving import files_size
from nnopt.recipe import INPUT, ResolvedRecipe
from nnopt.report import Report, StageRecord, write_report
from nnopt.report.summary import run_metadata
from nnopt.train.distributed import local_only, rank, world
from nnopt.train.tracking import logged, open_tracker

log = logging.getLogger("nnopt")
LATENCY = "latency"  # timed for all stages together, after them (the timing pass)


def check_size(resolved: ResolvedRecipe, data: DataSplits) -> None:
    """Refuse a model that cannot be trained in this machine's memory, before building it:
    fp32 weights, gradients and AdamW's two moments, counted on a weightless build."""
    count = weightless_count(resolved.model, data.input_shape, data.num_classes)
    need = 16 * (count or 0)
    if need > memory_bytes():
        raise DataError(f"model '{resolved.model.name}' has {count:,} parameters: training it "
                        f"needs about {need / 2 ** 30:.0f} GiB (weights, gradients and the "
                        f"optimiser's moments), more than this machine's "
                        f"{memory_bytes() / 2 ** 30:.0f} GiB; make it smaller")


def prepare(resolved: ResolvedRecipe) -> tuple[DataSplits, nn.Module]:
    """Load the data and build (or load) the model; every input error surfaces here."""
    seed_everything(resolved.recipe.seed)
    data = load_data(resolved.data)
    check_size(resolved, data)
    try:
        model = build_model(resolved.model, data.input_shape, data.num_classes, data.mean, data.std,
                            trust=resolved.trusted())
    except (ValueError, TypeError) as exc:
        raise DataError(f"model '{resolved.model.name}' cannot be built for dataset '{data.name}' "
                        f"(input shape {tuple(data.input_shape)}): {exc}") from None
    check_fits(model, data, resolved.model.name)
    return data, model


def run_recipe(resolved: ResolvedRecipe, out_dir: str | Path, *, progress: bool = False
               ) -> Report:
    """Run every stage, time every stage's artifact on every target side by side, decide per
    target, write the run folder atomically and return the Report. The output folder is
    checked before any work starts."""
    recipe = resolved.recipe
    main = rank() == 0  # under torchrun, process 0 alone measures and writes the run folder
    device = resolve_device(recipe.device)  # a device this machine lacks: one line, no folder
    devices = {s.name: resolve_device(s.device) if s.device else device for s in resolved.stages}
    with StagedFolder(out_dir, "run") if main else scratch() as staging, on_device(device):
        data, model = prepare(resolved)
        ctx = RunContext(recipe=resolved, data=data, out_dir=staging, seed=recipe.seed,
                         progress=progress, final_dir=Path(out_dir))
        if main:
            ctx.tracker = open_tracker(recipe.tracking, Path(out_dir), recipe.name,
                                       {"nnopt.recipe": resolved.source or "",
                                        "nnopt.version": __version__}, staging=staging)
        with logged(ctx.tracker, staging):
            report = _run_stages(ctx, resolved, model, devices, staging, main)
    return report


def _run_stages(ctx: RunContext, resolved: ResolvedRecipe, model: nn.Module,
                devices: dict[str, torch.device], staging: Path, main: bool) -> Report:
    """Every stage in order, each measured; then the side-by-side timing and the report."""
    recipe, data = resolved.recipe, ctx.data
    initial = model
    device = compute_device()
    if ctx.tracker is not None:
        ctx.tracker.params(resolved.to_dict())
    records: list[StageRecord] = []
    stages = resolved.stages or []
    models: dict[str, nn.Module] = {}
    parents: dict[str, str] = {}
    floats: dict[str, str] = {INPUT: INPUT}  # stage -> the stage of its float model
    if not stages:
        if main:
            with local_only():
                records.append(_measure_stage(ctx, "input", "input", model, 0.0, staging))
        models["input"] = model
    previous = INPUT
    for spec in stages:
        # the stage this one starts from ("input": the recipe's untrained model)
        source_name = spec.source or previous
        ctx.stage, ctx.details = spec.name, {"from": source_name}
        previous = spec.name
        log.info("stage %s (%s)", spec.name, spec.step)
        start = time.perf_counter()
        seed_everything(recipe.seed)
        source = initial if source_name == INPUT else ctx.models[source_name]
        with on_device(devices[spec.name]):
            out = STEPS.get(spec.step).fn(source, spec.config, ctx)
        _note_replicated(ctx)
        if not isinstance(out, nn.Module):
            raise NnoptError(f"step '{spec.step}' returned {type(out).__name__}, not a model")
        seconds = time.perf_counter() - start
        floats[spec.name] = floats[source_name] if is_artifact(out) else spec.name
        float_name = floats[spec.name]
        float_model = initial if float_name == INPUT else ctx.models.get(float_name, out)
        if main:
            with local_only():
                records.append(_measure_stage(
                    ctx, spec.name, spec.step, out, seconds, staging, parent=float_model,
                    parent_name="the recipe's input model" if float_name == INPUT else
                    f"the float model of stage '{float_name}'"))
        ctx.models[spec.name] = models[spec.name] = out
        if source_name != INPUT:
            parents[spec.name] = source_name
        model = out
    report = Report(nnopt_version=__version__, recipe=resolved.to_dict(),
                    environment={**environment(), "device": str(device)},
                    data=data.summary(), stages=records,
                    run={**run_metadata(resolved), **({"tracking": ctx.tracker.where()}
                                                      if ctx.tracker is not None else {})})
    if main:
        with local_only():
            if LATENCY in recipe.evaluate and ctx.targets:
                _time_side_by_side(ctx, records, models, parents, staging)
            write_report(report, staging)
        if ctx.tracker is not None:  # latencies are known only now, after the timing pass
            for i, rec in enumerate(records):
                ctx.tracker.stage(i, rec.name, rec.metrics)
    return report


def _note_replicated(ctx: RunContext) -> None:
    """Under several processes, a stage that trained nothing data-parallel (a calibration fit,
    Laplace, DARTS, WANN, a whole-batch task) ran whole in every process alike: say so."""
    _, size = world()
    training = ctx.details.get("training") or {}
    if size > 1 and "data-parallel over" not in str(training.get("distributed", "")):
        ctx.details["distributed"] = (f"not data-parallel: ran whole in each of the {size} "
                                      "processes (the same seeds give the same model)")


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A process other than 0's working folder: temporary, removed at the end (it writes
    nothing where the run goes)."""
    with tempfile.TemporaryDirectory(prefix="nnopt-rank-") as tmp:
        yield Path(tmp)


def _time_side_by_side(ctx: RunContext, records: list[StageRecord],
                       models: dict[str, nn.Module], parents: dict[str, str],
                       staging: Path) -> None:
    """The timing pass: every stage on every target, interleaved; figures into the records."""
    dirs = {r.name: staging / "models" / r.name for r in records}
    found = time_stages(models, ctx.targets, ctx.data.test.x, dirs, parents,
                        bar=lambda desc: ctx.progress_bar(desc))
    for rec in records:
        per_target = found.get(rec.name, {})
        rec.details["latency"] = per_target
        for target in ctx.targets:
            fig, how = per_target.get(target.name, {}), rec.details["deployed"][target.name]
            if "median_ms" not in fig:
                continue
            rec.metrics[f"latency_ms/{target.name}"] = fig["median_ms"]
            # what the target was timed on is what it ships: its files, their bytes on disk
            files = shipped_files(models[rec.name], target, fig["runtime"], dirs[rec.name])
            if files and "runtime" in how:
                how["files"] = [f.relative_to(staging).as_posix() for f in files]
                how["size_bytes"] = files_size(files)
                if not is_artifact(models[rec.name]):  # a PyTorch model, exported for it
                    how["file"] = how["files"][0]
        rec.metrics = {k: rec.metrics[k] for k in order(set(rec.metrics))}


def _with_file(how: dict[str, Any], folder: Path, staging: Path, file: str) -> dict[str, Any]:
    """A target's deployment with its file relative to the run folder (unchanged when the
    target has none: then it holds only the reason)."""
    if "runtime" not in how:
        return how
    if "file" in how:
        return {**how, "file": (folder / how["file"]).relative_to(staging).as_posix()}
    return {**how, "file": file, "reason": how.get("reason", "the stage's own model (this "
                                                   "stage deploys nothing per target)")}


def _measure_stage(ctx: RunContext, name: str, step: str, model: nn.Module, seconds: float,
                   staging: Path, parent: nn.Module | None = None,
                   parent_name: str = "the parent stage") -> StageRecord:
    folder = staging / "models" / name
    weights = save_model(model, folder)
    m = Measurement(model=model, data=ctx.data, targets=ctx.targets, work_dir=folder,
                    weights_path=weights, details=dict(ctx.details),
                    options=ctx.recipe.metric_options, reference=ctx.baseline, parent=parent,
                    parent_name=parent_name)
    file = weights.relative_to(staging).as_posix()
    m.details["deployed"] = {t.name: _with_file(deployed_as(model, t), folder, staging, file)
                             for t in ctx.targets}
    names = [n for n in ctx.recipe.recipe.evaluate if n != LATENCY or not ctx.targets]
    metrics = measure(m, names, ctx.progress_bar(f"measure {name}"))
    if isinstance(model, Deployed) and "accuracy" in metrics:  # other targets' own artifacts
        others = {t: a for t, a in model.by_target.items() if a is not model.main}
        if others:
            m.details["deployed_accuracy"] = {
                t: (predict(a, ctx.data.test.x).argmax(1) == ctx.data.test.y)
                .double().mean().item() for t, a in others.items()}
    return StageRecord(name=name, step=step, seconds=round(seconds, 3),
                       artifact=folder.relative_to(staging).as_posix(), metrics=metrics,
                       details=m.details)
