"""Trust: calibration, uncertainty, robustness and out-of-distribution detection."""

from nnopt.trust import calibration, ood_metric, report  # noqa: F401  (registration)
from nnopt.trust.uncertainty import (  # noqa: F401  (registration)
    bayes, ensemble, laplace, mc_dropout, mc_step)
from nnopt.trust.robustness import (  # noqa: F401  (registration)
    corruption_metric, metric, report as robustness_report)
