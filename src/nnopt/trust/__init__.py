"""Trust: calibration, uncertainty, robustness and out-of-distribution detection."""

from nnopt.trust import calibration, mc_dropout, ood_metric  # noqa: F401  (registration)
