"""``--set KEY=VALUE``: dotted keys as in the sweep file (``data.source=npz``, ``train.epochs=3``).

Each value is parsed as YAML under the sweep file's bounds (``3`` an int, ``[1, 3]`` a list, ``same`` a string) and set into the
loaded document before validation, so it is checked exactly as if the file said it. A problem
with an overridden key is reported without a line number: the value did not come from the file.
"""
from __future__ import annotations

import copy
from typing import Sequence

from sweeper.spec.yamlsource import LineMap, Problem, SweepFileError, parse_value

__all__ = ["apply_overrides", "parse_assignment"]


def parse_assignment(item: str) -> tuple[tuple[str, ...], object]:
    """``"train.epochs=3"`` -> ``(("train", "epochs"), 3)``; ValueError with the reason."""
    key, sep, text = item.partition("=")
    keys = tuple(part.strip() for part in key.split("."))
    if not sep or not all(keys):
        raise ValueError("expected KEY=VALUE with a dotted key as in the file, e.g. train.epochs=3")
    try:  # under the same bounds as a sweep file (size, nesting, aliases)
        value = parse_value(text) if text.strip() else None
    except SweepFileError as exc:
        raise ValueError(f"not a value: {'; '.join(p.message for p in exc.problems)}") from None
    return keys, value


def apply_overrides(data, lines: LineMap, items: Sequence[str], file: str):
    """``(data, lines)`` with every ``--set`` applied; problems with the assignments themselves
    (no ``=``, a key below a value that is not a section) are one :class:`SweepFileError`."""
    if not items:
        return data, lines
    data = copy.deepcopy(data) if isinstance(data, dict) else {}
    lines = LineMap(lines.lines)
    problems = []
    for item in items:
        try:
            keys, value = parse_assignment(item)
        except ValueError as exc:
            problems.append(Problem(f"--set {item}", str(exc)))
            continue
        node = data
        for i, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                problems.append(Problem(f"--set {item}", f"{'.'.join(keys[:i + 1])} is a value, not a section"))
                break
            node = child
        else:
            node[keys[-1]] = value
            for loc in [loc for loc in lines.lines if loc[:len(keys)] == keys]:
                del lines.lines[loc]
            lines.lines[keys] = None  # line_of stops here: no line of the file applies
    if problems:
        raise SweepFileError(file, problems)
    return data, lines
