"""The ``factorize`` step: low-rank layers where they are cheaper, ranks by energy, budget or
sensitivity, then fine-tuning."""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from nnopt.compress.lowrank.decompose import (
    factorize_layer,
    full_ranks,
    layer_macs,
    rank_for_energy,
    singular_values,
)
from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS, TRANSFORMS
from nnopt.measure.base import is_artifact
from nnopt.measure.efficiency import count_macs
from nnopt.measure.latency import latency_probe
from nnopt.models.structure import replace_module
from nnopt.train.fit import TrainConfig, evaluate


class FactorizeConfig(Strict):
    """Which layers, which decomposition, how ranks are chosen, and the fine-tuning."""

    linear: Literal["svd"] = "svd"
    conv: Literal["tucker2", "channel", "spatial", "none"] = Field(
        "tucker2", description="decomposition of Conv2d layers (none: leave convs alone)")
    energy: float = Field(0.9, gt=0, le=1, description="keep this share of each unfolding's "
                          "squared singular values (unless a budget or ranks decide)")
    ranks: dict[str, int | list[int]] | None = Field(None, description="rank per layer name "
                                                     "(tucker2: [r_in, r_out])")
    keep_macs: float | None = Field(None, gt=0, lt=1, description="choose one energy for all "
                                    "layers so that model MACs are at most this share")
    keep_latency: float | None = Field(None, gt=0, lt=1, description="as keep_macs, but latency "
                                       "measured on budget_target")
    budget_target: str | None = None
    sensitivity_tolerance: float | None = Field(
        None, gt=0, lt=1, description="per layer, the smallest rank from rank_choices whose "
        "validation accuracy drop (that layer alone, before fine-tuning) stays within this")
    rank_choices: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.5, 0.7],
                                      description="ranks tried by the sensitivity scan, as "
                                      "shares of full rank")
    max_cost: float = Field(0.8, gt=0, le=1, description="factorize a layer only if its low-rank "
                            "form needs at most this share of its MACs")
    exclude: list[str] = Field(default_factory=list, description="layer names left alone")
    finetune: TrainConfig | None = Field(default_factory=lambda: TrainConfig(epochs=2, lr=5e-4))

    @model_validator(mode="after")
    def _one_way(self) -> FactorizeConfig:
        ways = [self.ranks is not None, self.keep_macs is not None,
                self.keep_latency is not None, self.sensitivity_tolerance is not None]
        if sum(ways) > 1:
            raise ValueError("choose ranks one way: ranks, keep_macs, keep_latency or "
                             "sensitivity_tolerance")
        if self.keep_latency and not self.budget_target:
            raise ValueError("keep_latency needs budget_target (the name of a recipe target)")
        return self


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    for name, entry in transform["layers"].items():
        replace_module(model, name, factorize_layer(model.get_submodule(name), entry["method"],
                                                    entry["ranks"]))


TRANSFORMS.add("factorize", _reapply)


def _candidate(m: nn.Module, conv: str) -> bool:
    if isinstance(m, nn.Linear):
        return True
    return (conv != "none" and isinstance(m, nn.Conv2d) and m.groups == 1
            and m.padding_mode == "zeros" and not isinstance(m.padding, str))


@torch.no_grad()
def layer_shapes(model: nn.Module, example: torch.Tensor, exclude: list[str], conv: str
                 ) -> dict[str, tuple[nn.Module, tuple | None, tuple | None]]:
    """Candidate layers with their input and output spatial sizes (None for Linear)."""
    found: dict[str, Any] = {}
    hooks = []
    for name, m in model.named_modules():
        if _candidate(m, conv) and not any(name == e or name.startswith(e + ".")
                                           for e in exclude):
            hooks.append(m.register_forward_hook(
                (lambda n: lambda mod, a, out: found.__setitem__(
                    n, (mod, tuple(a[0].shape[2:]) or None, tuple(out.shape[2:]) or None)))(name)))
    try:
        model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return found


def _method(layer: nn.Module, cfg: FactorizeConfig) -> str:
    if isinstance(layer, nn.Linear):
        return cfg.linear
    return "channel" if layer.kernel_size == (1, 1) else cfg.conv


def spectra(layers: dict[str, Any], cfg: FactorizeConfig) -> dict[str, list[torch.Tensor]]:
    """Singular values of each layer's unfoldings, computed once per plan or budget search."""
    return {n: singular_values(layer, _method(layer, cfg)) for n, (layer, _, _) in layers.items()}


def plan_ranks(layers: dict[str, Any], energy: float, cfg: FactorizeConfig,
               ranks_by_layer: dict[str, int | list[int]] | None = None,
               svs: dict[str, list[torch.Tensor]] | None = None) -> dict[str, dict[str, Any]]:
    """Per layer: method, ranks, MACs before/after, and whether it is factorized or skipped
    (skipped where the low-rank form costs more than ``max_cost`` of the layer)."""
    svs = svs if svs is not None else spectra(layers, cfg)
    rows = {}
    for name, (layer, in_hw, out_hw) in layers.items():
        method = _method(layer, cfg)
        full = [len(sv) for sv in svs[name]]
        if ranks_by_layer and name in ranks_by_layer:
            r = ranks_by_layer[name]
            ranks = [int(x) for x in (r if isinstance(r, list) else [r] * len(full))]
        else:
            ranks = [rank_for_energy(sv, energy) for sv in svs[name]]
        ranks = [max(1, min(r, f)) for r, f in zip(ranks, full)]
        before = layer_macs(layer, None, [], in_hw, out_hw)
        after = layer_macs(layer, method, ranks, in_hw, out_hw)
        even = _break_even(layer, method, full, in_hw, out_hw, before)
        rows[name] = {"method": method, "ranks": ranks, "full_ranks": full, "macs": before,
                      "factorized_macs": after, "break_even_rank": even,
                      "apply": after <= cfg.max_cost * before}
    return rows


def _break_even(layer: nn.Module, method: str, full: list[int], in_hw: Any, out_hw: Any,
                before: int) -> int:
    """Largest (uniformly scaled) rank whose factorized form costs no more than the layer."""
    best = 0
    for r in range(1, max(full) + 1):
        ranks = [max(1, round(r * f / max(full))) for f in full]
        if layer_macs(layer, method, ranks, in_hw, out_hw) <= before:
            best = r
    return best


def apply_ranks(model: nn.Module, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    chosen = {n: {"method": r["method"], "ranks": r["ranks"]} for n, r in rows.items() if r["apply"]}
    _reapply(model, {"layers": chosen})
    return chosen


ENERGIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def _budget_energy(model: nn.Module, layers: dict[str, Any], cfg: FactorizeConfig,
                   ctx: RunContext) -> tuple[float, list[list[float]]]:
    """The highest energy whose factorized model meets the MACs or latency budget."""
    total = count_macs(model, ctx.data.train.x[:1])
    svs = spectra(layers, cfg)
    if cfg.keep_macs:
        def cost(e: float) -> float:
            rows = plan_ranks(layers, e, cfg, svs=svs)
            return (total - sum(r["macs"] - r["factorized_macs"] for r in rows.values()
                                if r["apply"])) / total
        limit = cfg.keep_macs
    else:
        ms = latency_probe(ctx.data, ctx.targets, cfg.budget_target)
        base = ms(model)

        def cost(e: float) -> float:
            trial = copy.deepcopy(model)
            apply_ranks(trial, plan_ranks(layers, e, cfg, svs=svs))  # layers found by name
            return ms(trial) / base
        limit = cfg.keep_latency
    trace = [[e, cost(e)] for e in ENERGIES]
    fits = [e for e, c in trace if c <= limit]
    if not fits:
        best = min(trace, key=lambda t: t[1])
        raise NnoptError(f"factorize cannot meet the budget {limit:g}: the cheapest energy "
                         f"({best[0]:g}) keeps {best[1]:.3f} of the "
                         f"{'MACs' if cfg.keep_macs else 'latency'}")
    return max(fits), trace


def _sensitivity_ranks(model: nn.Module, layers: dict[str, Any], cfg: FactorizeConfig,
                       ctx: RunContext) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Per layer alone: validation accuracy at each rank share; the smallest within tolerance."""
    val = ctx.data.val.take(torch.arange(min(2000, len(ctx.data.val))))
    base = evaluate(model, val)["accuracy"]
    chosen, scan = {}, {}
    for name, (layer, _, _) in layers.items():
        full = full_ranks(layer, _method(layer, cfg))
        scan[name] = {}
        chosen[name] = full
        for share in sorted(cfg.rank_choices):
            ranks = [max(1, round(share * f)) for f in full]
            trial = copy.deepcopy(model)
            replace_module(trial, name, factorize_layer(trial.get_submodule(name),
                                                        _method(layer, cfg), ranks))
            acc = evaluate(trial, val)["accuracy"]
            scan[name][str(share)] = acc
            if base - acc <= cfg.sensitivity_tolerance:
                chosen[name] = ranks
                break
    return chosen, {"baseline_val_accuracy": base, "accuracy": scan,
                    "tolerance": cfg.sensitivity_tolerance}


@STEPS.register("factorize", config=FactorizeConfig,
                tiny={"energy": 0.5, "max_cost": 1.0, "finetune": {"epochs": 1, "batch_size": 32}})
def factorize(model: nn.Module, cfg: FactorizeConfig, ctx: RunContext) -> nn.Module:
    """Replace layers by truncated-SVD / Tucker-2 factors where cheaper, then fine-tune."""
    if is_artifact(model) or any(t.get("kind") == "qat" for t in
                                 (getattr(model, "spec", None) or {}).get("transforms", [])):
        raise NnoptError("factorize takes a float PyTorch model (not a deployed artifact or a "
                         "QAT model); put it before quantization")
    model = copy.deepcopy(model)
    layers = layer_shapes(model, ctx.data.train.x[:1], cfg.exclude, cfg.conv)
    if not layers:
        raise NnoptError("nothing to factorize: no Linear or Conv2d layers (after exclude)")
    if cfg.ranks:
        unknown = sorted(set(cfg.ranks) - set(layers))
        if unknown:
            raise NnoptError(f"ranks names unknown layers: {', '.join(unknown)}; layers: "
                             + ", ".join(layers))
    energy, ranks = cfg.energy, cfg.ranks
    if cfg.keep_macs or cfg.keep_latency:
        energy, trace = _budget_energy(model, layers, cfg, ctx)
        ctx.record("rank_budget", {"energy": energy, "trace": trace})
    elif cfg.sensitivity_tolerance:
        ranks, scan = _sensitivity_ranks(model, layers, cfg, ctx)
        ctx.record("rank_sensitivity", scan)
    rows = plan_ranks(layers, energy, cfg, ranks)
    chosen = apply_ranks(model, rows)
    skipped = [n for n, r in rows.items() if not r["apply"]]
    if not chosen:
        ctx.warn("no layer is cheaper in low-rank form at these ranks, so the model is unchanged; "
                 "the report lists each layer's break-even rank")
    elif skipped:
        ctx.log.info("factorize skipped %s (not cheaper)", ", ".join(skipped))
    model.spec = {**model.spec, "transforms": [*model.spec.get("transforms", []),
                                               {"kind": "factorize", "layers": chosen}]}
    if cfg.finetune and chosen:
        ctx.fit(model, cfg.finetune)
    ctx.record("factorization", {"energy": energy if not ranks else None, "layers": rows,
                                 "max_cost": cfg.max_cost})
    return model
