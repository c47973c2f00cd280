"""The run's timing pass: after the stages, every stage's artifact is timed on every target in one
session, interleaved over rounds (``paired``), so that a ratio between two stages compares the
same machine states. Each latency carries its spread, the machine's load and a ``noisy`` flag;
each stage carries its paired speed-up over the first stage and over its parent stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.measure.base import example_batch, is_artifact, runtime_of
from nnopt.measure.latency import shipped, target_runner
from nnopt.measure.paired import paced, time_paired
from nnopt.measure.runtimes import torch_threads
from nnopt.measure.target import Target
from nnopt.models.deployed import deployment_choices
from nnopt.models.saving import load_model


def deployed_as(model: nn.Module, target: Target) -> dict[str, Any]:
    """How a stage's model ships to ``target``: its per-target choice when the stage deployed,
    else the model itself on the target's runtime (fp32 unless the artifact says otherwise)."""
    choices = deployment_choices(model)
    if choices:
        return dict(choices.get(target.name, {"reason": "not deployed here"}))
    spec = getattr(model, "spec", {}) or {}
    runtime = runtime_of(model) if is_artifact(model) else target.runtime
    return {"runtime": runtime, "precision": spec.get("precision", "fp32")}


def time_stages(models: dict[str, nn.Module], targets: list[Target], x: torch.Tensor,
                work_dirs: dict[str, Path], parents: dict[str, str],
                bar: Callable[[str], Callable[[int, int], None] | None] = lambda _: None
                ) -> dict[str, dict[str, Any]]:
    """Per stage, per target: the latency figure (or why it was skipped), how it was deployed,
    and the paired speed-ups over the first stage (``vs_first``) and over its parent stage
    (``vs_parent``). ``bar(desc)`` gives a progress callback per target."""
    out: dict[str, dict[str, Any]] = {name: {} for name in models}
    first = next(iter(models))
    for target in targets:
        example = example_batch(x, target.batch_size)
        fns, runtimes = {}, {}
        with torch_threads(target.threads):
            for name, model in models.items():
                runs, why = shipped(model, target)
                how = deployed_as(model, target)
                if why:
                    out[name][target.name] = {"runtime": target.runtime, "skipped": why,
                                              "deployed": how}
                    continue
                fns[name], runtimes[name] = target_runner(runs, target, example,
                                                          work_dirs[name])
                out[name][target.name] = {"deployed": how}
            if not fns:
                continue
            timing = time_paired(fns, **paced(target),
                                 on_round=bar(f"time {len(fns)} stages on {target.name}"))
        for name in fns:
            rec = out[name][target.name]
            rec.update({"runtime": runtimes[name], "threads": target.threads,
                        "batch_size": target.batch_size, **timing.figure(name),
                        "load": timing.load})
            for key, ref in (("vs_first", first), ("vs_parent", parents.get(name))):
                if ref and ref != name and ref in fns:
                    rec[key] = {"stage": ref, **timing.ratio(ref, name)}
    return out


def retime(folders: dict[str, Path], targets: list[Target], input_shape: list[int],
           work: Path, trust: tuple[str, ...] = (),
           bar: Callable[[str], Callable[[int, int], None] | None] = lambda _: None
           ) -> dict[str, dict[str, Any]]:
    """Stages of several runs (``label: model folder``) timed again side by side, in one pass
    on this machine, as a run times its own stages: per label and target the figure and the
    paired speed-up over the first label (``vs_first``). Inputs are seeded uniform noise of
    the runs' input shape (the models' latency does not depend on the values); exports go to
    ``work``, never into the run folders."""
    models = {label: load_model(folder, trust=trust) for label, folder in folders.items()}
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(max([t.batch_size for t in targets] + [1]), *input_shape, generator=gen)
    dirs = {label: work / f"{i:03d}" for i, label in enumerate(models)}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return time_stages(models, targets, x, dirs, {}, bar=bar)
