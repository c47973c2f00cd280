"""Run a recipe: load data, build the model, apply stage after stage, measure each, report."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from torch import nn

from nnopt.context import RunContext
from nnopt.core.compute import seed_everything
from nnopt.core.environment import environment, memory_bytes
from nnopt.core.errors import DataError, NnoptError
from nnopt.core.fileio import StagedFolder
from nnopt.core.registry import STEPS
from nnopt.core.version import __version__
from nnopt.data import load_data
from nnopt.data.base import DataSplits
from nnopt.measure import Measurement, measure
from nnopt.models import build_model, save_model
from nnopt.models.base import check_fits, weightless_count
from nnopt.recipe import INPUT, ResolvedRecipe
from nnopt.report import Report, StageRecord, write_report

log = logging.getLogger("nnopt")


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
    """Run every stage, write the run folder atomically and return the Report. The output
    folder is checked before any work starts."""
    recipe = resolved.recipe
    with StagedFolder(out_dir, "run") as staging:
        data, model = prepare(resolved)
        initial = model
        ctx = RunContext(recipe=resolved, data=data, out_dir=staging, seed=recipe.seed,
                         progress=progress, final_dir=Path(out_dir))
        records: list[StageRecord] = []
        stages = resolved.stages or []
        if not stages:
            records.append(_measure_stage(ctx, "input", "input", model, 0.0, staging))
        previous = INPUT
        for spec in stages:
            # the stage this one starts from ("input": the recipe's untrained model)
            ctx.stage, ctx.details = spec.name, {"from": spec.source or previous}
            previous = spec.name
            log.info("stage %s (%s)", spec.name, spec.step)
            start = time.perf_counter()
            seed_everything(recipe.seed)
            source = (initial if spec.source == INPUT else ctx.models[spec.source]) \
                if spec.source else model
            out = STEPS.get(spec.step).fn(source, spec.config, ctx)
            if not isinstance(out, nn.Module):
                raise NnoptError(f"step '{spec.step}' returned {type(out).__name__}, not a model")
            seconds = time.perf_counter() - start
            records.append(_measure_stage(ctx, spec.name, spec.step, out, seconds, staging,
                                          parent=source))
            ctx.models[spec.name] = out
            model = out
        report = Report(nnopt_version=__version__, recipe=resolved.to_dict(),
                        environment=environment(), data=data.summary(), stages=records)
        write_report(report, staging)
    return report


def _measure_stage(ctx: RunContext, name: str, step: str, model: nn.Module, seconds: float,
                   staging: Path, parent: nn.Module | None = None) -> StageRecord:
    folder = staging / "models" / name
    weights = save_model(model, folder)
    m = Measurement(model=model, data=ctx.data, targets=ctx.targets, work_dir=folder,
                    weights_path=weights, details=dict(ctx.details),
                    options=ctx.recipe.metric_options, reference=ctx.baseline, parent=parent)
    metrics = measure(m, ctx.recipe.recipe.evaluate)
    return StageRecord(name=name, step=step, seconds=round(seconds, 3),
                       artifact=folder.relative_to(staging).as_posix(), metrics=metrics,
                       details=m.details)
