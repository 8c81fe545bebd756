"""Structure-aware mutation of sweep files, driven by a ``random.Random``-like source.

:func:`mutant` takes a valid example file and returns the bytes of a mutated one. It works on
two levels, so that both the schema and the YAML reader are exercised:

* the *tree* (the parsed mapping): values replaced by values of other types, sizes and signs
  (huge integers, NaN, infinities, unicode and control characters in strings, deep lists),
  keys deleted, renamed, added (known field names in the wrong section, unknown ones), values
  wrapped in lists, grid axes added with random value lists;
* the *text*: the tree is emitted either by ``yaml.safe_dump`` (block or flow style) or by
  :func:`emit`, which adds YAML's own features at random: anchors and aliases (also recursive
  and undefined ones), tags (``!!int``, ``!!binary``, ``!!set``, ``!!python/...``, local ones),
  merge keys (``<<: *a``), deep nesting; then characters are inserted (controls, NUL, BOM,
  non-BMP), lines duplicated or cut, "billion laughs" alias towers spliced in, numbers made
  huge, bytes made invalid UTF-8.

Hypothesis drives it through ``st.randoms()`` (see ``test_fuzz.py``); the subprocess cases use
``random.Random(seed)``. Nothing here decides what the outcome must be: the tests check that.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {p.name: p.read_text(encoding="utf-8") for p in sorted((REPO / "sweeps").glob("*.yaml"))}

FIELDS = ["name", "seed", "method", "samples", "repeats", "data", "model", "train", "grid", "exclude",
          "early_stopping", "selection", "resources", "failures", "feasibility", "mlflow", "blocks", "depth",
          "depth_rule", "kernel_size", "stride", "padding", "activation", "pooling", "pool_size", "pool_stride",
          "dense", "dense_activation", "classes", "epochs", "batch_size", "optimizer", "learning_rate",
          "momentum", "weight_decay", "dtype", "source", "path", "train_size", "test_size", "val_fraction",
          "metric", "mode", "grace_epochs", "reduction_factor", "cpus_per_trial", "max_concurrent",
          "max_retries", "stop_after_same_error", "unseen_inputs", "tracking_uri", "experiment"]
WORDS = ["same", "max", "avg", "l2", "none", "relu", "sigmoid", "adam", "sgd", "float32", "float64", "grid",
         "random", "bundled", "mnist", "val_accuracy", "val_loss", "min", "skip", "allow", "double", "halve",
         "constant", "..", ".", "../../x", "/etc/passwd", "a/b", "x" * 300, "", " ", "NaN", "1e309", "0x10",
         "sqlite:///../../m.db", "caf\u00e9", "\U0001F600", "na\u0000me", "a\nb", "\u202e", "\ufeff", "~", "null"]
CONTROL = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\ufffe", "\ufeff",
           "\t", "\r", "\x9b"]
TAGS = ["!!str", "!!int", "!!float", "!!bool", "!!null", "!!binary", "!!set", "!!omap", "!!pairs", "!!seq",
        "!!map", "!!timestamp", "!!python/object/apply:os.getcwd", "!!python/tuple", "!local", "!", "!<tag:x>"]
SCALARS = ["1e999", "-1e999", ".inf", "-.inf", ".nan", ".NaN", "0x" + "f" * 40, "0b" + "1" * 200, "0o777",
           "1_000_000", "1:30:00", "-0", "+5", "9" * 5000, "2001-12-14", "2001-13-45 25:61:61", "~", "yes",
           "on", "Off", "=", "<<", "'quoted'", '"\\x00"', '"\\uD800"', '"\\U0010FFFF"', "|\n  block", ">-\n  folded"]


def random_value(rng, depth: int = 0):
    """A value of a random type and size: what a careless or hostile author might write."""
    kind = rng.randrange(14 if depth < 3 else 10)
    if kind == 0:
        return rng.choice([0, 1, 2, 3, -1, -7, 28, 29, 64, 65, 1000, 60001])
    if kind == 1:
        return rng.choice([1, -1]) * 10 ** rng.randrange(3, 40)
    if kind == 2:
        return rng.choice([2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64, -(2 ** 63)])
    if kind == 3:
        return rng.choice([0.0, -0.0, 0.5, 1e-300, 1e300, math.inf, -math.inf, math.nan, 0.999999, 1.0, 3.0])
    if kind == 4:
        return rng.choice(WORDS)
    if kind == 5:
        return "".join(rng.choice(["a", "-", "_", ".", " ", "/", "\\", "é", "中", *CONTROL])
                       for _ in range(rng.randrange(0, 12)))
    if kind == 6:
        return rng.choice([None, True, False])
    if kind == 7:
        return [rng.randrange(-2, 70) for _ in range(rng.randrange(0, 4))]
    if kind == 8:
        return rng.choice(FIELDS)
    if kind == 9:
        return "x" * rng.choice([199, 200, 201, 5000])
    if kind == 10:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    if kind == 11:
        return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}
    if kind == 12:
        value = rng.randrange(1, 9)
        for _ in range(rng.randrange(1, 60)):
            value = [value]
        return value
    return [[rng.randrange(-1, 9), rng.randrange(-1, 9)] for _ in range(rng.randrange(1, 4))]


# ---------------------------------------------------------------------------------------------
# Tree mutations


def _containers(tree, path=()):
    """Every (path, container) below ``tree``, the root included."""
    yield path, tree
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)):
            yield from _containers(value, path + (key,))


def mutate_tree(rng, tree):
    containers = list(_containers(tree))
    _, node = rng.choice(containers)
    op = rng.randrange(8)
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        if op == 0:
            del node[key]
        elif op == 1:
            node[rng.choice(FIELDS + [str(key).upper(), f"{key}s", 7, None, "<<"])] = node.pop(key)
        elif op == 2:
            node[rng.choice(FIELDS)] = random_value(rng)
        elif op == 3:
            node[key] = [node[key]] if rng.random() < 0.5 else str(node[key])
        elif op == 4:
            grid = tree.setdefault("grid", {}) if isinstance(tree.get("grid", {}), dict) else {}
            grid[rng.choice(FIELDS[16:])] = [random_value(rng) for _ in range(rng.randrange(1, 5))]
        else:
            node[key] = random_value(rng)
    elif isinstance(node, list) and node:
        i = rng.randrange(len(node))
        if op < 3:
            node[i] = random_value(rng)
        elif op < 5:
            node.append(node[i])
        elif op < 6:
            del node[i]
        else:
            node.insert(i, random_value(rng))
    return tree


# ---------------------------------------------------------------------------------------------
# Emitting YAML with its own features


class Emitter:
    """Flow-style YAML from a tree, with anchors, aliases, tags and merge keys at random."""

    def __init__(self, rng, rate: float):
        self.rng, self.rate = rng, rate
        self.anchors: list[tuple[str, bool]] = []  # (name, is a mapping)
        self.open: list[str] = []

    def scalar(self, value) -> str:
        if value is None:
            return self.rng.choice(["null", "~", ""])
        if isinstance(value, bool):
            return self.rng.choice(["true", "false"]) if self.rng.random() < 0.1 else str(value).lower()
        if isinstance(value, float):
            if math.isnan(value):
                return ".nan"
            if math.isinf(value):
                return ".inf" if value > 0 else "-.inf"
            return repr(value)
        if isinstance(value, int):
            return str(value)
        text = str(value)
        if self.rng.random() < 0.3 and text.isidentifier():
            return text
        return json.dumps(text)

    def emit(self, value, depth: int = 0) -> str:
        rng = self.rng
        if self.anchors and rng.random() < self.rate / 2:
            name, _ = rng.choice(self.anchors)
            return f"*{name}"
        if rng.random() < self.rate / 20:
            return rng.choice(["*undefined", "[" * 40 + "]" * 40, rng.choice(SCALARS)])
        prefix = ""
        if rng.random() < self.rate / 4:
            prefix += rng.choice(TAGS) + " "
        anchor = None
        if isinstance(value, (dict, list)) and rng.random() < self.rate:
            anchor = f"a{len(self.anchors) + len(self.open)}"
            prefix += f"&{anchor} "
            self.open.append(anchor)
            if rng.random() < 0.1:  # an alias inside its own anchor: refused as recursive
                self.anchors.append((anchor, isinstance(value, dict)))
        if isinstance(value, dict):
            items = [f"{self.scalar(k) if not isinstance(k, str) else json.dumps(k)}: {self.emit(v, depth + 1)}"
                     for k, v in value.items()]
            maps = [a for a, is_map in self.anchors if is_map and a not in self.open]
            if maps and rng.random() < self.rate:
                merged = rng.sample(maps, min(len(maps), rng.randrange(1, 3)))
                items.insert(rng.randrange(len(items) + 1), "<<: " + (
                    f"*{merged[0]}" if len(merged) == 1 else "[" + ", ".join(f"*{m}" for m in merged) + "]"))
            text = "{" + ", ".join(items) + "}"
        elif isinstance(value, list):
            text = "[" + ", ".join(self.emit(v, depth + 1) for v in value) + "]"
        else:
            text = self.scalar(value)
        if anchor is not None:
            self.open.remove(anchor)
            if (anchor, isinstance(value, dict)) not in self.anchors:
                self.anchors.append((anchor, isinstance(value, dict)))
        return prefix + text


def emit(rng, tree) -> str:
    style = rng.randrange(3)
    if style == 0:
        return yaml.safe_dump(tree, default_flow_style=False, allow_unicode=rng.random() < 0.5, sort_keys=False)
    if style == 1:
        return yaml.safe_dump(tree, default_flow_style=True, allow_unicode=True, sort_keys=False, width=80)
    return Emitter(rng, rate=rng.choice([0.0, 0.05, 0.2, 0.5])).emit(tree) + "\n"


# ---------------------------------------------------------------------------------------------
# Text mutations


def laughs(rng) -> str:
    """A tower of aliases: ``width`` aliases per level over ``levels`` levels, as a flow list."""
    width, levels = rng.randrange(2, 10), rng.randrange(2, 10)
    parts = [f"&l0 [{', '.join(['1'] * width)}]"]
    for i in range(1, levels):
        parts.append(f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "[" + ", ".join(parts) + "]"


def mutate_text(rng, text: str) -> str:
    op = rng.randrange(9)
    lines = text.split("\n")
    if op == 0:  # a character, often a control character, somewhere
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(CONTROL + ["é", "\U0001F600", "\u200b", "#", ":", "&", "*", "!", "%", "@", "`",
                                                  "{", "]", "\"", "'", "|", ">", "-", "? "]) + text[at:]
    if op == 1:  # a line repeated, dropped or cut short
        i = rng.randrange(len(lines))
        if rng.random() < 0.4:
            lines.insert(i, lines[i])
        elif rng.random() < 0.5:
            del lines[i]
        else:
            lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)]
        return "\n".join(lines)
    if op == 2:  # an alias tower as the value of a key
        key = rng.choice(["exclude", "grid", "model", "dense", "name", "extra"])
        return text + f"\n{key}: {laughs(rng)}\n" if rng.random() < 0.5 else f"{key}: {laughs(rng)}\n" + text
    if op == 3:  # a scalar replaced by a strange one
        i = rng.randrange(len(lines))
        if ": " in lines[i]:
            head = lines[i].split(": ", 1)[0]
            lines[i] = f"{head}: {rng.choice(SCALARS)}"
        return "\n".join(lines)
    if op == 4:  # deep nesting
        n = rng.choice([5, 31, 32, 33, 100, 1000])
        return text + f"\nexclude: {'[' * n}{']' * n}\n"
    if op == 5:  # indentation broken
        i = rng.randrange(len(lines))
        lines[i] = rng.choice(["", " ", "\t", "    "]) + lines[i]
        return "\n".join(lines)
    if op == 6:  # a second document or a directive
        return rng.choice(["%YAML 1.1\n---\n", "--- !!map\n", "%TAG ! tag:x,2000:\n---\n"]) + text + \
            rng.choice(["", "\n---\nname: second\n", "\n...\n"])
    if op == 7:  # an anchor on a line and its alias elsewhere (merge into a section)
        return text + "\nbase: &base {depth: 4, kernel_size: 3}\nmodel: {<<: *base}\n"
    return text[:rng.randrange(len(text) + 1)]  # cut anywhere


def mutant(rng, example: str) -> bytes:
    """A mutated version of ``example`` (the text of a valid sweep file), as the bytes of a file."""
    tree = yaml.safe_load(example)
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        tree = mutate_tree(rng, tree)
    try:
        text = emit(rng, tree)
    except (yaml.YAMLError, RecursionError):  # a tree safe_dump cannot write: keep the original text
        text = example
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        text = mutate_text(rng, text)
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.03:  # bytes that are not UTF-8
        at = rng.randrange(len(data) + 1)
        data = data[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]) + data[at:]
    return data


__all__ = ["EXAMPLES", "random_value", "mutate_tree", "emit", "mutate_text", "mutant", "laughs"]
