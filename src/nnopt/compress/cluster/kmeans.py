"""One-dimensional k-means for weight sharing (Han et al. 2016, section 3): Lloyd's algorithm
with the sorted-values trick (assignment is a bucketize against centroid midpoints)."""

from __future__ import annotations

from typing import Literal

import torch

Init = Literal["linear", "density", "random"]


def init_centroids(values: torch.Tensor, k: int, init: Init, seed: int = 0) -> torch.Tensor:
    """Initial centroids: evenly spaced over [min, max] (linear, Han et al.'s best), at evenly
    spaced quantiles (density), or k distinct random weights (random / Forgy)."""
    v = values.double()
    if init == "linear":
        return torch.linspace(v.min().item(), v.max().item(), k, dtype=torch.float64)
    if init == "density":
        return torch.quantile(v, torch.linspace(0, 1, k, dtype=torch.float64))
    if init == "random":
        g = torch.Generator().manual_seed(seed)
        return v[torch.randperm(len(v), generator=g)[:k]].sort().values
    raise ValueError(f"unknown k-means init '{init}'; choose linear, density or random")


def assign(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for each value (centroids sorted ascending)."""
    mids = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(values.double(), mids)


def kmeans_1d(values: torch.Tensor, k: int, *, init: Init = "linear", iters: int = 50,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``values`` into at most ``k`` centroids; return (centroids float32, labels).

    Empty clusters are dropped, so fewer than ``k`` centroids can come back.
    """
    v = values.detach().flatten().double()
    if v.numel() == 0:
        raise ValueError("k-means needs at least one value")
    k = min(k, int(torch.unique(v).numel()))
    c = init_centroids(v, k, init, seed).sort().values
    for _ in range(iters):
        labels = assign(v, c)
        sums = torch.zeros(len(c), dtype=torch.float64).index_add_(0, labels, v)
        counts = torch.bincount(labels, minlength=len(c))
        keep = counts > 0
        new = (sums[keep] / counts[keep]).sort().values
        if new.shape == c.shape and torch.equal(new, c):
            break
        c = new
    c32 = torch.unique(c.float())  # sorted; float32 rounding may merge neighbours
    return c32, assign(v.float(), c32.double()).reshape(values.shape)
