"""Launching a run on several processes through torchrun (torch.distributed.run): its command
line, its options for several machines (checked before anything starts), and the launch itself.

torchrun and every worker start through a bootstrap that takes the working folder off
``sys.path`` before anything is imported, and their temporary files go to a folder of the
launch, removed at its end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from nnopt.core.errors import NnoptError

# Runs a module as ``python -m`` does, but without the working folder on sys.path (``-m`` and
# ``-c`` put it first, so a yaml.py, a torch.py or a plugin's dist-info lying there would be
# imported by torchrun and by every worker). sys is built in: nothing is imported before the
# folder is gone.
SAFE_MODULE = ("import sys; sys.path[:] = [p for p in sys.path if p != '']; import runpy; "
               "sys.argv.pop(0); runpy.run_module(sys.argv[0], run_name='__main__', "
               "alter_sys=True)")


def safe_module(module: str) -> list[str]:
    """The command line that runs ``module`` like ``python -m module``, the working folder
    left off sys.path."""
    return [sys.executable, "-u", "-c", SAFE_MODULE, module]


def torchrun_command(recipe: str, out: str | Path, nproc: int, sets: list[str],
                     trust: list[str] | tuple[str, ...], *, quiet: bool = False,
                     rendezvous: list[str] | None = None) -> list[str]:
    """``nnopt run`` on ``nproc`` processes through torchrun (torch.distributed.run): one
    machine standalone, or several through ``rendezvous`` (torchrun's own options). Neither
    torchrun nor its workers import anything from the working folder."""
    cmd = safe_module("torch.distributed.run") + ["--nproc-per-node", str(nproc)]
    cmd += rendezvous if rendezvous else ["--standalone"]
    cmd += ["--no-python", *safe_module("nnopt"), "run", recipe, "--out", str(out)]
    cmd += [f"--set={v}" for v in sets] + [f"--trust={v}" for v in trust]
    return cmd + (["--quiet"] if quiet else [])


def run_torchrun(cmd: list[str], nproc: int, **popen: Any) -> tuple[int, str | None]:
    """Run a torchrun launch to its end, the machine's cores shared among its ``nproc``
    processes (unless OMP_NUM_THREADS says otherwise); (exit code, stderr when ``popen`` pipes
    it). Its temporary files (torchrun's torchelastic_* logs, the workers' scratch folders) go
    to a folder of this launch, removed at the end. On Ctrl-C or SIGTERM torchrun is stopped,
    which stops its processes, which clean up."""
    with tempfile.TemporaryDirectory(prefix="nnopt-torchrun-") as tmp:
        env = {**os.environ, "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        proc = subprocess.Popen(cmd, env=env, **popen)
        try:
            _, err = proc.communicate()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
    return proc.returncode, err


ENDPOINT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))"
                      r":(\d{1,5})$")


def rendezvous_options(endpoint: str | None, nnodes: str | None, node_rank: str | None
                       ) -> list[str] | None:
    """torchrun's options for several machines (None: this machine alone), each checked: a
    bad value or an option without its partner is one line here, not a hang or a traceback
    of torchrun's."""
    if endpoint is None:
        given = [f for f, v in (("--nnodes", nnodes), ("--node-rank", node_rank))
                 if v is not None]
        if given:
            raise NnoptError(f"{' and '.join(given)} need --rdzv-endpoint HOST:PORT (the first "
                             "machine's address): they describe a run over several machines")
        return None
    m = ENDPOINT.match(endpoint)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise NnoptError(f"--rdzv-endpoint {endpoint!r}: give HOST:PORT, a host name or "
                         "address and a port 1..65535 (e.g. node0:29500)")
    nnodes = nnodes or "1"
    bounds = nnodes.split(":")
    if len(bounds) > 2 or not all(b.isdigit() for b in bounds) or \
            not 1 <= int(bounds[0]) <= int(bounds[-1]) <= 4096:
        raise NnoptError(f"--nnodes {nnodes!r}: give a number of machines (1..4096) or a range "
                         "MIN:MAX")
    out = ["--nnodes", nnodes, "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint]
    if node_rank is not None:
        most = int(bounds[-1])
        if not node_rank.isdigit() or int(node_rank) >= most:
            raise NnoptError(f"--node-rank {node_rank!r}: give this machine's rank, "
                             f"0..{most - 1} for --nnodes {nnodes}")
        out += ["--node-rank", node_rank]
    return out
