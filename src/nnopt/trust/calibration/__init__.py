"""Calibration metrics (functional cores and registered metrics)."""

from nnopt.trust.calibration import metrics  # noqa: F401  (registration)
