"""Helpers for tests that run the CLI as a child process."""
import signal


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: handled by default, not blocked.

    A shell starts background jobs with SIGINT ignored, some libraries block it around their own
    spawns, and a child inherits both; Python then never raises KeyboardInterrupt and the test's
    Ctrl-C goes unheard (the sweep just finishes).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
