"""Hostile and careless input: the CLI run in-process from a fresh working folder with a fresh
home folder, each call checked for the contract of bad input (exit 2, one line on stderr, no
traceback) and for files created outside --out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import tiny_raw
from nnopt.cli import main


def tree(folder: Path) -> set[str]:
    """Every path under ``folder``, relative (links not followed)."""
    out = set()
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out |= {(rel / n).as_posix() for n in dirs + files}
    return out


@dataclass
class Result:
    code: int
    out: str
    err: str

    def one_line_error(self, needle: str = "") -> None:
        """The contract of bad input: exit 2, one line naming the problem, no traceback."""
        assert self.code == 2, (self.code, self.err)
        assert self.err.startswith("nnopt: error: ") and self.err.count("\n") == 1, self.err
        assert "Traceback" not in self.err and "internal error" not in self.err
        assert needle in self.err, (needle, self.err)


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``cli(*argv, outside_ok=())`` runs the CLI in tmp_path/work with HOME=tmp_path/home and
    asserts that nothing appeared in either folder but the paths named in ``outside_ok``."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)

    def run(*argv: object, outside_ok: tuple[str, ...] = ()) -> Result:
        before_home, before_work = tree(home), tree(work)
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        assert tree(home) == before_home, tree(home) - before_home
        new = {p for p in tree(work) - before_work
               if not any(p == ok or p.startswith(ok + "/") for ok in outside_ok)}
        assert not new, new
        return Result(code, captured.out, captured.err)

    run.home, run.work = home, work
    return run


@pytest.fixture
def recipe_file(tmp_path):
    """Write a tiny recipe (changes applied) or raw text; return its path."""

    def write(text: str | None = None, name: str = "recipe.yaml", **changes: object) -> Path:
        path = tmp_path / name
        path.write_text(text if text is not None else yaml.safe_dump(tiny_raw(**changes),
                                                                     sort_keys=False))
        return path

    return write
