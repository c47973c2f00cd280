"""Trust: calibration, uncertainty, robustness and out-of-distribution detection."""

from nnopt.trust import (  # noqa: F401  (registration)
    bayes, calibration, ensemble, laplace, mc_dropout, mc_step, ood_metric, report)
