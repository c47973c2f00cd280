"""DistillationTask: hard labels plus soft targets, hints and attention maps from a teacher."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from nnopt.compress.distill.losses import attention_loss, hint_loss, kd_loss
from nnopt.core.compute import movable, predict
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import TASKS
from nnopt.train.task import TrainingTask


class DistillConfig(Strict):
    """Who teaches and with which losses; usable alone (step ``distill``) or as the fine-tuning
    loss of ``prune`` and ``qat``."""

    teacher: str = Field("baseline", description="'baseline' (the first stage), an earlier stage's "
                         "name, a saved model folder, or 'package.module:function'")
    temperature: float = Field(4.0, gt=0, description="softmax temperature of the soft targets")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the soft-target term; 1 - alpha "
                         "weighs the hard labels (0: no logit distillation)")
    hint_weight: float = Field(0.0, ge=0, description="FitNets hint loss weight (0: off)")
    hint_layers: list[tuple[str, str]] | None = Field(
        None, description="[student module, teacher module] pairs; default: the inputs of both "
        "models' last Linear layers, bridged by a learned adapter")
    attention_weight: float = Field(0.0, ge=0, description="attention transfer weight beta "
                                    "(Zagoruyko & Komodakis use 1000; 0: off)")
    attention_layers: list[tuple[str, str]] | None = Field(
        None, description="[student module, teacher module] pairs; default: the last activation "
        "at each spatial size both models share")
    mixup: float = Field(0.0, ge=0, description="mix each batch's inputs with Beta(a, a) weights "
                         "and let the teacher label the mixed inputs (function matching, Beyer "
                         "et al. 2022); 0: off")

    @model_validator(mode="after")
    def _some_loss(self) -> DistillConfig:
        if self.alpha == 0 and self.hint_weight == 0 and self.attention_weight == 0:
            raise ValueError("alpha, hint_weight and attention_weight are all 0: nothing is "
                             "distilled (use the train step for plain training)")
        return self


class _Taps:
    """Forward hooks that keep named modules' outputs (or, for ``'<name>:input'``, inputs)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        self.values: dict[str, torch.Tensor] = {}
        self.handles = []
        for name in names:
            base, _, part = name.partition(":")
            if base not in modules:
                raise NnoptError(f"distillation layer '{base}' is not a module of the model; "
                                 f"modules: {', '.join(n for n in modules if n)}")
            if part == "input":
                hook = (lambda key: lambda m, args: self.values.__setitem__(key, args[0]))(name)
                self.handles.append(modules[base].register_forward_pre_hook(hook))
            else:
                hook = (lambda key: lambda m, args, out: self.values.__setitem__(key, out))(name)
                self.handles.append(modules[base].register_forward_hook(hook))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _last_linear_input(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise NnoptError("hint distillation without hint_layers needs a Linear classifier in "
                         "both models; name the layers with hint_layers")
    return names[-1] + ":input"


@torch.no_grad()
def _shapes(model: nn.Module, example: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every leaf module in forward order."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = [m.register_forward_hook(
        (lambda n: lambda mod, a, out: seen.append((n, tuple(out.shape)))
         if isinstance(out, torch.Tensor) else None)(n))
        for n, m in model.named_modules() if not list(m.children()) and n
        and not n.startswith("normalize")]
    was = model.training
    try:
        model.eval()(example)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return seen


def attention_pairs(student: nn.Module, teacher: nn.Module, example: torch.Tensor
                    ) -> list[tuple[str, str]]:
    """Pair the last 4-D activation at each spatial size found in both models."""
    def last_by_size(model: nn.Module) -> dict[tuple[int, int], str]:
        out: dict[tuple[int, int], str] = {}
        for name, shape in _shapes(model, example):
            if len(shape) == 4:
                out[shape[2:]] = name
        return out

    s, t = last_by_size(student), last_by_size(teacher)
    pairs = [(s[k], t[k]) for k in s if k in t]
    if not pairs:
        raise NnoptError("attention transfer found no spatial size that student and teacher "
                         "share; name the layers with attention_layers")
    return pairs


class DistillationTask(TrainingTask):
    """(1 - alpha) CE(student, y) + alpha T^2 KL(teacher_T || student_T) + hint and attention terms.

    The teacher runs in eval mode without gradients. Hint adapters (Linear or 1x1 conv) are extra
    trainable modules returned by ``setup``; they are discarded after training. Given the
    training inputs (``train_x``), logit-only distillation computes the teacher's logits once
    and looks them up by batch index (exact: fit() feeds the split's inputs unchanged).
    """

    def __init__(self, teacher: nn.Module, cfg: DistillConfig, example: torch.Tensor,
                 *, label_smoothing: float = 0.0, train_x: torch.Tensor | None = None) -> None:
        self.teacher, self.cfg, self.example = teacher, cfg, example
        self.label_smoothing = label_smoothing
        self.train_x = train_x
        self.cached: torch.Tensor | None = None
        self.hints: list[tuple[str, str]] = []
        self.attn: list[tuple[str, str]] = []
        self.adapters = nn.ModuleList()
        self._taps: list[_Taps] = []

    def setup(self, model: nn.Module) -> list[nn.Module]:
        cfg = self.cfg
        self.teacher.eval()
        if cfg.hint_weight:
            self.hints = [tuple(p) for p in cfg.hint_layers] if cfg.hint_layers else [
                (_last_linear_input(model), _last_linear_input(self.teacher))]
        if cfg.attention_weight:
            self.attn = ([tuple(p) for p in cfg.attention_layers] if cfg.attention_layers
                         else attention_pairs(model, self.teacher, self.example[:1]))
        pairs = self.hints + self.attn
        if not pairs and self.train_x is not None and not cfg.mixup:
            self.cached = predict(self.teacher, self.train_x)
        self._taps = [_Taps(model, [s for s, _ in pairs]), _Taps(self.teacher, [t for _, t in pairs])]
        if self.hints:
            with torch.no_grad():
                self.teacher(self.example[:2])
                was = model.training
                model.eval()(self.example[:2])
                model.train(was)
            self.adapters = nn.ModuleList(
                _adapter(self._taps[0].values[s], self._taps[1].values[t], s, t)
                for s, t in self.hints)
        return [self.adapters]

    def to(self, device: torch.device) -> None:
        """The teacher and the example batch on the device the student trains on."""
        if movable(self.teacher):
            self.teacher.to(device)
        self.example = self.example.to(device)

    def teardown(self) -> None:
        for taps in self._taps:
            taps.remove()
        self.cached = None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 index: torch.Tensor | None = None) -> dict[str, Any]:
        cfg = self.cfg
        lam, perm = 1.0, None
        if cfg.mixup and model.training:
            lam = float(torch.distributions.Beta(cfg.mixup, cfg.mixup).sample())
            perm = torch.randperm(len(x))
            x = lam * x + (1 - lam) * x[perm]
        if self.cached is not None and index is not None:
            t_out = self.cached[index].to(x.device)
        else:
            with torch.no_grad():
                t_out = self.teacher(x)
        out = model(x)
        ce = F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
        if perm is not None:  # the hard labels are mixed like the inputs (Zhang et al. 2018)
            ce = lam * ce + (1 - lam) * F.cross_entropy(out, y[perm],
                                                        label_smoothing=self.label_smoothing)
        loss = (1 - cfg.alpha) * ce
        if cfg.alpha:
            loss = loss + cfg.alpha * kd_loss(out, t_out, cfg.temperature)
        s_vals, t_vals = self._taps[0].values, self._taps[1].values
        for adapter, (s, t) in zip(self.adapters, self.hints):
            loss = loss + cfg.hint_weight * hint_loss(adapter(s_vals[s]), t_vals[t])
        for s, t in self.attn:
            loss = loss + cfg.attention_weight / 2 * attention_loss(s_vals[s], t_vals[t])
        return {"loss": loss, "output": out}


def _adapter(s: torch.Tensor, t: torch.Tensor, s_name: str, t_name: str) -> nn.Module:
    """A regressor from the student's feature space into the teacher's (FitNets)."""
    if s.dim() == 2 and t.dim() == 2:
        return nn.Linear(s.shape[1], t.shape[1])
    if s.dim() == 4 and t.dim() == 4 and s.shape[2:] == t.shape[2:]:
        return nn.Conv2d(s.shape[1], t.shape[1], 1)
    raise NnoptError(f"hint layers '{s_name}' {tuple(s.shape[1:])} and '{t_name}' "
                     f"{tuple(t.shape[1:])} cannot be bridged: both must be (N, C) features or "
                     "(N, C, H, W) maps of the same H, W")


# chosen by its step, not by a `task:` block (it needs what the step builds)
TASKS.add("distillation", DistillationTask, built_by="the distill step, and prune / qat with distill:")
