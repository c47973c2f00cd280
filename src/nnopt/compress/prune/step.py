"""The ``prune`` step: unstructured (magnitude, random, movement), N:M, or channel pruning,
one-shot or gradual, with fine-tuning and a latency pre-flight on the recipe's targets."""

from __future__ import annotations

import copy
from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from nnopt.compress.distill.task import DistillConfig
from nnopt.compress.prune import masks as M
from nnopt.compress.prune.preflight import preflight
from nnopt.compress.prune.schedule import GradualPruning
from nnopt.compress.prune.sensitivity import amounts_from_sensitivity, layer_sensitivity
from nnopt.compress.prune.structured import channel_prune
from nnopt.context import RunContext
from nnopt.errors import NnoptError
from nnopt.measure.efficiency import count_macs
from nnopt.recipe import Strict
from nnopt.registry import STEPS
from nnopt.train.fit import TrainConfig, fit


class PruneConfig(Strict):
    """What to remove, how to choose it, and how to recover afterwards."""

    method: Literal["magnitude", "random", "movement", "nm", "channel"] = "magnitude"
    amount: float = Field(0.5, ge=0.0, lt=1.0, description="share of weights (or channels) removed")
    scope: Literal["layer", "global"] = Field("global", description="rank weights per layer or "
                                              "over the whole model")
    schedule: Literal["oneshot", "gradual"] = Field(
        "oneshot", description="gradual: the Zhu & Gupta cubic schedule during finetune")
    gradual_end: float = Field(0.75, gt=0, le=1, description="share of finetune steps after "
                               "which the final sparsity is reached")
    gradual_every: int = Field(50, ge=1, description="steps between mask updates (gradual)")
    n: int = Field(2, ge=1, description="N of N:M (method nm)")
    m: int = Field(4, ge=2, description="M of N:M (method nm)")
    importance: Literal["l1", "l2", "bn_scale", "taylor"] = Field(
        "l2", description="channel importance (method channel)")
    per_layer: dict[str, float] | None = Field(None, description="amount per layer (overrides amount)")
    sensitivity_tolerance: float | None = Field(
        None, gt=0, lt=1, description="derive per-layer amounts from a sensitivity scan: deepest "
        "level whose validation accuracy drop stays within this (unstructured methods)")
    keep_macs: float | None = Field(None, gt=0, lt=1, description="channel: prune until MACs are "
                                    "at most this share of the input model's")
    keep_latency: float | None = Field(None, gt=0, lt=1, description="channel: prune until "
                                       "latency on budget_target is at most this share")
    budget_target: str | None = Field(None, description="target whose latency keep_latency means")
    prune_heads: bool = Field(False, description="channel: remove whole attention heads")
    round_to: int | None = Field(None, ge=1, description="channel: keep channel counts multiples")
    exclude: list[str] = Field(default_factory=list, description="layer names not to prune")
    finetune: TrainConfig | None = Field(None, description="training after (or, gradual, during) "
                                         "pruning; masks are kept")
    distill: DistillConfig | None = Field(None, description="fine-tune with a teacher's soft "
                                          "targets instead of plain cross-entropy")
    preflight: bool = Field(True, description="time dense vs sparse on each target (unstructured)")

    @model_validator(mode="after")
    def _consistent(self) -> PruneConfig:
        if self.schedule == "gradual" and self.finetune is None:
            raise ValueError("schedule 'gradual' prunes during training: set finetune")
        if self.method == "movement" and self.schedule != "gradual":
            raise ValueError("method 'movement' needs schedule 'gradual' (scores come from training)")
        if self.method in ("nm", "channel") and self.schedule == "gradual":
            raise ValueError(f"method '{self.method}' is one-shot; use schedule 'oneshot'")
        if self.method == "nm" and self.n >= self.m:
            raise ValueError(f"N:M needs N < M, got {self.n}:{self.m}")
        if (self.keep_macs or self.keep_latency) and self.method != "channel":
            raise ValueError("keep_macs / keep_latency budgets are for method 'channel'")
        if self.distill and self.finetune is None:
            raise ValueError("distill is the fine-tuning loss: set finetune too")
        if self.keep_latency and not self.budget_target:
            raise ValueError("keep_latency needs budget_target (the name of a recipe target)")
        if self.sensitivity_tolerance and self.method in ("nm", "channel", "movement"):
            raise ValueError("sensitivity-derived amounts are for magnitude and random pruning")
        return self


def _finetune(model: nn.Module, cfg: PruneConfig, ctx: RunContext, extra: list) -> object:
    task = None
    if cfg.distill:
        from nnopt.compress.distill.step import distillation_task

        task = distillation_task(cfg.distill, ctx, cfg.finetune.label_smoothing)
    return fit(model, ctx.data.train, config=cfg.finetune, val=ctx.data.val, task=task,
               callbacks=ctx.callbacks(model) + extra, stage=ctx.stage, seed=ctx.seed)


@STEPS.register("prune", config=PruneConfig,
                tiny={"amount": 0.5, "finetune": {"epochs": 1, "batch_size": 32}})
def prune(model: nn.Module, cfg: PruneConfig, ctx: RunContext) -> nn.Module:
    """Prune a copy of the model and fine-tune it; record sparsity, pre-flight and warnings."""
    dense, model = model, copy.deepcopy(model)
    if cfg.method == "channel":
        _structured(model, cfg, ctx)
    else:
        _unstructured(dense, model, cfg, ctx)
    return model


def _structured(model: nn.Module, cfg: PruneConfig, ctx: RunContext) -> None:
    example = ctx.data.train.x[:1]
    budget = None
    if cfg.keep_macs:
        limit = cfg.keep_macs * count_macs(model, example)
        budget = lambda m: count_macs(m, example) <= limit  # noqa: E731
    elif cfg.keep_latency:
        budget = _latency_budget(model, cfg, ctx)
    before = {n: p.shape[0] for n, p in model.named_parameters() if n.endswith("weight")}
    info = channel_prune(model, example, amount=cfg.amount, importance=cfg.importance,
                         scope=cfg.scope, data=ctx.data.train, per_layer=cfg.per_layer,
                         prune_heads=cfg.prune_heads, round_to=cfg.round_to, budget=budget)
    after = {n: p.shape[0] for n, p in model.named_parameters() if n in before}
    ctx.record("channels", {n: [before[n], after[n]] for n in before if before[n] != after[n]})
    ctx.record("pruning", {"method": "channel", "importance": cfg.importance, **info})
    if cfg.finetune:
        state = _finetune(model, cfg, ctx, [])
        ctx.record("history", state.history)
        ctx.record("training", state.notes)


def _latency_budget(model: nn.Module, cfg: PruneConfig, ctx: RunContext):  # noqa: ANN202
    from nnopt.measure.latency import latency_probe

    ms = latency_probe(ctx.data, ctx.targets, cfg.budget_target)
    limit = cfg.keep_latency * ms(model)
    return lambda m: ms(m) <= limit


def _preflight(dense: nn.Module, cfg: PruneConfig, ctx: RunContext, names: list[str],
               amount: float | dict[str, float], scope: str) -> None:
    """Before any fine-tuning: the requested sparsity (magnitude masks standing in for scores
    that only training can give) timed dense vs sparse on every target."""
    trial = copy.deepcopy(dense)
    weights = M.prunable_weights(trial, cfg.exclude)
    weights = {n: w for n, w in weights.items() if n in names}
    if cfg.method == "nm":
        masks = M.nm_masks(weights, cfg.n, cfg.m)
    elif cfg.method == "random":
        masks = M.random_masks(weights, amount, scope, seed=ctx.seed)
    else:
        masks = M.magnitude_masks(weights, amount, scope)
    M.apply_masks(trial, masks)
    results, warns = preflight(dense, trial, ctx.example, ctx.targets)
    ctx.record("preflight", results)
    ctx.warn(*warns)


def _unstructured(dense: nn.Module, model: nn.Module, cfg: PruneConfig, ctx: RunContext) -> None:
    weights = M.prunable_weights(model, cfg.exclude)
    if cfg.method == "nm":  # N:M groups run along a layer's inputs, which must divide by M
        skipped = [n for n, w in weights.items() if w[0].numel() % cfg.m]
        weights = {n: w for n, w in weights.items() if n not in skipped}
        if skipped:
            ctx.warn(f"{cfg.n}:{cfg.m} skips layers whose inputs per output are not a multiple "
                     f"of {cfg.m}: {', '.join(n.removesuffix('.weight') for n in skipped)}")
    if not weights:
        raise NnoptError("nothing to prune: the model has no Linear/Conv weights (after exclude)")
    amount: float | dict[str, float] = cfg.amount
    if cfg.per_layer:
        unknown = sorted(set(cfg.per_layer) - {n.rsplit(".", 1)[0] for n in weights})
        if unknown:
            raise NnoptError(f"per_layer names unknown layers: {', '.join(unknown)}; prunable: "
                             + ", ".join(n.rsplit(".", 1)[0] for n in weights))
        amount = {n: cfg.per_layer.get(n.rsplit(".", 1)[0], 0.0) for n in weights}
    elif cfg.sensitivity_tolerance:
        scan = layer_sensitivity(model, list(weights), ctx.data.val)
        amount = amounts_from_sensitivity(scan, cfg.sensitivity_tolerance)
        ctx.record("sensitivity", {**scan, "tolerance": cfg.sensitivity_tolerance,
                                   "derived": amount})
    scope = "layer" if isinstance(amount, dict) else cfg.scope
    if cfg.preflight and ctx.targets:
        _preflight(dense, cfg, ctx, list(weights), amount, scope)
    if cfg.schedule == "gradual":
        if isinstance(amount, dict):
            raise NnoptError("gradual pruning takes one amount; per-layer amounts are one-shot")
        grad = GradualPruning(list(weights), amount, method=cfg.method, scope=scope,
                              end_frac=cfg.gradual_end, every=cfg.gradual_every, seed=ctx.seed)
        state = _finetune(model, cfg, ctx, [grad])
        masks, pattern = grad.masks, "unstructured"
        ctx.record("schedule", [[s, a] for s, a in grad.trace])
    else:
        if cfg.method == "nm":
            masks, pattern = M.nm_masks(weights, cfg.n, cfg.m), f"{cfg.n}:{cfg.m}"
        elif cfg.method == "random":
            masks, pattern = M.random_masks(weights, amount, scope, seed=ctx.seed), "unstructured"
        else:
            masks, pattern = M.magnitude_masks(weights, amount, scope), "unstructured"
        M.apply_masks(model, masks)
        state = _finetune(model, cfg, ctx, [M.KeepMasks(masks)]) if cfg.finetune else None
    if state is not None:
        ctx.record("history", state.history)
        ctx.record("training", state.notes)
    M.mark_sparse(model, masks, pattern)
    ctx.record("sparsity", M.sparsity(model, list(weights)))
    ctx.record("pruning", {"method": cfg.method, "pattern": pattern, "scope": scope,
                           "global_sparsity": M.global_sparsity(model, list(weights))})
