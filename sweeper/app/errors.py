"""The exit code and the one line printed for an exception that ends a ``sweeper`` command.

The codes themselves are :mod:`sweeper.exits`'s.

:func:`classify` decides from the exception's type and from where it was raised (the modules
of its traceback): a ``SweepFileError``, pydantic ``ValidationError`` or ``yaml.YAMLError`` is
bad input; an error raised inside MLflow, SQLAlchemy or an HTTP client, an ``MlflowException``
or an ``OSError`` is the store; one raised inside Ray (or Ray's ``ConnectionError``) the cluster.
"""
from __future__ import annotations

import os
import traceback
from typing import Optional

from sweeper.exits import (EXIT_CODES_HELP, EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_INVALID,  # noqa: F401
                           EXIT_OK, EXIT_STOPPED, EXIT_TERMINATED, EXIT_UNAVAILABLE, first_line)

_STORE_MODULES = ("mlflow", "sqlalchemy", "alembic", "requests", "urllib3", "sqlite3", "psycopg2")
_CLUSTER_MODULES = ("ray",)


def _modules(exc: BaseException) -> list[str]:
    """Top-level packages of the frames ``exc`` passed through, innermost last (and its type's)."""
    out = []
    tb = exc.__traceback__
    while tb is not None:
        out.append(str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0])
        tb = tb.tb_next
    out.append(type(exc).__module__.split(".")[0])
    return out


def classify(exc: BaseException) -> int:
    """The exit code for ``exc``: :data:`EXIT_INVALID`, :data:`EXIT_UNAVAILABLE` or :data:`EXIT_INTERNAL`."""
    import yaml
    from pydantic import ValidationError

    from sweeper.spec.yamlsource import SweepFileError

    if isinstance(exc, (SweepFileError, ValidationError, yaml.YAMLError)):
        return EXIT_INVALID
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt in chain or len(chain) > 10:
            break
        chain.append(nxt)
    for link in chain:
        modules = _modules(link)
        inner = next((m for m in reversed(modules) if m in _STORE_MODULES + _CLUSTER_MODULES), None)
        if inner is not None or isinstance(link, OSError) or _is_mlflow(link):
            return EXIT_UNAVAILABLE
    return EXIT_INTERNAL


def _is_mlflow(exc: BaseException) -> bool:
    return any(t.__module__.startswith("mlflow") for t in type(exc).__mro__)


def is_cluster_error(exc: BaseException) -> bool:
    """True when ``exc`` came from Ray rather than from the tracking store."""
    if getattr(exc, "cluster", False):  # raised by our own check of the Ray address
        return True
    modules = _modules(exc)
    inner = next((m for m in reversed(modules) if m in _STORE_MODULES + _CLUSTER_MODULES), None)
    return inner in _CLUSTER_MODULES


def debug_traceback(exc: BaseException) -> Optional[str]:
    """The traceback of ``exc`` when ``SWEEPER_DEBUG`` is set (to anything but 0 or empty)."""
    if os.environ.get("SWEEPER_DEBUG", "") not in ("", "0"):
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    return None


__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_INVALID", "EXIT_STOPPED", "EXIT_UNAVAILABLE", "EXIT_INTERNAL",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_CODES_HELP", "first_line", "classify", "is_cluster_error",
           "debug_traceback"]
