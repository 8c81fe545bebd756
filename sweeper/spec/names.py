"""One rule for the names that become MLflow experiments, run names and file names.

A sweep's ``name`` and its ``mlflow.experiment`` reach MLflow (an experiment name is at most 256
characters in its SQL stores; the parent run's name is the sweep name plus about 30 characters,
and run names are at most 250), the file system (``reports/NAME/``, ``NAME.yaml`` when ``resume``
reads a sweep back) and the terminal. So a name must be

* 1 to :data:`MAX_NAME_LENGTH` characters (and as many UTF-8 bytes: a file name holds 255 bytes);
* printable: no control characters, line breaks or tabs, no leading or trailing blanks;
* not ``.`` or ``..``, and without ``/`` or ``\\``: never a path that leaves its folder.

A trial's run name (:func:`run_name`: the point's swept values, then ``#repeat``) is checked at
validation against :data:`ledger.schema.MAX_RUN_NAME`, the run-name column of MLflow's SQL stores:
SQLite does not enforce a VARCHAR's length, PostgreSQL and MySQL do, so a name too long for one
backend is refused on all of them before anything is written (:func:`run_name_problem`).

A sweep name is moreover plain ASCII (:data:`SWEEP_NAME_PATTERN`), as it is typed on the command
line (``sweeper status NAME``); the CLI checks names given there with :func:`sweep_name_problem`.
"""
from __future__ import annotations

import re
from typing import Optional

from pydantic_core import PydanticCustomError

from ledger.schema import MAX_EXPERIMENT_NAME, MAX_RUN_NAME

#: Longest name, in characters and in UTF-8 bytes (within MLflow's experiment and run names).
MAX_NAME_LENGTH = 200
assert MAX_NAME_LENGTH <= min(MAX_EXPERIMENT_NAME, MAX_RUN_NAME)
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


def _size(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _value(value) -> str:
    if isinstance(value, list):  # dense sizes (a tuple is an [h, w] pair)
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else _size(value)


def _part(key: str, value) -> str:
    if key == "kernel_size":
        return f"k{_size(value)}"
    if key == "depth":
        return f"d{value}"
    if key == "stride":
        return f"s{_size(value)}"
    if key == "padding":
        return "same" if value == "same" else f"p{_size(value)}"
    if key == "pooling":
        return "nopool" if value == "none" else str(value)
    return f"{key}={_value(value)}"


def point_name(values) -> str:
    """A legible name from a point's swept values (a mapping), e.g. ``k5 d16 s2 same l2``."""
    return " ".join(_part(key, value) for key, value in values.items()) or "base"


def run_name(values, repeat: int) -> str:
    """The MLflow run name of a trial: ``k5 max #2`` (``repeat`` counts from 0)."""
    return f"{point_name(values)} #{repeat + 1}"


def run_name_problem(axes, repeats: int) -> Optional[str]:
    """Why the longest run name of a grid (``[(key, values), ...]``) would not fit
    :data:`MAX_RUN_NAME`, or None. The parts are independent, so the longest name joins each
    key's longest part (a bound even when ``exclude`` drops that combination)."""
    longest = {key: max(values, key=lambda v: len(_part(key, v))) for key, values in axes if values}
    name = run_name(longest, repeats - 1)
    if len(name) <= MAX_RUN_NAME:
        return None
    worst = sorted(longest, key=lambda k: -len(_part(k, longest[k])))[:3]
    return (f"the longest run name is {len(name)} characters ({name[:60]}...); MLflow's SQL stores hold at most "
            f"{MAX_RUN_NAME} (PostgreSQL and MySQL refuse longer ones): fewer swept keys or shorter values "
            f"(longest: {', '.join(worst)})")


__all__ = ["MAX_NAME_LENGTH", "SWEEP_NAME_PATTERN", "name_problem", "sweep_name_problem", "check_name",
           "point_name", "run_name", "run_name_problem"]
