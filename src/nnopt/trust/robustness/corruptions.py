"""Common corruptions in the style of ImageNet-C / MNIST-C (Hendrycks & Dietterich 2019; Mu &
Gilmer 2019), generated deterministically for image batches in [0, 1] of shape (N, C, H, W):
13 types x 5 severities. Severity parameters are scaled for 28 x 28 images (blur radii and
pixelation in pixels of such an image).

Each corruption is a function (x, severity 1-5, generator) -> corrupted x in [0, 1]; the same
seed gives the same corrupted set on every machine.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image  # pillow: a dependency of matplotlib

from nnopt.core.registry import CORRUPTIONS

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def corruption(name: str, doc: str) -> Callable[[Corruption], Corruption]:
    """Register a corruption ``fn(x, severity 1-5, generator)`` under ``name``; ``doc`` is its
    one-line description (shown by ``nnopt list corruptions``)."""
    def wrap(fn: Corruption) -> Corruption:
        fn.__doc__ = fn.__doc__ or doc
        CORRUPTIONS.add(name, fn)
        return fn
    return wrap


def _pick(levels: tuple[float, ...], severity: int) -> float:
    if not 1 <= severity <= len(levels):
        raise ValueError(f"severity must be 1-{len(levels)}, got {severity}")
    return levels[severity - 1]


def _conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 2-D convolution with reflect padding (kernel (kh, kw), normalised)."""
    c = x.shape[1]
    kh, kw = kernel.shape
    k = (kernel / kernel.sum()).to(x.dtype).expand(c, 1, kh, kw)
    padded = F.pad(x, (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2), mode="reflect")
    return F.conv2d(padded, k, groups=c)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return g[:, None] * g[None, :]


@corruption("gaussian_noise", "Additive Gaussian noise (Hendrycks & Dietterich 2019's levels).")
def gaussian_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    sigma = _pick((0.08, 0.12, 0.18, 0.26, 0.38), s)
    return (x + torch.randn(x.shape, generator=g) * sigma).clamp(0, 1)


@corruption("shot_noise", "Poisson (shot) noise: photon counting at a falling light level.")
def shot_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    lam = _pick((60.0, 25.0, 12.0, 5.0, 3.0), s)
    return (torch.poisson(x.double() * lam, generator=g) / lam).to(x.dtype).clamp(0, 1)


@corruption("impulse_noise", "Salt-and-pepper noise on a share of the pixels.")
def impulse_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    amount = _pick((0.03, 0.06, 0.09, 0.17, 0.27), s)
    u = torch.rand(x.shape, generator=g)
    out = x.clone()
    out[u < amount / 2] = 0.0
    out[(u >= amount / 2) & (u < amount)] = 1.0
    return out


@corruption("speckle_noise", "Multiplicative Gaussian noise (speckle).")
def speckle_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    sigma = _pick((0.15, 0.2, 0.35, 0.45, 0.6), s)
    return (x + x * torch.randn(x.shape, generator=g) * sigma).clamp(0, 1)


@corruption("gaussian_blur", "Gaussian blur of growing width.")
def gaussian_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    return _conv(x, gaussian_kernel(_pick((0.5, 0.75, 1.0, 1.25, 1.5), s))).clamp(0, 1)


@corruption("defocus_blur", "Defocus: convolution with a disc (an out-of-focus lens).")
def defocus_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    radius = _pick((1.0, 1.5, 2.0, 2.5, 3.0), s)
    r = math.ceil(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius ** 2).double()
    return _conv(x, _conv(disk[None, None], gaussian_kernel(0.5))[0, 0]).clamp(0, 1)


@corruption("motion_blur", "Motion blur along a random direction.")
def motion_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    length = int(_pick((3, 5, 7, 9, 11), s))
    angle = float(torch.rand((), generator=g)) * math.pi
    kernel = torch.zeros(length, length, dtype=torch.float64)
    c = (length - 1) / 2
    for t in torch.linspace(-c, c, 4 * length):
        kernel[round(c + float(t) * math.sin(angle)), round(c + float(t) * math.cos(angle))] = 1
    return _conv(x, kernel).clamp(0, 1)


@corruption("zoom_blur", "Zoom blur: the mean of the image zoomed in by growing factors.")
def zoom_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    top = _pick((1.06, 1.11, 1.16, 1.21, 1.26), s)
    h, w = x.shape[-2:]
    out = x.clone()
    zooms = np.arange(1.0, top, 0.01)[1:]
    for z in zooms:
        big = F.interpolate(x, scale_factor=float(z), mode="bilinear", align_corners=False)
        top_h, top_w = (big.shape[-2] - h) // 2, (big.shape[-1] - w) // 2
        out = out + big[..., top_h:top_h + h, top_w:top_w + w]
    return (out / (len(zooms) + 1)).clamp(0, 1)


@corruption("contrast", "Lower contrast: pixels pulled towards the image mean.")
def contrast(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    c = _pick((0.4, 0.3, 0.2, 0.1, 0.05), s)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp(0, 1)


@corruption("brightness", "Brighter image: a constant added, clipped to [0, 1].")
def brightness(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    return (x + _pick((0.1, 0.2, 0.3, 0.4, 0.5), s)).clamp(0, 1)


@corruption("pixelate", "Pixelation: down-sampled and up-sampled again.")
def pixelate(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    f = _pick((0.6, 0.5, 0.4, 0.3, 0.25), s)
    small = F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


@corruption("jpeg", "JPEG compression at falling quality.")
def jpeg(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:

    quality = int(_pick((25, 18, 15, 10, 7), s))
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = np.empty_like(arr)
    for i in range(arr.shape[0]):
        for ch in range(arr.shape[1]):
            buf = io.BytesIO()
            Image.fromarray(arr[i, ch]).save(buf, format="JPEG", quality=quality)
            out[i, ch] = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    return torch.from_numpy(out).to(x.dtype) / 255


@corruption("elastic", "Elastic deformation: a smoothed random displacement field.")
def elastic(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """A smooth random displacement field (Simard et al. 2003): a coarse 5 x 5 random field
    upsampled bicubically, scaled to at most ``alpha`` pixels."""
    alpha = _pick((1.5, 2.5, 3.5, 4.5, 5.5), s)
    n, _, h, w = x.shape
    coarse = torch.rand((n, 2, 5, 5), generator=g) * 2 - 1
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) * alpha
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xs + field[:, 0] * 2 / (w - 1), ys + field[:, 1] * 2 / (h - 1)], -1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True).clamp(0, 1)


@corruption("rotate", "Rotation by a growing angle in a random direction.")
def rotate(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    deg = _pick((6.0, 12.0, 18.0, 24.0, 30.0), s)
    sign = torch.randint(0, 2, (len(x),), generator=g).double() * 2 - 1
    theta = sign * math.radians(deg)
    cos, sin = torch.cos(theta), torch.sin(theta)
    mat = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                       torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False).clamp(0, 1)


@corruption("translate", "A whole-pixel shift in a random direction, zeros shifted in.")
def translate(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """A whole-pixel shift in a random direction (affNIST-style), zeros shifted in."""
    frac = _pick((0.04, 0.08, 0.12, 0.16, 0.2), s)  # of the image side: 1-6 px at 28
    n, _, h, w = x.shape
    r = max(1, round(frac * min(h, w)))
    angle = torch.rand(n, generator=g).double() * 2 * math.pi
    dy = torch.round(torch.sin(angle) * r).long()
    dx = torch.round(torch.cos(angle) * r).long()
    out = torch.zeros_like(x)
    for i in range(n):
        a, b = int(dy[i]), int(dx[i])
        out[i, :, max(a, 0):h + min(a, 0), max(b, 0):w + min(b, 0)] = \
            x[i, :, max(-a, 0):h + min(-a, 0), max(-b, 0):w + min(-b, 0)]
    return out


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """The corrupted copy of an image batch (N, C, H, W) in [0, 1]; deterministic per seed."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{name}'; choose {', '.join(corruption_names())}")
    if x.dim() != 4:
        raise ValueError(f"corruptions take image batches (N, C, H, W), got shape {tuple(x.shape)}")
    key = sum(ord(ch) * 31 ** i for i, ch in enumerate(name)) % 2**31
    g = torch.Generator().manual_seed(seed * 1_000_003 + key * 7 + severity)
    return CORRUPTIONS.get(name).fn(x, severity, g).to(x.dtype)


def corruption_names() -> list[str]:
    """The registered corruptions in registration order (the metric's default order)."""
    return [e.name for e in CORRUPTIONS.in_order()]
