"""Search and sweeps: architecture search (spaces, strategies, trials, the ``nas`` step),
executors (in-process and Ray) and grid sweeps."""

from nnopt.search import darts, nas, report, wann, wann_report  # noqa: F401  (registration)
