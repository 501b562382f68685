"""`validate`: check a definition's shape once, before any instance relies on it."""

from __future__ import annotations

from typing import Any

from genflow.errors import DefinitionError
from genflow.handlers import as_handler
from genflow.replay import as_body, iter_tree
from genflow.statements import Break, Continue, For, Go, On, Step, Stmt, Wait, WaitFor

__all__ = ["validate"]


def validate(definition: Any) -> None:
    """Raise `DefinitionError` listing every problem of a definition.

    `definition` is a workflow instance, a generator function, or a body. Every
    branch is checked whatever its condition: names present and unique (the
    keys that let in-flight instances survive code changes), Break/Continue
    inside a loop of the same thread, waits with distinct events and usable
    handlers, steps with callable actions.
    """
    problems: list[str] = []
    seen: dict[str, str] = {}
    try:
        for stmt, stack in iter_tree(as_body(definition)):
            _check(stmt, stack, seen, problems)
    except DefinitionError as exc:
        problems.append(str(exc))
    except Exception as exc:
        problems.append(f"building the definition raised {exc!r}")
    if problems:
        raise DefinitionError("invalid definition:\n  - " + "\n  - ".join(problems))


def _check(stmt: Stmt, stack: list[Any], seen: dict[str, str], problems: list[str]) -> None:
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
    if isinstance(stmt, Wait):
        if not stmt.events:
            problems.append(f"Wait {stmt.name!r} has no events")
        names = [on.event for on in stmt.events]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"Wait {stmt.name!r} lists event {name!r} twice")
