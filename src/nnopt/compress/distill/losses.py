"""Distillation losses as plain functions: logits (Hinton et al. 2015), hints (Romero et al.
2015, FitNets) and attention transfer (Zagoruyko & Komodakis 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch.

    The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones
    (Hinton et al. 2015, section 2).
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t


def hint_loss(adapted_student: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the regressor's output and the teacher's hint (FitNets)."""
    return F.mse_loss(adapted_student, teacher_features)


def attention_map(features: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Spatial attention of a (N, C, H, W) activation: mean over channels of |A|^p, flattened and
    L2-normalised per example (Zagoruyko & Komodakis 2017, eq. 2 with F_sum^p)."""
    if features.dim() != 4:
        raise ValueError(f"attention transfer needs (N, C, H, W) activations, got {tuple(features.shape)}")
    return F.normalize(features.abs().pow(p).mean(1).flatten(1), dim=1)


def attention_loss(student_features: torch.Tensor, teacher_features: torch.Tensor,
                   p: int = 2) -> torch.Tensor:
    """Mean squared distance of normalised attention maps (the authors' reference code)."""
    s, t = attention_map(student_features, p), attention_map(teacher_features, p)
    if s.shape != t.shape:
        raise ValueError(f"attention maps differ in size: student {tuple(student_features.shape[2:])}"
                         f" vs teacher {tuple(teacher_features.shape[2:])}")
    return (s - t).pow(2).mean()
