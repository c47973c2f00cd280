"""Uniform affine quantization as functions: scales, quantize/dequantize, fake quantization with
the straight-through estimator (Bengio et al. 2013), learned step size (LSQ, Esser et al. 2020),
and SQNR. Signed weights are symmetric (zero point 0); activations are asymmetric uint8."""

from __future__ import annotations

import math

import torch


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range: signed symmetric [-(2^(b-1)-1), 2^(b-1)-1], unsigned [0, 2^b - 1]."""
    if signed:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def weight_scale(w: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """Symmetric max-abs scale, per output channel (dim 0) or per tensor."""
    qmax = qrange(bits, True)[1]
    if per_channel:
        m = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
    else:
        m = w.detach().abs().max().reshape(1)
    return (m / qmax).clamp_min(1e-12)


def act_qparams(lo: torch.Tensor, hi: torch.Tensor, bits: int = 8
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric unsigned scale and integer zero point covering [min(lo, 0), max(hi, 0)]."""
    qmin, qmax = qrange(bits, False)
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
    scale = ((hi - lo) / (qmax - qmin)).clamp_min(1e-12)
    zp = (qmin - torch.round(lo / scale)).clamp(qmin, qmax)
    return scale, zp


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1))) if t.numel() > 1 else t


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | float,
             qmin: int, qmax: int) -> torch.Tensor:
    """Integer codes: clamp(round(x / scale) + zero_point, qmin, qmax)."""
    zp = _view(torch.as_tensor(zero_point, dtype=x.dtype), x)
    return torch.clamp(torch.round(x / _view(scale, x)) + zp, qmin, qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | float
               ) -> torch.Tensor:
    zp = _view(torch.as_tensor(zero_point, dtype=q.dtype), q)
    return (q - zp) * _view(scale, q)


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | float,
               qmin: int, qmax: int) -> torch.Tensor:
    """dequantize(quantize(x)) forward; identity gradient inside the range (STE)."""
    y = dequantize(quantize(x, scale, zero_point, qmin, qmax), scale, zero_point)
    return x + (y - x).detach()


def lsq_fake_quant(w: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """LSQ: fake quantization whose step size ``scale`` is learned, with the gradient scale
    g = 1 / sqrt(numel * qmax) of the paper."""
    g = 1.0 / math.sqrt(w.numel() / max(scale.numel(), 1) * qmax)
    s = _view(scale * g + (scale - scale * g).detach(), w)  # value: scale; gradient: g * dscale
    v = torch.clamp(w / s, qmin, qmax)
    return (v.round() - v).detach() * s + v * s


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio, 10 log10(|ref|^2 / |ref - approx|^2), in dB."""
    noise = (reference - approx).double().pow(2).sum().item()
    signal = reference.double().pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)
