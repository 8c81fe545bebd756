"""Helpers for tests that run the CLI as a child process."""
import signal
import time

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
