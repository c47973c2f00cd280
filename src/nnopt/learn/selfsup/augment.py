"""Data augmentations on batched tensors, for self-supervised views: images (N, C, H, W) and
1-D signals (N, C, L). Every draw comes from the ``torch.Generator`` passed in, so a seed repeats
the views exactly; shapes are kept and the values stay within the input batch's range.

Images: random resized crop and affine (rotation, translation, scale) in one resampling
(without crop or rotation, shifts are whole pixels: an exact copy, not a blurred one),
horizontal flip, brightness/contrast jitter, Gaussian noise, random erasing. Signals: the same
ideas along the time axis (crop-and-resize, shift, reversal, amplitude jitter, noise, erasing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from nnopt.core.config import Strict


class AugmentConfig(Strict):
    """Which augmentations make a view, and how strong each is (0 or null: off)."""

    crop: tuple[float, float] | None = Field((0.4, 1.0), description="random resized crop: "
                                             "share of the area (length for 1-D) kept")
    flip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip "
                        "(time reversal for 1-D)")
    rotate: float = Field(0.0, ge=0, le=180, description="max rotation in degrees (images)")
    translate: float = Field(0.1, ge=0, le=1, description="max shift, share of the size")
    jitter: float = Field(0.4, ge=0, le=1, description="brightness/contrast (amplitude) jitter")
    noise: float = Field(0.0, ge=0, description="std of added Gaussian noise")
    erase: float = Field(0.0, ge=0, le=1, description="probability of erasing a random block")
    erase_area: tuple[float, float] = Field((0.02, 0.2), description="erased share")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _geometry(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Crop, rotation, translation and flip as one affine resampling per example."""
    n, one_d = len(x), x.dim() == 3
    scale = torch.ones(n)
    if cfg.crop is not None:
        lo, hi = cfg.crop
        scale = _uniform(n, lo, hi, g) if one_d else _uniform(n, lo, hi, g).sqrt()
    angle = _uniform(n, -cfg.rotate, cfg.rotate, g) * math.pi / 180 if not one_d else None
    # the crop may sit anywhere inside the image, plus the extra translation
    room = 1 - scale
    tx = _uniform(n, -1, 1, g) * (room + 2 * cfg.translate)
    ty = _uniform(n, -1, 1, g) * (room + 2 * cfg.translate)
    if cfg.crop is None and not cfg.rotate:  # shifts by whole samples: no resampling blur
        tx = torch.round(tx * x.shape[-1] / 2) * 2 / x.shape[-1]
        ty = torch.round(ty * x.shape[-2] / 2) * 2 / x.shape[-2]
    flip = torch.where(torch.rand(n, generator=g) < cfg.flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    if angle is None:
        theta[:, 0, 0] = scale * flip
        theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = tx
        grid = F.affine_grid(theta.to(x), [n, x.shape[1], 1, x.shape[2]], align_corners=False)
        out = F.grid_sample(x[:, :, None, :], grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        return out[:, :, 0, :]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos * flip, -sin, tx
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * flip, cos, ty
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _erase(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    n, sizes = len(x), x.shape[2:]
    hit = torch.rand(n, generator=g) < cfg.erase
    area = _uniform(n, *cfg.erase_area, g)
    keep = torch.ones_like(x)
    for i in hit.nonzero()[:, 0].tolist():
        side = [max(1, round(s * float(area[i]) ** (1 / len(sizes)))) for s in sizes]
        start = [int(torch.randint(0, s - k + 1, (1,), generator=g)) for s, k in zip(sizes, side)]
        region = tuple(slice(a, a + k) for a, k in zip(start, side))
        keep[(i, slice(None), *region)] = 0
    return x * keep


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view of every example in ``x``; same shape, values within x's range. The
    image operations run where ``x`` is (the GPU when training runs there); the random draws
    come from ``generator`` on the CPU, so a view does not depend on the device."""
    if x.dim() not in (3, 4):
        raise ValueError(f"augment expects (N, C, L) signals or (N, C, H, W) images, got "
                         f"shape {tuple(x.shape)}")
    lo, hi = x.min(), x.max()
    out = _geometry(x, cfg, generator)
    if cfg.jitter:
        n, view = len(x), [-1] + [1] * (x.dim() - 1)
        contrast = _uniform(n, 1 - cfg.jitter, 1 + cfg.jitter, generator).view(view).to(x)
        shift = _uniform(n, -cfg.jitter, cfg.jitter, generator).view(view).to(x) * (hi - lo) / 2
        mean = out.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        out = (out - mean) * contrast + mean + shift
    if cfg.noise:
        out = out + cfg.noise * (hi - lo) * torch.randn(out.shape, generator=generator).to(out)
    if cfg.erase:
        out = _erase(out, cfg, generator)
    return out.clamp(lo, hi)
