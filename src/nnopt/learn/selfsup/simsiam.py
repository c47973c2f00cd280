"""SimSiam (Chen & He 2021): no negatives. Two views go through the encoder and a projector;
a predictor maps one view's projection onto the other's, whose gradient is stopped:

    L = -(cos(p1, stopgrad(z2)) + cos(p2, stopgrad(z1))) / 2

The stop-gradient is what prevents collapse; the report's embedding std checks it did.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnopt.core.registry import TASKS
from nnopt.learn.selfsup.augment import AugmentConfig, augment
from nnopt.learn.selfsup.embedding import classifier, embed_batch
from nnopt.learn.selfsup.simclr import mlp_head
from nnopt.train.task import TrainingTask


def simsiam_loss(p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor
                 ) -> torch.Tensor:
    return -(F.cosine_similarity(p1, z2.detach()).mean()
             + F.cosine_similarity(p2, z1.detach()).mean()) / 2


class SimsiamTask(TrainingTask):
    """SimSiam: negative cosine between one view's prediction and the other's projection."""

    def __init__(self, augment_cfg: AugmentConfig, proj_dim: int, seed: int,
                 proj_hidden: int | None = None, proj_layers: int = 2) -> None:
        self.aug, self.proj_dim = augment_cfg, proj_dim
        self.proj_hidden, self.proj_layers = proj_hidden, proj_layers
        self.gen = torch.Generator().manual_seed(seed)
        self.projector: nn.Module | None = None
        self.predictor: nn.Module | None = None

    def setup(self, model: nn.Module) -> list[nn.Module]:
        d = classifier(model).in_features
        self.projector = mlp_head(d, self.proj_hidden, self.proj_dim, bn_last=True,
                                  depth=self.proj_layers)
        self.predictor = mlp_head(self.proj_dim, max(self.proj_dim // 4, 8), self.proj_dim)
        return [self.projector, self.predictor]

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        assert self.projector is not None and self.predictor is not None
        self.projector.train(model.training)
        self.predictor.train(model.training)
        views = torch.cat([augment(x, self.aug, self.gen), augment(x, self.aug, self.gen)])
        z = self.projector(embed_batch(model, views))
        p = self.predictor(z)
        n = len(x)
        return {"loss": simsiam_loss(p[:n], z[:n], p[n:], z[n:])}


# chosen by its step, not by a `task:` block (it needs what the step builds)
TASKS.add("simsiam", SimsiamTask, built_by="the pretrain step (method: simsiam)")
