"""The ``calibrate`` step: a post-hoc calibration head fitted on the validation split (never on
test) and appended to the model."""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from nnopt.context import RunContext
from nnopt.errors import NnoptError
from nnopt.measure.base import is_artifact
from nnopt.models.saving import TRANSFORMS
from nnopt.recipe import Strict
from nnopt.registry import STEPS
from nnopt.train.fit import predict
from nnopt.trust.calibration.metrics import expected_calibration_error
from nnopt.trust.calibration.scaling import HEADS, Method, fit_head


class CalibrateConfig(Strict):
    """The calibration map and its fitting."""

    method: Method = Field("temperature", description="temperature (one T; accuracy unchanged), "
                           "vector (per-class scale and bias) or matrix (K x K affine)")
    l2: float = Field(0.0, ge=0, description="vector/matrix: pull towards the identity map")
    max_iter: int = Field(200, ge=1, description="L-BFGS iterations")


def _reapply(model: nn.Module, transform: dict[str, Any]) -> None:
    model.net = nn.Sequential(model.net, HEADS[transform["method"]](model.spec["num_classes"]))


TRANSFORMS["calibrate"] = _reapply


@STEPS.register("calibrate", config=CalibrateConfig, tiny={})
def calibrate(model: nn.Module, cfg: CalibrateConfig, ctx: RunContext) -> nn.Module:
    """Fit temperature / vector / matrix scaling on validation logits; append it to the model."""
    if is_artifact(model) or not hasattr(model, "net"):
        raise NnoptError("calibrate takes a PyTorch nnopt model; put it before export/quantize "
                         "(calibrating a deployed artifact is not supported yet)")
    val = ctx.data.val
    if not len(val):
        raise NnoptError("calibrate fits on the validation split, which is empty; set "
                         "data.val_fraction > 0")
    logits = predict(model, val.x)
    head = fit_head(cfg.method, logits, val.y, max_iter=cfg.max_iter, l2=cfg.l2)
    out = copy.deepcopy(model)
    out.net = nn.Sequential(out.net, head)
    out.spec = {**out.spec, "transforms": [*out.spec.get("transforms", []),
                                           {"kind": "calibrate", "method": cfg.method}]}
    with torch.no_grad():
        after = head(logits)  # the appended head on the logits already computed
    info = {"method": cfg.method, "fitted_on": f"validation ({len(val)} examples)",
            "val_ece_before": expected_calibration_error(logits.double().softmax(1), val.y),
            "val_ece_after": expected_calibration_error(after.double().softmax(1), val.y)}
    if cfg.method == "temperature":
        info["temperature"] = head.temperature
    ctx.record("calibration", info)
    return out
