"""The ``nnopt`` command: run, validate, list, explain, report, sweep.

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
from pathlib import Path
from typing import Any

from nnopt.errors import NnoptError

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


def _table(header: list[str], rows: list[list[str]], numeric: bool = True) -> str:
    """Plain-text table; numeric tables right-align every column but the first."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(row: list[str]) -> str:
        cells = [str(c).rjust(w) if i and numeric else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _results_table(labels: list[str], metrics: list[dict[str, float]]) -> str:
    from nnopt.report.render import fmt, metric_columns

    cols = metric_columns(metrics)
    return _table(["stage"] + cols, [[lab] + [fmt(c, m.get(c)) for c in cols]
                                     for lab, m in zip(labels, metrics)])


def cmd_run(args: argparse.Namespace) -> int:
    from nnopt.recipe import load_recipe
    from nnopt.runner import run_recipe

    resolved = load_recipe(args.recipe, args.set, trust=args.trust)
    out = Path(args.out or Path("runs") / resolved.recipe.name)
    report = run_recipe(resolved, out, progress=not args.quiet)
    print(_results_table([s.name for s in report.stages], [s.metrics for s in report.stages]))
    for s in report.stages:
        for w in s.details.get("warnings", []):
            print(f"warning: {s.name}: {w}")
    print(f"\nreport: {out / 'report.html'}  (also report.md, results.json, figures/, models/)")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from nnopt.recipe import load_recipe

    r = load_recipe(args.recipe, args.set, trust=args.trust)
    stages = ", ".join(f"{s.name} ({s.step})" for s in r.stages) or "none (measure only)"
    print(f"ok: {args.recipe}: data {r.data.name}, model {r.model.name}, "
          f"{len(r.recipe.targets)} target(s), stages: {stages}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from nnopt.registry import REGISTRIES

    kinds = [args.kind.rstrip("s")] if args.kind else list(REGISTRIES)
    for kind in kinds:
        reg = REGISTRIES[kind]
        print(f"{kind}s:")
        for e in reg.entries():
            print(f"  {e.name:<16} {e.summary}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    from nnopt.registry import find

    e = find(args.name)
    print(f"{e.kind} '{e.name}'\n")
    print(e.doc or "(no description)")
    if e.meta.get("produces"):
        print(f"\nproduces: {', '.join(e.meta['produces'])}")
    if e.config is not None:
        rows = []
        for fname, f in e.config.model_fields.items():
            if fname == "name":
                continue
            if f.default is not PydanticUndefined:
                value = f.default
            elif f.default_factory is not None:
                value = f.default_factory()
            else:
                value = PydanticUndefined
            if value is PydanticUndefined:
                default = "(required)"
            elif isinstance(value, BaseModel):  # a nested config: only what differs is news
                changed = value.model_dump(exclude_defaults=True)
                default = f"{type(value).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
            else:
                default = repr(value)
            ann = getattr(f.annotation, "__name__", None) or str(f.annotation)
            rows.append([fname, ann.replace("typing.", ""), default, f.description or ""])
        if rows:
            print("\nfields:")
            print(_table(["field", "type", "default", "description"], rows, numeric=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nnopt.fileio import StagedFolder
    from nnopt.report import load_report, write_comparison

    reports = [(str(d), load_report(d)) for d in args.dirs]
    with StagedFolder(args.out, "comparison") as staging:
        try:
            write_comparison(reports, staging)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            # the folders came from elsewhere: details nnopt would not write are an input error
            raise NnoptError(f"cannot draw a report from {', '.join(args.dirs)}: their details "
                             f"are not what nnopt writes ({type(exc).__name__}: "
                             f"{_one_line(exc)[:80]}); rerun with --debug to see where") from exc
    labels = [f"{run}/{s.name}" for run, r in reports for s in r.stages]
    print(_results_table(labels, [s.metrics for _, r in reports for s in r.stages]))
    print(f"\nreport: {Path(args.out) / 'report.html'}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from nnopt.search.executors import get_executor
    from nnopt.search.sweep import run_sweep

    def show(res: Any) -> None:
        state = "skipped (done)" if res.skipped else ("ok" if res.ok else f"FAILED: {res.error}")
        print(f"variant {res.name}: {state}", file=sys.stderr)

    results = run_sweep(args.recipe, args.grid, args.out, get_executor(args.executor),
                        overrides=args.set, resume=args.resume, on_result=show,
                        trust=args.trust)
    ok = [r for r in results if r.ok]
    if ok:
        print(_results_table([r.name for r in ok], [r.metrics for r in ok]))
    print(f"\nreport: {Path(args.out) / 'report.html'}")
    failed = len(results) - len(ok)
    if failed:
        print(f"nnopt: error: {failed} of {len(results)} variants failed (see the report)",
              file=sys.stderr)
        return EXIT_INPUT
    return 0


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"nnopt: error: {_one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from nnopt import __version__

    p = Parser(prog="nnopt", description="Optimize neural networks and "
               "measure what each change did.")
    p.add_argument("--version", action="version", version=f"nnopt {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = p.add_subparsers(dest="command", required=True)

    def with_set(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set stages.train.epochs=1")
        sp.add_argument("--trust", action="append", default=[], metavar="MODULE:FUNCTION",
                        help="vouch for a model factory, so that model folders it built may be "
                        "loaded (a model folder itself never runs code)")

    sp = sub.add_parser("run", help="run a recipe and write its report")
    sp.add_argument("recipe")
    sp.add_argument("--out", help="output folder (default: runs/<recipe name>)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    with_set(sp)
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("validate", help="check a recipe without running anything")
    sp.add_argument("recipe")
    with_set(sp)
    sp.set_defaults(fn=cmd_validate)

    sp = sub.add_parser("list", help="list registered steps, models, datasets and metrics")
    sp.add_argument("kind", nargs="?", choices=["steps", "models", "datasets", "metrics"])
    sp.set_defaults(fn=cmd_list)

    sp = sub.add_parser("explain", help="describe a step, model, dataset or metric")
    sp.add_argument("name")
    sp.set_defaults(fn=cmd_explain)

    sp = sub.add_parser("report", help="merge several run folders into one comparison report")
    sp.add_argument("dirs", nargs="+", metavar="DIR")
    sp.add_argument("--out", required=True)
    sp.set_defaults(fn=cmd_report)

    sp = sub.add_parser("sweep", help="run a recipe over a grid of values, one combined report")
    sp.add_argument("recipe")
    sp.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...")
    sp.add_argument("--out", required=True)
    sp.add_argument("--executor", default="local", help="where variants run: local "
                    "(default, in order) or ray (a local Ray instance, or the cluster in "
                    "$RAY_ADDRESS)")
    sp.add_argument("--resume", action="store_true", help="skip variants that already finished")
    with_set(sp)
    sp.set_defaults(fn=cmd_sweep)
    return p


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="nnopt: %(message)s")
    handlers = {}
    if hasattr(signal, "SIGTERM") and _main_thread():
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                handlers[sig] = signal.signal(sig, _terminate)
    env_before = os.environ.get("MPLCONFIGDIR")
    mpl_dir = None
    if env_before is None:  # matplotlib's font cache goes to a folder of ours, not to $HOME
        mpl_dir = tempfile.mkdtemp(prefix="nnopt-mpl-")
        os.environ["MPLCONFIGDIR"] = mpl_dir
    try:
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
