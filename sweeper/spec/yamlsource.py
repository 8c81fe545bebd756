"""Read a sweep file as plain data, remembering the line of every key so problems can point at it.

PyYAML's safe loader silently keeps the last of two equal keys and forgets where anything was.
:func:`load_yaml` composes the node tree itself so that it can

* reject a duplicate key, naming the line of the second one, and
* record the 1-based line of every key path (``("grid", "stride", 2)``), which
  :meth:`LineMap.line_of` uses to turn a validation error location into ``(line 14)``.

Every problem with a file, from a missing file to a bad grid value, ends up as a :class:`Problem`
inside a :class:`SweepFileError`, printed one line per problem as ``FILE: path: message (line N)``;
:func:`problems_from` converts pydantic's errors, which validators can aim below their own
location with :func:`located_error`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from sweeper.spec.safeyaml import MAX_FILE_BYTES, BoundedLoader, LimitError, character_problems, read_text

Loc = tuple[Union[str, int], ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a sweep file: where (a key path such as ``grid.stride[2]``), what, which line."""

    path: str
    message: str
    line: Optional[int] = None

    def format(self, file: str) -> str:
        """One line: characters that are not printable (a newline in a --set value) are escaped."""
        path = self.path if len(self.path) <= 200 else self.path[:197] + "..."  # a 100 kB key stays a line
        where = f"{path}: " if path else ""
        line = f" (line {self.line})" if self.line is not None else ""
        return printable(f"{file}: {where}{self.message}{line}")


def printable(text: str) -> str:
    """``text`` with every unprintable character written as its escape (``\\n``, ``\\x00``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


class SweepFileError(Exception):
    """A sweep file that cannot be used; carries every :class:`Problem` found, not only the first."""

    def __init__(self, file: Union[str, Path], problems: Iterable[Problem]):
        self.file = str(file)
        self.problems = list(problems)
        super().__init__(self.format())

    #: Problems printed; a file with thousands (a generated grid gone wrong) ends with a count.
    MAX_SHOWN = 50

    def format(self) -> str:
        lines = [problem.format(self.file) for problem in self.problems[:self.MAX_SHOWN]]
        hidden = len(self.problems) - self.MAX_SHOWN
        if hidden > 0:
            lines.append(f"{self.file}: ... and {hidden} more problems (the first {self.MAX_SHOWN} are shown)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def format_loc(loc: Loc) -> str:
    """``("grid", "stride", 2)`` -> ``grid.stride[2]``: the spelling used in every message."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class LineMap:
    """1-based line numbers of the key paths of one document.

    A mapping entry is recorded at the line of its key (a block value starts on the next line, but
    the key is what a reader looks for); a sequence item at the line where the item starts.
    """

    def __init__(self, lines: Optional[dict[Loc, int]] = None):
        self.lines: dict[Loc, int] = dict(lines or {})

    def line_of(self, loc: Loc) -> Optional[int]:
        """The line of ``loc``, or of its nearest enclosing path present in the file (None: none is)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None

    def __contains__(self, loc) -> bool:
        return tuple(loc) in self.lines


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _key(node: yaml.Node):
    # Sweep keys are plain strings; a non-scalar key cannot name a setting, so keep its text only
    # for the message pydantic will produce about it.
    return node.value if isinstance(node, yaml.ScalarNode) else f"<{node.id} key>"


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem]) -> None:
    """Record lines below ``node`` and collect duplicate keys (YAML merge keys are not expanded)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = _key(key_node)
            path = loc + (key,)
            if key in seen:
                problems.append(Problem(format_loc(path), f"duplicate key (first given on line {seen[key]})",
                                        _line(key_node)))
                continue
            seen[key] = _line(key_node)
            lines[path] = _line(key_node)
            _walk(value_node, path, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = _line(item)
            _walk(item, loc + (i,), lines, problems)


def _yaml_error(file: str, exc: yaml.YAMLError) -> SweepFileError:
    """One problem line for a YAML syntax or construction error, at the line PyYAML blames."""
    if isinstance(exc, LimitError):
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        return SweepFileError(file, [Problem("", exc.problem, line)])
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context.startswith("while "):
            # The context mark is where the unfinished construct began, often the real culprit.
            started = f" started on line {exc.context_mark.line + 1}" if exc.context_mark else ""
            message += f" ({exc.context[len('while '):]}{started})"
        elif exc.problem and exc.context:
            message = f"{exc.context}, {exc.problem}"
        kind = "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
        return SweepFileError(file, [Problem("", f"{kind}: {message}", mark.line + 1 if mark else None)])
    return SweepFileError(file, [Problem("", f"YAML syntax error: {exc}")])


def _check_text(text: str, file: str) -> None:
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SweepFileError(file, [Problem("", f"the text is larger than {MAX_FILE_BYTES} bytes, "
                                                "the limit for a sweep file")])
    bad = character_problems(text)
    if bad:
        raise SweepFileError(file, [Problem("", message, line) for line, message in bad])


def parse_yaml(text: str, file: str = "<string>") -> tuple[dict, LineMap]:
    """Parse ``text`` into a mapping and its :class:`LineMap`; raise :class:`SweepFileError` otherwise.

    The bounds of :mod:`sweeper.spec.safeyaml` hold here too, for text that did not come from a
    file (a sweep read back from the tracking store).
    """
    _check_text(text, file)
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value == "" and node.style is None):
            raise SweepFileError(file, [Problem("", "the file is empty; expected a mapping of sweep settings")])
        if not isinstance(node, yaml.MappingNode):
            kind = {"sequence": "a list", "scalar": "a single value"}.get(node.id, node.id)
            raise SweepFileError(file, [Problem(
                "", f"the top level must be a mapping of settings (key: value), got {kind}", _line(node))])
        lines: dict[Loc, int] = {}
        problems: list[Problem] = []
        _walk(node, (), lines, problems)
        if problems:
            raise SweepFileError(file, problems)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_error(file, exc) from None
    finally:
        loader.dispose()
    return data, LineMap(lines)


def parse_value(text: str, file: str = "<value>"):
    """One YAML value (``--set depth=16``), under the same bounds as a file; :class:`SweepFileError` if not."""
    _check_text(text, file)
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _yaml_error(file, exc) from None
    finally:
        loader.dispose()


def load_yaml(path: Union[str, Path]) -> tuple[dict, LineMap]:
    """Read and parse the sweep file at ``path``; every failure is a :class:`SweepFileError`."""
    file = str(path)
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise SweepFileError(file, [Problem("", "file not found")]) from None
    except IsADirectoryError:
        raise SweepFileError(file, [Problem("", "is a directory, not a sweep file")]) from None
    except ValueError as exc:  # not a regular file, too large, not UTF-8 (or a NUL in the path)
        raise SweepFileError(file, [Problem("", str(exc))]) from None
    except OSError as exc:
        raise SweepFileError(file, [Problem("", f"cannot read the file: {exc.strerror or exc}")]) from None
    return parse_yaml(text, file)



# ---------------------------------------------------------------------------------------------
# Validation errors as problems


def located_error(items: list[tuple[Loc, str]], up: int = 0) -> PydanticCustomError:
    """An error for a pydantic validator to raise, carrying problems at locations below its own.

    ``up=1`` makes the locations relative to the model holding the field instead, for a check
    that blames a sibling (``samples`` missing is reported at ``method``).
    """
    summary = "; ".join(f"{format_loc(loc)}: {msg}" if loc else msg for loc, msg in items)
    return PydanticCustomError("located", "{summary}", {"summary": summary, "problems": tuple(items), "up": up})


def _find_model(annotation) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], loc: Loc) -> Optional[type[BaseModel]]:
    """The model whose fields are the valid keys at ``loc`` (None below a plain dict)."""
    model: Optional[type[BaseModel]] = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _find_model(field.annotation)
    return model


def _unknown_key(root: type[BaseModel], loc: Loc, hint: bool = True) -> str:
    model = _model_at(root, loc[:-1])
    if model is None:
        return "unknown key"
    valid = list(model.model_fields)
    if not hint:
        return f"unknown key; valid keys: {', '.join(valid)}"
    key = str(loc[-1])
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6) or [v for v in valid if v.startswith(key)][:1]
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}valid keys: {', '.join(valid)}"


def problems_from(exc: ValidationError, lines: LineMap, root: type[BaseModel]) -> list[Problem]:
    """The errors of validating a file against ``root``, with dotted paths and lines, in file order."""
    out: dict[Problem, None] = {}  # ordered, and a set: thousands of errors stay linear
    hints = SweepFileError.MAX_SHOWN  # "did you mean" (difflib) for as many unknown keys as are shown
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "located":
            ctx = err["ctx"]
            base = loc[:len(loc) - ctx["up"]]
            items = [(base + tuple(sub), msg) for sub, msg in ctx["problems"]]
        elif err["type"] == "extra_forbidden":
            items = [(loc, _unknown_key(root, loc, hint=hints > 0))]
            hints -= 1
        else:
            items = [(loc, err["msg"])]
        for where, msg in items:
            out.setdefault(Problem(format_loc(where), msg, lines.line_of(where)))
    # Problems without a line (a missing top-level key) first, then in file order.
    return sorted(out, key=lambda p: p.line or 0)


__all__ = ["Loc", "Problem", "SweepFileError", "LineMap", "format_loc", "parse_yaml", "parse_value", "load_yaml",
           "located_error", "problems_from"]
