"""Catch definitions whose shape depends on something other than the saved data.

The *shape* of a definition on some data is every statement `definition()`
yields on it, over every branch, with what the data decided about each: a
condition, a timeout, a thread id, the events of a wait. genflow replays the
definition many times per move, on the current data, in whatever process
resumes the instance; if the shape changes while the data does not, an
in-flight instance may find its saved statement gone, or run a branch that an
uninterrupted run would not have run.

`examine(wf)` walks the definition on `wf`'s data:

1. inside the `genflow.testing.sandbox.Sandbox`, which names every read of the
   clock, randomness, ids, the environment, files, the network (any module,
   any import style), with the statement it was made for;
2. a second time, to catch what changes on its own from one replay to the next;
3. twice more when the data (or a module the definition ran) holds sets or
   frozensets of strings or bytes: their iteration order depends on
   `PYTHONHASHSEED`, so they are made to iterate in sorted, then reversed,
   order; a shape that follows is reported with the set and where it was iterated.

Statements are read generically (their slots: plain values and the statements
they hold), so statements added to genflow later need nothing here.
`vanished` explains the other classic mistake: a Python `if` on data that a
step changes, which makes the statement a thread stands at disappear.
"""

from __future__ import annotations

import copy
import datetime as _dt
import decimal
import enum
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from genflow.replay import as_body, iter_tree
from genflow.statements import Stmt
from genflow.testing.sandbox import CATEGORIES, Sandbox, Violation

__all__ = [
    "Node",
    "Shape",
    "ShapeProblem",
    "canonical",
    "compare_shapes",
    "examine",
    "explain_shape_problem",
    "name_of",
    "shape",
    "shape_problem",
    "statement_words",
    "vanished",
]


@attrs.frozen
class Node:
    """One statement of a shape: what replaying the definition decided about it."""

    depth: int
    kind: str
    name: str | None
    detail: tuple[Any, ...] = ()

    def words(self) -> str:
        return f"{self.kind} {self.name!r}" if self.name else self.kind


@attrs.frozen
class Shape:
    nodes: tuple[Node, ...]
    error: str = ""  # definition() raised while being walked


def name_of(stmt: Stmt) -> str | None:
    """A statement's name; for one without a name of its own that holds named
    statements (a Switch, an If: its cases), the first of theirs."""
    if stmt.name is not None:
        return stmt.name
    for slot in _slots(type(stmt)):
        value = getattr(stmt, slot, None)
        if isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, Stmt) and item.name:
                    return item.name
    return None


def statement_words(stmt: Stmt) -> str:
    name = name_of(stmt)
    return f"{type(stmt).__name__} {name!r}" if name else type(stmt).__name__


def shape(wf: Any, sandbox: Sandbox | None = None) -> Shape:
    """The shape of `wf`'s definition on its current data (every branch); with
    a `sandbox`, each read it records is tagged with the statement built next."""
    nodes: list[Node] = []
    try:
        for stmt, stack in iter_tree(as_body(wf)):
            if sandbox is not None:
                sandbox.tag(statement_words(stmt))
            nodes.append(Node(len(stack), type(stmt).__name__, name_of(stmt), _decisions(stmt)))
    except Exception as exc:
        return Shape(tuple(nodes), f"{type(exc).__name__}: {exc}")
    return Shape(tuple(nodes))


# -- what a statement holds that the data decides ------------------------------------------

_SKIPPED = ("name", "bodies", "body")
_NOTHING = object()


def _decisions(stmt: Any) -> tuple[Any, ...]:
    found = []
    for slot in _slots(type(stmt)):
        if slot in _SKIPPED:
            continue
        value = _plain(getattr(stmt, slot, None))
        if value is not _NOTHING:
            found.append((slot, value))
    return tuple(found)


def _plain(value: Any) -> Any:
    """`value` as a shape records it: plain values and statements; callables,
    handler objects and anything else of the user's are not part of a shape."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, enum.Enum,
                                           _dt.date, _dt.time, _dt.timedelta,
                                           decimal.Decimal)):
        return value
    if isinstance(value, type):  # an exception a Catch matches, a Timeout raises
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, Stmt) or (_slotted(type(value)) and not callable(value)):
        # a statement, or a part of one (a Try's Catch and Finally clauses)
        return (type(value).__name__, getattr(value, "name", None), _decisions(value))
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        return _NOTHING if any(item is _NOTHING for item in items) else tuple(items)
    return _NOTHING


def _slotted(cls: type) -> bool:
    return hasattr(cls, "__slots__") or hasattr(cls, "__mypyc_attrs__")


def _slots(cls: type) -> list[str]:
    """The attributes of a slotted class (of the statements' classes): its `__slots__`,
    or compiled (docs/compiled.md), where a native class has none, its `__mypyc_attrs__`."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = vars(klass).get("__slots__", vars(klass).get("__mypyc_attrs__", ()))
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in names:
                names.append(name)
    return names


def canonical(found: Shape) -> list[Any]:
    """A shape as plain msgpack-able values, the same in every process (for
    the cross-process check)."""
    return [[n.depth, n.kind, n.name, _canon(n.detail)] for n in found.nodes] + (
        [["error", found.error]] if found.error else [])


def _canon(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (list, tuple)):
        return [_canon(item) for item in value]
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    return repr(value)


# -- comparing shapes ---------------------------------------------------------------------

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
            return f"statement {x.name!r} ({x.kind}): " + _detail_diff(x.detail, y.detail,
                                                                      labels)
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


_SLOT_WORDS = {"cond": "condition", "after": "timeout", "id": "thread id", "events": "events"}


def _detail_diff(x: tuple[Any, ...], y: tuple[Any, ...], labels: Labels,
                 owner: str = "") -> str:
    """The first slot that differs; `owner` names the statement it belongs to
    when it is held by another (a branch of a Switch, an event of a Wait)."""
    in_a, in_b = labels
    for (slot, v1), (_, v2) in zip(x, y, strict=False):
        if v1 == v2:
            continue
        inner = _nested_diff(v1, v2, labels)
        if inner is not None:
            return inner
        what = _SLOT_WORDS.get(slot, slot)
        whose = f"the {what} of {owner}" if owner else f"its {what}"
        return f"{whose} is {_shown(v1)} {in_a} and {_shown(v2)} {in_b}"
    return f"it differs {in_a} and {in_b}"


def _nested_diff(v1: Any, v2: Any, labels: Labels) -> str | None:
    """The difference inside statements a statement holds (a Switch's cases, a
    Wait's events), naming the inner statement."""
    if not (isinstance(v1, tuple) and isinstance(v2, tuple) and len(v1) == len(v2)):
        return None
    for a, b in zip(v1, v2, strict=True):
        if a == b:
            continue
        if _is_statement(a) and _is_statement(b) and a[:2] == b[:2]:
            kind, name = a[0], a[1]
            owner = f"branch {name!r}" if kind in ("Case", "_Otherwise") else f"{kind} {name!r}"
            return _detail_diff(a[2], b[2], labels, owner)
        return None
    return None


def _is_statement(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 3 and isinstance(value[2], tuple)


def _shown(value: Any) -> str:
    if _is_statement(value):
        return f"{value[0]} {value[1]!r}"
    if isinstance(value, tuple) and all(_is_statement(v) for v in value):
        return "(" + ", ".join(repr(v[1]) for v in value) + ")"
    return repr(value) if not isinstance(value, bool) else str(value)


# -- examining one data ---------------------------------------------------------------------


@attrs.frozen
class ShapeProblem:
    """Why the shape depends on more than the data.

    `cause`: "sandbox" (a read the sandbox records), "replays" (it changes on
    its own), "set order", "unsaved" (differs after a save and reload),
    "outside" (differs later, on the same saved data), "process" (differs in
    another process)."""

    cause: str
    difference: str
    detail: str = ""
    violations: tuple[Violation, ...] = ()


def shape_problem(wf: Any, allow: Iterable[str] = ()) -> ShapeProblem | None:
    """The first way `wf`'s definition depends on more than its data (None: none found)."""
    return examine(wf, allow)[0]


def examine(wf: Any, allow: Iterable[str] = ()) -> tuple[ShapeProblem | None, Shape]:
    """`shape_problem`, and the shape of the definition on `wf`'s data (for later comparisons)."""
    with Sandbox(allow) as box:
        first = shape(wf, box)
    box.tag("(the end of definition())")
    if box.violations:
        return ShapeProblem("sandbox", "", violations=tuple(box.violations)), first
    again = shape(wf)
    diff = compare_shapes(first, again, ("in one replay", "in the next"))
    if diff:
        return ShapeProblem("replays", diff), again
    return _set_order_problem(wf, again, list(box.namespaces.values())), again


# -- sets of strings, in another order -------------------------------------------------------


#: where each set (by its label) was iterated
Sites = dict[str, list[str]]


class _OrderedSet(set):
    """A set of strings that iterates in sorted (or reversed) order, and notes
    where it was iterated."""

    def __init__(self, items: Any, reverse: bool, label: str, sites: Sites):
        super().__init__(items)
        self.reverse, self.label, self.sites = reverse, label, sites

    def __iter__(self) -> Iterator[Any]:
        self.sites.setdefault(self.label, []).append(_caller())
        return iter(sorted(set.__iter__(self), key=repr, reverse=self.reverse))


class _OrderedFrozenset(frozenset):
    reverse: bool
    label: str
    sites: Sites

    def __new__(cls, items: Any, reverse: bool, label: str, sites: Sites) -> Any:
        made = super().__new__(cls, items)
        made.reverse, made.label, made.sites = reverse, label, sites
        return made

    def __iter__(self) -> Iterator[Any]:
        self.sites.setdefault(self.label, []).append(_caller())
        return iter(sorted(frozenset.__iter__(self), key=repr, reverse=self.reverse))


def _caller() -> str:
    frame = sys._getframe(2)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _hash_ordered(value: Any) -> bool:
    return (type(value) in (set, frozenset) and len(value) > 1
            and all(isinstance(item, (str, bytes)) for item in value))


def _reorder(value: Any, reverse: bool, label: str, sites: Sites, found: list[str],
             depth: int = 0) -> Any:
    """`value` with every set of strings in it iterating in a fixed order."""
    if depth > 6:
        return value
    if _hash_ordered(value):
        found.append(label)
        kind = _OrderedSet if type(value) is set else _OrderedFrozenset
        return kind(value, reverse, label, sites)
    if type(value) in (list, tuple):
        items = [_reorder(v, reverse, f"{label}[{i}]", sites, found, depth + 1)
                 for i, v in enumerate(value)]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items)
    if type(value) is dict:
        entries = {k: _reorder(v, reverse, f"{label}[{k!r}]", sites, found, depth + 1)
                   for k, v in value.items()}
        return value if all(entries[k] is value[k] for k in value) else entries
    if attrs.has(type(value)):
        changes = {f.name: _reorder(getattr(value, f.name), reverse, f"{label}.{f.name}",
                                    sites, found, depth + 1)
                   for f in attrs.fields(type(value))}
        if all(changes[f.name] is getattr(value, f.name) for f in attrs.fields(type(value))):
            return value
        clone = copy.copy(value)
        for name, item in changes.items():
            object.__setattr__(clone, name, item)
        return clone
    return value


def _set_order_problem(wf: Any, base: Shape, spaces: list[dict[str, Any]]
                       ) -> ShapeProblem | None:
    sites: Sites = {}
    shapes = []
    for reverse in (False, True):
        found: list[str] = []
        clone = copy.copy(wf)
        for field in attrs.fields(type(wf)):
            value = getattr(wf, field.name)
            ordered = _reorder(value, reverse, field.name, sites, found)
            if ordered is not value:
                object.__setattr__(clone, field.name, ordered)
        swapped: list[tuple[dict[str, Any], str, Any]] = []
        for space in spaces:
            for name, value in list(space.items()):
                if _hash_ordered(value):
                    label = f"{space.get('__name__')}.{name}"
                    found.append(label)
                    space[name] = _reorder(value, reverse, label, sites, [])
                    swapped.append((space, name, value))
        if not found:
            return None
        try:
            shapes.append(shape(clone))
        finally:
            for space, name, value in swapped:
                space[name] = value
    diff = compare_shapes(shapes[0], shapes[1], ("in one order", "in another"))
    if diff is None:
        return None
    iterated = "; ".join(
        f"{label} (iterated at {', '.join(dict.fromkeys(_short_site(s) for s in where))})"
        for label, where in sites.items()) or "(not found)"
    return ShapeProblem("set order", diff, iterated)


def _short_site(site: str) -> str:
    from genflow.testing.sandbox import _shown_path

    path, _, line = site.rpartition(":")
    return f"{_shown_path(path)}:{line}"


# -- in words --------------------------------------------------------------------------------

_FIXES = {
    "clock": "read the time in a step and keep it in the data (self.ordered_at = ...), "
             "compare against that field, or wait with Timeout(...)",
    "random": "draw the random value in a step and keep it in the data; branch on that field",
    "uuid": "make the id in a step and keep it in the data",
    "environment": "read the setting in a step (or when the instance starts) and keep it "
                   "in the data",
    "secrets": "make the token in a step and keep it in the data",
    "files": "read the file in a step and keep what matters in the data",
    "network": "call the service in a step and keep its answer in the data",
    "processes": "run the program in a step and keep its result in the data",
}


def explain_shape_problem(
    problem: ShapeProblem, workflow: str, where: str
) -> tuple[str, list[str]]:
    """A title and lines of advice for a shape that depends on more than the data."""
    if problem.cause == "sandbox":
        first = problem.violations[0]
        reads = CATEGORIES[first.category]
        title = f"definition() of {workflow!r} reads {reads}"
        statement = (f"while building statement {first.statement}" if first.statement and
                     not first.statement.startswith("(") else "at the end of definition()")
        lines = [
            f"call: {first.words()}",
            f"{statement}, on the data {where}.",
            "definition() is replayed at every move, in whatever process resumes the "
            "instance: an instance resumed later or elsewhere would take another path.",
            f"Fix: {_FIXES[first.category]}.",
            f"To allow it on purpose: end the line with `# genflow: allow[{first.category}]`, "
            f"or pass allow=[{first.category!r}].",
        ]
        others = problem.violations[1:]
        if others:
            lines.append("Also read: " + "; ".join(
                f"{CATEGORIES[v.category]}, {v.call} at {v.where}" for v in others[:5]))
    elif problem.cause == "set order":
        title = f"definition() of {workflow!r} depends on the iteration order of a set"
        lines = [
            f"The same data ({where}) with its sets of strings iterated in one order and in "
            f"another: {problem.difference}.",
            f"The sets: {problem.detail}.",
            "A set of strings iterates in an order that changes with PYTHONHASHSEED: another "
            "process would build another shape.",
            "Fix: iterate sorted(...) of it, or keep a list in the data.",
        ]
    elif problem.cause == "unsaved":
        title = f"definition() of {workflow!r} depends on data that is not saved"
        lines = [
            f"The data ({where}) replayed in memory and after a save and reload: "
            f"{problem.difference}.",
            f"Not kept by a save and reload: {problem.detail or 'an attribute'}.",
            "(A field with init=False, an attribute that is not an attrs field, or a type "
            "the converter gives back as another type.)",
            "An instance resumed in another process would take another path, or run steps "
            "again. Fix: keep it in an ordinary attrs field of its exact type.",
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
    elif problem.cause == "process":
        title = f"definition() of {workflow!r} takes another shape in another process"
        lines = [
            f"The data saved ({where}) replayed here and in a fresh interpreter "
            f"({problem.detail}): {problem.difference}.",
            "Something the definition reads differs between processes: the iteration order "
            "of a set of strings (PYTHONHASHSEED), the local time zone (TZ), an environment "
            "variable.",
            "Fix: iterate sorted(...) of sets, compute times in UTC in a step, read settings "
            "in a step and keep them in the data.",
        ]
    else:
        title = f"definition() of {workflow!r} gives another shape on every replay"
        lines = [
            f"The same data ({where}) replayed twice: {problem.difference}.",
            "It reads something that changes from one call to the next (random numbers, a "
            "counter, an outside system).",
            "Fix: compute such values in a step and keep them in the data.",
        ]
    lines.append("Rule: the shape of definition() may only depend on the saved data "
                 "(see 'Determinism: the rules and why' in docs/concepts.md).")
    return title, lines


def vanished(
    before: Any, after: Any, statement: str, changed: list[str], steps: list[str],
) -> list[str]:
    """Why `statement` is in the definition on `before` and not on `after`, in words.
    `changed` are the data's differences in words, `steps` the steps that ran."""
    present_before = any(n.name == statement for n in shape(before).nodes)
    present_after = any(n.name == statement for n in shape(after).nodes)
    lines = []
    if present_before and not present_after:
        lines.append(f"Statement {statement!r} is in the definition on the data the thread had "
                     "when it got there, and gone on the data as it is now.")
    else:
        lines.append(f"Statement {statement!r} cannot be found by the replay any more.")
    if changed:
        lines.append("The data changed in between: " + "; ".join(changed))
    if steps:
        lines.append("by " + ", ".join(steps) + ".")
    lines.append(
        "This is a Python `if` (or loop, or early return) in definition() on data that a step "
        "or an event's handler changes: replayed after it, the statement the thread stands at "
        "is no longer yielded. Use genflow's If(...)/For(...) for branches on data that steps "
        "and handlers change, so every statement stays in the definition."
    )
    return lines
