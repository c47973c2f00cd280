"""What runs and where it waits: `nnopt run --nproc` imports nothing from the working folder and
leaves no temporary folders; bad multi-machine options, a tracking server that does not answer,
and a plugin that exits or interrupts are each one line; MLflow's telemetry is off and a default
store stays inside --out; a run without --out never replaces an earlier one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hostile import cli, recipe_file, tree  # noqa: F401  (fixtures)

from conftest import tiny_raw

ROOT = Path(__file__).resolve().parents[2]
NNOPT = Path(sys.executable).parent / "nnopt"  # the console script a user runs
CI_VARS = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "MLFLOW_DISABLE_TELEMETRY",
           "DO_NOT_TRACK", "PYTHONPATH", "MLFLOW_TRACKING_URI")

# code a hostile working folder holds: imported, it leaves a file behind
TRAP = "import pathlib, os\npathlib.Path('{name}-' + str(os.getpid())).write_text('ran')\n"


@pytest.mark.skipif(not NNOPT.is_file(), reason="the nnopt console script is not installed")
def test_nproc_workers_import_nothing_from_the_working_folder(tmp_path):
    work, scratch = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    (work / "r.yaml").write_text(yaml.safe_dump(tiny_raw(evaluate=["accuracy"])))
    for module in ("yaml", "numpy", "typing_extensions", "evilplugin"):
        (work / f"{module}.py").write_text(TRAP.format(name=f"PWNED-{module}"))
    info = work / "evil-0.1.dist-info"  # a plugin that only the working folder declares
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nnopt.plugins]\nevil = evilplugin\n")
    env = {k: v for k, v in os.environ.items() if k not in CI_VARS}
    env.update(TMPDIR=str(scratch), PYTHONPATH=str(ROOT / "tests"))
    done = subprocess.run([str(NNOPT), "run", "r.yaml", "--out", "o", "--nproc", "2",
                           "--quiet"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [p.name for p in work.iterdir() if p.name.startswith("PWNED")]
    assert (work / "o" / "results.json").is_file()
    assert sorted(p.name for p in scratch.iterdir()) == []  # no torchelastic_* left


@pytest.mark.parametrize("args, needle", [
    (["--nnodes", "2"], "--nnodes need --rdzv-endpoint HOST:PORT"),
    (["--node-rank", "1"], "--node-rank need --rdzv-endpoint"),
    (["--nnodes", "2", "--node-rank", "0"], "--nnodes and --node-rank need --rdzv-endpoint"),
    (["--rdzv-endpoint", "node0"], "--rdzv-endpoint 'node0': give HOST:PORT"),
    (["--rdzv-endpoint", "node0:99999"], "a port 1..65535"),
    (["--rdzv-endpoint", "no de:29500"], "give HOST:PORT"),
    (["--rdzv-endpoint", "node0:29500", "--nnodes", "two"], "--nnodes 'two': give a number"),
    (["--rdzv-endpoint", "node0:29500", "--nnodes", "3:2"], "--nnodes '3:2'"),
    (["--rdzv-endpoint", "node0:29500", "--nnodes", "2", "--node-rank", "2"],
     "--node-rank '2': give this machine's rank, 0..1 for --nnodes 2"),
    (["--rdzv-endpoint", "node0:29500", "--node-rank", "-1"], "--node-rank '-1'"),
])
def test_bad_multi_machine_options_are_one_line(args, needle, cli, recipe_file, tmp_path):
    start = time.perf_counter()
    cli("run", recipe_file(), "--out", tmp_path / "o", "--nproc", "2", *args
        ).one_line_error(needle)
    assert time.perf_counter() - start < 15 and not (tmp_path / "o").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tracking_server_that_does_not_answer_fails_fast(cli, recipe_file, tmp_path):
    pytest.importorskip("mlflow")
    silent = socket.socket()  # accepts connections (the kernel's backlog), never replies
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for uri in (f"http://127.0.0.1:{_closed_port()}", f"http://127.0.0.1:"
                                                          f"{silent.getsockname()[1]}"):
            path = recipe_file(tracking={"mlflow": {"uri": uri}})
            start = time.perf_counter()
            cli("run", path, "--out", tmp_path / "o").one_line_error(f"MLflow server {uri} "
                                                                     "does not answer")
            assert time.perf_counter() - start < 15, uri
            assert not (tmp_path / "o").exists()
    finally:
        silent.close()


def test_tracking_writes_nothing_outside_out_and_says_where(tmp_path):
    """A fresh process with an empty home and no CI variables (MLflow's telemetry would write
    ~/.config/mlflow there): the default store is inside --out, and the run says so."""
    pytest.importorskip("mlflow")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "r.yaml").write_text(yaml.safe_dump(tiny_raw(evaluate=["accuracy"],
                                                         tracking={"mlflow": {}})))
    env = {k: v for k, v in os.environ.items() if k not in CI_VARS}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT / "tests"))
    done = subprocess.run([sys.executable, "-m", "nnopt", "run", "r.yaml", "--out", "o",
                           "--quiet"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert tree(home) == set()
    assert sorted(p.name for p in work.iterdir()) == ["o", "r.yaml"]
    assert {"mlflow.db", "mlartifacts"} <= {p.name for p in (work / "o").iterdir()}
    assert f"in sqlite:///{work / 'o' / 'mlflow.db'}" in done.stdout


PLUGIN = {"exits": "import sys\nsys.exit(3)\n", "interrupts": "raise KeyboardInterrupt\n"}


@pytest.mark.parametrize("kind", sorted(PLUGIN))
def test_a_plugin_that_exits_or_interrupts_is_one_line(kind, tmp_path):
    site = tmp_path / "site"
    info = site / "rude-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rude\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nnopt.plugins]\nrude = rude_plugin\n")
    (site / "rude_plugin.py").write_text(PLUGIN[kind])
    done = subprocess.run([sys.executable, "-m", "nnopt", "list"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    if kind == "exits":
        assert done.returncode == 2
        assert "plugin 'rude' (rude_plugin) called sys.exit(3) while loading" in done.stderr
    else:
        assert done.returncode == 130 and "interrupted while loading" in done.stderr


def test_a_run_without_out_never_replaces_an_earlier_one(cli, recipe_file):
    path = recipe_file()
    for _ in range(3):
        assert cli("run", path, "--quiet", outside_ok=("runs",)).code == 0
    assert sorted(p.name for p in (cli.work / "runs").iterdir()) == ["tiny", "tiny-2", "tiny-3"]
