"""The clean-labels record of a stage (results.json: details.clean_labels)."""

from __future__ import annotations

from nnopt.core.record import Record, record


@record
class CleanLabelsRecord(Record):
    """Label issues found by confident learning on out-of-sample probabilities, what was done
    with them, and (when the noise was injected) how well they match the corrupted labels."""

    KEY = "clean_labels"
    folds: int
    filter_by: str
    examples: int
    flagged: int
    action: str
    kept: int
    oof_accuracy_given: float
    detection: dict[str, float] | None = None
    relabelled_correct: float | None = None
