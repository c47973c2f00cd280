"""SimCLR (Chen et al. 2020): two augmented views of each image, a projection head, and the
NT-Xent loss, which asks each view to pick its partner out of the 2N - 1 other views:

    l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )

averaged over all 2N ordered positive pairs, sim being cosine similarity. With multi-crop
(``local_views``: extra views of small crops, Caron et al. 2020) the loss is the mean NT-Xent of
every pair of views that includes a main view (local views are not paired with each other).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.core.registry import TASKS
from nnopt.learn.selfsup.augment import AugmentConfig, augment
from nnopt.learn.selfsup.embedding import classifier, embed_batch
from nnopt.train.task import TrainingTask


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent of the paired rows of z1 and z2 (N, d)."""
    n = len(z1)
    with torch.autocast(z1.device.type, enabled=False):  # fp32 similarities under bf16 training
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(sim.device)
    return F.cross_entropy(sim, partner)


def multi_view_nt_xent(z: list[torch.Tensor], main: int = 2, temperature: float = 0.5
                       ) -> torch.Tensor:
    """Mean NT-Xent over the view pairs (i, j), i < j, i one of the first ``main`` views."""
    pairs = [(i, j) for i in range(main) for j in range(i + 1, len(z))]
    return torch.stack([nt_xent(z[i], z[j], temperature) for i, j in pairs]).mean()


def mlp_head(dim_in: int, hidden: int | None, dim_out: int, bn_last: bool = False,
             depth: int = 2) -> nn.Sequential:
    """``depth`` linear layers (1: a linear projection), hidden ones followed by BN and ReLU;
    ``hidden`` None: max(dim_in, dim_out) wide."""
    hidden = hidden or max(dim_in, dim_out)
    layers: list[nn.Module] = []
    for i in range(depth - 1):
        layers += [nn.Linear(dim_in if i == 0 else hidden, hidden), nn.BatchNorm1d(hidden),
                   nn.ReLU()]
    layers.append(nn.Linear(dim_in if depth == 1 else hidden, dim_out))
    if bn_last:
        layers.append(nn.BatchNorm1d(dim_out, affine=False))
    return nn.Sequential(*layers)


class SimclrTask(TrainingTask):
    """Contrastive pre-training; the projection head trains alongside and is dropped after."""

    data_parallel = False  # under several processes it runs replicated on each
    data_parallel_why = "its contrastive loss takes negatives from the whole batch"

    def __init__(self, augment_cfg: AugmentConfig, temperature: float, proj_dim: int,
                 seed: int, local_views: int = 0, local_augment: AugmentConfig | None = None,
                 proj_hidden: int | None = None, proj_layers: int = 2) -> None:
        self.aug, self.temperature, self.proj_dim = augment_cfg, temperature, proj_dim
        self.proj_hidden, self.proj_layers = proj_hidden, proj_layers
        self.local_views, self.local_aug = local_views, local_augment or augment_cfg
        self.gen = torch.Generator().manual_seed(seed)
        self.head: nn.Module | None = None

    def setup(self, model: nn.Module) -> list[nn.Module]:
        d = classifier(model).in_features
        self.head = mlp_head(d, self.proj_hidden, self.proj_dim, depth=self.proj_layers)
        return [self.head]

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        assert self.head is not None, "setup() was not called"
        self.head.train(model.training)
        views = [augment(x, self.aug, self.gen) for _ in range(2)]
        views += [augment(x, self.local_aug, self.gen) for _ in range(self.local_views)]
        z = self.head(embed_batch(model, torch.cat(views))).split(len(x))
        return {"loss": multi_view_nt_xent(list(z), 2, self.temperature)}


# chosen by its step, not by a `task:` block (it needs what the step builds)
TASKS.add("simclr", SimclrTask, built_by="the pretrain step (method: simclr)")
