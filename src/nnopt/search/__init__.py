"""Search and sweeps: architecture search (spaces, strategies, trials, the ``nas`` step),
executors (in-process and Ray) and grid sweeps."""
