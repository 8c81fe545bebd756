"""Helpers for tests that run the CLI as a child process."""
import os
import signal
import time
from pathlib import Path

import pytest


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: handled by default, not blocked.

    A shell starts background jobs with SIGINT ignored, some libraries block it around their own
    spawns, and a child inherits both; Python then never raises KeyboardInterrupt and the test's
    Ctrl-C goes unheard (the sweep just finishes).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    """``predicate()``'s first true value, asked every ``every`` seconds (the child runs meanwhile);
    the test fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def sigkill_when(proc, ready, timeout: float, what: str, log_path) -> None:
    """Wait until ``ready()`` while the child ``proc`` (its own process group) still runs, then
    SIGKILL the whole group, as a machine that dies would; the test fails if the child ended first
    (its log shows why). The group is killed whatever happens."""
    try:
        wait_for(lambda: ready() or proc.poll() is not None, timeout, what)
        assert proc.poll() is None, Path(log_path).read_text()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
