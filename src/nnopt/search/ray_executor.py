"""The Ray executor: each job runs as a Ray task (one CPU each), on a running cluster given by
address or on a local instance started for the run; results are yielded as tasks finish.

Workers import nnopt themselves, so on a multi-machine cluster every node needs nnopt installed
(or a Ray ``runtime_env`` that provides it). Data are loaded once per worker process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from nnopt.core.errors import NnoptError
from nnopt.core.extras import require

T = TypeVar("T")
R = TypeVar("R")


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_job: float = 1.0) -> None:
        ray = require("ray", "the ray executor")
        self.ray, self.cpus_per_job = ray, cpus_per_job
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus,
                         include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise NnoptError(f"cannot start or reach Ray (address {address or 'local'}): "
                                 f"{exc}") from None

    def map(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[tuple[int, R]]:
        ray = self.ray
        remote = ray.remote(num_cpus=self.cpus_per_job, max_retries=0)(fn)
        index = {remote.remote(job): i for i, job in enumerate(jobs)}
        pending = list(index)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield index[ref], ray.get(ref)

    def shutdown(self) -> None:
        """Stop the local instance this executor started (a cluster it joined keeps running)."""
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
