"""Calibration: metrics (functional cores and registered metrics) and post-hoc scaling."""

from nnopt.trust.calibration import registered, report, step  # noqa: F401  (registration)
