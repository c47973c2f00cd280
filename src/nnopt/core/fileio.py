"""Safe output: atomic writes, folders staged beside their target, and a marker that lists what
nnopt wrote, so that nnopt replaces or deletes only what it created.

Files and folders get the permissions the user's umask allows (as ``open`` and ``mkdir`` would
give them), not the private ones of ``tempfile``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nnopt.core.errors import NnoptError
from nnopt.core.version import __version__

MARKER = ".nnopt.json"       # in every folder nnopt writes: its kind and every path it wrote
PARTIAL = ".nnopt-partial"   # in a folder being built: the host and process building it


def umask() -> int:
    """The process's umask (read by setting it and setting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _public(path: str | os.PathLike, folder: bool) -> None:
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
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


def inflate(data: bytes, limit: int, *, gzip: bool = False) -> bytes:
    """``data`` inflated by zlib (or gzip), refused with ValueError past ``limit`` bytes (a
    small file may inflate to gigabytes); corrupt data raises zlib.error."""
    stream = zlib.decompressobj(wbits=31 if gzip else 15)
    out = stream.decompress(data, limit)
    if stream.unconsumed_tail:
        raise ValueError(f"inflates to more than {limit:,} bytes")
    return out


def regular_file(path: str | os.PathLike, what: str = "file", error: type[NnoptError] = NnoptError,
                 root: str | os.PathLike | None = None) -> Path:
    """The real path of ``path`` when it is a regular file (inside ``root``, when given: a link
    may point elsewhere in it, never out of it); ``error`` otherwise. A FIFO, device or socket
    is refused before anything opens it (opening a FIFO blocks until someone writes to it)."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    if root is not None:
        base = Path(os.path.realpath(root))
        if real != base and base not in real.parents:
            raise error(f"{path} points outside {root}; a {what} must lie inside it")
    try:
        st = os.stat(real)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
        raise error(f"{path} is {kind}, not a regular file; a {what} must be a regular file")
    return real


def read_inside(path: Path, root: Path, limit: int, what: str = "file",
                error: type[NnoptError] = NnoptError) -> bytes:
    """The bytes of ``path``, a regular file that resolves inside ``root`` (a link may point
    elsewhere in it, not out of it) and holds at most ``limit`` bytes; ``error`` otherwise."""
    real = regular_file(path, what, error, root)
    try:
        size = os.stat(real).st_size
        if size > limit:
            raise error(f"{path} holds {size:,} bytes, more than a {what} may ({limit:,})")
        with open(real, "rb") as f:
            return f.read(limit)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None


# -- ownership ---------------------------------------------------------------------------------

def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (folders with a trailing '/'), relative, sorted; links are
    listed, never followed; folders being built or removed by nnopt (``.NAME.partial-*``,
    ``.NAME.old-*``) are left out."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _stale_name(d)]
        rel = Path(root).relative_to(folder)
        out += [(rel / d).as_posix() + "/" for d in dirs]
        out += [(rel / f).as_posix() for f in files]
    return sorted(p.removeprefix("./") for p in out)


def _identity(folder: Path) -> dict[str, int]:
    st = os.stat(folder)
    return {"dev": st.st_dev, "ino": st.st_ino}


def _stamp(path: Path) -> list[int] | None:
    """A file's size and modification time (None for a folder): what ties it to a marker."""
    st = os.lstat(path)
    return None if stat.S_ISDIR(st.st_mode) else [st.st_size, st.st_mtime_ns]


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker nnopt wrote for ``folder`` itself (None when absent, unreadable, or written
    for another folder: a marker copied in from elsewhere vouches for nothing here)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        ok = isinstance(marker, dict) and isinstance(marker.get("files"), dict) \
            and marker.get("folder") == _identity(folder)
    except (OSError, ValueError):
        return None
    return marker if ok else None


def write_marker(folder: Path, kind: str) -> None:
    """Record ``folder``'s identity (device and inode: a rename keeps them, a copy does not),
    its kind, and every path in it with the size and modification time nnopt left it with."""
    files = {p: _stamp(folder / p) for p in listing(folder) if p not in (MARKER, PARTIAL)}
    atomic_write_json(folder / MARKER, {"nnopt": __version__, "kind": kind,
                                        "folder": _identity(folder), "files": files})


def check_owned(folder: Path, kind: str, flag: str = "--out") -> None:
    """Raise unless ``folder`` is absent, empty, or an nnopt folder of ``kind`` holding only
    what its marker lists, each file as nnopt left it (so that replacing it loses nothing of
    the user's)."""
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise NnoptError(f"{flag} {folder} exists and is not a folder; choose another {flag}")
    clean_stale(folder)
    try:
        present = listing(folder)
    except OSError as exc:
        raise NnoptError(f"{flag} {folder} cannot be read: {exc.strerror}") from None
    if not present:
        return
    marker = read_marker(folder)
    if marker is None:
        why = ("its .nnopt.json was not written for this folder (copied from elsewhere, or by "
               "an older nnopt)" if (folder / MARKER).exists() else f"no {MARKER}")
        raise NnoptError(f"{flag} {folder} is a non-empty folder that nnopt did not write "
                         f"({why}); refusing to replace it: choose another {flag}")
    if marker.get("kind") != kind:
        raise NnoptError(f"{flag} {folder} holds an nnopt {marker.get('kind')} folder, not a "
                         f"{kind}; refusing to replace it: choose another {flag}")
    listed = marker["files"]
    foreign = [p for p in present if p != MARKER and (p not in listed or (
        _stamp(folder / p) != listed[p]))]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise NnoptError(f"{flag} {folder} holds files nnopt did not write or that changed "
                         f"since ({shown}); refusing to replace it: move them or choose "
                         f"another {flag}")


# -- stale folders of dead processes -----------------------------------------------------------

_STALE = re.compile(r"^\..+\.(partial|old)-(\d+)-[^/]*$")


def _stale_name(name: str) -> bool:
    return bool(_STALE.match(name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale(parent: Path) -> list[Path]:
    """Remove the staging folders (``.NAME.partial-PID-*``) and replaced folders
    (``.NAME.old-PID-*``) that nnopt processes of this host left in ``parent`` when they were
    killed; a folder is removed only when its marker says nnopt made it here and its process
    is gone."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    host = socket.gethostname()
    for p in entries:
        m = _STALE.match(p.name)
        if not m or p.is_symlink() or not p.is_dir() or _alive(int(m.group(2))):
            continue
        if m.group(1) == "partial":
            try:
                made = json.loads((p / PARTIAL).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(made, dict) or made.get("host") != host \
                    or made.get("pid") != int(m.group(2)):
                continue
        elif read_marker(p) is None:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


# -- staged folders ----------------------------------------------------------------------------

def writable_parent(target: Path, flag: str = "--out") -> None:
    """Raise unless ``target`` can be created: its nearest existing ancestor is a folder this
    process may write into."""
    up = target.parent
    while not up.exists():
        if up.is_symlink():
            raise NnoptError(f"{flag} {target}: {up} is a broken link")
        up = up.parent
    if not up.is_dir():
        raise NnoptError(f"{flag} {target}: {up} is a file, not a folder")
    if not os.access(up, os.W_OK | os.X_OK):
        raise NnoptError(f"{flag} {target}: cannot write into {up} (permission denied)")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while the block runs (a cleanup or a swap of folders
    that a signal must not cut in half); they are delivered when it ends."""
    held = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    old = mask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


class StagedFolder:
    """Build a folder beside ``target`` and move it into place only when the work succeeds.

    A failed or interrupted run leaves ``target`` as it was (absent, or the previous results).
    ``target`` is replaced only when it is an nnopt folder of the same ``kind`` holding nothing
    but what its marker lists; the finished folder gets its own marker.
    """

    def __init__(self, target: str | os.PathLike, kind: str, flag: str = "--out") -> None:
        self.given = Path(target)
        self.target = Path(os.path.realpath(Path(target).expanduser()))  # a link: its folder
        self.kind = kind
        self.flag = flag
        self.path: Path | None = None
        self.fresh: list[Path] = []  # parent folders made for it

    def check(self) -> None:
        """Every reason the target cannot be written, raised before any work starts."""
        t, flag = self.target, self.flag
        cwd = Path(os.path.realpath(Path.cwd()))
        if t == cwd or t in cwd.parents:
            raise NnoptError(f"{flag} {self.given} is the current folder or holds it; replacing "
                             f"it would pull the folder from under you: choose another {flag}")
        if t.parent == t:
            raise NnoptError(f"{flag} {self.given} is the root folder; choose another {flag}")
        check_owned(t, self.kind, flag)
        writable_parent(t, flag)

    def __enter__(self) -> Path:
        self.check()
        parent = self.target.parent
        clean_stale(parent)
        try:
            self.fresh = [p for p in reversed([parent, *parent.parents]) if not p.exists()]
            parent.mkdir(parents=True, exist_ok=True)
            for p in self.fresh:
                _public(p, True)
            self.path = Path(tempfile.mkdtemp(
                prefix=f".{self.target.name}.partial-{os.getpid()}-", dir=parent))
            _public(self.path, True)
            atomic_write_json(self.path / PARTIAL, {"host": socket.gethostname(),
                                                    "pid": os.getpid()})
        except OSError as exc:
            if self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
            raise NnoptError(f"{self.flag} {self.given}: cannot write there: "
                             f"{exc.strerror or exc}") from None
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        assert self.path is not None
        with signals_held():
            if exc_type is not None:
                shutil.rmtree(self.path, ignore_errors=True)
                self._drop_fresh()
                return
            try:
                write_marker(self.path, self.kind)
                (self.path / PARTIAL).unlink(missing_ok=True)
                self._swap()
            except BaseException:
                shutil.rmtree(self.path, ignore_errors=True)
                self._drop_fresh()
                raise

    def _drop_fresh(self) -> None:
        """The parent folders this run made, removed again when it failed (those still
        empty: a folder something else wrote into meanwhile stays)."""
        for p in reversed(self.fresh):
            try:
                p.rmdir()
            except OSError:
                break

    def _swap(self) -> None:
        """Move the finished folder into place; the one it replaces is removed afterwards."""
        assert self.path is not None
        t = self.target
        check_owned(t, self.kind, self.flag)  # a file the user put there meanwhile is kept
        old = None
        if t.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{t.name}.old-{os.getpid()}-", dir=t.parent))
            os.replace(t, old)  # an empty folder may be replaced by a rename
        os.replace(self.path, t)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
