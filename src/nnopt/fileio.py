"""Atomic file writes: an interrupted run never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


class StagedFolder:
    """Build a folder beside ``target`` and move it into place only when the work succeeds.

    A failed or interrupted run leaves ``target`` as it was (absent, or the previous results).
    A non-empty ``target`` without ``marker`` is refused rather than replaced.
    """

    def __init__(self, target: str | os.PathLike, marker: str) -> None:
        self.target = Path(target)
        self.marker = marker
        self.path: Path | None = None

    def check(self) -> None:
        from nnopt.errors import NnoptError

        t = self.target
        if t.exists() and not t.is_dir():
            raise NnoptError(f"--out {t} exists and is not a folder")
        if t.is_dir() and any(t.iterdir()) and not (t / self.marker).exists():
            raise NnoptError(f"--out {t} is a non-empty folder without {self.marker}; "
                             "refusing to replace it (choose another --out)")

    def __enter__(self) -> Path:
        import shutil

        self.check()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-",
                                          dir=self.target.parent))
        self._rmtree = shutil.rmtree
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        assert self.path is not None
        if exc_type is not None:
            self._rmtree(self.path, ignore_errors=True)
            return
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self.path, self.target)
        if old is not None:
            self._rmtree(old, ignore_errors=True)
