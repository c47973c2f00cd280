"""A stage deployed per target: for every target the artifact chosen for it (runtime x
precision x format), with the reason, in one model of the run.

Its forward runs the *primary* target's artifact, so the stage's accuracy, NLL, ECE and size
are those of that artifact; latency is timed per target on each target's own artifact. It is
saved as one subfolder per target plus ``spec.json`` (format ``nnopt-deployed``) and reloads
without running code, like every model folder.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.core.config import NAME
from nnopt.core.errors import ModelFileError, NnoptError
from nnopt.core.fileio import atomic_write_json
from nnopt.core.registry import FORMATS
from nnopt.models.artifact import Artifact
from nnopt.models.saving import load_model, save_model

FORMAT = "nnopt-deployed"


class Deployed(Artifact):
    """Per-target deployments of one stage; ``choices[target]`` holds runtime, precision,
    deployment name and reason (and, for a target that has none, only the reason)."""

    label = "per-target deployment"

    def __init__(self, by_target: dict[str, nn.Module], choices: dict[str, dict[str, Any]],
                 primary: str) -> None:
        super().__init__()
        if primary not in by_target:
            raise NnoptError(f"primary target '{primary}' has no deployment")
        self.by_target = {t: m.eval() for t, m in by_target.items()}
        self.choices = choices
        self.primary = primary
        self.main = self.by_target[primary]  # registered: .eval()/.to() reach it
        first = getattr(self.main, "spec", {})
        self.spec = {"format": FORMAT, "primary": primary, "deployed": choices,
                     **{k: first[k] for k in ("source", "calibration", "num_classes",
                                              "input_shape") if k in first}}

    @property
    def runtime(self) -> str:  # type: ignore[override]
        return getattr(self.main, "runtime", "torch")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)

    def for_target(self, name: str) -> nn.Module | None:
        return self.by_target.get(name)

    def param_count(self) -> int:
        main = self.main
        return main.param_count() if isinstance(main, Artifact) else \
            sum(p.numel() for p in main.parameters())

    def exported_onnx(self) -> bytes | None:
        return self.main.exported_onnx() if isinstance(self.main, Artifact) else None

    def map(self, fn: Callable[[nn.Module], nn.Module], note: str = "") -> Deployed:
        """The same deployments with ``fn`` applied to each artifact (once per distinct one);
        ``note`` is added to every target's reason."""
        done: dict[int, nn.Module] = {}
        out = {}
        for t, m in self.by_target.items():
            if id(m) not in done:
                done[id(m)] = fn(m)
            out[t] = done[id(m)]
        choices = {t: {**c, **({"reason": f"{c.get('reason', '')}; {note}".lstrip("; ")}
                               if note else {})} for t, c in self.choices.items()}
        return Deployed(out, choices, self.primary)

    def __deepcopy__(self, memo: dict) -> Deployed:
        return self.map(lambda m: copy.deepcopy(m, memo))

    def save_to(self, folder: Path) -> Path:
        files = {}
        for target, model in self.by_target.items():
            path = save_model(model, folder / target)
            files[target] = path.relative_to(folder).as_posix()
        choices = {t: {**c, **({"file": files[t]} if t in files else {})}
                   for t, c in self.choices.items()}
        self.choices = choices
        self.spec = {**self.spec, "deployed": choices}
        atomic_write_json(folder / "spec.json", self.spec)
        return folder / files[self.primary]


def for_target(model: nn.Module, target: str) -> nn.Module | None:
    """The model a target runs for this stage: its deployment when the stage deployed per
    target (None when that target has none), else the stage's model itself."""
    return model.for_target(target) if isinstance(model, Deployed) else model


def deployment_choices(model: nn.Module) -> dict[str, dict[str, Any]]:
    return dict(model.choices) if isinstance(model, Deployed) else {}


def load_deployed(folder: Path, spec: dict[str, Any], trust: tuple[str, ...] = ()) -> Deployed:
    """Every target's artifact from its subfolder (target names are plain names: no path can
    leave the folder); the spec is data."""
    choices, primary = spec.get("deployed"), spec.get("primary")
    if not isinstance(choices, dict) or not isinstance(primary, str) or primary not in choices:
        raise ModelFileError(f"{folder}: invalid spec: a per-target deployment needs "
                             "'deployed' (an object) and its 'primary' target")
    models = {}
    for target, choice in choices.items():
        if not isinstance(target, str) or not re.fullmatch(NAME, target) \
                or not isinstance(choice, dict):
            raise ModelFileError(f"{folder}: invalid spec: target {json.dumps(target)[:40]} "
                                 "is not a plain name with an object")
        if "file" in choice:
            models[target] = load_model(folder / target, trust=trust)
    if primary not in models:
        raise ModelFileError(f"{folder}: invalid spec: the primary target has no file")
    return Deployed(models, choices, primary)


FORMATS.add(FORMAT, load_deployed)
