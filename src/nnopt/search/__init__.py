"""Search and sweeps: executors (local now, distributed later) and grid sweeps."""
