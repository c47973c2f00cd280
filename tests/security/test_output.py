"""nnopt replaces or deletes only what it created; signals and odd --out values lose nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile import cli, recipe_file, tree  # noqa: F401  (fixtures)

from nnopt.core.fileio import MARKER, PARTIAL, StagedFolder, clean_stale

ROOT = Path(__file__).resolve().parents[2]


def test_run_replaces_only_its_own_folder(cli, recipe_file, tmp_path):
    path, out = recipe_file(), tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("{}")
    (out / "thesis.tex").write_text("precious")
    cli("run", path, "--out", out, "--quiet").one_line_error("nnopt did not write")
    assert sorted(os.listdir(out)) == ["results.json", "thesis.tex"]
    out = tmp_path / "mine"
    assert cli("run", path, "--out", out, "--quiet").code == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "run" and "results.json" in marker["files"]
    assert "models/train/model.safetensors" in marker["files"]
    assert cli("run", path, "--out", out, "--quiet").code == 0  # its own: replaced
    (out / "models" / "notes.txt").write_text("mine")
    cli("run", path, "--out", out, "--quiet").one_line_error("models/notes.txt")
    assert (out / "models" / "notes.txt").read_text() == "mine"


def test_sweep_follows_the_same_rule(cli, recipe_file, tmp_path):
    path = recipe_file()
    run = tmp_path / "run"
    assert cli("run", path, "--out", run, "--quiet").code == 0
    report = (run / "report.md").read_text()
    cli("sweep", path, "--grid", "model.hidden=4,8", "--out", run
        ).one_line_error("holds an nnopt run folder, not a sweep")
    assert (run / "report.md").read_text() == report
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my report")
    cli("sweep", path, "--grid", "model.hidden=4,8", "--out", mine
        ).one_line_error("nnopt did not write")
    assert (mine / "report.md").read_text() == "my report"
    sweep = tmp_path / "sw"
    args = ("sweep", path, "--grid", "model.hidden=4,8", "--out", sweep)
    assert cli(*args).code == 0 and cli(*args, "--resume").code == 0
    assert json.loads((sweep / MARKER).read_text())["kind"] == "sweep"
    cli("run", path, "--out", sweep, "--quiet").one_line_error("holds an nnopt sweep folder")
    (sweep / "variants" / "keep.txt").write_text("mine")
    cli(*args).one_line_error("variants/keep.txt")


def test_default_out_is_runs_name(cli, recipe_file):
    assert cli("run", recipe_file(name="r.yaml"), "--quiet", outside_ok=("runs",)).code == 0
    assert (cli.work / "runs" / "tiny" / "results.json").is_file()


def test_out_that_holds_the_working_folder_is_refused_before_any_work(cli, recipe_file,
                                                                       tmp_path, monkeypatch):
    path, out = recipe_file(), tmp_path / "o"
    assert cli("run", path, "--out", out, "--quiet").code == 0
    monkeypatch.chdir(out)
    before = tree(tmp_path)
    start = time.perf_counter()
    for target in (".", "..", str(out)):
        code = cli("run", path, "--out", target, "--quiet")
        code.one_line_error("the current folder or holds it")
    assert time.perf_counter() - start < 10 and tree(tmp_path) == before


def test_symlinked_out_leaves_no_stray_links(cli, recipe_file, tmp_path):
    path, real, link = recipe_file(), tmp_path / "real", tmp_path / "link"
    assert cli("run", path, "--out", real, "--quiet").code == 0
    link.symlink_to(real)
    assert cli("run", path, "--out", link, "--quiet").code == 0
    assert link.is_symlink() and (link / "results.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("where", ["/proc/nnopt-out", "/sys/nnopt-out", "FILE/sub", "FILE"])
def test_unwritable_out_is_one_line(where, cli, recipe_file, tmp_path):
    file = tmp_path / "a-file"
    file.write_text("mine")
    out = where.replace("FILE", str(file))
    cli("run", recipe_file(), "--out", out, "--quiet").one_line_error(out.split("/")[1])
    assert file.read_text() == "mine"


def test_files_follow_the_umask(cli, recipe_file, tmp_path):
    old = os.umask(0o027)
    try:
        assert cli("run", recipe_file(), "--out", tmp_path / "o", "--quiet").code == 0
    finally:
        os.umask(old)
    for p in [tmp_path / "o", tmp_path / "o" / "models"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o750, p
    for p in [tmp_path / "o" / "results.json", tmp_path / "o" / "models/train/spec.json"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_partials_of_dead_processes_are_cleaned(tmp_path):
    pid = _dead_pid()
    ours = tmp_path / f".o.partial-{pid}-abc"
    ours.mkdir()
    (ours / PARTIAL).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    (ours / "results.json").write_text("{}")
    theirs = tmp_path / f".o.partial-{pid}-xyz"  # no marker of ours: not touched
    theirs.mkdir()
    alive = tmp_path / f".o.partial-{os.getpid()}-abc"  # a live process: not touched
    alive.mkdir()
    (alive / PARTIAL).write_text(json.dumps({"host": socket.gethostname(),
                                             "pid": os.getpid()}))
    with StagedFolder(tmp_path / "o", "run") as staging:
        (staging / "x").write_text("1")
    assert not ours.exists() and theirs.is_dir() and alive.is_dir()
    assert clean_stale(tmp_path) == []


def test_sigterm_cleans_up_and_says_so(tmp_path, recipe_file):
    path = recipe_file(data={"name": "synthetic", "shape": [1, 8, 8], "train_size": 4000},
                       stages=[{"train": {"epochs": 500, "batch_size": 8}}])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "nnopt", "run", str(path), "--out",
                             str(tmp_path / "o"), "--quiet"], stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".o.partial-*")) and time.time() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.glob(".o.partial-*")), "the run never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err == "nnopt: terminated (SIGTERM); no partial output was kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


def test_a_fresh_process_writes_only_under_out(tmp_path, recipe_file):
    """validate and a run with an ONNX Runtime target, each in a new process with an empty home:
    no telemetry database, font cache or other file appears outside --out."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    path = recipe_file(targets=[{"name": "edge", "runtime": "onnxruntime", "warmup": 1,
                                 "repeats": 5, "min_seconds": 0.0}])
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME",
                                                             "ORT_DISABLE_TELEMETRY")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT / "tests"))
    for args in (["validate", str(path)], ["run", str(path), "--out", "o", "--quiet"]):
        proc = subprocess.run([sys.executable, "-m", "nnopt", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert tree(home) == set()
    assert {p.split("/")[0] for p in tree(work)} == {"o"}
