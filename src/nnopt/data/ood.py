"""Out-of-distribution input sets, generated offline for a data set's input shape.

- ``digits``: scikit-learn's 1,797 handwritten digits (8x8, 0-16) scaled to [0, 1] and resized
  bilinearly to the data's height and width (single-channel image data only): a semantic shift
  for Fashion-MNIST.
- ``noise``: uniform [0, 1] noise of the input shape, seeded (image and signal data).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nnopt.core.extras import require
from nnopt.data.base import DataSplits


def ood_sets(data: DataSplits, *, size: int = 2000, seed: int = 0) -> dict[str, torch.Tensor]:
    """The OOD sets that make sense for ``data`` (none for token-id inputs)."""
    shape = tuple(data.input_shape)
    x = data.test.x
    if x.dtype not in (torch.float32, torch.float64):
        return {}  # token ids or other discrete inputs: no generic OOD set
    out: dict[str, torch.Tensor] = {}
    if len(shape) == 3 and shape[0] == 1:
        require("sklearn", "the digits OOD set", extra="data")
        from sklearn.datasets import load_digits

        imgs = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
        out["digits"] = F.interpolate(imgs, size=shape[1:], mode="bilinear",
                                      align_corners=False).clamp(0, 1)[:size].to(x.dtype)
    g = torch.Generator().manual_seed(seed)
    out["noise"] = torch.rand((size, *shape), generator=g, dtype=x.dtype)
    return out
