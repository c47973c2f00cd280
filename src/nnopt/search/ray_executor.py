"""The Ray executor: each job runs as a Ray task holding the CPUs and GPUs it asks for (one CPU
by default), on a running cluster given by address or on a local instance started for the run;
results are yielded as tasks finish. A job given a GPU sees it alone (Ray sets
CUDA_VISIBLE_DEVICES), so its ``device: auto`` or ``cuda`` is that GPU.

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
                 cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> None:
        ray = require("ray", "the ray executor")
        self.ray, self.cpus_per_job, self.gpus_per_job = ray, cpus_per_job, gpus_per_job
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus,
                         include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise NnoptError(f"cannot start or reach Ray (address {address or 'local'}): "
                                 f"{exc}") from None
        have = ray.cluster_resources()
        for kind, need in (("CPU", cpus_per_job), ("GPU", gpus_per_job)):
            if need > have.get(kind, 0.0):  # Ray would wait for it for ever
                self.shutdown()
                raise NnoptError(f"each job asks for {need:g} {kind}(s), and the Ray cluster "
                                 f"has {have.get(kind, 0.0):g}; ask for fewer "
                                 "(resources_per_trial, --cpus/--gpus-per-variant)")

    def map(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[tuple[int, R]]:
        ray = self.ray
        remote = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job,
                            max_retries=0)(fn)
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
