"""The ``nas`` step: hardware-aware neural architecture search over a macro space. Each trial
trains an architecture on a proxy budget and measures its objectives (validation accuracy,
latency measured on a recipe target, size, ECE, ...); the strategy proposes the next ones; the
architecture picked from the Pareto front is retrained on the full training split and becomes
the stage's model, so compression stages can follow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from torch import nn
from tqdm import tqdm

from nnopt.context import RunContext
from nnopt.core.compute import compute_device
from nnopt.core.config import PATH, Strict
from nnopt.core.errors import NnoptError, unknown_choice
from nnopt.core.registry import STEPS, STRATEGIES
from nnopt.models import build_model
from nnopt.search.executors import Executor, get_executor
from nnopt.search.pareto import pareto_front
from nnopt.search.space import MacroSpace
from nnopt.search.strategies import make_strategy
from nnopt.search.trial import (
    TrialJob,
    TrialResult,
    TrialStore,
    direction,
    evaluate_trial,
    metric_for,
    share_data,
)
from nnopt.train.fit import TrainConfig, evaluate

REFERENCE = -1  # the trial number of the reference model


class ProxyConfig(Strict):
    """The cheap training that ranks architectures during the search."""

    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=1, select_best=False))
    limit: int | None = Field(10_000, ge=1, description="training examples per trial "
                              "(a seeded subset; null: all)")


class Resources(Strict):
    """What one Ray job holds: CPUs and GPUs (fractions share a device)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class NasConfig(Strict):
    """What to search, how, against which objectives, and how to retrain the pick."""

    space: MacroSpace = Field(default_factory=MacroSpace)
    strategy: str = Field("random", description="random, evolution (regularized), tpe (one "
                          "objective) or nsga2 (several)")
    trials: int = Field(20, ge=1, le=100_000,
                        description="architectures evaluated (the budget, with proxy)")
    objectives: list[str] = Field(default_factory=lambda: ["accuracy"], min_length=1,
                                  description="metrics judged on the validation split and the "
                                  "targets: accuracy, latency_ms/<target>, params, size_bytes, "
                                  "macs, ece, ... (accuracies maximised, the rest minimised)")
    constraints: dict[str, float | Literal["reference"]] = Field(
        default_factory=dict, description="metric -> upper bound (lower bound for accuracies) "
        "the pick must meet; 'reference': the reference model's value")
    reference: dict[str, Any] | None = Field(None, description="a model config (e.g. the model "
                                             "you have now) evaluated like a trial, as the "
                                             "yardstick of 'reference' constraints")
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    population: int = Field(10, ge=2, le=100_000,
                            description="evolution: population; nsga2: generation "
                            "size; tpe: random start-up trials")
    sample: int = Field(3, ge=1, description="evolution: tournament size")
    executor: Literal["local", "ray"] = Field("local", description="where trials run")
    workers: int = Field(1, ge=1, description="trials run at once (asked and told in batches)")
    ray_address: str | None = Field(None, description="ray: a running cluster's address "
                                    "(default: start a local instance)")
    resources_per_trial: Resources = Field(
        default_factory=lambda: Resources(), description="ray: the CPUs and GPUs each trial "
        "holds; a trial given a GPU trains on it (else on the CPU)")
    store: str | None = Field(None, json_schema_extra=PATH, description="folder of the trial store (default: "
                              "<out>.trials/<stage> beside the run folder)")
    resume: bool = Field(True, description="reuse stored trials of the same search")
    retrain: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=5),
                                 description="full training of the picked architecture")
    finalists: int = Field(1, ge=1, description="the best architectures by proxy (first "
                           "objective, within the constraints) retrained in full; the one best "
                           "on the validation split is the pick (1: the proxy's best)")

    @model_validator(mode="after")
    def _finalists(self) -> NasConfig:
        if self.finalists > 1 and self.objectives[0] != "accuracy":
            raise ValueError("finalists are compared on validation accuracy: with finalists "
                             f"> 1 the first objective must be 'accuracy', not "
                             f"{self.objectives[0]!r}")
        return self

    @field_validator("strategy")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in STRATEGIES:
            raise ValueError(unknown_choice("search strategy", v, STRATEGIES.names()))
        return v


def losses(metrics: dict[str, float], objectives: list[str]) -> list[float] | None:
    """Objective values signed for minimisation; None when one was not measured."""
    if any(o not in metrics for o in objectives):
        return None
    return [-metrics[o] if direction(o) == "max" else metrics[o] for o in objectives]


def meets(metrics: dict[str, float], constraints: dict[str, float]) -> bool:
    return all(k in metrics and (metrics[k] >= v if direction(k) == "max" else metrics[k] <= v)
               for k, v in constraints.items())


def bounds(cfg: NasConfig, reference: TrialResult | None) -> dict[str, float]:
    """The constraints as numbers ('reference' replaced by the reference model's value)."""
    out = {}
    for k, v in cfg.constraints.items():
        if v == "reference":
            if reference is None or k not in reference.metrics:
                why = reference.error if reference is not None and reference.error else \
                    "set 'reference' to a model config" if reference is None else \
                    f"the reference has no {k}"
                raise NnoptError(f"constraint {k}: reference: {why}")
            out[k] = reference.metrics[k]
        else:
            out[k] = float(v)
    return out


def pick(results: list[TrialResult], cfg: NasConfig, reference: TrialResult | None = None
         ) -> tuple[list[int], TrialResult]:
    """The Pareto front (trial numbers) and the picked trial: the front's best first
    objective among the trials that meet the constraints."""
    front, ranked = candidates(results, cfg, reference)
    return front, ranked[0]


def candidates(results: list[TrialResult], cfg: NasConfig,
               reference: TrialResult | None = None) -> tuple[list[int], list[TrialResult]]:
    """The Pareto front (trial numbers) and the trials that meet the constraints, best first
    (objectives compared in order; the first is always on the front)."""
    ok = [r for r in results if losses(r.metrics, cfg.objectives) is not None]
    if not ok:
        reasons = sorted({r.error or "objective not measured" for r in results})
        raise NnoptError("every search trial failed: " + "; ".join(reasons[:3]))
    points = [losses(r.metrics, cfg.objectives) for r in ok]
    front = [ok[i].number for i in pareto_front(points)]  # type: ignore[arg-type]
    limits = bounds(cfg, reference)
    fit_ = [r for r in ok if meets(r.metrics, limits)]
    if not fit_:
        raise NnoptError(f"no trial meets the constraints {limits}; the best values "
                         "found: " + ", ".join(
                             f"{k} {min(r.metrics.get(k, float('inf')) for r in ok):.4g}"
                             if direction(k) == "min" else
                             f"{k} {max(r.metrics.get(k, float('-inf')) for r in ok):.4g}"
                             for k in cfg.constraints))
    ranked = sorted(fit_, key=lambda r: losses(r.metrics, cfg.objectives))  # type: ignore
    return front, ranked


def _settings(cfg: NasConfig, ctx: RunContext) -> dict[str, Any]:
    keep = cfg.model_dump(mode="json", include={"space", "strategy", "objectives", "proxy",
                                                  "population", "sample", "workers",
                                                  "reference"})
    return {**keep, "data": ctx.recipe.data.model_dump(mode="json"), "seed": ctx.seed,
            "targets": [t.model_dump(mode="json") for t in ctx.targets]}


@dataclass
class SearchResult:
    trials: list[TrialResult]  # by trial number
    reference: TrialResult | None = None  # the reference model, evaluated like a trial (-1)


def run_search(cfg: NasConfig, ctx: RunContext, store: Path | None, progress: Any = None,
               executor: Executor | None = None) -> SearchResult:
    """Evaluate ``cfg.trials`` architectures (resuming from ``store``) and the reference, on
    ``executor`` (default: the one ``cfg`` names, started here and shut down at the end)."""
    if executor is None:
        own = get_executor(cfg.executor, **({"address": cfg.ray_address,
                                             "cpus_per_job": cfg.resources_per_trial.cpu,
                                             "gpus_per_job": cfg.resources_per_trial.gpu}
                                            if cfg.executor == "ray" else {}))
        try:
            return run_search(cfg, ctx, store, progress, own)
        finally:
            if hasattr(own, "shutdown"):
                own.shutdown()
    for o in [*cfg.objectives, *cfg.constraints]:
        if o.startswith("latency_ms/") and o.split("/", 1)[1] not in {t.name for t in
                                                                        ctx.targets}:
            raise NnoptError(f"objective {o}: no recipe target named "
                             f"'{o.split('/', 1)[1]}'; targets: "
                             + ", ".join(t.name for t in ctx.targets))
    # params and MACs are cheap: every trial records them beside its objectives
    names = sorted({"params", "macs", *(metric_for(o) for o in [*cfg.objectives,
                                                                 *cfg.constraints])})
    strategy = make_strategy(cfg.strategy, cfg.space, len(cfg.objectives), ctx.seed,
                             {"population": cfg.population, "sample": cfg.sample}, store)
    tstore = TrialStore(store, _settings(cfg, ctx)) if store is not None else None
    stored = tstore.load() if tstore is not None and cfg.resume else []
    reference = next((r for r in stored if r.number == REFERENCE), None)
    done = [r for r in stored if 0 <= r.number < cfg.trials]
    for i in range(0, len(done), cfg.workers):  # replay, in the batches they ran in: the
        batch = done[i:i + cfg.workers]  # strategy's state as it was after these trials
        for _ in batch:
            strategy.ask()
        for r in batch:
            strategy.tell(r.arch, losses(r.metrics, cfg.objectives))
    if tstore is not None:
        tstore.start(done + ([reference] if reference else []))
    here = str(compute_device())  # the reference and local trials compute where the stage does
    on_ray = getattr(executor, "name", "") == "ray"  # a Ray trial: on the GPU it was given, if any
    remote = ("cuda" if cfg.resources_per_trial.gpu else "cpu") if on_ray else here
    data_cfg = ctx.recipe.data.model_dump(mode="json")
    share_data(data_cfg, ctx.data)
    options = {k: v.model_dump(mode="json") for k, v in ctx.recipe.metric_options.items()
               if k in names}

    def job(number: int, arch: dict[str, Any], family: str, fixed: dict[str, Any],
            device: str = remote) -> TrialJob:
        return TrialJob(number=number, arch=arch, family=family, fixed=fixed, data=data_cfg,
                        proxy=cfg.proxy.train.model_dump(mode="json"),
                        proxy_limit=cfg.proxy.limit, metrics=names,
                        targets=[t.model_dump(mode="json") for t in ctx.targets],
                        seed=ctx.seed, metric_options=options, device=device)

    if cfg.reference is not None and reference is None:
        ref = {k: v for k, v in cfg.reference.items() if k != "name"}
        reference = evaluate_trial(job(REFERENCE, ref, cfg.reference.get("name", "cnn"), {},
                                       here))
        if tstore is not None:
            tstore.append(reference)
    results = list(done)
    if progress is not None:
        progress(len(results), cfg.trials)
    while len(results) < cfg.trials:
        batch = min(cfg.workers, cfg.trials - len(results))
        jobs = [job(len(results) + i, strategy.ask(), cfg.space.family, dict(cfg.space.fixed))
                for i in range(batch)]
        finished: list[TrialResult | None] = [None] * batch
        for i, res in executor.map(evaluate_trial, jobs):
            finished[i] = res
            if tstore is not None:
                tstore.append(res)
        for res in finished:  # told in trial order, whatever order they finished in
            assert res is not None
            strategy.tell(res.arch, losses(res.metrics, cfg.objectives))
            results.append(res)
        if progress is not None:
            progress(len(results), cfg.trials)
    return SearchResult(results, reference)


def _store(cfg: NasConfig, ctx: RunContext) -> Path | None:
    if cfg.store is not None:
        return Path(cfg.store)
    if ctx.final_dir is None:
        return None
    final = Path(ctx.final_dir)
    return final.with_name(final.name + ".trials") / ctx.stage


@STEPS.register("nas", config=NasConfig,
                tiny={"space": {"family": "cnn", "choices": {"width": [2, 4], "depth": [1, 2]},
                                "fixed": {"hidden": 0}},
                      "trials": 2, "proxy": {"train": {"epochs": 1, "batch_size": 16,
                                                       "select_best": False}, "limit": 64},
                      "retrain": {"epochs": 1, "batch_size": 16}})
def nas(model: nn.Module, cfg: NasConfig, ctx: RunContext) -> nn.Module:
    """Search architectures of a model family for the objectives; retrain the pick."""
    store = _store(cfg, ctx)
    bar = _TrialBar(ctx.stage, cfg.trials) if ctx.progress else None
    try:
        found = run_search(cfg, ctx, store, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    results, ref = found.trials, found.reference
    front, ranked = candidates(results, cfg, ref)
    finals = []
    for rank, cand in enumerate(ranked[:cfg.finalists]):
        net = build_model(cfg.space.config(cand.arch), ctx.data.input_shape,
                          ctx.data.num_classes, ctx.data.mean, ctx.data.std)
        name = ctx.stage if cfg.finalists == 1 else f"{ctx.stage} finalist {rank + 1}"
        st = ctx.fit(net, cfg.retrain, stage=name, record="none")
        finals.append((cand, net, st))
    # finalists are compared on the validation split: the test split stays unseen
    scores = [_validation(net, ctx) for _, net, _ in finals] if len(finals) > 1 else [None]
    best, out, state = finals[scores.index(max(scores))] if len(finals) > 1 else finals[0]
    ctx.record("history", state.history)
    ctx.record("training", state.notes)
    failed = [r for r in results if r.error]
    if failed:
        ctx.warn(f"{len(failed)} of {len(results)} trials failed, e.g. trial "
                 f"{failed[0].number}: {failed[0].error}")
    ctx.record("search", {
        "strategy": cfg.strategy, "objectives": cfg.objectives,
        "directions": [direction(o) for o in cfg.objectives], "constraints": cfg.constraints,
        "budget": {"trials": cfg.trials, "proxy_epochs": cfg.proxy.train.epochs,
                   "proxy_examples": cfg.proxy.limit},
        "space": cfg.space.model_dump(mode="json"), "space_size": cfg.space.size,
        "executor": cfg.executor, "workers": cfg.workers,
        "store": str(store) if store is not None else None,
        "trials": [{"number": r.number, "arch": r.arch, "metrics": r.metrics,
                    "seconds": round(r.seconds, 3), "seed": r.seed, "error": r.error,
                    "host": r.environment.get("host")} for r in results],
        "front": front, "picked": best.number, "picked_arch": best.arch,
        "finalists": [{"number": c.number, "arch": c.arch,
                       "proxy": c.metrics.get(cfg.objectives[0]),
                       "retrained_val": score}
                      for (c, _, _), score in zip(finals, scores, strict=False)],
        "bounds": bounds(cfg, ref),
        "reference": None if ref is None else {"model": cfg.reference, "metrics": ref.metrics,
                                               "error": ref.error}})
    return out


def _validation(model: nn.Module, ctx: RunContext) -> float:
    """A retrained finalist's validation accuracy."""
    if not len(ctx.data.val):
        raise NnoptError("nas finalists are compared on the validation split, and the data "
                         "has none: set data.val_fraction > 0 or finalists: 1")
    return float(evaluate(model, ctx.data.val)["accuracy"])


class _TrialBar:
    """The CLI's progress bar over trials (``progress(done, total)``)."""

    def __init__(self, stage: str, total: int) -> None:
        self.bar = tqdm(total=total, desc=f"{stage} trials", leave=False)

    def __call__(self, done: int, total: int) -> None:
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
