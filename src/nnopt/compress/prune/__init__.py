"""Pruning and sparsification: masks, schedules, structured removal, lottery tickets, pre-flight."""

from nnopt.compress.prune import lottery, report, step  # noqa: F401  (registration)
