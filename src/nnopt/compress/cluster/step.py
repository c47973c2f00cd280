"""The ``cluster`` step: weight sharing by per-layer k-means codebooks, fine-tuning of the shared
centroids, then the Deep Compression file (Han et al. 2016) as the stage's compressed size."""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from nnopt.compress.cluster.kmeans import Init, kmeans_1d
from nnopt.compress.prune.masks import prunable_weights
from nnopt.context import RunContext
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS
from nnopt.measure.base import is_artifact
from nnopt.train.fit import TrainConfig


class ClusterConfig(Strict):
    """Codebook size per layer, k-means initialisation and the centroid fine-tuning."""

    bits: int = Field(5, ge=1, le=8, description="index bits per weight: 2^bits shared values "
                      "per layer (Han et al.: 5 for fully connected, 8 for conv layers)")
    per_layer_bits: dict[str, int] | None = Field(None, description="bits per layer name")
    init: Init = Field("linear", description="centroid initialisation: linear (over [min, max]), "
                       "density (quantiles) or random")
    iters: int = Field(50, ge=1, description="k-means iterations (at most)")
    exclude: list[str] = Field(default_factory=list, description="layers kept unshared")
    finetune: TrainConfig | None = Field(
        default_factory=lambda: TrainConfig(epochs=2, lr=1e-4),
        description="training of the shared centroids (and biases); zeros stay zero")


class SharedWeight(nn.Module):
    """Parametrization: the weight is codebook[labels] where the mask is set, else 0.

    The codebook's gradient is the sum of the gradients of the weights sharing each value,
    which is Han et al.'s centroid fine-tuning.
    """

    def __init__(self, codebook: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.codebook = nn.Parameter(codebook.clone())
        self.register_buffer("labels", labels)
        self.register_buffer("mask", mask)

    def forward(self, _original: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, self.codebook[self.labels], torch.zeros((), dtype=self.codebook.dtype))


def share_weights(model: nn.Module, bits: dict[str, int], init: Init, iters: int, seed: int
                  ) -> dict[str, dict[str, Any]]:
    """Cluster each named layer's non-zero weights; install SharedWeight parametrizations."""
    out = {}
    for name, b in bits.items():
        layer = model.get_submodule(name)
        w = layer.weight.detach()
        mask = w != 0
        if not mask.any():
            continue
        book, labels = kmeans_1d(w[mask], 2 ** b, init=init, iters=iters, seed=seed)
        full = torch.zeros(w.shape, dtype=torch.long)
        full[mask] = labels
        parametrize.register_parametrization(layer, "weight", SharedWeight(book, full, mask),
                                             unsafe=True)
        layer.parametrizations.weight.original.requires_grad_(False)
        out[name] = {"bits": b, "clusters": len(book), "weights": int(mask.sum())}
    return out


def bake(model: nn.Module) -> None:
    """Replace every SharedWeight parametrization by the plain weight it computes."""
    for m in list(model.modules()):
        if parametrize.is_parametrized(m, "weight") and isinstance(
                m.parametrizations.weight[0], SharedWeight):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            m.weight.requires_grad_(True)


@STEPS.register("cluster", config=ClusterConfig,
                tiny={"bits": 3, "finetune": {"epochs": 1, "batch_size": 32}})
def cluster(model: nn.Module, cfg: ClusterConfig, ctx: RunContext) -> nn.Module:
    """Weight sharing: k-means codebooks per layer, centroids fine-tuned, zeros kept."""
    if is_artifact(model) or any(t.get("kind") == "qat" for t in
                                 (getattr(model, "spec", None) or {}).get("transforms", [])):
        raise NnoptError("cluster takes a float PyTorch model (not a deployed artifact or a QAT "
                         "model); put it after pruning and before export")
    model = copy.deepcopy(model)
    layers = [n.removesuffix(".weight") for n in prunable_weights(model, cfg.exclude)]
    if not layers:
        raise NnoptError("nothing to cluster: no Linear/Conv weights (after exclude)")
    unknown = sorted(set(cfg.per_layer_bits or {}) - set(layers))
    if unknown:
        raise NnoptError(f"per_layer_bits names unknown layers: {', '.join(unknown)}; layers: "
                         + ", ".join(layers))
    bits = {n: (cfg.per_layer_bits or {}).get(n, cfg.bits) for n in layers}
    shared = share_weights(model, bits, cfg.init, cfg.iters, ctx.seed)
    try:
        if cfg.finetune:
            ctx.fit(model, cfg.finetune, callbacks=ctx.callbacks())
    finally:
        bake(model)
    model.eval()
    for name, row in shared.items():
        w = model.get_submodule(name).weight
        row["clusters"] = int(torch.unique(w[w != 0]).numel())
    model.spec = {**model.spec, "weight_sharing": {"init": cfg.init, "layers": shared}}
    ctx.record("weight_sharing", shared)
    return model
