"""One rule for the names that become MLflow experiments, run names and file names.

A sweep's ``name`` and its ``mlflow.experiment`` reach MLflow (an experiment name is at most 256
characters in its SQL stores; the parent run's name is the sweep name plus about 30 characters,
and run names are at most 250), the file system (``reports/NAME/``, ``NAME.yaml`` when ``resume``
reads a sweep back) and the terminal. So a name must be

* 1 to :data:`MAX_NAME_LENGTH` characters (and as many UTF-8 bytes: a file name holds 255 bytes);
* printable: no control characters, line breaks or tabs, no leading or trailing blanks;
* not ``.`` or ``..``, and without ``/`` or ``\\``: never a path that leaves its folder.

A sweep name is moreover plain ASCII (:data:`SWEEP_NAME_PATTERN`), as it is typed on the command
line (``sweeper status NAME``); the CLI checks names given there with :func:`sweep_name_problem`.
"""
from __future__ import annotations

import re
from typing import Optional

from pydantic_core import PydanticCustomError

#: Longest name, in characters and in UTF-8 bytes.
MAX_NAME_LENGTH = 200
#: Characters of a sweep name.
SWEEP_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


def name_problem(value: str) -> Optional[str]:
    """Why ``value`` cannot name a sweep or an experiment, or None when it can."""
    if not isinstance(value, str):
        return "should be a string"
    if not value.strip():
        return "should not be empty"
    size = len(value.encode("utf-8", "surrogatepass"))
    if max(len(value), size) > MAX_NAME_LENGTH:
        length = f"{len(value)} characters" + (f" ({size} bytes in UTF-8)" if size != len(value) else "")
        return (f"is {length} long; at most {MAX_NAME_LENGTH} (it names the MLflow experiment, "
                f"its runs and the report folder)")
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        return f"contains the unprintable character U+{ord(bad):04X}; use letters, digits, '-', '_' or '.'"
    if value != value.strip():
        return "should not start or end with blanks"
    if value in (".", ".."):
        return f"{value!r} is a folder, not a name"
    if "/" in value or "\\" in value:
        return "should not contain '/' or '\\' (it is also a folder name)"
    return None


def sweep_name_problem(value: str) -> Optional[str]:
    """:func:`name_problem`, then the characters of :data:`SWEEP_NAME_PATTERN`."""
    problem = name_problem(value)
    if problem is None and not re.match(SWEEP_NAME_PATTERN, value):
        problem = "may contain only letters, digits, '-', '_' and '.'"
    return problem


def check_name(value: str) -> str:
    """Pydantic after-validator: ``value`` unchanged, or an error saying what is wrong."""
    problem = name_problem(value)
    if problem is not None:
        raise PydanticCustomError("name", "{problem}", {"problem": problem})
    return value


__all__ = ["MAX_NAME_LENGTH", "SWEEP_NAME_PATTERN", "name_problem", "sweep_name_problem", "check_name"]
