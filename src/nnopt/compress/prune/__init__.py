"""Pruning and sparsification: masks, schedules, structured removal, lottery tickets, pre-flight."""
