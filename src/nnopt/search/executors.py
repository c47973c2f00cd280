"""Executors run independent jobs (sweep variants, search trials) behind one interface.

A job is a plain, picklable function plus a picklable argument, so an executor that ships jobs
to other processes or machines (Ray) fits the same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from nnopt.core.registry import EXECUTORS
from nnopt.search.ray_executor import RayExecutor

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn(job)`` for each job; yields ``(index, result)`` as jobs finish."""

    name: str

    def map(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[tuple[int, R]]: ...


class LocalExecutor:
    """In-process, one job after another, in order (the default)."""

    name = "local"

    def map(self, fn: Callable[[T], R], jobs: Sequence[T]) -> Iterator[tuple[int, R]]:
        for i, job in enumerate(jobs):
            yield i, fn(job)


EXECUTORS.add("local", LocalExecutor)


@EXECUTORS.register("ray")
def _ray(**options: Any) -> Executor:
    """On a Ray cluster (a local one by default): trials and variants run in parallel."""
    return RayExecutor(**options)


def get_executor(name: str, **options: Any) -> Executor:
    """The executor registered as ``name``; an unknown name lists the valid ones (as a
    RecipeError: the name came from the user)."""
    return EXECUTORS.get(name).fn(**options)
