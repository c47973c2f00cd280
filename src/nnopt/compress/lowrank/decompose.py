"""Low-rank forms of Linear and Conv2d layers, each exact at full rank.

- ``svd``: Linear W (out x in) -> Linear(in, r) then Linear(r, out) from the truncated SVD
  (Denton et al. 2014).
- ``channel``: Conv (Cout, Cin, kh, kw) -> Conv(Cin, r, kh x kw) then 1x1 Conv(r, Cout), the SVD
  of the output-channel unfolding (Zhang et al. 2016).
- ``tucker2``: 1x1 Conv(Cin, r_in), Conv(r_in, r_out, kh x kw), 1x1 Conv(r_out, Cout), from the
  HOSVD of the two channel modes (Kim et al. 2016).
- ``spatial``: Conv(Cin, r, kh x 1) then Conv(r, Cout, 1 x kw), the SVD of the (Cin kh) x (Cout kw)
  rearrangement (Jaderberg et al. 2014; Tai et al. 2016).

Costs are multiply-accumulates for the layer's recorded input and output sizes, so that a
factorization is only applied where it is actually cheaper.
"""

from __future__ import annotations

import math

import torch
from torch import nn

METHODS = ("svd", "channel", "tucker2", "spatial")


def singular_values(layer: nn.Module, method: str) -> list[torch.Tensor]:
    """Singular values of each unfolding a method truncates (one list per rank it takes)."""
    w = layer.weight.detach().float()
    if method in ("svd", "channel"):
        return [torch.linalg.svdvals(w.reshape(w.shape[0], -1))]
    if method == "tucker2":
        return [torch.linalg.svdvals(w.transpose(0, 1).reshape(w.shape[1], -1)),
                torch.linalg.svdvals(w.reshape(w.shape[0], -1))]
    if method == "spatial":
        return [torch.linalg.svdvals(_spatial_matrix(w))]
    raise ValueError(f"unknown factorization '{method}'; methods: {', '.join(METHODS)}")


def rank_for_energy(s: torch.Tensor, energy: float) -> int:
    """Smallest rank whose singular values keep ``energy`` of the sum of squares."""
    e = (s.double() ** 2).cumsum(0)
    return int(torch.searchsorted(e, energy * e[-1]).item()) + 1


def _spatial_matrix(w: torch.Tensor) -> torch.Tensor:
    cout, cin, kh, kw = w.shape
    return w.permute(1, 2, 0, 3).reshape(cin * kh, cout * kw)


def _split(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, r: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    sq = s[:r].sqrt()
    return u[:, :r] * sq, sq[:, None] * vh[:r]


def factorize_layer(layer: nn.Module, method: str, ranks: list[int]) -> nn.Sequential:
    """The low-rank replacement of ``layer`` (same input/output behaviour up to truncation)."""
    w = layer.weight.detach().float()
    bias = layer.bias is not None
    if method == "svd":
        r = ranks[0]
        a, b = _split(*torch.linalg.svd(w, full_matrices=False), r)
        first, second = nn.Linear(w.shape[1], r, bias=False), nn.Linear(r, w.shape[0], bias=bias)
        _load(first, b)
        _load(second, a, layer.bias)
        return nn.Sequential(first, second)
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1 or layer.padding_mode != "zeros":
        raise ValueError("conv factorization needs a Conv2d with groups=1 and zero padding")
    cout, cin, kh, kw = w.shape
    st, pad, dil = layer.stride, layer.padding, layer.dilation
    if isinstance(pad, str):
        raise ValueError("conv factorization needs numeric padding, not '" + pad + "'")
    if method == "channel":
        r = ranks[0]
        a, b = _split(*torch.linalg.svd(w.reshape(cout, -1), full_matrices=False), r)
        first = nn.Conv2d(cin, r, (kh, kw), st, pad, dil, bias=False)
        second = nn.Conv2d(r, cout, 1, bias=bias)
        _load(first, b.reshape(r, cin, kh, kw))
        _load(second, a.reshape(cout, r, 1, 1), layer.bias)
        return nn.Sequential(first, second)
    if method == "tucker2":
        r_in, r_out = ranks
        u_in = torch.linalg.svd(w.transpose(0, 1).reshape(cin, -1), full_matrices=False)[0][:, :r_in]
        u_out = torch.linalg.svd(w.reshape(cout, -1), full_matrices=False)[0][:, :r_out]
        core = torch.einsum("oihw,or,is->rshw", w, u_out, u_in)
        first = nn.Conv2d(cin, r_in, 1, bias=False)
        mid = nn.Conv2d(r_in, r_out, (kh, kw), st, pad, dil, bias=False)
        last = nn.Conv2d(r_out, cout, 1, bias=bias)
        _load(first, u_in.T.reshape(r_in, cin, 1, 1))
        _load(mid, core)
        _load(last, u_out.reshape(cout, r_out, 1, 1), layer.bias)
        return nn.Sequential(first, mid, last)
    if method == "spatial":
        r = ranks[0]
        a, b = _split(*torch.linalg.svd(_spatial_matrix(w), full_matrices=False), r)
        vert = nn.Conv2d(cin, r, (kh, 1), (st[0], 1), (pad[0], 0), (dil[0], 1), bias=False)
        horiz = nn.Conv2d(r, cout, (1, kw), (1, st[1]), (0, pad[1]), (1, dil[1]), bias=bias)
        _load(vert, a.reshape(cin, kh, r).permute(2, 0, 1).unsqueeze(-1))
        _load(horiz, b.reshape(r, cout, kw).permute(1, 0, 2).unsqueeze(2), layer.bias)
        return nn.Sequential(vert, horiz)
    raise ValueError(f"unknown factorization '{method}'; methods: {', '.join(METHODS)}")


def _load(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    with torch.no_grad():
        layer.weight.copy_(weight.contiguous())
        if bias is not None:
            layer.bias.copy_(bias.detach())


def layer_macs(layer: nn.Module, method: str | None, ranks: list[int],
               in_hw: tuple[int, int] | None, out_hw: tuple[int, int] | None) -> int:
    """MACs per example of ``layer`` (method None) or of its factorized form."""
    w = layer.weight
    if isinstance(layer, nn.Linear):
        o, i = w.shape
        return o * i if method is None else ranks[0] * (i + o)
    cout, cin, kh, kw = w.shape
    n_out = math.prod(out_hw)
    if method is None:
        return cout * cin * kh * kw * n_out // layer.groups
    if method == "channel":
        return ranks[0] * (cin * kh * kw + cout) * n_out
    if method == "tucker2":
        r_in, r_out = ranks
        return cin * r_in * math.prod(in_hw) + (r_in * r_out * kh * kw + r_out * cout) * n_out
    # spatial: the vertical conv runs on every input column
    return ranks[0] * cin * kh * out_hw[0] * in_hw[1] + ranks[0] * cout * kw * n_out


def full_ranks(layer: nn.Module, method: str) -> list[int]:
    return [len(s) for s in singular_values(layer, method)]
