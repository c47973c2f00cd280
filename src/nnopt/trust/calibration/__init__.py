"""Calibration: metrics (functional cores and registered metrics) and post-hoc scaling."""
