"""Calls to the tracking store that ride out a short outage: retried with backoff, within a patience.

Every MLflow call of the ledger goes through :class:`RetryingClient` (what
:func:`ledger.tracking.client` returns): a call that fails with a *transient* error (the server
unreachable or answering 5xx, a timeout, a database locked or restarting) is tried again after
1, 2, 4, 8, then every 10 s, until it succeeds or :func:`patience` seconds (``SWEEPER_STORE_PATIENCE``,
default :data:`PATIENCE`) have passed since its first try; then :class:`StoreUnavailable` is raised
with the last error as its cause. Any other error (a run that does not exist, a param changed,
a read-only or full disk) is raised at once: waiting would not change it.

While the driver waits here its trials go on training; what they report waits in Ray's stream
of each trial and is written, in order, once the store answers again: an outage shorter than the
patience loses no metric step. The writes the ledger makes are safe to repeat: tags, params of
the same value, statuses and artifacts overwrite themselves, and a metric batch logged twice
(same key, step, value and timestamp) is stored once. A ``create_run`` whose answer was lost can
leave an extra SCHEDULED run of this submission; the driver's reconciliation marks it KILLED.

The patience bounds the whole wait, tries included: a call's deadline is its first try's start
plus the patience; no try is started with less than :data:`MIN_TRY` left before it (the last
wait is cut short so that one more try fits), and each try is bounded by :func:`try_bound`, the
try bound (:func:`try_seconds`, a quarter of the patience) cut to the time left, so the last try
ends by the deadline too. Over HTTP, MLflow's client
retries each request itself (by default 7 times over about 4 minutes per call) and waits 120 s
for an answer; :func:`bound_http_retries` sets ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` to 0 and
``MLFLOW_HTTP_REQUEST_TIMEOUT`` to the try's bound, whole seconds (unless the environment sets
them), so a server that accepts connections but never answers costs one bound per try. For
SQLite, MLflow asks for a 20 s busy timeout on every session; :func:`bound_sqlite_waits` makes it
the try's bound, read when each session (and connection) starts, so a database locked by another
process is retried here, and a try of several sessions (opening a store) waits no later than the
deadline either; a PostgreSQL session gets the same bound as its ``statement_timeout``. What is not
bounded: an HTTP answer trickled a byte at a time (the timeout is per socket read).

Signals are held while a call to a database-backed store runs (:func:`deferring`): Python runs
a signal handler between any two bytecodes, and a ``KeyboardInterrupt`` raised inside SQLAlchemy's
write leaves that transaction open while the driver's cleanup runs (its traceback keeps the
connection alive), so SQLite's write lock stood against the cleanup's own writes until the
patience ran out. A held signal's handler runs as soon as the call returns; the waits between
tries are not held.

On the happy path a call costs one attribute lookup and one ``try`` more.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Callable, Optional

#: Seconds a call keeps being retried after its first try failed transiently.
PATIENCE = 120.0
#: Backoff between tries, seconds: doubling from ``BACKOFF[0]`` up to ``BACKOFF[1]``.
BACKOFF = (1.0, 10.0)
#: Longest single try (an HTTP request's timeout, SQLite's busy timeout), seconds; shorter for a
#: short patience (a quarter of it, at least :data:`MIN_TRY`).
MAX_TRY, MIN_TRY = 20.0, 1.0

_log = logging.getLogger(__name__)

# Error texts of a store that will not come back by waiting (checked before the transient ones).
_PERMANENT = ("readonly database", "read-only file system", "disk is full", "no space left",
              "unable to open database file", "permission denied", "access to the path")
# Error texts of a store that may answer again soon.
_TRANSIENT = ("api request to", "max retries exceeded", "connection refused", "connection reset",
              "connection aborted", "remote end closed", "timed out", "timeout", "temporarily unavailable",
              "database is locked", "server closed the connection", "terminating connection",
              "could not connect to server", "connection to server", "the database system is",
              "service unavailable", "bad gateway", "gateway time", "too many 50")
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "SERVICE_UNDER_MAINTENANCE"}


_state = threading.local()  # depth: store calls running on this thread; held: (handler, signum); deadline


def deferring(handler: Callable) -> Callable:
    """``handler`` as a signal handler that waits for a running store call (on the main thread,
    where Python runs handlers) to return before it runs; any other time it runs at once."""

    def held(signum, frame):
        if getattr(_state, "depth", 0) > 0:
            _state.held = (handler, signum)
            return None
        return handler(signum, frame)

    held.__wrapped__ = handler
    return held


def _shielded(fn: Callable, args, kwargs):
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        return fn(*args, **kwargs)
    finally:
        _state.depth -= 1
        pending = getattr(_state, "held", None)
        if pending is not None and _state.depth == 0:
            _state.held = None
            handler, signum = pending
            handler(signum, None)  # raises, as it would have a moment ago


class StoreUnavailable(RuntimeError):
    """The tracking store did not answer within the patience; ``__cause__`` is the last error."""


def patience(value: Optional[float] = None) -> float:
    """Seconds to keep retrying: ``value``, else ``SWEEPER_STORE_PATIENCE``, else :data:`PATIENCE`."""
    if value is not None:
        return max(0.0, float(value))
    text = os.environ.get("SWEEPER_STORE_PATIENCE", "")
    try:
        return max(0.0, float(text)) if text else PATIENCE
    except ValueError:
        return PATIENCE


def try_seconds(value: Optional[float] = None) -> float:
    """The bound of one try: a quarter of the patience, within :data:`MIN_TRY` .. :data:`MAX_TRY`."""
    return min(MAX_TRY, max(MIN_TRY, patience(value) / 4))


def try_bound(value: Optional[float] = None) -> float:
    """The bound of the try running now on this thread: :func:`try_seconds`, cut to the time left
    before its call's deadline (outside a call: :func:`try_seconds`)."""
    bound = try_seconds(value)
    deadline = getattr(_state, "deadline", None)
    return bound if deadline is None else max(0.0, min(bound, deadline - time.monotonic()))


def remaining() -> float:
    """Seconds left before the deadline of the call running on this thread, else :func:`patience`:
    for a wait inside a try (a lock file) that is not a store call of its own."""
    deadline = getattr(_state, "deadline", None)
    return patience() if deadline is None else max(0.0, deadline - time.monotonic())


_OURS: dict = {}  # the values bound_http_retries set, so that a later patience may change them


def bound_http_retries(value: Optional[float] = None, seconds: Optional[float] = None) -> None:
    """MLflow's own HTTP retries off and its timeout the try bound in this process (this module
    retries within the patience), unless the user's environment sets them (MLflow reads them on
    every request). ``seconds``: this try's bound, when shorter (whole seconds, at least 1: MLflow
    reads an integer)."""
    bound = try_seconds(value)
    # A try's own bound is rounded down, so that it ends by its call's deadline.
    timeout = round(bound) if seconds is None else int(min(seconds, bound))
    for name, wanted in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", f"{max(1, timeout)}")):
        current = os.environ.get(name)
        if current is None or current == _OURS.get(name):
            os.environ[name] = _OURS[name] = wanted


_SQLITE_BOUND = []


def bound_sqlite_waits() -> None:
    """Every SQLite connection of this process waits at most the try bound for a lock (MLflow sets
    20 s on each session; opening a store, Python's 5 s), and every PostgreSQL session's statements
    at most the try bound (``statement_timeout``), connecting ``PGCONNECT_TIMEOUT``: installed once,
    for every engine."""
    if _SQLITE_BOUND:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    def busy_ms() -> int:  # read as each session starts: the try's bound, to its call's deadline
        return int(try_bound() * 1000)

    def on_connect(dbapi_connection, record):
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            dbapi_connection.execute(f"PRAGMA busy_timeout = {busy_ms()}")

    def on_checkout(dbapi_connection, record, proxy):
        # PostgreSQL has no busy timeout: a statement stuck on a lock or a hung server would wait
        # for ever. Each session gets the try's bound as its statement and lock timeouts.
        if type(dbapi_connection).__module__.startswith("psycopg"):
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET statement_timeout = {max(1, busy_ms())}")
            cursor.close()

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if conn.dialect.name == "sqlite" and statement.lstrip().upper().startswith("PRAGMA BUSY_TIMEOUT"):
            statement = f"PRAGMA busy_timeout = {busy_ms()};"
        return statement, parameters

    # libpq's own wait for a connection (seconds, at least 2 as libpq requires)
    os.environ.setdefault("PGCONNECT_TIMEOUT", str(max(2, int(try_seconds()))))
    event.listen(Engine, "connect", on_connect)
    event.listen(Pool, "checkout", on_checkout)
    event.listen(Engine, "before_cursor_execute", on_execute, retval=True)
    _SQLITE_BOUND.append(True)


def _texts(exc: BaseException) -> str:
    parts, seen = [], 0
    while exc is not None and seen < 5:
        parts.append(f"{type(exc).__name__} {exc}")
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return " ".join(parts).lower()


def is_transient(exc: BaseException) -> bool:
    """True when waiting may help: the store is unreachable, overloaded or restarting."""
    if isinstance(exc, StoreUnavailable):
        return False
    text = _texts(exc)
    if any(p in text for p in _PERMANENT):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    code = getattr(exc, "error_code", None)
    if code in _TRANSIENT_CODES:
        return True
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
    except ImportError:  # pragma: no cover - requests comes with MLflow
        pass
    if code not in (None, "INTERNAL_ERROR") and getattr(exc, "get_http_status_code", None):
        status = exc.get_http_status_code()
        if status < 500:  # the server answered and refused: not an outage
            return False
    return any(p in text for p in _TRANSIENT)


def call(fn: Callable, *args, _patience: Optional[float] = None, _what: str = "", _shield: bool = False,
         **kwargs):
    """``fn(*args, **kwargs)``, tried again on transient errors for up to :func:`patience` seconds;
    ``_shield``: signals handled through :func:`deferring` wait for each try to return.

    Every try ends by the call's deadline (its start plus the patience, at least :data:`MIN_TRY`):
    none is started with less than :data:`MIN_TRY` left, and each is bounded by :func:`try_bound`.
    A call made inside another's try keeps the earlier deadline."""
    budget = patience(_patience)
    began = time.monotonic()
    outer = getattr(_state, "deadline", None)
    deadline = began + max(budget, MIN_TRY)
    if outer is not None:
        deadline = min(deadline, outer)

    def attempt():
        _state.deadline = deadline
        bound_http_retries(_patience, deadline - time.monotonic())
        try:
            return _shielded(fn, args, kwargs) if _shield else fn(*args, **kwargs)
        finally:
            _state.deadline = outer

    try:
        return attempt()
    except Exception as exc:  # noqa: BLE001 -- sorted below
        if not is_transient(exc):
            raise
        first = exc
    finally:
        bound_http_retries(_patience)  # the whole try bound again, for calls that are not retried (a heartbeat)
    delay, tries = BACKOFF[0], 1
    last: BaseException = first
    name = _what or getattr(fn, "__name__", "call")
    if budget > 0:
        _log.warning("tracking store: %s failed (%s); trying again for up to %.0f s", name, _short(first), budget)
    try:
        while deadline - time.monotonic() > MIN_TRY:  # (after a try with exactly MIN_TRY left: none more)
            # The last wait is cut short so that one more try fits, with MIN_TRY left for it.
            time.sleep(max(0.0, min(delay, deadline - time.monotonic() - MIN_TRY)))
            delay = min(delay * 2, BACKOFF[1])
            tries += 1
            try:
                result = attempt()
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    raise
                last = exc
                continue
            _log.warning("tracking store: %s succeeded after %.0f s (%d tries)", name, time.monotonic() - began, tries)
            return result
    finally:
        bound_http_retries(_patience)
    raise StoreUnavailable(f"no answer for {time.monotonic() - began:.0f} s ({tries} tries of {name}): "
                           f"{_short(last)}") from last


def is_store_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) came from the tracking store: MLflow, its database, an
    HTTP client, or the file system under a local store."""
    seen = 0
    while exc is not None and seen < 10:
        module = type(exc).__module__.split(".")[0]
        if module == "ray":  # Ray's ConnectionError is an OSError: the cluster, not the store
            return False
        if isinstance(exc, (StoreUnavailable, OSError)):
            return True
        if module in ("mlflow", "sqlalchemy", "sqlite3", "psycopg2", "requests", "urllib3", "alembic"):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


_NOISE = re.compile(r"\(raised as a result of [^)]*\)\s*|\(Background on this error at: [^)]*\)")


def describe(exc: BaseException, limit: int = 200) -> str:
    """One line naming what failed: the database's or the file system's own error when one is in the
    chain (``OperationalError: attempt to write a readonly database``), else the first line."""
    chain = []
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for link in reversed(chain):  # innermost first
        if type(link).__module__.split(".")[0] in ("sqlite3", "psycopg2") or type(link) in (OSError,) \
                or (isinstance(link, OSError) and link.errno):
            return _cut(f"{type(link).__name__}: {_first(link)}", limit)
    return _cut(_first(chain[0]) if chain else "", limit)


def _first(exc: BaseException) -> str:
    text = _NOISE.sub("", str(exc))
    return next((line.strip() for line in text.splitlines() if line.strip()), "") or type(exc).__name__


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short(exc: BaseException) -> str:
    return describe(exc)


class RetryingClient:
    """An ``MlflowClient`` whose every method call goes through :func:`call`.

    ``once`` is the bare client: one try, for writes that must not wait (a heartbeat, which the
    next beat repeats; the cleanup after the store was given up on). ``shield``: hold signals
    during each try (a database store, whose transactions live in this process; see above).
    """

    def __init__(self, client, patience_s: Optional[float] = None, shield: bool = False):
        self.once = client
        self._patience = patience_s
        self._shield = shield

    def __getattr__(self, name):
        attr = getattr(self.once, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def retried(*args, **kwargs):
            return call(attr, *args, _patience=self._patience, _what=name, _shield=self._shield, **kwargs)

        retried.__name__ = name
        return retried


__all__ = ["PATIENCE", "StoreUnavailable", "RetryingClient", "call", "is_transient", "is_store_error", "describe", "patience",
           "bound_http_retries", "bound_sqlite_waits", "try_seconds", "try_bound", "remaining", "deferring"]
