"""The Ray executor on a local Ray instance: jobs run concurrently in separate worker processes,
and a search gives the same trials as the in-process executor for the same seeds."""

from __future__ import annotations

import os
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="the ray executor's tests need Ray (a dev dependency)")

from nnopt.search.nas import run_search  # noqa: E402
from nnopt.search.ray_executor import RayExecutor  # noqa: E402
from test_search import _cfg, _search_ctx  # noqa: E402

# Ray's workers cannot import this test module: its functions travel by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def executor():
    ex = RayExecutor(num_cpus=2)
    yield ex
    ex.shutdown()


def _stamp(seconds: float) -> tuple[int, float, float]:
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def test_jobs_run_concurrently_in_worker_processes(executor):
    out = dict(executor.map(_stamp, [1.0, 1.0]))
    (pid_a, s_a, e_a), (pid_b, s_b, e_b) = out[0], out[1]
    assert pid_a != pid_b and os.getpid() not in (pid_a, pid_b)
    assert s_a < e_b and s_b < e_a  # the two sleeps overlapped


def test_search_on_ray_matches_the_local_executor(executor, tmp_path):
    ctx = _search_ctx(tmp_path)
    local = run_search(_cfg(4, workers=2), ctx, None).trials
    remote = run_search(_cfg(4, workers=2, executor="ray"), ctx, None,
                        executor=executor).trials
    assert [r.arch for r in remote] == [r.arch for r in local]
    assert [r.metrics for r in remote] == [r.metrics for r in local]
    assert {r.environment["pid"] for r in remote} != {os.getpid()}


def test_a_job_asking_for_a_gpu_the_cluster_lacks_is_one_clear_line(executor):
    from nnopt.core.errors import NnoptError

    if ray.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray cluster has a GPU")
    with pytest.raises(NnoptError, match="each job asks for 1 GPU.*the Ray cluster has 0"):
        RayExecutor(gpus_per_job=1.0)
    with pytest.raises(NnoptError, match="each job asks for 64 CPU"):
        RayExecutor(cpus_per_job=64.0)
    assert dict(executor.map(_negate, [1])) == {0: -1}  # the running instance is untouched


def _negate(v: int) -> int:
    return -v
