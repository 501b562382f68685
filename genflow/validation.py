"""`validate`: check a definition's shape once, before any instance relies on it."""

from __future__ import annotations

import traceback
import types
import typing
from pathlib import Path
from typing import Any

import attrs

from genflow.children import Children
from genflow.errors import DefinitionError, UnknownWorkflowError
from genflow.handlers import as_handler
from genflow.registry import workflow_name
from genflow.replay import Frame, as_body, iter_tree
from genflow.state import Failure
from genflow.statements import (
    Break,
    Continue,
    For,
    Go,
    On,
    Raise,
    Step,
    Stmt,
    Switch,
    Timeout,
    Try,
    Wait,
    WaitFor,
)

__all__ = ["validate"]

_PACKAGE = Path(__file__).resolve().parent


def validate(definition: Any) -> None:
    """Raise `DefinitionError` listing every problem of a definition.

    `definition` is a workflow instance (or its class, taken with its defaults), a
    generator function, or a body. Every
    branch is checked whatever its condition: names present and unique (the
    keys that let in-flight instances survive code changes), Break/Continue
    inside a loop of the same thread, waits with distinct events and usable
    handlers, steps with callable actions. When building the definition raises
    (the user's `definition()`, or a body that holds something that is not a
    statement), the problem says where: the thread, the statement whose body
    was being built, the last statement built before it, and the user's line
    that raised.
    """
    problems: list[str] = []
    seen: dict[str, str] = {}
    stack: list[Frame] = []
    last: dict[Frame, Stmt] = {}  # each frame's last statement built
    keeps: dict[str, set[bool]] = {}  # the `keep=` each event's Ons declare
    events: set[int] = set()  # the Ons of the Waits walked: every other On stands alone
    body = as_body(definition)  # (a class without defaults: its NoDefaultsError, as is)
    try:
        for stmt, stack in iter_tree(body):
            if not isinstance(stmt, On):
                last[stack[-1]] = stmt
                if isinstance(stmt, Wait):
                    events.update(id(on) for on in stmt.events)
                elif isinstance(stmt, WaitFor) and stmt.timeout is not None:
                    events.add(id(stmt.timeout))
            elif id(stmt) not in events:
                problems.append(f"{_where(stack, last)}: {_alone(stmt)}")
                continue
            elif stmt.keep is not None:
                keeps.setdefault(stmt.name or "", set()).add(stmt.keep)
            _check(stmt, stack, seen, problems, definition)
    except DefinitionError as exc:
        problems.append(f"{_where(stack, last)}: {exc}")
    except Exception as exc:
        problems.append(f"{_where(stack, last)}: building the definition raised "
                        f"{exc!r}{_user_line(exc)}")
    for name, declared in sorted(keeps.items()):
        if declared - {True, False}:
            problems.append(f"event {name!r}: keep= is True, False or None, not "
                            f"{sorted(declared - {True, False}, key=repr)[0]!r}")
        elif len(declared) > 1:
            problems.append(f"event {name!r} is declared both keep=True and keep=False: every "
                            "On of one event must agree (a sender cannot tell which Wait a "
                            "message is for)")
    if problems:
        raise DefinitionError(f"invalid definition{_of(definition)}:\n  - "
                              + "\n  - ".join(problems))


def _alone(stmt: On) -> str:
    """What to write instead of an `On` or a `Timeout` yielded outside a `Wait`."""
    kind = type(stmt).__name__
    instead = (f"Sleep({stmt.name!r}, seconds) for a durable sleep, or "
               f"Wait(name, ..., {kind}({stmt.name!r}, ...)) to race it with events"
               if isinstance(stmt, Timeout) else
               f"Wait(name, {kind}({stmt.event!r}, ...)) to wait for the event")
    return f"{kind} {stmt.name!r} stands alone: it is an event of a Wait, not a statement: " \
           f"write {instead}"


def _of(definition: Any) -> str:
    """` of workflow 'name'` for a registered workflow's instance, else ``."""
    if isinstance(definition, (Stmt, list, tuple)) or callable(definition):
        return ""
    try:
        return f" of workflow {workflow_name(definition)!r}"
    except UnknownWorkflowError:
        return ""


def _where(stack: list[Frame], last: dict[Frame, Stmt]) -> str:
    """Where the walk stood: the thread, the statement whose body it was in, and
    the last statement built in that body."""
    if not stack:
        return "main thread, before its first statement"
    go = next((f.owner for f in reversed(stack) if isinstance(f.owner, Go)), None)
    parts = ["main thread" if go is None else f"thread of Go {go.name!r}"]
    frame = stack[-1]
    owner = frame.owner
    if isinstance(owner, Switch):  # If, Switch: the branch is named by its case
        parts.append(f"in the branch {owner.cases[frame.branch].name!r} of {type(owner).__name__}")
    elif isinstance(owner, Wait):
        parts.append(f"in the body of event {owner.events[frame.branch].name!r} "
                     f"of Wait {owner.name!r}")
    elif isinstance(owner, WaitFor) and owner.timeout is not None:
        parts.append(f"in the body of timeout {owner.timeout.name!r} of WaitFor {owner.name!r}")
    elif owner is not None and owner is not go:
        parts.append(f"in the body of {type(owner).__name__} {owner.name!r}")
    built = last.get(stack[-1])
    parts.append(f"after statement {built.name!r}" if built is not None and built.name
                 else "before its first statement" if built is None
                 else f"after a {type(built).__name__}()")
    return ", ".join(parts)


def _user_line(exc: BaseException) -> str:
    """` (file.py, line 12, in definition)`: the innermost frame outside genflow."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not Path(frame.filename).resolve().is_relative_to(_PACKAGE):
            return f" ({Path(frame.filename).name}, line {frame.lineno}, in {frame.name})"
    return ""


def _check_try(stmt: Try, seen: dict[str, str], problems: list[str], definition: Any) -> None:
    if not stmt.catches and stmt.finally_ is None:
        problems.append(f"Try {stmt.name!r} has neither a Catch nor a Finally")
    branches: list[Any] = [*stmt.catches, *([stmt.finally_] if stmt.finally_ else [])]
    for branch in branches:
        kind = "Catch" if branch in stmt.catches else "Finally"
        if not isinstance(branch.name, str) or not branch.name:
            problems.append(f"a {kind} of Try {stmt.name!r} has no name (got {branch.name!r})")
        elif branch.name in seen:
            problems.append(f"name {branch.name!r} is used twice ({seen[branch.name]} and {kind})")
        else:
            seen[branch.name] = kind
    for catch in stmt.catches:
        cls = type(definition)
        if catch.into is not None and attrs.has(cls) and \
                catch.into not in {f.name for f in attrs.fields(cls)}:
            problems.append(f"Catch {catch.name!r}: into={catch.into!r} is not a field of "
                            f"{cls.__name__} (add `{catch.into}: genflow.Failure | None = None`)")
        elif catch.into is not None and attrs.has(cls) and not _takes_failure(cls, catch.into):
            problems.append(f"Catch {catch.name!r}: into={catch.into!r} is a field of type "
                            f"{_type_words(cls, catch.into)}, which cannot hold the "
                            f"genflow.Failure it receives (declare it `{catch.into}: "
                            f"genflow.Failure | None = None`)")


def _takes_failure(cls: type, field: str) -> bool:
    """Can the field hold a `Failure` (typed so, optional, a union with it, or
    `Any`)? Else the first catch would fail the instance's save. A type that
    does not resolve is given the benefit of the doubt. (Kept per class and
    field: every start validates its definition.)"""
    found = _TAKES_FAILURE.get((cls, field))
    if found is None:
        found = _TAKES_FAILURE[(cls, field)] = _type_takes_failure(cls, field)
    return found


_TAKES_FAILURE: dict[tuple[type, str], bool] = {}


def _type_takes_failure(cls: type, field: str) -> bool:
    try:
        tp = typing.get_type_hints(cls).get(field, Any)
    except Exception:
        return True
    members = typing.get_args(tp) if isinstance(tp, types.UnionType) \
        or typing.get_origin(tp) is typing.Union else (tp,)
    return any(m is Any or m is Failure for m in members)


def _type_words(cls: type, field: str) -> str:
    tp = typing.get_type_hints(cls).get(field, Any)
    return tp.__name__ if isinstance(tp, type) else str(tp)


def _check(stmt: Stmt, stack: list[Any], seen: dict[str, str], problems: list[str],
           definition: Any = None) -> None:
    kind = type(stmt).__name__
    if isinstance(stmt, On):
        try:
            as_handler(stmt.handler)
        except TypeError as exc:
            problems.append(f"event {stmt.name!r}: {exc}")
        return
    if isinstance(stmt, (Break, Continue)):
        for frame in reversed(stack):
            if isinstance(frame.owner, For):
                return
            if frame.owner is None or isinstance(frame.owner, Go):
                break
        problems.append(f"{kind}() outside a For loop")
        return
    owners = [stmt.cases] if hasattr(stmt, "cases") else [[stmt]]
    for named in owners[0]:
        name = named.name
        if name is None:
            continue
        if not isinstance(name, str) or not name:
            problems.append(f"a {type(named).__name__} has no name (got {name!r})")
            continue
        if name in seen:
            problems.append(
                f"name {name!r} is used twice ({seen[name]} and {type(named).__name__})"
            )
        else:
            seen[name] = type(named).__name__
    if isinstance(stmt, Step) and not callable(stmt.action):
        problems.append(f"step {stmt.name!r}: action {stmt.action!r} is not callable")
    if isinstance(stmt, WaitFor) and stmt.handler is not None and not callable(stmt.handler):
        problems.append(f"WaitFor {stmt.name!r}: handler is not callable")
    if isinstance(stmt, Try):
        _check_try(stmt, seen, problems, definition)
    if isinstance(stmt, Raise) and stmt.error is None and not any(
            isinstance(f.owner, Try) and f.branch != 0
            and (f.owner.finally_ is None or f.branch != f.owner.finally_.index)
            for f in stack):
        problems.append("Raise() outside a Catch body: there is no failure to raise again "
                        "(give Raise an error class)")
    if isinstance(stmt, Children):
        for item in stmt.items:
            if isinstance(item, type):
                problems.append(f"{kind} {stmt.name!r}: a child is the data of an instance of "
                                f"its workflow ({item.__qualname__}(...)), not the class "
                                f"{item.__qualname__}")
                break
            try:
                workflow_name(item)
            except UnknownWorkflowError as exc:
                problems.append(f"{kind} {stmt.name!r}: a child is no workflow: {exc}")
                break
            if stmt.result is not None and attrs.has(type(item)) and \
                    stmt.result not in attrs.fields_dict(type(item)):
                problems.append(f"{kind} {stmt.name!r}: result={stmt.result!r} is not a field "
                                f"of the child's {type(item).__name__}")
                break
    if isinstance(stmt, Children) and stmt.into is not None:
        cls = type(definition)
        if attrs.has(cls) and stmt.into not in {f.name for f in attrs.fields(cls)}:
            problems.append(f"{kind} {stmt.name!r}: into={stmt.into!r} is not a field of "
                            f"{cls.__name__} (add one of the results' type)")
    if isinstance(stmt, Wait):
        if not stmt.events:
            problems.append(f"Wait {stmt.name!r} has no events")
        names = [on.event for on in stmt.events]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"Wait {stmt.name!r} lists event {name!r} twice")
