"""``sweeper run FILE --cluster URL``: the sweep sent to a running Ray cluster through Ray's Job
Submission API (the dashboard's HTTP port), its driver run inside the cluster.

What travels with the job (``runtime_env.working_dir``, a folder staged here): the sweep file and the
local data it names (``data.path``, ``data.test_path``; an absolute path is copied under ``data/``
and the file is pointed at the copy with ``--set``). The cluster runs its own installed sweeper:
the job's entrypoint is ``python -m sweeper run FILE ...`` in that folder, with ``RAY_ADDRESS`` set
by Ray, so the driver and its trials run on the cluster's nodes; the trials see the same folder.

The tracking store is the one the driver sees inside the cluster: ``--tracking-uri`` when given
(as the cluster reaches it), else the sweep file's, else the nodes' ``MLFLOW_TRACKING_URI``. The
host's ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` travel as the job's environment when set (Ray shows
a job's environment to whoever holds the cluster's token).

The token: the value of the environment variable named by ``--token-env`` (default
``RAY_AUTH_TOKEN``), sent as ``Authorization: Bearer``. No token or a wrong one: refused, exit 4.
Progress streams back (``tail_job_logs``); Ctrl-C asks whether to stop the job or detach (no
terminal: stop). Exit status: the driver's own (:mod:`sweeper.exits`); 130 when stopped from here.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

from sweeper.exits import (EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_STOPPED,
                           EXIT_TERMINATED, EXIT_UNAVAILABLE, first_line)

#: The ``run`` options of a submission (cli.py adds them to ``run``).
CLUSTER_ARGS = (
    (("--cluster",), dict(metavar="URL", default=None,
                          help="submit the sweep to the Ray cluster whose dashboard answers at URL "
                               "(e.g. http://127.0.0.1:8265): its driver runs there (docs/cluster.md)")),
    (("--token-env",), dict(metavar="NAME", default="RAY_AUTH_TOKEN",
                            help="with --cluster: the environment variable holding the cluster's token "
                                 "(default RAY_AUTH_TOKEN)")),
)
#: Exit codes a driver returns that keep their meaning on the host.
DRIVER_CODES = {EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_STOPPED, EXIT_UNAVAILABLE, EXIT_INTERNAL,
                EXIT_INTERRUPTED, EXIT_TERMINATED}
#: Credentials of the tracking server passed to the job when the host has them.
PASSED_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class SubmitError(RuntimeError):
    """The cluster could not take the job (unreachable, refused, bad package); exit 4."""


def stage(file: str, overrides: list[str], config, folder: Path) -> tuple[str, list[str]]:
    """Copy the sweep file and the data it names into ``folder``; returns the file's name there and
    the overrides the job runs with (the given ones, plus ``data.*path`` moved under ``data/``)."""
    name = Path(file).name
    shutil.copy2(file, folder / name)
    extra = []
    for key in ("path", "test_path"):
        value = getattr(config.data, key, None)
        if not value or not Path(value).exists():
            continue  # no data on this machine (bundled, or mnist downloading): nothing to send
        source = Path(value)
        if source.is_absolute() or ".." in source.parts:
            target = Path("data") / source.name
            extra.append(f"data.{key}={target}")
        else:
            target = source
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, folder / target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, folder / target)
    return name, list(overrides) + extra


def entrypoint(name: str, overrides: list[str], args: argparse.Namespace) -> str:
    """The job's shell command: the cluster's sweeper runs the staged file."""
    words = ["python", "-m", "sweeper", "run", name]
    for item in overrides:
        words += ["--set", item]
    if args.tracking_uri:
        words += ["--tracking-uri", args.tracking_uri]
    if args.retry_failed:
        words.append("--retry-failed")
    if args.stale_after is not None:
        words += ["--stale-after", str(args.stale_after)]
    if args.quiet:
        words.append("--quiet")
    return " ".join(shlex.quote(w) for w in words)


def client_for(url: str, token: Optional[str]):
    """A JobSubmissionClient for ``url`` with the token as its Authorization header; unreachable: SubmitError."""
    from ray.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(url, headers=headers)
    except ConnectionError as exc:
        raise SubmitError(f"the Ray cluster at {url} could not be reached ({first_line(exc)})") from None


def refused(url: str, token_env: str, token: Optional[str]) -> str:
    """The one line for a 401/403 of the dashboard."""
    if not token:
        return (f"the Ray cluster at {url} refused the submission: no token ({token_env} is not set; "
                f"use the cluster's RAY_AUTH_TOKEN, or name another variable with --token-env)")
    return f"the Ray cluster at {url} refused the submission: the token in {token_env} is not the cluster's"


def ask_stop(prompt: Callable[[str], str] = input) -> bool:
    """Ctrl-C: True to stop the job, False to detach. Without a terminal, or on EOF or a second Ctrl-C: stop."""
    if not sys.stdin or not sys.stdin.isatty():
        return True
    try:
        answer = prompt("\nstop the sweep on the cluster [S] or detach and leave it running [d]? ")
    except (EOFError, KeyboardInterrupt):
        return True
    return not answer.strip().lower().startswith("d")


async def _tail(client, job_id: str, out) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def follow(client, job_id: str, out=None, poll: float = 1.0) -> dict:
    """Stream the job's output to ``out`` until it ends; returns its status, exit code and message."""
    out = out or sys.stdout
    try:
        asyncio.run(_tail(client, job_id, out))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 -- the stream broke; the status below still tells the outcome
        print(f"sweeper run: the job's log stream broke ({first_line(exc)}); waiting for its end", file=sys.stderr)
    while True:
        info = client.get_job_info(job_id)
        if str(getattr(info.status, "value", info.status)) in TERMINAL:
            return {"status": str(getattr(info.status, "value", info.status)),
                    "code": getattr(info, "driver_exit_code", None), "message": info.message or ""}
        time.sleep(poll)


def outcome_code(result: dict) -> int:
    """The host's exit status for a job that ended (``follow``'s result)."""
    status, code = result["status"], result["code"]
    if status == "SUCCEEDED":
        return EXIT_OK
    if status == "STOPPED":
        return EXIT_TERMINATED  # stopped by someone else (ours returns before this)
    if code in DRIVER_CODES:
        return code
    return EXIT_UNAVAILABLE  # the driver never ran (runtime env, package) or died of a signal


def stop(client, job_id: str, timeout: float = 60.0) -> str:
    """Ask the cluster to stop the job and wait (bounded) until it has; returns its last status."""
    client.stop_job(job_id)
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        status = str(getattr(client.get_job_status(job_id), "value", client.get_job_status(job_id)))
        if status in TERMINAL:
            break
        time.sleep(0.5)
    return status


def submit_command(args: argparse.Namespace, prompt: Callable[[str], str] = input) -> int:
    """``sweeper run FILE --cluster URL``: stage, submit, follow; the exit status of the job."""
    import logging

    import ray.job_submission  # noqa: F401 -- imported first: its modules set their loggers' levels on import
    from ray.exceptions import AuthenticationError

    from sweeper.spec.config import load_sweep

    if not getattr(args, "verbose", False):  # Ray's SDK sets its loggers to INFO itself (uploads, sockets)
        for name in ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging",
                     "ray.dashboard.modules.job.sdk"):
            logging.getLogger(name).setLevel(logging.WARNING)

    if args.address:
        print("sweeper run: --cluster and --address exclude each other (--cluster submits to the cluster's "
              "dashboard; --address joins its GCS as a driver)", file=sys.stderr)
        return EXIT_INVALID
    config = load_sweep(args.file, args.overrides)  # bad input stops here, before anything is sent
    url = args.cluster.rstrip("/")
    if "://" not in url:
        url = "http://" + url
    token = os.environ.get(args.token_env) or None
    with tempfile.TemporaryDirectory(prefix="sweeper-submit-") as tmp:
        folder = Path(tmp)
        name, overrides = stage(args.file, args.overrides, config, folder)
        env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
        runtime_env = {"working_dir": str(folder), "env_vars": env}
        job_id = f"sweeper-{config.name}-{uuid.uuid4().hex[:8]}"
        try:
            client = client_for(url, token)
            client.submit_job(entrypoint=entrypoint(name, overrides, args), runtime_env=runtime_env,
                              submission_id=job_id, metadata={"sweep": config.name})
        except AuthenticationError as exc:
            print(f"sweeper run: {refused(url, args.token_env, token)}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        except SubmitError as exc:
            print(f"sweeper run: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        except (RuntimeError, ValueError, OSError) as exc:
            print(f"sweeper run: the Ray cluster at {url} did not take the job: {first_line(exc)}", file=sys.stderr)
            return EXIT_UNAVAILABLE
    print(f"submitted {config.name} to {url} as job {job_id}; Ctrl-C to stop or detach", file=sys.stderr)
    try:
        result = follow(client, job_id)
    except KeyboardInterrupt:
        if not ask_stop(prompt):
            print(f"detached: job {job_id} keeps running on {url}; follow it with `sweeper status {config.name}` "
                  f"or `ray job logs -f {job_id} --address {url}`", file=sys.stderr)
            return EXIT_OK
        status = stop(client, job_id)
        print(f"sweeper run: job {job_id} stopped on the cluster (status {status})", file=sys.stderr)
        return EXIT_INTERRUPTED
    code = outcome_code(result)
    if code != EXIT_OK:
        print(f"sweeper run: job {job_id} ended {result['status']} (driver exit {result['code']})"
              + (f": {first_line(Exception(result['message']))}" if result["message"] else ""), file=sys.stderr)
    return code
