"""The ``sweeper`` command: a thin argparse layer over :mod:`sweeper.config` and :mod:`sweeper.plan`.

Each subcommand is one function registered with :func:`command`, taking the parsed arguments and
returning the exit status. A new one (``run``, ``resume``, ``status``, ``train``) is added as::

    @command("status", "show the progress of a sweep", SWEEP_FILE, arg("--watch", action="store_true"))
    def _status(args) -> int:
        ...

Exit status: 0 success, 2 an invalid sweep file or command line (printed to stderr, one line
per problem, never a traceback).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from sweeper.spec.config import load_sweep
from sweeper.plan.points import make_plan
from sweeper.spec.yamlsource import SweepFileError

EXIT_OK, EXIT_INVALID = 0, 2


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


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def command(name: str, help: str, *arguments: tuple[tuple, dict]):
    """Register the decorated function as subcommand ``name`` with the given arguments."""
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, run, arguments)
        return run
    return register


TRACKING = arg("--tracking-uri", metavar="URI", default=None,
               help="MLflow tracking URI (default: the sweep file's, MLFLOW_TRACKING_URI, or ./mlflow.db)")

@command("validate", "check a sweep file and count its points and trials", SWEEP_FILE)
def _validate(args: argparse.Namespace) -> int:
    plan = make_plan(load_sweep(args.file))
    if not plan.points:
        print(f"{args.file}: nothing to train: every point is excluded ({len(plan.excluded)}) or infeasible "
              f"({len(plan.infeasible)}); see `sweeper plan {args.file}`", file=sys.stderr)
        return EXIT_INVALID
    print(f"{args.file}: OK ({len(plan.points)} points, {len(plan.trials)} trials)")
    skipped = len(plan.excluded) + len(plan.infeasible)
    if skipped:
        print(f"  {len(plan.excluded)} excluded and {len(plan.infeasible)} infeasible points left out "
              f"(see `sweeper plan {args.file}`)")
    return EXIT_OK


@command("plan", "show the points, trials and estimated cost of a sweep", SWEEP_FILE,
         arg("--cpus", type=positive_int, default=None, metavar="N",
             help="CPUs available to the sweep, for the wall-time estimate (default: this machine's)"), TRACKING)
def _plan(args: argparse.Namespace) -> int:
    from sweeper.app.service import plan_sweep

    plan, failed_before = plan_sweep(args.file, args.tracking_uri, args.cpus)
    print(plan.summary())
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


def _finish(result) -> int:
    from sweeper.run.executor import EXIT_OK

    if result.exit_code != EXIT_OK:
        print(result.message, file=sys.stderr)
    return result.exit_code


@command("run", "train every pending trial of a sweep on Ray, logging to MLflow", SWEEP_FILE, ADDRESS, TRACKING,
         QUIET, RETRY)
def _run(args: argparse.Namespace) -> int:
    from sweeper.app.service import run_sweep

    return _finish(run_sweep(args.file, address=args.address, quiet=args.quiet, retry_failed=args.retry_failed,
                             tracking_uri=args.tracking_uri))


@command("resume", "finish an interrupted sweep, by name or by file", arg("sweep", metavar="NAME_OR_FILE"),
         ADDRESS, TRACKING, QUIET, RETRY)
def _resume(args: argparse.Namespace) -> int:
    from sweeper.app.service import resume_sweep

    return _finish(resume_sweep(args.sweep, address=args.address, quiet=args.quiet,
                                retry_failed=args.retry_failed, tracking_uri=args.tracking_uri))


@command("status", "counts per state, failures with reasons and the best points of a sweep",
         arg("name", metavar="NAME"), TRACKING, arg("--top", type=positive_int, default=5, help="best points to list"))
def _status(args: argparse.Namespace) -> int:
    from sweeper.app.service import status_report

    print(status_report(args.name, args.tracking_uri, args.top))
    return EXIT_OK


@command("train", "train one point in this process, without Ray or MLflow, for debugging", SWEEP_FILE,
         arg("--set", action="append", default=[], metavar="FIELD=VALUE", dest="assignments",
             help="a model or train field (repeatable), e.g. --set kernel_size=5 --set pooling=l2"),
         arg("--repeat", type=int, default=0, help="which repeat's seed to use (default 0)"),
         arg("--save", metavar="PATH", default=None, help="save the trained weights to this .npz file"))
def _train(args: argparse.Namespace) -> int:
    from sweeper.app.train import train_point

    return train_point(args.file, args.assignments, args.repeat, args.save)


@command("report", "write a comparison report of a sweep (Markdown, HTML, plots)", arg("name", metavar="NAME"),
         TRACKING, arg("--out", metavar="DIR", default=None, help="folder to write into (default: reports/NAME)"),
         arg("--attach", action="store_true", help="also log it to the sweep's latest parent run, under report/"))
def _report(args: argparse.Namespace) -> int:
    from dashboards.cli import report_command

    return report_command(args.name, args.tracking_uri, args.out, args.attach)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweeper", description="Hyperparameter sweeps of NumPy CNNs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        for names, options in cmd.arguments:
            p.add_argument(*names, **options)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage or the help
        return exc.code if isinstance(exc.code, int) else EXIT_INVALID
    try:
        return args.run(args)
    except SweepFileError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except LookupError as exc:  # a sweep name not found in MLflow
        print(f"sweeper {args.command}: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    raise SystemExit(main())
