"""Trust: calibration, uncertainty, robustness and out-of-distribution detection."""

from nnopt.trust import calibration, ood_metric  # noqa: F401  (registers steps and metrics)
