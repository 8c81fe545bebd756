"""Bounds on a sweep file, checked before anything grows: its size, its characters, its YAML tree.

A sweep file comes from a user, or back from the tracking store (``resume`` by name), so nothing
in it is trusted. Each bound is checked at the earliest point it can be:

* :func:`read_text` checks that the path is a regular file (not a directory, FIFO or device such
  as ``/dev/zero``, which never end) of at most :data:`MAX_FILE_BYTES`, reads at most that many
  bytes, and decodes UTF-8 strictly, naming the line of the first bad byte.
* :func:`character_problems` names every line holding a character YAML refuses (NUL and the
  other C0/C1 controls but tab and line breaks, lone U+FFFE/U+FFFF), before the parser sees it.
* :class:`BoundedLoader` composes the node tree under limits on *expanded* size. PyYAML builds an
  alias as a shared reference to its anchor's node, so a few hundred bytes of nested aliases
  stand for 9^9 values that any later walk or copy (pydantic's included) would materialise. The
  loader keeps, for every finished node, the number of nodes and the depth it expands to
  (``size = 1 + sum(size of children)``, ``depth = 1 + max(depth of children)``), adds an
  alias's size to a running total when the alias is met, and stops at :data:`MAX_NODES` or
  :data:`MAX_DEPTH` -- arithmetic on counts, nothing copied. An alias to a node still being
  composed (``&e [*e]``) would make a cycle and is refused there too. Values a constructor
  cannot build (``!!int abc``, an integer of 5000 digits) become YAML errors at their line.
"""
from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Union

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent

#: Largest sweep file read, in bytes. The examples are 1-3 kB; a grid long enough to need more
#: is better generated than written by hand.
MAX_FILE_BYTES = 256 * 1024
#: Most YAML nodes (keys, values, list items) a file may expand to, aliases counted each time
#: they are used. A 20,000-point grid needs far fewer (its axes multiply), and PyYAML composes
#: about 10,000 nodes a second here.
MAX_NODES = 20_000
#: Deepest nesting of lists and mappings, aliases included (a sweep file needs 4).
MAX_DEPTH = 32
#: At most this many problem lines about characters (one per line of the file).
MAX_CHARACTER_PROBLEMS = 10

_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_CONTROL_NAMES = {0: "NUL", 7: "BEL", 8: "backspace", 0x0B: "vertical tab", 0x0C: "form feed", 0x1B: "escape",
                  0x7F: "DEL"}


class LimitError(yaml.MarkedYAMLError):
    """A bound of this module exceeded while composing; ``problem_mark`` is where."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_text(path: Union[str, Path]) -> str:
    """The text of the file at ``path``; raises ``ValueError`` with a one-line reason otherwise.

    ``FileNotFoundError`` and ``IsADirectoryError`` are raised as such, for their own messages.
    """
    path = Path(path)
    info = path.stat()  # follows a symlink: what is read is what is checked
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(str(path))
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"is {_kind(info.st_mode)}, not a sweep file (a regular file is needed)")
    too_big = ValueError(f"the file is larger than {MAX_FILE_BYTES} bytes, the limit for a sweep file")
    if info.st_size > MAX_FILE_BYTES:
        raise too_big
    with open(path, "rb") as f:  # the size may have changed since stat: read no more than the limit
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise too_big
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column} "
                         f"(save the file as UTF-8)") from None


def _describe(char: str) -> str:
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0:
        name = _CONTROL_NAMES.get(code)
        return f"control character U+{code:04X}" + (f" ({name})" if name else "")
    return f"character U+{code:04X}"


def character_problems(text: str) -> list[tuple[int, str]]:
    """``(line, message)`` for each line holding characters YAML does not allow, first per line."""
    out: list[tuple[int, str]] = []
    last_line, last_end = 1, 0
    for match in yaml.reader.Reader.NON_PRINTABLE.finditer(text):
        line = last_line + len(_LINE_BREAK.findall(text, last_end, match.start()))
        last_line, last_end = line, match.start()
        if out and out[-1][0] == line:
            continue
        start = max(text.rfind(c, 0, match.start()) for c in "\n\r\x85\u2028\u2029") + 1
        out.append((line, f"{_describe(match.group())} at column {match.start() - start + 1} is not allowed "
                          f"in a sweep file"))
        if len(out) == MAX_CHARACTER_PROBLEMS:
            break
    return out


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing under :data:`MAX_NODES` and :data:`MAX_DEPTH` (see above)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth) once complete
        self._open: set[str] = set()  # anchors of the collections being composed
        self._level = 0  # nesting of the node being composed
        self._total = 0  # nodes so far, aliases expanded

    def _count(self, nodes: int, depth: int, mark, what: str) -> None:
        self._total += nodes
        if self._total > MAX_NODES:
            raise LimitError(None, None, f"{what} makes the file expand to more than {MAX_NODES} values "
                             f"(aliases counted each time they are used); a sweep file needs far fewer", mark)
        if self._level + depth > MAX_DEPTH:
            raise LimitError(None, None, f"{what} nests lists and mappings deeper than {MAX_DEPTH} levels "
                             f"(aliases included)", mark)

    def fetch_flow_collection_start(self, TokenClass):
        # PyYAML's scanner looks ahead over every open flow collection for each token (a possible
        # simple key per level): 1000 nested '[' took a second, 100,000 would take hours. Stop it
        # while scanning, before the composer's own depth check is reached.
        if self.flow_level >= MAX_DEPTH:
            raise LimitError(None, None, f"this value nests lists and mappings deeper than {MAX_DEPTH} levels",
                             self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open:
                first = self.anchors[event.anchor].start_mark.line + 1
                raise LimitError(None, None, f"recursive alias *{event.anchor}: it is used inside its own anchor "
                                 f"&{event.anchor} (line {first}), so it would never end", event.start_mark)
            node = super().compose_node(parent, index)  # an undefined alias raises here
            nodes, depth = self._expanded[id(node)]
            self._count(nodes, depth, event.start_mark, f"alias *{event.anchor} ({nodes} values)")
            return node
        self._count(1, 1, event.start_mark, "this value")
        anchor = event.anchor if not isinstance(event, yaml.ScalarEvent) else None
        if anchor is not None:
            self._open.add(anchor)
        self._level += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._level -= 1
            self._open.discard(anchor)
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes = [self._expanded[id(child)] for child in children]
        self._expanded[id(node)] = (1 + sum(s[0] for s in sizes), 1 + max((s[1] for s in sizes), default=0))
        return node

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            shown = node.value if isinstance(node, yaml.ScalarNode) else node.id
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            reason = str(exc).split(";")[0].split("\n")[0][:160]
            raise ConstructorError(None, None, f"cannot read {shown!r} as {node.tag.rsplit(':', 1)[-1]}"
                                   + (f": {reason}" if reason else ""), node.start_mark) from None


__all__ = ["MAX_FILE_BYTES", "MAX_NODES", "MAX_DEPTH", "LimitError", "read_text", "character_problems",
           "BoundedLoader", "ComposerError"]
