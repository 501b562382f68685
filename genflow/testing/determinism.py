"""Catch definitions whose shape depends on something other than the saved data.

The *shape* of a definition on some data is every statement `definition()`
yields on it, over every branch, with what the data decides: each condition,
each timeout, each thread id. genflow replays the definition many times per
move, on the current data; if the shape changes while the data does not, an
in-flight instance may find its saved statement gone, or run a branch that an
uninterrupted run would not have run.

`shape_problem(wf)` replays the definition on the same data several times:
twice as it is, with `random` seeded differently, and with the clock moved on
(the `time.time`, `datetime.datetime.now/utcnow/today` and `datetime.date.today`
the workflow's modules see). The first difference is explained in words,
naming the statement. `vanished` explains the other classic mistake: a Python
`if` on data that a step changes, which makes the statement a thread stands at
disappear from the replay.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

import attrs

from genflow.replay import as_body, iter_tree
from genflow.statements import For, Go, On, Step, Switch, Timeout, Wait, WaitFor

__all__ = [
    "Node",
    "Shape",
    "ShapeProblem",
    "compare_shapes",
    "examine",
    "explain_shape_problem",
    "reference",
    "shape",
    "shape_problem",
    "vanished",
    "world",
]


@attrs.frozen
class Node:
    """One statement of a shape: what replaying the definition decided about it."""

    depth: int
    kind: str
    name: str | None
    detail: tuple[Any, ...] = ()

    def words(self) -> str:
        label = f"{self.kind} {self.name!r}" if self.name else self.kind
        return label


@attrs.frozen
class Shape:
    nodes: tuple[Node, ...]
    error: str = ""  # definition() raised while being walked


def shape(wf: Any) -> Shape:
    """The shape of `wf`'s definition on its current data (every branch)."""
    nodes: list[Node] = []
    try:
        for stmt, stack in iter_tree(as_body(wf)):
            nodes.append(_node(stmt, len(stack)))
    except Exception as exc:
        return Shape(tuple(nodes), f"{type(exc).__name__}: {exc}")
    return Shape(tuple(nodes))


def _node(stmt: Any, depth: int) -> Node:
    kind = type(stmt).__name__
    detail: tuple[Any, ...] = ()
    if isinstance(stmt, Switch):
        detail = tuple((case.name, case.cond) for case in stmt.cases)
        return Node(depth, kind, stmt.cases[0].name if stmt.cases else None, detail)
    if isinstance(stmt, (For, WaitFor)):
        detail = (("condition", stmt.cond),)
    elif isinstance(stmt, Timeout):
        detail = (("after", stmt.after),)
    elif isinstance(stmt, Go):
        detail = (("thread id", stmt.id),)
    elif isinstance(stmt, Wait):
        detail = (("events", tuple(on.name for on in stmt.events)),)
    elif isinstance(stmt, (Step, On)):
        detail = ()
    return Node(depth, kind, stmt.name, detail)


#: how the two replays compared are called in a report
Labels = tuple[str, str]
_ANY_TWO: Labels = ("in one replay", "in the other")


def compare_shapes(a: Shape, b: Shape, labels: Labels = _ANY_TWO) -> str | None:
    """The first difference between two shapes, in words (None if the same).
    `labels` say where each was replayed ("in memory", "after a reload")."""
    if a == b:
        return None
    in_a, in_b = labels
    for x, y in zip(a.nodes, b.nodes, strict=False):
        if x == y:
            continue
        if (x.kind, x.name) == (y.kind, y.name):
            return f"statement {x.name!r} ({x.kind}): " + _detail_diff(x, y, labels)
        names_a = {(n.kind, n.name) for n in a.nodes}
        names_b = {(n.kind, n.name) for n in b.nodes}
        if (x.kind, x.name) not in names_b:
            return (f"statement {x.name!r} ({x.kind}) is there {in_a} and missing {in_b} "
                    f"(which has {y.words()} in its place)")
        if (y.kind, y.name) not in names_a:
            return (f"statement {y.name!r} ({y.kind}) is there {in_b} and missing {in_a} "
                    f"(which has {x.words()} in its place)")
        return f"the statements come in another order: {x.words()} {in_a}, {y.words()} {in_b}"
    if len(a.nodes) != len(b.nodes):
        if len(a.nodes) > len(b.nodes):
            extra, there, missing = a.nodes[len(b.nodes)], in_a, in_b
        else:
            extra, there, missing = b.nodes[len(a.nodes)], in_b, in_a
        return f"statement {extra.name!r} ({extra.kind}) is there {there} and missing {missing}"
    return (f"definition() raises {in_a if a.error else in_b} and not "
            f"{in_b if a.error else in_a}: {a.error or b.error}")


def _detail_diff(x: Node, y: Node, labels: Labels) -> str:
    in_a, in_b = labels
    if x.kind in ("If", "Switch"):
        for (name, c1), (_, c2) in zip(x.detail, y.detail, strict=False):
            if c1 != c2:
                return f"the condition of branch {name!r} is {c1} {in_a} and {c2} {in_b}"
    for (label, v1), (_, v2) in zip(x.detail, y.detail, strict=False):
        if v1 != v2:
            return f"its {label} is {v1!r} {in_a} and {v2!r} {in_b}"
    return f"it differs {in_a} and {in_b}"


# -- replaying in another world -----------------------------------------------------------

_REAL_TIME = time.time
_REAL_TIME_NS = time.time_ns
_REAL_DATETIME = _dt.datetime
_REAL_DATE = _dt.date


class _RealInstances(type):
    """The shifted classes stand in for `datetime`/`date` while patched in, so
    the values the data already holds must still be instances of them (the
    core checks `isinstance(at, datetime)` for `Timeout(at=...)`)."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls.__mro__[1])


def _shifted_classes(shift: _dt.timedelta) -> tuple[type, type]:
    class ShiftedDatetime(_REAL_DATETIME, metaclass=_RealInstances):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return _REAL_DATETIME.now(tz) + shift

        @classmethod
        def utcnow(cls) -> Any:
            return _REAL_DATETIME.now(_dt.UTC).replace(tzinfo=None) + shift

        @classmethod
        def today(cls) -> Any:
            return _REAL_DATETIME.now() + shift

    class ShiftedDate(_REAL_DATE, metaclass=_RealInstances):
        @classmethod
        def today(cls) -> Any:
            return (_REAL_DATETIME.now() + shift).date()

    return ShiftedDatetime, ShiftedDate


def _namespaces(wf: Any) -> list[dict[str, Any]]:
    """The global namespaces of the workflow class's module and methods."""
    spaces: dict[int, dict[str, Any]] = {}
    for klass in type(wf).__mro__:
        if klass is object:
            continue
        module = sys.modules.get(klass.__module__)
        if module is not None:
            spaces[id(vars(module))] = vars(module)
        for value in vars(klass).values():
            fn = getattr(value, "__func__", value)
            space = getattr(fn, "__globals__", None)
            if isinstance(space, dict):
                spaces[id(space)] = space
    return list(spaces.values())


@contextlib.contextmanager
def world(
    wf: Any, *, shift: _dt.timedelta | None = None, seed: int | None = None
) -> Iterator[None]:
    """Replay `wf`'s definition with the clock moved on by `shift` and/or
    `random` seeded with `seed`; everything is put back afterwards."""
    patches: list[tuple[Any, str, Any]] = []

    def patch(target: Any, name: str, value: Any) -> None:
        old = target[name] if isinstance(target, dict) else getattr(target, name)
        patches.append((target, name, old))
        if isinstance(target, dict):
            target[name] = value
        else:
            setattr(target, name, value)

    random_state = random.getstate() if seed is not None else None
    try:
        if seed is not None:
            random.seed(seed)
        if shift is not None:
            seconds = shift.total_seconds()
            shifted_dt, shifted_date = _shifted_classes(shift)

            def fake_time() -> float:
                return _REAL_TIME() + seconds

            def fake_time_ns() -> int:
                return _REAL_TIME_NS() + int(seconds * 1e9)

            swaps = {
                id(_REAL_TIME): fake_time,
                id(_REAL_TIME_NS): fake_time_ns,
                id(_REAL_DATETIME): shifted_dt,
                id(_REAL_DATE): shifted_date,
            }
            patch(time, "time", fake_time)
            patch(time, "time_ns", fake_time_ns)
            patch(_dt, "datetime", shifted_dt)
            patch(_dt, "date", shifted_date)
            for space in _namespaces(wf):
                for name, value in list(space.items()):
                    swap = swaps.get(id(value))
                    if swap is not None:
                        patch(space, name, swap)
        yield
    finally:
        for target, name, old in reversed(patches):
            if isinstance(target, dict):
                target[name] = old
            else:
                setattr(target, name, old)
        if random_state is not None:
            random.setstate(random_state)


#: clock moves tried: within the day (every hour of it lies within 7 hours of one
#: of them, and the half hour flips), then days, weeks, a year on
_SHIFTS = (
    _dt.timedelta(hours=5, minutes=31, seconds=17),
    _dt.timedelta(hours=11),
    _dt.timedelta(hours=17),
    _dt.timedelta(days=1),
    _dt.timedelta(days=3),
    _dt.timedelta(days=40),
    _dt.timedelta(days=400),
)
_SEEDS = (1, 2, 3)
REFERENCE_SEED = _SEEDS[0]


def reference(wf: Any) -> Shape:
    """The shape with `random` seeded as every other check seeds it (for comparing later)."""
    with world(wf, seed=REFERENCE_SEED):
        return shape(wf)


@attrs.frozen
class ShapeProblem:
    cause: str  # "replays", "randomness", "clock", "outside"
    difference: str
    detail: str = ""


def shape_problem(wf: Any) -> ShapeProblem | None:
    """Replay the definition on `wf`'s data in several worlds; the first difference."""
    return examine(wf)[0]


def examine(wf: Any) -> tuple[ShapeProblem | None, Shape]:
    """`shape_problem`, and the reference shape (as `reference(wf)` gives it)."""
    seeded = []
    for seed in (_SEEDS[0], *_SEEDS):
        with world(wf, seed=seed):
            seeded.append(shape(wf))
    diff = compare_shapes(seeded[0], seeded[1], ("in one replay", "in the next"))
    base = seeded[0]
    if diff:  # same data, same seed: it changes on its own
        return ShapeProblem("replays", diff), base
    for other in seeded[2:]:
        diff = compare_shapes(base, other, ("with one seed", "with another"))
        if diff:
            return ShapeProblem("randomness", diff), base
    for shift in _SHIFTS:
        with world(wf, seed=_SEEDS[0], shift=shift):
            moved = shape(wf)
        diff = compare_shapes(base, moved, ("now", f"{_span(shift)} later"))
        if diff:
            return ShapeProblem("clock", diff, _span(shift)), base
    return None, base


def _span(delta: _dt.timedelta) -> str:
    days, hours, minutes = delta.days, delta.seconds // 3600, delta.seconds // 60 % 60
    parts = []
    for count, unit in ((days, "day"), (hours, "hour"), (minutes, "minute")):
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts)


def explain_shape_problem(
    problem: ShapeProblem, workflow: str, where: str
) -> tuple[str, list[str]]:
    """A title and lines of advice for a shape that depends on more than the data."""
    if problem.cause == "clock":
        title = f"definition() of {workflow!r} depends on the clock"
        lines = [
            f"The same data ({where}) replayed now and with the clock moved on: "
            f"{problem.difference}.",
            "An instance resumed later would take another path than the one it was on.",
            "Fix: read the time in a step and keep it in the data (e.g. self.ordered_at = now()), "
            "compare against that field, or wait with Timeout(...).",
        ]
    elif problem.cause == "randomness":
        title = f"definition() of {workflow!r} depends on randomness"
        lines = [
            f"The same data ({where}) replayed with `random` seeded differently: "
            f"{problem.difference}.",
            "Fix: draw the random value in a step and keep it in the data; branch on that field.",
        ]
    elif problem.cause == "unsaved":
        title = f"definition() of {workflow!r} depends on data that is not saved"
        lines = [
            f"The data ({where}) replayed in memory and after a save and reload: "
            f"{problem.difference}.",
            f"Not kept by a save and reload: {problem.detail or 'some attribute'} (a field with "
            "init=False, an attribute that is not an attrs field, or a type the converter "
            "does not round-trip).",
            "An instance resumed in another process would take another path, or run steps "
            "again. Fix: keep it in an ordinary attrs field.",
        ]
    elif problem.cause == "outside":
        title = f"definition() of {workflow!r} depends on something outside the saved data"
        lines = [
            f"The data saved ({where}) replayed then and again at the end of the run: "
            f"{problem.difference}.",
            "Something the definition reads changed in between without being part of the saved "
            "data: a global variable, a class attribute, an attribute that is not an attrs "
            "field, a file or a database.",
            "Fix: keep what decides the shape in a field of the workflow, changed by a step.",
        ]
    else:
        title = f"definition() of {workflow!r} gives another shape on every replay"
        lines = [
            f"The same data ({where}) replayed twice: {problem.difference}.",
            "It reads something that changes from one call to the next (random numbers, a "
            "counter, uuid4(), an outside system).",
            "Fix: compute such values in a step and keep them in the data.",
        ]
    lines.append("Rule: the shape of definition() may only depend on the saved data "
                 "(see 'Determinism: the rules and why' in docs/concepts.md).")
    return title, lines


def vanished(
    before: Any, after: Any, statement: str, changed: list[tuple[str, Any, Any]],
    steps: list[str],
) -> list[str]:
    """Why `statement` is in the definition on `before` and not on `after`, in words."""
    present_before = any(n.name == statement for n in shape(before).nodes)
    present_after = any(n.name == statement for n in shape(after).nodes)
    lines = []
    if present_before and not present_after:
        lines.append(f"Statement {statement!r} is in the definition on the data the thread had "
                     "when it got there, and gone on the data as it is now.")
    else:
        lines.append(f"Statement {statement!r} cannot be found by the replay any more.")
    if changed:
        lines.append("The data changed in between: " + "; ".join(
            f"{name} {_short(a)} -> {_short(b)}" for name, a, b in changed))
    if steps:
        lines.append("by " + ", ".join(steps) + ".")
    lines.append(
        "This is a Python `if` (or loop, or early return) in definition() on data that a step "
        "changes: replayed after the step, the statement the thread stands at is no longer "
        "yielded. Use genflow's If(...)/For(...) for branches on data that steps change, so "
        "every statement stays in the definition."
    )
    return lines


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
