"""One knob of a sweep's search space: a list of values, or a range; either may be conditional.

A ``grid:`` entry in a sweep file is one of

* a list of values, as the grid has always had: ``kernel_size: [3, 5]``;
* a float range ``{low, high}``, ``log: true`` for a log scale: ``learning_rate: {low: 1.0e-4, high: 0.1, log: true}``;
* an int range ``{low, high, step}`` (``step`` defaults to 1 on an int field): ``epochs: {low: 1, high: 9, step: 2}``;
* any of these with ``when: {knob: value or [values]}``: the knob is set only when each named knob
  (another key of the grid) takes one of those values; otherwise the knob keeps its base setting.
  A list with a condition is written ``{values: [...], when: {...}}``.

:func:`knob_validator` turns the YAML form into a list (plain lists stay lists, so a grid without
ranges is what it always was) or a :class:`Knob`, checking bounds with the field's own type, and
raising located problems (``low``, ``step`` ...) so that the message names the key and its line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, PlainValidator, StrictBool, StrictFloat, StrictInt, TypeAdapter, \
    ValidationError

from sweeper.spec.yamlsource import located_error

Number = Union[StrictInt, StrictFloat]
#: Relative slack when checking that a float step divides a range (0.1 * 3 is not exactly 0.3).
STEP_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Knob:
    """A validated grid entry that is not a plain list: a range, or a conditional list.

    ``values`` is set for a list (then ``low``/``high`` are None); ``integer`` for an int range;
    ``when`` maps other knobs to the values under which this one is set.
    """

    values: Optional[tuple] = None
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    log: bool = False
    integer: bool = False
    when: tuple[tuple[str, tuple], ...] = ()

    @property
    def is_range(self) -> bool:
        return self.values is None

    def size(self) -> Optional[int]:
        """Distinct values: a list's length, a stepped range's steps; None for a continuous range."""
        if self.values is not None:
            return len(self.values)
        if self.step is None:
            return None
        return int(round((self.high - self.low) / self.step)) + 1

    def active(self, values: dict, base: dict) -> bool:
        """Whether this knob is set, given the other knobs' ``values`` (falling back to ``base``)."""
        from sweeper.spec.config import canonical_json

        for other, allowed in self.when:
            current = values.get(other, base.get(other))
            if canonical_json(current) not in {canonical_json(v) for v in allowed}:
                return False
        return True

    def describe(self) -> str:
        if self.values is not None:
            text = f"{len(self.values)} values"
        else:
            kind = "int" if self.integer else "float"
            text = f"{kind} [{self.low:g}, {self.high:g}]" + (f" step {self.step:g}" if self.step else "") \
                + (" log" if self.log else "")
        if self.when:
            text += " when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when)
        return text


class _KnobForm(BaseModel):
    """The YAML mapping form of a knob, before its bounds are checked against the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: Optional[list[Any]] = None
    low: Optional[Number] = None
    high: Optional[Number] = None
    step: Optional[Number] = None
    log: StrictBool = False
    when: Optional[dict[str, Any]] = None


_FORM = TypeAdapter(_KnobForm)


def _first_error(exc: ValidationError) -> str:
    return exc.errors()[0]["msg"]


def _check_range(form: _KnobForm, item: TypeAdapter, integer: bool) -> Knob:
    problems = []
    if form.values is not None:
        problems.append((("values",), "give either values or low/high, not both"))
    for key in ("low", "high"):
        if getattr(form, key) is None:
            problems.append(((), f"a range needs `{key}`"))
    if problems:
        raise located_error(problems)
    low, high, step = form.low, form.high, form.step
    for key, value in (("low", low), ("high", high)):
        try:
            item.validate_python(value)
        except ValidationError as exc:
            problems.append(((key,), _first_error(exc)))
    if integer:
        for key, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and not isinstance(value, int):
                problems.append(((key,), "this knob takes integers: the range's bounds and step must be integers"))
        step = 1 if step is None else step
    if problems:
        raise located_error(problems)
    if low > high:
        raise located_error([(("low",), f"low {low} is greater than high {high}")])
    if form.log and low <= 0:
        raise located_error([(("log",), f"a log scale needs bounds > 0 (low is {low})")])
    if step is not None:
        if step <= 0:
            raise located_error([(("step",), f"step should be > 0, not {step}")])
        if form.log and step != 1:
            raise located_error([(("step",), "a log-scale range takes no step (Optuna samples it continuously)")])
        steps = (high - low) / step
        if abs(steps - round(steps)) > STEP_TOLERANCE * max(1.0, abs(steps)):
            raise located_error([(("step",), f"step {step} does not divide the range {low}..{high} "
                                             f"(high - low = {high - low})")])
    if integer:
        return Knob(low=int(low), high=int(high), step=int(step), log=form.log, integer=True)
    return Knob(low=float(low), high=float(high), step=None if step is None else float(step), log=form.log)


def knob_validator(item_type, list_type, rangeable: Optional[str]):
    """Validator of one grid entry: ``list_type`` for a list (or a conditional list); a range for a
    ``rangeable`` field (``"int"`` or ``"float"``; None: this field takes lists only)."""
    item, lists = TypeAdapter(item_type), TypeAdapter(list_type)

    def check(value):
        if isinstance(value, list):
            return lists.validate_python(value)
        if not isinstance(value, dict):
            raise located_error([((), "should be a list of values or a range {low, high}")])
        try:
            form = _FORM.validate_python(value)
        except ValidationError as exc:
            raise located_error([(tuple(e["loc"]), e["msg"]) for e in exc.errors()]) from None
        when = ()
        if form.when is not None:
            if not form.when:
                raise located_error([(("when",), "an empty condition: name a knob and its values")])
            when = tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in form.when.items())
        if form.values is not None and form.low is None and form.high is None and form.step is None and not form.log:
            try:
                values = lists.validate_python(form.values)
            except ValidationError as exc:
                raise located_error([(("values", *e["loc"]), e["msg"]) for e in exc.errors()]) from None
            return Knob(values=tuple(values), when=when)
        if rangeable is None:
            raise located_error([((), "this knob takes a list of values, not a range")])
        knob = _check_range(form, item, rangeable == "int")
        return Knob(**{**knob.__dict__, "when": when})

    return PlainValidator(check)


def check_conditions(knobs: dict[str, Union[list, Knob]]) -> list:
    """Problems of the ``when:`` conditions: a condition must name another list knob of the grid,
    with values among its values; no knob may depend on a conditional knob."""
    from sweeper.spec.config import canonical_json

    problems = []
    for name, knob in knobs.items():
        if not isinstance(knob, Knob):
            continue
        for other, allowed in knob.when:
            target = knobs.get(other)
            where = (name, "when", other)
            if target is None or other == name:
                problems.append((where, f"names {other!r}, which is not another knob of the grid "
                                        f"(knobs: {', '.join(k for k in knobs if k != name) or 'none'})"))
                continue
            values = target.values if isinstance(target, Knob) else target
            if values is None:
                problems.append((where, f"{other} is a range: a condition names a knob with a list of values"))
                continue
            if isinstance(target, Knob) and target.when:
                problems.append((where, f"{other} is itself conditional: conditions do not chain"))
                continue
            known = {canonical_json(v) for v in values}
            missing = [v for v in allowed if canonical_json(v) not in known]
            if missing:
                problems.append((where, f"{missing} not among the values of {other} {list(values)}"))
    return problems


def knob_size(knob) -> Optional[int]:
    """Distinct values of a grid entry (None: continuous)."""
    return len(knob) if isinstance(knob, list) else knob.size()


def space_size(knobs: dict) -> Optional[int]:
    """Points of the product of the knobs (an upper bound with conditions); None when infinite."""
    sizes = [knob_size(k) for k in knobs.values()]
    return None if any(s is None for s in sizes) else math.prod(sizes)


__all__ = ["Knob", "knob_validator", "check_conditions", "knob_size", "space_size"]
