"""Trust: calibration, uncertainty, robustness and out-of-distribution detection."""

from nnopt.trust import calibration  # noqa: F401  (registers metrics)
