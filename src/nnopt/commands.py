"""The commands of ``nnopt``: run, validate, list, explain, report, sweep.

Each is registered in COMMANDS with the arguments it takes; ``nnopt.cli`` builds the parser from
the registry and handles errors, signals and exit codes (a plugin may add a command)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from nnopt.core.compute import resolve_device
from nnopt.core.errors import NnoptError, RecipeError, first_line, unknown_choice
from nnopt.core.fileio import StagedFolder
from nnopt.core.registry import COMMANDS, PLUGINS, REGISTRIES, Entry, find
from nnopt.guide import guide_lines
from nnopt.measure.target import Target
from nnopt.recipe import Recipe, check_inputs, load_recipe
from nnopt.report import load_report, write_comparison, write_report
from nnopt.report.compare import retime_reports
from nnopt.report.render import fmt, metric_columns
from nnopt.report.summary import deployed_text, ship_text, speed_text
from nnopt.runner import run_recipe
from nnopt.search.executors import get_executor
from nnopt.sweep import run_sweep
from nnopt.train.callbacks import PhaseBar
from nnopt.train.distributed import finish, init_from_env, rank
from nnopt.train.launch import rendezvous_options, run_torchrun, torchrun_command

EXIT_INPUT = 2


def table(header: list[str], rows: list[list[str]], numeric: bool = True) -> str:
    """Plain-text table; numeric tables right-align every column but the first."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(row: list[str]) -> str:
        cells = [str(c).rjust(w) if i and numeric else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def results_table(labels: list[str], metrics: list[dict[str, float]]) -> str:
    cols = metric_columns(metrics)
    return table(["stage"] + cols, [[lab] + [fmt(c, m.get(c)) for c in cols]
                                    for lab, m in zip(labels, metrics)])


def with_set(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe value, e.g. --set stages.train.epochs=1")
    sp.add_argument("--trust", action="append", default=[], metavar="MODULE:FUNCTION",
                    help="vouch for a model factory, so that model folders it built may be "
                    "loaded (a model folder itself never runs code)")


# -- run, validate -----------------------------------------------------------------------------

def _run_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("recipe")
    sp.add_argument("--out", help="output folder (default: runs/<recipe name>, or "
                    "runs/<recipe name>-2, -3, ... when that exists: an earlier run is never "
                    "replaced without --out)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.add_argument("--nproc", type=int, default=1, metavar="N",
                    help="train data-parallel on N processes of this machine (torch.distributed "
                    "through torchrun: gloo on CPU, NCCL on GPUs); batch sizes stay global, and "
                    "process 0 alone measures and writes")
    sp.add_argument("--nnodes", metavar="N", help="several machines: how many (torchrun's "
                    "--nnodes); with --rdzv-endpoint and --node-rank, the same command on each")
    sp.add_argument("--node-rank", metavar="K", help="several machines: this machine's rank")
    sp.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                    help="several machines: the rendezvous point (the first machine's address)")
    with_set(sp)


@COMMANDS.register("run", help="run a recipe and write its report", arguments=_run_args)
def cmd_run(args: argparse.Namespace) -> int:
    """Run a recipe stage by stage; write results.json, the report and the models."""
    resolved = load_recipe(args.recipe, args.set, trust=args.trust)
    out = Path(args.out) if args.out else fresh_folder(Path("runs"), resolved.recipe.name)
    if not 1 <= args.nproc <= 1024:
        raise NnoptError(f"--nproc {args.nproc}: give a number of processes from 1 to 1024")
    rendezvous = rendezvous_options(args.rdzv_endpoint, args.nnodes, args.node_rank)
    if (args.nproc > 1 or args.rdzv_endpoint) and "LOCAL_RANK" not in os.environ:
        StagedFolder(out, "run").check()  # bad input is one line here, before any process starts
        resolve_device(resolved.recipe.device)
        return launch(args, out, rendezvous)
    joined, ok = init_from_env(resolve_device(resolved.recipe.device)), False
    me = rank()
    try:
        report = run_recipe(resolved, out, progress=not args.quiet and me == 0)
        ok = True
    finally:
        if joined:
            finish(ok)
    if me != 0:
        return 0  # process 0 prints and writes
    print(results_table([s.name for s in report.stages], [s.metrics for s in report.stages]))
    for s in report.stages:
        for w in s.details.get("warnings", []):
            print(f"warning: {s.name}: {w}")
    _print_answer(report.summary)
    _print_tracking((report.run or {}).get("tracking"))
    print(f"\nreport: {out / 'report.html'}  (also report.md, results.json, figures/, models/)")
    return 0


def fresh_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or the first of ``name-2``, ``name-3``, ... that does not exist: a run
    without --out never replaces an earlier one."""
    out, n = parent / name, 1
    while out.exists() or out.is_symlink():
        n += 1
        out = parent / f"{name}-{n}"
    return out


def launch(args: argparse.Namespace, out: Path, rendezvous: list[str] | None) -> int:
    """The same run on ``--nproc`` processes through torchrun (torch.distributed.run): one
    machine standalone, or several through a ``rendezvous``; its exit code."""
    cmd = torchrun_command(args.recipe, out, args.nproc, args.set, args.trust, quiet=args.quiet,
                           rendezvous=rendezvous)
    code, _ = run_torchrun(cmd, args.nproc)
    if code:
        print(f"nnopt: error: the distributed run failed (exit {code}; the failing process's "
              "message is above); no partial output was kept", file=sys.stderr)
    return code


def _print_answer(summary: dict) -> None:
    """The recommendation per target and the conclusions, by the report's own rules (the same
    texts: no speed-up the report does not claim)."""
    recs = summary.get("recommendations") or []
    if recs:
        print("\nanswer:")
        for r in recs:
            if r["stage"] is None:
                print(f"  {r['target']}: no stage meets the constraints")
                continue
            print(f"  {r['target']}: ship '{r['stage']}' as {deployed_text(r['deployed'])}: "
                  f"{ship_text(r['deployed'])}; {r['latency_ms']:.3f} ms, speed-up vs the "
                  f"first stage {speed_text(r)}")
    for line in summary.get("conclusions") or []:
        print(f"  - {line}")


def _print_tracking(where: dict[str, str] | None) -> None:
    """Where a run was logged besides its folder (a store outside it only when the user named
    it)."""
    if not where:
        return
    if "mlflow" in where:
        print(f"tracking: MLflow run {where['mlflow_run']} in {where['mlflow']}")
    if "tensorboard" in where:
        print(f"tracking: TensorBoard event files in {where['tensorboard']}")


def _validate_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("recipe")
    with_set(sp)


@COMMANDS.register("validate", help="check a recipe without training or measuring: its "
                   "schema, the files it names, the model factory it imports",
                   arguments=_validate_args)
def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a recipe (every section against its registered config, every path it names,
    its model factory imported: a factory is code the user chose to run) without running it."""
    r = load_recipe(args.recipe, args.set, trust=args.trust)
    check_inputs(r)
    stages = ", ".join(f"{s.name} ({s.step})" for s in r.stages) or "none (measure only)"
    print(f"ok: {args.recipe}: data {r.data.name}, model {r.model.name}, "
          f"{len(r.recipe.targets)} target(s), stages: {stages}")
    return 0


# -- list, explain -----------------------------------------------------------------------------

def _listed() -> dict[str, Any]:
    return {k: r for k, r in REGISTRIES.items() if r.listed}


def _list_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("kind", nargs="?", help="one kind: " + ", ".join(_listed()))


@COMMANDS.register("list", help="list what is registered: steps, models, datasets, metrics, "
                   "tasks, ...", arguments=_list_args)
def cmd_list(args: argparse.Namespace) -> int:
    """List registered names by kind, with the plugins that added some."""
    listed = _listed()
    if args.kind and args.kind not in listed:
        raise RecipeError(unknown_choice("kind", args.kind, list(listed)))
    for kind in [args.kind] if args.kind else list(listed):
        print(f"{kind}:")
        for e in listed[kind].entries():
            print(f"  {e.name:<16} {e.summary}")
    if PLUGINS and not args.kind:
        print("plugins (entry-point group nnopt.plugins):")
        for p in PLUGINS:
            print(f"  {p}")
    return 0


def type_name(ann: Any) -> str:
    """A field's type as a reader wants it: Literal choices spelled out, None as 'none'."""
    origin, params = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Literal:
        return " | ".join(str(p) for p in params)
    if origin is typing.Annotated:
        return type_name(params[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join("none" if p is type(None) else type_name(p) for p in params)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(type_name(p) for p in params)}]"
    if ann is Any:
        return "any"
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def _default(f: Any) -> str:
    if f.default is not PydanticUndefined:
        value = f.default
    elif f.default_factory is not None:
        value = f.default_factory()
    else:
        return "(required)"
    if isinstance(value, BaseModel):  # a nested config: only what differs is news
        changed = value.model_dump(exclude_defaults=True)
        return f"{type(value).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
    return repr(value)


def fields_table(config: type[BaseModel], *, skip: tuple[str, ...] = ("name",)) -> str:
    """Every field of a config: type (a Literal's choices spelled out), default, description;
    ``skip``: fields not worth a row (a registered entry's own name)."""
    rows = [[name, type_name(f.annotation), _default(f), f.description or ""]
            for name, f in config.model_fields.items() if name not in skip]
    return table(["field", "type", "default", "description"], rows, numeric=False)


# names `explain` knows besides the registries: the parts of a recipe that are not looked up
SCHEMAS: dict[str, tuple[str, type[BaseModel]]] = {
    "recipe": ("The recipe's top level: name, seed, trust, data, model, targets, evaluate, "
               "stages, metric_options.", Recipe),
    "target": (Target.__doc__ or "", Target),
}


def _explain_entry(e: Entry) -> None:
    print(f"{e.kind} '{e.name}'" + (f"  (from {e.origin})" if not e.origin.startswith(
        "nnopt.") else "") + "\n")
    print(e.doc or "(no description)")
    if e.kind == "step":
        lines = guide_lines(e.name, e.meta)
        if lines:
            print("\n" + "\n".join(lines))
    if e.meta.get("produces"):
        print(f"\nproduces: {', '.join(e.meta['produces'])}")
    if e.kind == "record":  # a typed stage record: the schema of details[KEY] in results.json
        rows = [[f.name, str(f.type), "(required)" if f.default is dataclasses.MISSING
                 and f.default_factory is dataclasses.MISSING else repr(f.default)]
                for f in dataclasses.fields(e.fn())]
        print(f"\nin results.json: stages[i].details.{e.name}\n")
        print(table(["field", "type", "default"], rows, numeric=False))
    variants = getattr(e.config, "variants", None)
    if isinstance(variants, dict):  # one config per method: each takes only its own fields
        for config in variants.values():
            doc = " ".join((config.__doc__ or "").split())
            print(f"\n{doc}\n")
            print(fields_table(config))
    elif e.config is not None and set(e.config.model_fields) - {"name"}:
        print("\nfields:")
        print(fields_table(e.config))


def _explain_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("name", help="a registered name, 'recipe' or 'target'")


@COMMANDS.register("explain", help="describe a step, model, dataset, metric, task, the recipe's "
                   "top level or a target", arguments=_explain_args)
def cmd_explain(args: argparse.Namespace) -> int:
    """Describe what a name is and every field its config takes (types, choices, defaults)."""
    if args.name in SCHEMAS:
        doc, config = SCHEMAS[args.name]
        print(f"'{args.name}'\n\n{doc.strip()}\n\nfields:")
        print(fields_table(config, skip=()))
        return 0
    for i, e in enumerate(find(args.name, also=SCHEMAS)):
        if i:
            print()
        _explain_entry(e)
    return 0


# -- report, sweep -----------------------------------------------------------------------------

def _report_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("dirs", nargs="+", metavar="DIR")
    sp.add_argument("--out", required=True)
    sp.add_argument("--time", action="store_true", help="time every run's saved artifacts "
                    "again, side by side in one pass on this machine, so that speed-ups "
                    "between runs are paired (without it they come from separate runs and "
                    "are said to)")
    sp.add_argument("--trust", action="append", default=[], metavar="MODULE:FUNCTION",
                    help="with --time: vouch for a model factory whose model folders are loaded")


@COMMANDS.register("report", help="merge several run folders into one comparison report",
                   arguments=_report_args)
def cmd_report(args: argparse.Namespace) -> int:
    """Draw one report from run folders (one folder: its report again, every section)."""
    reports = [(str(d), load_report(d)) for d in args.dirs]
    if args.time and len(reports) < 2:
        raise NnoptError("--time re-times several runs side by side; give two or more run "
                         "folders (one run's own stages were already timed side by side)")
    with StagedFolder(args.out, "comparison") as staging:
        retimed = None
        if args.time:
            print(f"timing every stage of {len(reports)} runs again, side by side",
                  file=sys.stderr)
            with tempfile.TemporaryDirectory(prefix="nnopt-retime-") as work:
                retimed = retime_reports(reports, Path(work), tuple(args.trust), bar=PhaseBar)
        try:
            if len(reports) == 1:  # the run's own report again
                write_report(reports[0][1], staging)
            else:
                write_comparison(reports, staging, retimed)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            # the folders came from elsewhere: details nnopt would not write are an input error
            raise NnoptError(f"cannot draw a report from {', '.join(args.dirs)}: their details "
                             f"are not what nnopt writes ({type(exc).__name__}: "
                             f"{first_line(exc)[:80]}); rerun with --debug to see where") from exc
    labels = [f"{run}/{s.name}" for run, r in reports for s in r.stages]
    print(results_table(labels, [s.metrics for _, r in reports for s in r.stages]))
    print(f"\nreport: {Path(args.out) / 'report.html'}")
    return 0


def _sweep_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("recipe")
    sp.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...")
    sp.add_argument("--out", required=True)
    sp.add_argument("--executor", default="local", help="where variants run: local "
                    "(default, in order) or ray (a local Ray instance, or the cluster in "
                    "$RAY_ADDRESS)")
    sp.add_argument("--resume", action="store_true", help="skip variants that already finished")
    sp.add_argument("--nproc", type=int, default=1, metavar="N", help="run each variant "
                    "data-parallel on N processes (torchrun), as nnopt run --nproc does")
    sp.add_argument("--cpus-per-variant", type=float, default=None, metavar="C",
                    help="ray: CPUs each variant holds (default: --nproc)")
    sp.add_argument("--gpus-per-variant", type=float, default=0.0, metavar="G",
                    help="ray: GPUs each variant holds (a fraction shares one); a variant "
                    "with device auto then trains on its GPU")
    with_set(sp)


@COMMANDS.register("sweep", help="run a recipe over a grid of values, one combined report",
                   arguments=_sweep_args)
def cmd_sweep(args: argparse.Namespace) -> int:
    """Run every variant of a grid and write one combined report."""
    def show(res: Any) -> None:
        state = "skipped (done)" if res.skipped else ("ok" if res.ok else f"FAILED: {res.error}")
        print(f"variant {res.name}: {state}", file=sys.stderr)

    if not 1 <= args.nproc <= 1024:
        raise NnoptError(f"--nproc {args.nproc}: give a number of processes from 1 to 1024")
    options = {}
    if args.executor == "ray":
        options = {"cpus_per_job": args.cpus_per_variant or float(args.nproc),
                   "gpus_per_job": args.gpus_per_variant}
    elif args.cpus_per_variant is not None or args.gpus_per_variant:
        raise NnoptError("--cpus-per-variant and --gpus-per-variant are Ray's resources: add "
                         "--executor ray")
    results = run_sweep(args.recipe, args.grid, args.out, get_executor(args.executor, **options),
                        overrides=args.set, resume=args.resume, on_result=show,
                        trust=args.trust, nproc=args.nproc, on_tracking=_print_tracking)
    ok = [r for r in results if r.ok]
    if ok:
        print(results_table([r.name for r in ok], [r.metrics for r in ok]))
    print(f"\nreport: {Path(args.out) / 'report.html'}")
    failed = len(results) - len(ok)
    if failed:
        print(f"nnopt: error: {failed} of {len(results)} variants failed (see the report)",
              file=sys.stderr)
        return EXIT_INPUT
    return 0
