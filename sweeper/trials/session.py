"""What surrounds a submission's run: Ray, signals, exit codes and the result it returns.

SIGTERM is handled as Ctrl-C: the executor cancels its running trials, marks their runs KILLED and
closes its parent run; the command exits 143 (130 for Ctrl-C).
"""
from __future__ import annotations

import os
import sys
import signal
import threading
from dataclasses import dataclass, field
from typing import Optional

class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: running trials KILLED, the parent closed, exit 143."""


#: Set by SIGTERM: Ray's blocking calls may turn the handler's exception into a plain KeyboardInterrupt.
TERMINATED = threading.Event()


def on_sigterm(signum, frame):
    TERMINATED.set()
    raise Terminated()


def handle_sigterm(handler):
    """Install ``handler`` for SIGTERM, held while a store call runs (``ledger.retry.deferring``);
    returns the previous one (None off the main thread, where Python cannot install handlers and
    the caller's own handling applies)."""
    from ledger.retry import deferring

    if threading.current_thread() is not threading.main_thread() or handler is None:
        return None
    if callable(handler) and not hasattr(handler, "__wrapped__"):
        handler = deferring(handler)
    return signal.signal(signal.SIGTERM, handler)


def hold_sigint():
    """Ctrl-C, when Python's default handles it, waits for a running store call as SIGTERM does;
    returns the handler to put back (None: nothing was changed)."""
    from ledger.retry import deferring

    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    return signal.signal(signal.SIGINT, deferring(signal.default_int_handler))


@dataclass
class SweepResult:
    counts: dict
    exit_code: int
    message: str
    parent_run_id: Optional[str] = None
    wall_seconds: float = 0.0  # from the first submitted trial to the last result
    trial_seconds: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (run name, reason)
    cpus: int = 0  # CPUs of the Ray cluster the trials ran on
    # Per trial: the driver's stamps (run creation, submission, collection) with the worker's
    # profile; and the driver's own seconds per activity. The sweep benchmark reads both.
    timeline: list = field(default_factory=list)
    driver: dict = field(default_factory=dict)
    experiment_id: Optional[str] = None  # the sweep's experiment (None: nothing was written)
    champion: Optional[object] = None  # the registered chosen model (ledger.models.Champion), if any

    @property
    def efficiency(self) -> Optional[float]:
        """(sum of trial times / CPUs) / wall time: 1.0 means every CPU trained all the time."""
        if not self.trial_seconds or not self.cpus or not self.wall_seconds:
            return None
        return sum(self.trial_seconds) / self.cpus / self.wall_seconds


def connect(address: Optional[str] = None) -> bool:
    """Use the Ray already initialised in this process, else start or join one; True if we did."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address and "ray" not in sys.modules:
        # Token authentication, Ray's default for a local cluster, named: Ray then prints no notice
        # about having chosen it. Ray reads the mode once, when imported: set after the import, the
        # local cluster would demand a token the driver never sends. A cluster joined by address
        # keeps its own mode.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return False
    if address:
        probe(address)
    ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             configure_logging=False)
    return True


class ClusterUnreachable(ConnectionError):
    """Nothing answers at the Ray address (exit 4): Ray itself would retry for minutes, silently."""

    cluster = True  # what sweeper.app.errors.is_cluster_error reads


def probe(address: str, patience: Optional[float] = None) -> None:
    """Check that something listens at a ``host:port`` Ray address, trying for ``patience`` seconds
    (``SWEEPER_RAY_CONNECT_TIMEOUT``, default 30); ``auto``, ``local`` and ``ray://`` are Ray's own."""
    import socket
    import time

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    patience = float(os.environ.get("SWEEPER_RAY_CONNECT_TIMEOUT", "30")) if patience is None else patience
    deadline, error = time.monotonic() + patience, None
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, max(patience, 0.1))):
                return
        except OSError as exc:
            error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    reason = error.strerror or type(error).__name__ if isinstance(error, OSError) else str(error)
    raise ClusterUnreachable(f"nothing answers at {address} ({reason}) within {patience:.0f} s: "
                             "is its head running (`ray start --head`), and is the address right?")
