"""Trust: calibration, uncertainty, robustness and out-of-distribution detection."""
