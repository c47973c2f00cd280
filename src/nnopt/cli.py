"""The ``nnopt`` command: the parser (built from the registered commands), signals, one-line
errors and exit codes. The commands themselves live in ``nnopt.commands``.

Errors caused by input print one line (``nnopt: error: ...``) and exit 2; ``--debug`` shows the
traceback of unexpected failures.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from typing import Any

from nnopt.core.errors import NnoptError
from nnopt.core.registry import COMMANDS
from nnopt.core.version import __version__

EXIT_INPUT, EXIT_INTERNAL = 2, 1
# failures of the machine or of what the user pointed nnopt at, not bugs of nnopt
USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                  errno.EFBIG, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.ELOOP}


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so that nothing partial is kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated(signum)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"nnopt: error: {_one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser, one subcommand per entry of COMMANDS (built-ins and plugins)."""
    p = Parser(prog="nnopt", description="Optimize neural networks and "
               "measure what each change did.")
    p.add_argument("--version", action="version", version=f"nnopt {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = p.add_subparsers(dest="command", required=True)
    for entry in COMMANDS.in_order():
        sp = sub.add_parser(entry.name, help=entry.meta.get("help", entry.summary))
        arguments = entry.meta.get("arguments")
        if arguments is not None:
            arguments(sp)
        sp.set_defaults(fn=entry.fn)
    return p


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """The ``nnopt`` command. This module imports only the core floor: the commands (and with
    them torch and matplotlib) load when the parser is built from the registry, after the
    process is set up (matplotlib's font cache goes to a folder of ours, not to $HOME)."""
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:  # no need to load anything
        print(f"nnopt {__version__}")
        return 0
    env_before = os.environ.get("MPLCONFIGDIR")
    mpl_dir = None
    if env_before is None:
        mpl_dir = tempfile.mkdtemp(prefix="nnopt-mpl-")
        os.environ["MPLCONFIGDIR"] = mpl_dir
    handlers = {}
    try:
        try:
            args = build_parser().parse_args(argv)
        except NnoptError as exc:  # a plugin that fails to load
            print(f"nnopt: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_INPUT
        except KeyboardInterrupt:  # Ctrl-C (or a plugin raising it) while loading
            print("nnopt: interrupted while loading; nothing was written", file=sys.stderr)
            return 130
        logging.basicConfig(level=logging.WARNING, format="nnopt: %(message)s")
        if hasattr(signal, "SIGTERM") and _main_thread():
            for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                if sig is not None:
                    handlers[sig] = signal.signal(sig, _terminate)
        return _dispatch(args)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        if mpl_dir is not None:
            os.environ.pop("MPLCONFIGDIR", None)
            shutil.rmtree(mpl_dir, ignore_errors=True)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.fn(args) or 0)
    except NnoptError as exc:
        if args.debug:
            traceback.print_exception(exc)
        print(f"nnopt: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except Terminated as exc:
        name = signal.Signals(exc.signum).name
        print(f"nnopt: terminated ({name}); no partial output was kept", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("nnopt: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except SystemExit as exc:  # code nnopt ran for the user (a plugin, a factory) ended it
        print(f"nnopt: error: a plugin or model factory called sys.exit({exc.code!r}); no "
              "partial output was kept", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # e.g. `nnopt explain prune | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno not in USER_OS_ERRORS:
            return _internal(args, exc)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"nnopt: error: {where}{exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
    except MemoryError:
        print("nnopt: error: out of memory; use a smaller model, data.limit or batch_size",
              file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001
        return _internal(args, exc)


def _internal(args: argparse.Namespace, exc: BaseException) -> int:
    if args.debug:
        traceback.print_exception(exc)
    last = _one_line(traceback.format_exception_only(type(exc), exc)[-1])
    print(f"nnopt: internal error: {last} (rerun with --debug for the traceback)",
          file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
