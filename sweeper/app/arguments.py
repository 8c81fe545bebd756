"""Values given on the command line, checked before anything is read or written: numbers in range,
a sweep name by the rule of :mod:`sweeper.spec.names`, an output folder or file for being writable.
A value that cannot be used raises :class:`BadArgument` (exit 2) or argparse's own type error."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from sweeper.spec.names import sweep_name_problem


class BadArgument(ValueError):
    """A name or path on the command line that cannot be used; the message says which and why."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    if value > 1_000_000:
        raise argparse.ArgumentTypeError(f"must be at most 1000000, got {value}")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1 to 65535, got {value}")
    return value


def repeat_index(text: str) -> int:
    value = int(text)
    if not 0 <= value < 1000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 999 (repeats are at most 1000), got {value}")
    return value


def sweep_name(name: str) -> str:
    """``name`` if it can name a sweep; else :class:`BadArgument` (exit 2)."""
    problem = sweep_name_problem(name)
    if problem is not None:
        raise BadArgument(f"{name!r} is not a valid sweep name: {problem}")
    return name


def sweep_name_or_file(value: str, tracking_uri: Optional[str]) -> tuple[str, Optional[str]]:
    """``(sweep name, tracking URI)`` of ``value``: a sweep name as it is, or a sweep file read for
    its ``name`` and, unless ``tracking_uri`` is given, its ``mlflow.tracking_uri``. Users type the
    file they ran as often as its name; a bad file exits 2 as ``validate`` would."""
    try:
        is_file = Path(value).is_file()
    except (OSError, ValueError):  # a name too long for a path, a NUL
        is_file = False
    if not is_file:
        return sweep_name(value), tracking_uri
    from sweeper.spec.config import load_sweep

    config = load_sweep(value)
    return config.name, tracking_uri or config.mlflow.tracking_uri


def writable_folder(folder: Path, what: str) -> Path:
    """``folder`` if it is, or can be made as, a writable folder; else :class:`BadArgument`."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            raise BadArgument(f"{what} {folder}: {probe} is a broken symbolic link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise BadArgument(f"{what} {folder}: {probe} is not a folder")
    _try_write(probe, f"{what} {folder}")
    return folder


def _try_write(folder: Path, what: str) -> None:
    # os.access says yes to root even on a read-only mount: create (and drop) a file instead.
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise BadArgument(f"{what}: {folder} is not writable ({exc.strerror or exc})") from None


def writable_file(path: Path, what: str) -> Path:
    """``path`` if a file can be written there (its folder exists and is writable, it is no folder)."""
    if path.is_dir():
        raise BadArgument(f"{what} {path}: is a folder; give a file name, e.g. {path / 'model.npz'}")
    if not path.parent.is_dir():
        raise BadArgument(f"{what} {path}: the folder {path.parent} does not exist")
    _try_write(path.parent, f"{what} {path}")
    return path
