"""Seeding, the compute device and batched prediction: what every floor above needs from torch.

The compute device is where training, evaluation, attacks, calibration fits and self-supervised
pre-training run: ``auto`` (a CUDA device when there is one), ``cpu`` or ``cuda[:N]``, chosen for
a run and per stage (``on_device``). Models stay on the CPU between phases (saving, export and
CPU runtimes need them there); a phase that computes places its model on the device for its
duration (``placed``) and brings the results back. Random numbers that decide a result (batch
order, augmentation parameters, attack starts) come from seeded CPU generators, so a run does not
depend on the device beyond floating-point noise and dropout masks.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from nnopt.core.errors import NnoptError

DEVICE = r"^(auto|cpu|cuda(:\d{1,2})?)$"  # the device a recipe or stage may name
_NOW = {"device": torch.device("cpu")}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a run repeats exactly on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """The device ``auto | cpu | cuda | cuda:N`` names on this machine: ``auto`` is CUDA when a
    device is present (under torchrun, the process's own: ``LOCAL_RANK``), else the CPU. A CUDA
    device this machine lacks is an NnoptError naming what it has."""
    if not re.match(DEVICE, name):
        raise NnoptError(f"device '{name}': write auto, cpu, cuda or cuda:N")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise NnoptError(f"device '{name}': this machine has no CUDA device; use device: cpu "
                        "(or auto, which takes a GPU when there is one)")
    index = int(name.split(":")[1]) if ":" in name else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= count:
        raise NnoptError(f"device '{name}': this machine has {count} CUDA device(s), "
                        f"cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def compute_device() -> torch.device:
    """The device the current phase computes on (the CPU unless ``on_device`` says otherwise)."""
    return _NOW["device"]


@contextlib.contextmanager
def on_device(device: torch.device) -> Iterator[torch.device]:
    """Compute on ``device`` inside the block (a run's, or one stage's, device)."""
    before = _NOW["device"]
    _NOW["device"] = device
    try:
        yield device
    finally:
        _NOW["device"] = before


def home(model: nn.Module) -> torch.device:
    """The device a model's tensors are on (the CPU for one without any)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def movable(model: nn.Module) -> bool:
    """Whether a model may move to another device: one with float tensors and no packed
    int8 kernels (torch.ao quantized modules, exported artifacts run where their runtime is)."""
    tensors = [*model.parameters(), *model.buffers()]
    if not tensors or any(t.is_quantized for t in tensors):
        return False
    return not any(type(m).__module__.startswith("torch.ao.nn.quantized")
                   for m in model.modules())


@contextlib.contextmanager
def placed(*modules: nn.Module | None, device: torch.device | None = None
           ) -> Iterator[torch.device]:
    """The modules on ``device`` (the compute device by default) inside the block, back where
    they were after it; yields the device their inputs go to (the first module's, which stays
    where it is when it cannot move)."""
    device = compute_device() if device is None else device
    mods = [m for m in modules if m is not None]
    homes = [home(m) for m in mods]
    moved = [m for m, h in zip(mods, homes) if h != device and movable(m)]
    for m in moved:
        m.to(device)
    try:
        yield home(mods[0]) if mods else device
    finally:
        for m in moved:
            m.to(homes[mods.index(m)])


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` in eval mode for all of ``x``, computed on the compute device and
    returned on the CPU; the model's mode and device are restored. (The model moves outside
    inference mode: moved inside, its weights would become inference tensors that cannot
    train again.)"""
    was_training = model.training
    model.eval()
    try:
        with placed(model) as dev, torch.inference_mode():
            return torch.cat([model(x[i:i + batch_size].to(dev, non_blocking=True)).cpu()
                              for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
