"""The ``prune`` step: unstructured (magnitude, random, movement), N:M, or channel pruning,
one-shot or gradual, with fine-tuning and a latency pre-flight on the recipe's targets."""

from __future__ import annotations

import copy
import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, RootModel, Tag, model_validator
from torch import nn

from nnopt.compress.distill.step import distillation_task
from nnopt.compress.distill.task import DistillConfig
from nnopt.compress.prune import masks as M
from nnopt.compress.prune.heads import prune_heads_ffn
from nnopt.compress.prune.preflight import preflight
from nnopt.compress.prune.records import PruningRecord
from nnopt.compress.prune.schedule import GradualPruning
from nnopt.compress.prune.sensitivity import amounts_from_sensitivity, layer_sensitivity
from nnopt.compress.prune.structured import channel_prune
from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.measure.efficiency import count_macs
from nnopt.measure.latency import latency_probe
from nnopt.train.fit import TrainConfig, label_smoothing


class _Common(Strict):
    """What every pruning method shares: layers left alone and the recovery afterwards."""

    exclude: list[str] = Field(default_factory=list, description="layer names not to prune")
    finetune: TrainConfig | None = Field(None, description="training after (or, gradual, during) "
                                         "pruning; masks are kept")
    distill: DistillConfig | None = Field(None, description="fine-tune with a teacher's soft "
                                          "targets instead of plain cross-entropy")

    @model_validator(mode="after")
    def _distill_needs_finetune(self) -> _Common:
        if self.distill and self.finetune is None:
            raise ValueError("distill is the fine-tuning loss: set finetune too")
        return self


class UnstructuredConfig(_Common):
    """Unstructured pruning: single weights by magnitude (Han et al. 2015), at random (the
    control), or by movement during fine-tuning (Sanh et al. 2020), one-shot or gradual."""

    method: Literal["magnitude", "random", "movement"] = "magnitude"
    amount: float = Field(0.5, ge=0.0, lt=1.0, description="share of weights removed")
    scope: Literal["layer", "global"] = Field("global", description="rank weights per layer or "
                                              "over the whole model")
    schedule: Literal["oneshot", "gradual"] = Field(
        "oneshot", description="gradual: the Zhu & Gupta cubic schedule during finetune")
    gradual_end: float = Field(0.75, gt=0, le=1, description="share of finetune steps after "
                               "which the final sparsity is reached")
    gradual_every: int = Field(50, ge=1, description="steps between mask updates (gradual)")
    per_layer: dict[str, float] | None = Field(None, description="amount per layer (overrides "
                                               "amount)")
    sensitivity_tolerance: float | None = Field(
        None, gt=0, lt=1, description="derive per-layer amounts from a sensitivity scan: deepest "
        "level whose validation accuracy drop stays within this")
    preflight: bool = Field(True, description="time dense vs sparse on each target first")

    @model_validator(mode="after")
    def _consistent(self) -> UnstructuredConfig:
        if self.schedule == "gradual" and self.finetune is None:
            raise ValueError("schedule 'gradual' prunes during training: set finetune")
        if self.method == "movement" and self.schedule != "gradual":
            raise ValueError("method 'movement' needs schedule 'gradual' (scores come from training)")
        if self.sensitivity_tolerance and self.method == "movement":
            raise ValueError("sensitivity-derived amounts are for magnitude and random pruning")
        return self


class NMConfig(_Common):
    """N:M semi-structured sparsity: the N largest of every M consecutive input weights stay
    (Mishra et al. 2021; 2:4 is what sparse tensor cores run)."""

    method: Literal["nm"] = "nm"
    n: int = Field(2, ge=1, description="N of N:M: weights kept per group")
    m: int = Field(4, ge=2, description="M of N:M: the group size")
    preflight: bool = Field(True, description="time dense vs sparse on each target first")

    @model_validator(mode="after")
    def _n_below_m(self) -> NMConfig:
        if self.n >= self.m:
            raise ValueError(f"N:M needs N < M, got {self.n}:{self.m}")
        return self


class ChannelConfig(_Common):
    """Channel (and attention-head) pruning with physical removal through Torch-Pruning's
    dependency graph, by an amount or until a MACs or latency budget is met."""

    method: Literal["channel"] = "channel"
    amount: float = Field(0.5, ge=0.0, lt=1.0, description="share of channels removed")
    scope: Literal["layer", "global"] = Field("global", description="rank channels per layer or "
                                              "over the whole model")
    importance: Literal["l1", "l2", "bn_scale", "taylor"] = Field("l2", description="channel "
                                                                  "importance")
    per_layer: dict[str, float] | None = Field(None, description="amount per layer (overrides "
                                               "amount)")
    keep_macs: float | None = Field(None, gt=0, lt=1, description="prune until MACs are at most "
                                    "this share of the input model's")
    keep_latency: float | None = Field(None, gt=0, lt=1, description="prune until latency on "
                                       "budget_target is at most this share")
    budget_target: str | None = Field(None, description="target whose latency keep_latency means")
    prune_heads: bool = Field(False, description="remove whole attention heads")
    round_to: int | None = Field(None, ge=1, description="keep channel counts multiples of this")

    @model_validator(mode="after")
    def _budget(self) -> ChannelConfig:
        if self.keep_latency and not self.budget_target:
            raise ValueError("keep_latency needs budget_target (the name of a recipe target)")
        return self


class HeadsConfig(_Common):
    """Attention heads and FFN neurons of a BERT-style encoder (hf, minilm) removed per layer
    (Michel et al. 2019), by first-order Taylor importance or weight magnitude."""

    method: Literal["heads"] = "heads"
    heads: float = Field(0.5, ge=0.0, lt=1.0, description="share of each layer's attention "
                         "heads removed (at least one stays)")
    ffn: float = Field(0.0, ge=0.0, lt=1.0, description="share of each layer's FFN neurons "
                       "removed")
    importance: Literal["taylor", "magnitude"] = Field(
        "taylor", description="taylor: |activation x gradient| on training batches; magnitude: "
        "the L2 norm of the weights")


PRUNE_METHODS = {"unstructured": UnstructuredConfig, "nm": NMConfig, "channel": ChannelConfig,
                 "heads": HeadsConfig}
# each method name -> the config that takes it (from the configs' own `method` choices)
METHOD_TAG = {m: tag for tag, cls in PRUNE_METHODS.items()
              for m in typing.get_args(cls.model_fields["method"].annotation)}


def _method(raw: Any) -> str | None:
    method = raw.get("method", "magnitude") if isinstance(raw, dict) else getattr(
        raw, "method", None)
    return METHOD_TAG.get(method) if isinstance(method, str) else None  # None: refused


class PruneConfig(RootModel[Annotated[
        Annotated[UnstructuredConfig, Tag("unstructured")] | Annotated[NMConfig, Tag("nm")]
        | Annotated[ChannelConfig, Tag("channel")] | Annotated[HeadsConfig, Tag("heads")],
        Discriminator(_method, custom_error_type="method",
                      custom_error_message=f"method must be one of {', '.join(METHOD_TAG)}")]]):
    """What to remove, how to choose it, and how to recover afterwards: one config per method
    (``method: magnitude | random | movement`` unstructured, ``nm``, ``channel``, ``heads``);
    each takes only its own fields."""

    variants: ClassVar[dict[str, type[Strict]]] = PRUNE_METHODS


AnyPrune = UnstructuredConfig | NMConfig | ChannelConfig | HeadsConfig


def _finetune(model: nn.Module, cfg: AnyPrune, ctx: RunContext, extra: list) -> object:
    task = None
    if cfg.distill:
        task = distillation_task(cfg.distill, ctx, label_smoothing(cfg.finetune))
    return ctx.fit(model, cfg.finetune, task=task, extra=extra)


@STEPS.register("prune", config=PruneConfig,
                tiny={"amount": 0.5, "finetune": {"epochs": 1, "batch_size": 32}})
def prune(model: nn.Module, cfg: PruneConfig, ctx: RunContext) -> nn.Module:
    """Prune a copy of the model and fine-tune it; record sparsity, pre-flight and warnings."""
    cfg = cfg.root
    dense, model = model, copy.deepcopy(model)
    if isinstance(cfg, ChannelConfig):
        _structured(model, cfg, ctx)
    elif isinstance(cfg, HeadsConfig):
        _heads(model, cfg, ctx)
    else:
        _unstructured(dense, model, cfg, ctx)
    return model


def _structured(model: nn.Module, cfg: ChannelConfig, ctx: RunContext) -> None:
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
    ctx.record(PruningRecord(method="channel", pattern="channels", scope=cfg.scope,
                             importance=cfg.importance, channel=info))
    if cfg.finetune:
        _finetune(model, cfg, ctx, [])


def _heads(model: nn.Module, cfg: HeadsConfig, ctx: RunContext) -> None:
    info = prune_heads_ffn(model, heads=cfg.heads, ffn=cfg.ffn, importance=cfg.importance,
                           data=ctx.data.train)
    ctx.record("heads", info)
    ctx.record(PruningRecord(method="heads", pattern="heads+ffn", scope="layer",
                             importance=cfg.importance,
                             channel={"heads": cfg.heads, "ffn": cfg.ffn}))
    if cfg.finetune:
        _finetune(model, cfg, ctx, [])


def _latency_budget(model: nn.Module, cfg: ChannelConfig, ctx: RunContext):  # noqa: ANN202
    ms = latency_probe(ctx.data, ctx.targets, cfg.budget_target)
    limit = cfg.keep_latency * ms(model)
    return lambda m: ms(m) <= limit


def _preflight(dense: nn.Module, cfg: UnstructuredConfig | NMConfig, ctx: RunContext, names: list[str],
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


def _unstructured(dense: nn.Module, model: nn.Module, cfg: UnstructuredConfig | NMConfig,
                  ctx: RunContext) -> None:
    weights = M.prunable_weights(model, cfg.exclude)
    if cfg.method == "nm":  # N:M groups run along a layer's inputs, which must divide by M
        skipped = [n for n, w in weights.items() if w[0].numel() % cfg.m]
        weights = {n: w for n, w in weights.items() if n not in skipped}
        if skipped:
            ctx.warn(f"{cfg.n}:{cfg.m} skips layers whose inputs per output are not a multiple "
                     f"of {cfg.m}: {', '.join(n.removesuffix('.weight') for n in skipped)}")
    if not weights:
        raise NnoptError("nothing to prune: the model has no Linear/Conv weights (after exclude)")
    if isinstance(cfg, NMConfig):  # N:M fixes the sparsity of every group
        _nm(dense, model, cfg, ctx, weights)
        return
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
        _finetune(model, cfg, ctx, [grad])
        masks, pattern = grad.masks, "unstructured"
        ctx.record("schedule", [[s, a] for s, a in grad.trace])
    else:
        if cfg.method == "random":
            masks, pattern = M.random_masks(weights, amount, scope, seed=ctx.seed), "unstructured"
        else:
            masks, pattern = M.magnitude_masks(weights, amount, scope), "unstructured"
        M.apply_masks(model, masks)
        if cfg.finetune:
            _finetune(model, cfg, ctx, [M.KeepMasks(masks)])
    _finish(model, masks, pattern, cfg.method, scope, ctx, list(weights))


def _nm(dense: nn.Module, model: nn.Module, cfg: NMConfig, ctx: RunContext,
        weights: dict[str, nn.Parameter]) -> None:
    if cfg.preflight and ctx.targets:
        _preflight(dense, cfg, ctx, list(weights), 1 - cfg.n / cfg.m, "layer")
    masks = M.nm_masks(weights, cfg.n, cfg.m)
    M.apply_masks(model, masks)
    if cfg.finetune:
        _finetune(model, cfg, ctx, [M.KeepMasks(masks)])
    _finish(model, masks, f"{cfg.n}:{cfg.m}", "nm", "layer", ctx, list(weights))


def _finish(model: nn.Module, masks: M.Masks, pattern: str, method: str, scope: str,
            ctx: RunContext, names: list[str]) -> None:
    M.mark_sparse(model, masks, pattern)
    ctx.record("sparsity", M.sparsity(model, names))
    ctx.record(PruningRecord(method=method, pattern=pattern, scope=scope,
                             global_sparsity=M.global_sparsity(model, names)))
