"""The ``calibrate`` step: a post-hoc calibration head fitted on the validation split (never on
test) and appended to the model."""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from nnopt.context import RunContext
from nnopt.core.compute import predict
from nnopt.core.config import Strict
from nnopt.core.errors import NnoptError
from nnopt.core.registry import STEPS, TRANSFORMS
from nnopt.measure.base import is_nnopt_model
from nnopt.measure.calibration import expected_calibration_error
from nnopt.models.artifact import Artifact
from nnopt.models.deployed import Deployed
from nnopt.models.saving import head_from_record
from nnopt.trust.calibration.records import CalibrationRecord
from nnopt.trust.calibration.scaling import Method, fit_head, head_size


class CalibrateConfig(Strict):
    """The calibration map and its fitting."""

    method: Method = Field("temperature", description="temperature (one T; accuracy unchanged), "
                           "vector (per-class scale and bias), matrix (K x K affine), histogram "
                           "(equal-mass binning) or isotonic (one class against the rest)")
    l2: float = Field(0.0, ge=0, description="vector/matrix: pull towards the identity map")
    max_iter: int = Field(200, ge=1, description="L-BFGS iterations")
    bins: int = Field(15, ge=2, le=1000, description="histogram: bins per class")


def _record(cfg: CalibrateConfig, head: nn.Module) -> dict[str, Any]:
    size = head_size(head)
    return {"method": cfg.method, **({"size": size} if size is not None else {})}


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    model.net = nn.Sequential(model.net, head_from_record(transform, model.spec["num_classes"]))


TRANSFORMS.add("calibrate", _reapply)


def _calibrated(model: nn.Module, head: nn.Module, record: dict[str, Any],
                num_classes: int) -> nn.Module:
    """The model with ``head`` on its logits, in the model's own form (PyTorch, ONNX, int8)."""
    if isinstance(model, Artifact):
        return model.with_calibration(head, record, num_classes)
    if not is_nnopt_model(model):
        raise NnoptError(f"calibrate cannot append a map to a {type(model).__name__}; it takes "
                         "nnopt PyTorch models, ONNX artifacts and torch int8 artifacts")
    out = copy.deepcopy(model)
    out.net = nn.Sequential(out.net, head)
    out.spec = {**out.spec, "transforms": [*out.spec.get("transforms", []),
                                           {"kind": "calibrate", **record}]}
    return out


@STEPS.register("calibrate", config=CalibrateConfig, tiny={})
def calibrate(model: nn.Module, cfg: CalibrateConfig, ctx: RunContext) -> nn.Module:
    """Fit a calibration map on validation logits and append it to the model (also to a
    deployed ONNX or int8 artifact, so quantized models can be re-calibrated)."""
    val = ctx.data.val
    if not len(val):
        raise NnoptError("calibrate fits on the validation split, which is empty; set "
                         "data.val_fraction > 0")

    def fitted(m: nn.Module) -> tuple[nn.Module, nn.Module, torch.Tensor]:
        z = predict(m, val.x)
        h = fit_head(cfg.method, z, val.y, max_iter=cfg.max_iter, l2=cfg.l2, bins=cfg.bins)
        return _calibrated(m, h, _record(cfg, h), z.shape[1]), h, z

    if isinstance(model, Deployed):  # every target's artifact gets a map fitted to its logits
        fits: dict[int, tuple[nn.Module, nn.Module, torch.Tensor]] = {}

        def fit_one(m: nn.Module) -> nn.Module:  # map() calls it once per distinct artifact
            fits[id(m)] = fitted(m)
            return fits[id(m)][0]

        out = model.map(fit_one, note=f"calibrated ({cfg.method}) on its own validation logits")
        _, head, logits = fits[id(model.main)]
    else:
        out, head, logits = fitted(model)
    with torch.no_grad():
        after = head(logits)  # the appended head on the logits already computed
    ctx.record(CalibrationRecord(
        method=cfg.method, fitted_on=f"validation ({len(val)} examples)",
        val_ece_before=expected_calibration_error(logits.double().softmax(1), val.y),
        val_ece_after=expected_calibration_error(after.double().softmax(1), val.y),
        val_accuracy_before=(logits.argmax(1) == val.y).double().mean().item(),
        val_accuracy_after=(after.argmax(1) == val.y).double().mean().item(),
        temperature=head.temperature if cfg.method == "temperature" else None))
    return out
