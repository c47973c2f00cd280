"""The calibration record of a stage (results.json: details.calibration)."""

from __future__ import annotations

from nnopt.core.record import Record, record


@record
class CalibrationRecord(Record):
    """The fitted post-hoc map and its effect on the validation split it was fitted on."""

    KEY = "calibration"
    method: str
    fitted_on: str
    val_ece_before: float
    val_ece_after: float
    val_accuracy_before: float | None = None
    val_accuracy_after: float | None = None
    temperature: float | None = None  # temperature scaling only
