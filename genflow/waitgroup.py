"""`WaitGroup`: threads a workflow starts and then waits for, all of them.

A module of its own, beside genflow.statements rather than in it, because it is
an attrs class with an `attrs.field` default: mypyc, compiling statements.py
(docs/compiled.md), would check that default's value against the field's type
when the class is made, and refuse it. This module is never compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from genflow.errors import DuplicateThreadError
from genflow.handlers import takes_argument
from genflow.statements import Body, Go, Step, Stmt, WaitFor

__all__ = ["WaitGroup"]


@attrs.define
class WaitGroup:
    """Wait for threads to finish. Keep it as a field of the workflow's data.

    `wg.go(name, body, id=...)` starts a tracked thread (two statements: a step
    that records the id, then the `Go`); `wg.wait(name)` blocks until every
    tracked thread has finished.
    """

    pending: list[str] = attrs.field(factory=list)

    def go(self, name: str, body: Body, id: str | None = None) -> list[Stmt]:
        thread_id = name if id is None else str(id)
        tracked = _Tracked(self, name, thread_id, body)
        return [Step(f"{name}: add", tracked.add), Go(name, tracked.body, id=thread_id)]

    def wait(self, name: str, handler: Callable[[], Any] | None = None) -> WaitFor:
        return WaitFor(name, not self.pending, handler)


class _Tracked:
    """The thread body `WaitGroup.go` wraps: the user's body, then a `done` step."""

    __slots__ = ("group", "inner", "name", "thread_id")

    def __init__(self, group: WaitGroup, name: str, thread_id: str, inner: Body):
        self.group = group
        self.name = name
        self.thread_id = thread_id
        self.inner = inner

    def add(self) -> None:
        if self.thread_id in self.group.pending:
            raise DuplicateThreadError(f"WaitGroup already tracks thread {self.thread_id!r}")
        self.group.pending.append(self.thread_id)

    def body(self, thread_id: str) -> list[Any]:
        inner = self.inner
        if callable(inner) and takes_argument(inner):
            inner = inner(thread_id)
        pending = self.group.pending

        def done() -> None:
            if thread_id in pending:
                pending.remove(thread_id)

        return [inner, Step(f"{self.name}: done", done)]
