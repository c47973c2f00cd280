"""Sparse inference for unstructured models on PyTorch CPU: Linear layers as CSR matrices.

Measured here (torch 2.13 CPU): ``torch.sparse.mm(W_csr, x.T).T`` is the fastest sparse path
(BSR and ``F.linear`` with a CSR weight are slower); convolutions have no CPU sparse kernel and
stay dense.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


class SparseLinear(nn.Module):
    """A Linear layer whose weight is stored as a CSR sparse matrix (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            self.weight_csr = linear.weight.detach().to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = torch.sparse.mm(self.weight_csr, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def to_sparse(model: nn.Module, min_sparsity: float = 0.0) -> nn.Module:
    """A copy of ``model`` whose Linear layers (at least ``min_sparsity`` zeros) run as CSR."""
    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                zeros = 1.0 - child.weight.count_nonzero().item() / child.weight.numel()
                if zeros >= min_sparsity:
                    setattr(module, child_name, SparseLinear(child))
    return model
