"""``next.yaml``: the sweep that ran, with its grid moved or refined as the report advises.

The sweep file comes from the ledger (the ``sweep.yaml`` of the sweep's parent run, with the
``--set`` overrides that run was given); :func:`next_sweep` changes only what the advice
(:mod:`dashboards.advice`) says: each knob's grid list, ``repeats`` when the sweep had too few
to measure noise, ``samples`` when a random search's grid shrank below it, and the ``exclude``
entries that no longer name grid values. The name stays the same: the points already trained
are found in the ledger and not trained again, so only new points and repeats cost time.

The result is plain YAML (the original's comments do not survive), headed by comments saying
what changed and why. Files with YAML aliases are not rewritten (expanding them could blow up,
see the field notes); :class:`NextSweepError` says why.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Optional

import yaml

from .advice import Advice, plain

#: A sweep file larger than this is not rewritten (they are a few kB).
MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class SweepFile:
    """The sweep file a submission ran with, and its ``--set KEY=VALUE`` overrides."""

    text: str
    overrides: tuple[str, ...] = ()


class _Dumper(yaml.SafeDumper):
    """Sections in block style, lists in flow style (``kernel_size: [3, 5, 7]``), as sweep files are written."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                                            flow_style=True))


class NextSweepError(ValueError):
    """The sweep file cannot be rewritten (the message says why)."""


def _load(text: str) -> dict:
    if len(text) > MAX_BYTES:
        raise NextSweepError(f"the sweep file is over {MAX_BYTES // 1000} kB")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise NextSweepError("the sweep file uses YAML aliases, which rewriting would expand")
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NextSweepError(f"the sweep file does not parse: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("grid"), dict):
        raise NextSweepError("the sweep file has no grid section")
    return doc


def _override(doc: dict, items: tuple[str, ...]) -> dict:
    """``--set a.b=value`` as ``sweeper`` applies it (sweeper/spec/overrides.py): the value parsed
    as YAML, set at the dotted key; the sweep ran with these, so they are valid."""
    for item in items:
        key, sep, text = item.partition("=")
        keys = [k.strip() for k in key.split(".")]
        if not sep or not all(keys) or len(text) > 10_000:
            raise NextSweepError(f"cannot apply --set {item[:80]}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise NextSweepError(f"cannot apply --set {item[:80]}") from None
        node = doc
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise NextSweepError(f"cannot apply --set {item[:80]}")
            node = child
        node[keys[-1]] = value
    return doc


def _flow(value) -> str:
    return json.dumps(value)


def next_sweep(sweep: SweepFile, advice: Advice, name: str, report: str) -> Optional[str]:
    """The text of the next sweep file, or None when the advice is to stop; ``name``: the sweep,
    ``report``: where the report is (named in the header). :class:`NextSweepError` when the file
    cannot be rewritten."""
    if advice.verdict == "stop":
        return None
    doc = _override(_load(sweep.text), sweep.overrides)
    grid, changes = doc["grid"], []
    for knob in advice.changes():
        old = grid.get(knob.field)
        if not isinstance(old, list):  # not a grid list (a range, or the field is not in the grid): leave it
            continue
        new = list(knob.values)
        if [plain(v) for v in old] != new:
            grid[knob.field] = new
            changes.append(f"grid.{knob.field}: {_flow(old)} -> {_flow(new)} ({knob.action})")
    if advice.repeats and int(doc.get("repeats") or 1) < advice.repeats:
        changes.append(f"repeats: {doc.get('repeats') or 1} -> {advice.repeats} (intervals and ties need repeats)")
        doc["repeats"] = advice.repeats
    size = 1
    for values in grid.values():
        size *= len(values) if isinstance(values, list) else 1
    if doc.get("method") == "random" and isinstance(doc.get("samples"), int) and doc["samples"] > size:
        changes.append(f"samples: {doc['samples']} -> {size} (the grid has {size} points now)")
        doc["samples"] = size
    kept = []
    for entry in doc.get("exclude") or []:
        if isinstance(entry, dict) and all(isinstance(grid.get(k), list) and plain(v) in [plain(x) for x in grid[k]]
                                           for k, v in entry.items()):
            kept.append(entry)
        else:
            changes.append(f"exclude: dropped {_flow(entry)} (it names a value no longer in the grid)")
    if "exclude" in doc:
        doc["exclude"] = kept
    if not changes:
        return None
    header = [f"# The next sweep after {name}, written by `sweeper report {name}` on {time.strftime('%Y-%m-%d')}",
              f"# from the report's own tables ({report}). Advice: {advice.verdict}. Changed:",
              *(f"#   {c}" for c in changes),
              "# Same name: the points already in the ledger are not trained again.",
              "# The sweep file's comments are not kept; the rest is as it ran."]
    return "\n".join(header) + "\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                                                width=100, allow_unicode=True)


def changes(text: str) -> list[str]:
    """What a next sweep file changed, as its header lists it (``grid.kernel_size: [3, 5] -> [3, 5, 7] (widen)``)."""
    return [line[4:] for line in text.splitlines() if line.startswith("#   ")]


__all__ = ["MAX_BYTES", "NextSweepError", "SweepFile", "changes", "next_sweep"]
