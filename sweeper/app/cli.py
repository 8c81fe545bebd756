"""The ``sweeper`` command: a thin argparse layer over the Python API (:mod:`sweeper.api`) and :mod:`sweeper.spec`.

Each subcommand is one function registered with :func:`command`, taking the parsed arguments and
returning the exit status. A new one (``run``, ``resume``, ``status``, ``train``) is added as::

    @command("status", "show the progress of a sweep", SWEEP_FILE, arg("--watch", action="store_true"))
    def _status(args) -> int:
        ...

Exit status: see :mod:`sweeper.app.errors` (also printed by ``--help``). :func:`main` turns every
exception into one line on stderr and its exit code, never a traceback (unless ``SWEEPER_DEBUG=1``).
Names and paths given on the command line are checked before anything is read or written
(:mod:`sweeper.app.arguments`).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from cnn.dataset import DataError
from sweeper.app.errors import (EXIT_CODES_HELP, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK,
                                EXIT_TERMINATED, EXIT_UNAVAILABLE, classify, debug_traceback, first_line, is_cluster_error)
from sweeper.app.arguments import (BadArgument, port_number, positive_int, repeat_index, sweep_name_or_file,  # noqa: F401
                                   sweep_name, writable_file, writable_folder)
from sweeper.app.submit import CLUSTER_ARGS
from sweeper.spec.config import load_sweep
from sweeper.plan.points import make_plan
from sweeper.spec.names import sweep_name_problem
from sweeper.spec.yamlsource import SweepFileError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: tuple[tuple[tuple, dict], ...]


COMMANDS: dict[str, Command] = {}


def arg(*names, **options) -> tuple[tuple, dict]:
    """An ``add_argument`` call, kept for when the subcommand's parser is built."""
    return names, options


SWEEP_FILE = arg("file", metavar="FILE", help="sweep file (YAML)")


def command(name: str, help: str, *arguments: tuple[tuple, dict]):
    """Register the decorated function as subcommand ``name`` with the given arguments."""
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, run, arguments)
        return run
    return register


TRACKING = arg("--tracking-uri", metavar="URI", default=None,
               help="MLflow tracking URI (default: the sweep file's, MLFLOW_TRACKING_URI, or ./mlflow.db)")

SET = arg("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
          help="override a setting of the file, dotted as in the file (repeatable), e.g. --set train.epochs=3 "
               "--set data.source=npz")


@command("validate", "check a sweep file (and its data, when there) and count its points and trials",
         SWEEP_FILE, SET)
def _validate(args: argparse.Namespace) -> int:
    from sweeper.plan.data import data_facts

    config = load_sweep(args.file, args.overrides)
    facts, _ = data_facts(config)
    plan = make_plan(config, data=facts)
    if plan.feed is not None and plan.feed.can_draw():
        left = plan.feed.left
        print(f"{args.file}: OK ({config.method} search: up to {left} points, {left * config.repeats} trials, "
              f"drawn as trials end)")
        print(f"  data: {facts.describe(config.data.source)}")
        return EXIT_OK
    if not plan.points:
        first = (f"; first: {plan.infeasible[0].point.name}: {plan.infeasible[0].reason}"
                 if plan.infeasible else "")
        print(f"{args.file}: nothing to train: every point is excluded ({len(plan.excluded)}) or infeasible "
              f"({len(plan.infeasible)}){first}; see `sweeper plan {args.file}`", file=sys.stderr)
        return EXIT_INVALID
    print(f"{args.file}: OK ({len(plan.points)} points, {len(plan.trials)} trials)")
    print(f"  data: {facts.describe(config.data.source)}")
    skipped = len(plan.excluded) + len(plan.infeasible) + len(plan.merged)
    if skipped:
        print(f"  {len(plan.excluded)} excluded, {len(plan.infeasible)} infeasible and {len(plan.merged)} merged "
              f"(same network as another) points left out (see `sweeper plan {args.file}`)")
    return EXIT_OK


@command("plan", "show the points, trials and estimated cost of a sweep", SWEEP_FILE,
         arg("--cpus", type=positive_int, default=None, metavar="N",
             help="CPUs available to the sweep, for the wall-time estimate (default: this machine's)"), TRACKING, SET)
def _plan(args: argparse.Namespace) -> int:
    from sweeper import api

    plan, failed_before = api.plan(args.file, overrides=args.overrides, tracking_uri=args.tracking_uri,
                                   cpus=args.cpus)
    print(plan.summary())
    from sweeper.app.service import too_big_here

    too_big = too_big_here(plan, None)
    if too_big:  # a fact of this machine, not of the plan: `run` here leaves these out
        print(f"on this machine's workers, {len(too_big)} trial(s) would not fit and `run` leaves them out; "
              f"first: {next(iter(too_big.values()))}")
    if failed_before:
        print(f"failed before, not trained again without --retry-failed ({len(failed_before)}):")
        for (point, repeat), (run_id, reason) in sorted(failed_before.items()):
            print(f"  {point} #{repeat + 1} (run {run_id}): {reason}")
    return EXIT_OK


ADDRESS = arg("--address", metavar="ADDR", default=None,
              help="Ray cluster to join, e.g. 10.0.0.5:6379 (default: RAY_ADDRESS, else a local Ray)")
QUIET = arg("-q", "--quiet", action="store_true", help="no live progress line; failures and the summary only")
RETRY = arg("--retry-failed", action="store_true",
            help="train again the points whose trials failed with an error of their own before")
VERBOSE = arg("-v", "--verbose", action="store_true",
              help="also show what Ray and MLflow say (their notices and INFO lines)")
STALE = arg("--stale-after", type=float, default=None, metavar="SECONDS", dest="stale_after",
            help="a driver silent this long is lost, and its running trials are stale "
                 "(default: SWEEPER_STALE_AFTER, else 120)")


def _sigterm_as_interrupt() -> None:
    """SIGTERM stops a sweep as Ctrl-C does: running trials KILLED, the parent closed, exit 143."""
    from sweeper.trials.session import handle_sigterm, on_sigterm

    handle_sigterm(on_sigterm)


def _finish(done, progress) -> int:
    """The summary block of a run or resume: what happened, how long, where to look; the message of
    an exit other than 0 on stderr."""
    from sweeper.app.service import summary_lines

    result = done.result
    if result.experiment_id is not None:  # something was trained (or tried): the summary block
        for line in summary_lines(result, progress.elapsed(), done.tracking_uri):
            progress.event(line)
    if result.exit_code != EXIT_OK:
        print(result.message, file=sys.stderr)
    return result.exit_code


@command("run", "train every pending trial of a sweep on Ray, logging to MLflow", SWEEP_FILE, ADDRESS, TRACKING,
         QUIET, RETRY, SET, STALE, VERBOSE, *CLUSTER_ARGS)
def _run(args: argparse.Namespace) -> int:
    from sweeper import api
    from sweeper.app.progress import Progress

    if args.cluster:  # the driver runs inside the cluster, submitted as a Ray job
        from sweeper.app.submit import submit_command

        return submit_command(args)
    _sigterm_as_interrupt()
    progress = Progress(quiet=args.quiet)
    done = api.run(args.file, overrides=args.overrides, tracking_uri=args.tracking_uri, address=args.address,
                   retry_failed=args.retry_failed, stale_after=args.stale_after, observer=progress)
    return _finish(done, progress)


@command("resume", "finish an interrupted sweep, by name or by file", arg("sweep", metavar="NAME_OR_FILE"),
         ADDRESS, TRACKING, QUIET, RETRY, STALE, VERBOSE)
def _resume(args: argparse.Namespace) -> int:
    from sweeper import api
    from sweeper.app.progress import Progress

    try:
        is_file = Path(args.sweep).is_file()
    except (OSError, ValueError):  # a name too long for a path, a NUL
        is_file = False
    if not is_file:  # then a name: the file is read back from the store
        problem = sweep_name_problem(args.sweep)
        if problem is not None:
            raise BadArgument(f"{args.sweep!r} is neither a sweep file nor a valid sweep name ({problem})")
    _sigterm_as_interrupt()
    progress = Progress(quiet=args.quiet)
    done = api.resume(args.sweep, tracking_uri=args.tracking_uri, address=args.address,
                      retry_failed=args.retry_failed, stale_after=args.stale_after, observer=progress)
    return _finish(done, progress)


@command("status", "counts per state, stale runs, failures with reasons and the best points of a sweep",
         arg("name", metavar="NAME_OR_FILE"), TRACKING, arg("--top", type=positive_int, default=5, help="best points to list"),
         STALE)
def _status(args: argparse.Namespace) -> int:
    from sweeper import api
    from sweeper.app.status import status_text

    args.name, args.tracking_uri = sweep_name_or_file(args.name, args.tracking_uri)
    print(status_text(api.status(args.name, args.tracking_uri, args.top, args.stale_after)))
    return EXIT_OK


@command("train", "train one point in this process, without Ray or MLflow, for debugging", SWEEP_FILE,
         arg("--set", action="append", default=[], metavar="FIELD=VALUE", dest="assignments",
             help="a model or train field (repeatable), e.g. --set kernel_size=5 --set pooling=l2; a dotted "
                  "key sets a setting of the file, e.g. --set data.train_size=600"),
         arg("--repeat", type=repeat_index, default=0, help="which repeat's seed to use (default 0)"),
         arg("--save", metavar="PATH", default=None, help="save the trained weights to this .npz file"))
def _train(args: argparse.Namespace) -> int:
    from sweeper.app.train import train_point

    if args.save:
        writable_file(Path(args.save), "--save")
    return train_point(args.file, args.assignments, args.repeat, args.save)


@command("report", "write a report of a sweep (which knobs matter, with intervals) and attach it to MLflow",
         arg("name", metavar="NAME_OR_FILE"), TRACKING,
         arg("--out", metavar="DIR", default=None, help="folder to write into (default: reports/NAME)"),
         arg("--against", metavar="OTHER", default=None, help="compare with sweep OTHER (matched points side by side)"),
         arg("--attach", action=argparse.BooleanOptionalAction, default=True,
             help="log it to the sweep's latest parent run, with a leaderboard as its description (default; "
                  "--no-attach: files only)"))
def _report(args: argparse.Namespace) -> int:
    from sweeper.app.report import report_command

    args.name, args.tracking_uri = sweep_name_or_file(args.name, args.tracking_uri)
    if args.against:
        args.against, _ = sweep_name_or_file(args.against, None)
    writable_folder(Path(args.out) if args.out else Path("reports") / args.name, "--out" if args.out else "report folder")
    return report_command(args.name, args.tracking_uri, args.out, args.attach, args.against)


@command("ui", "start MLflow's UI on the sweep's store (127.0.0.1)", arg("name", metavar="NAME", nargs="?"),
         TRACKING, arg("--port", type=port_number, default=5000, help="port to listen on (default 5000)"), VERBOSE)
def _ui(args: argparse.Namespace) -> int:
    from sweeper.app.report import ui_command

    if args.name:
        sweep_name(args.name)
    return ui_command(args.name, args.tracking_uri, args.port, args.verbose)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweeper", description="Hyperparameter sweeps of NumPy CNNs.",
                                     epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, epilog=EXIT_CODES_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        for names, options in cmd.arguments:
            p.add_argument(*names, **options)
        p.set_defaults(run=cmd.run)
    return parser


def quiet_libraries(verbose: bool) -> None:
    """The console carries the project's own lines: Ray's notices (token authentication) and MLflow's
    INFO lines (creating a store's tables) are shown with ``-v`` only. Warnings and errors of theirs
    that reach us become our own one-line messages anyway."""
    import logging

    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when MLflow configures its logger
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # its bars on reading an artifact
    for name, level in (("mlflow", logging.WARNING), ("alembic", logging.WARNING), ("ray", logging.ERROR)):
        logging.getLogger(name).setLevel(level)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage or the help
        return exc.code if isinstance(exc.code, int) else EXIT_INVALID
    quiet_libraries(getattr(args, "verbose", False))
    try:
        return args.run(args)
    except KeyboardInterrupt as exc:  # outside a running sweep (which handles it itself)
        from sweeper.trials.session import TERMINATED, Terminated

        if isinstance(exc, Terminated) or TERMINATED.is_set():
            print(f"sweeper {args.command}: terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        print(f"sweeper {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SweepFileError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except DataError as exc:  # the files a sweep trains on: the message names the file and the fault
        print(f"sweeper {args.command}: bad data: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (BadArgument, LookupError) as exc:  # LookupError: a sweep name not found in the store
        print(f"sweeper {args.command}: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # noqa: BLE001 -- every exception ends in one line and an exit code
        return _report_exception(args, exc)


def _store_uri(args: argparse.Namespace) -> str:
    """The tracking store the command used: --tracking-uri, the sweep file's, or MLflow's default."""
    uri = getattr(args, "tracking_uri", None)
    if not uri and getattr(args, "file", None):
        try:
            uri = load_sweep(args.file).mlflow.tracking_uri
        except Exception:  # noqa: BLE001 -- only for naming the store in a message
            uri = None
    try:
        from ledger.tracking import resolve_tracking_uri

        from ledger.tracking import shown_uri

        return shown_uri(resolve_tracking_uri(uri))
    except Exception:  # noqa: BLE001
        return uri or os.environ.get("MLFLOW_TRACKING_URI") or "the default MLflow store"


def _report_exception(args: argparse.Namespace, exc: Exception) -> int:
    code = classify(exc)
    prefix = f"sweeper {args.command}"
    if code == EXIT_INVALID:
        message = f"{prefix}: {first_line(exc)}"
    elif code == EXIT_UNAVAILABLE and is_cluster_error(exc):
        address = getattr(args, "address", None) or os.environ.get("RAY_ADDRESS") or "local Ray"
        message = f"{prefix}: the Ray cluster ({address}) could not be used: {first_line(exc)}"
    elif code == EXIT_UNAVAILABLE:
        message = f"{prefix}: the tracking store {_store_uri(args)} could not be used: {first_line(exc)}"
    else:
        code = EXIT_INTERNAL
        message = (f"{prefix}: internal error: {type(exc).__name__}: {first_line(exc)} "
                   f"(a bug; SWEEPER_DEBUG=1 prints the traceback)")
    trace = debug_traceback(exc)
    if trace:
        print(trace, file=sys.stderr)
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
