"""Compensation (a saga) on top of `Try`/`Catch` and the workflow's data.

A saga is a run of steps each of which, once done, has an action that undoes it
(a refund for a charge, a release for a reservation). If a later part fails,
the compensations of the steps that were done run in reverse order, each as a
durable step with its own retry policy:

    saga: Saga = attrs.field(factory=Saga)   # a field of the workflow's data

    yield Try("transfer",
        self.saga.step("withdraw", self.withdraw, compensate=self.refund),
        self.saga.step("deposit", self.deposit, compensate=self.take_back),
    ).Catch("roll back", self.saga.compensate(), Raise())

Which steps are done is data (`Saga.done`, saved with each step's own
checkpoint), so the compensations that run are exactly those of the steps that
completed, across crashes. The compensation callables are not data: each
replay of the definition registers them again as `step` builds its statements.
"""

from __future__ import annotations

import datetime as _dt
import weakref
from collections.abc import Callable
from typing import Any

import attrs

from genflow.errors import DefinitionError, StatementError
from genflow.statements import Retry, Step

__all__ = ["Saga"]

#: A compensation retries until it succeeds (backing off to five minutes): an undo
#: that gives up would leave the books wrong. Pass `compensate_retry` to choose.
UNTIL_DONE = Retry(attempts=None, backoff=1.0, max_backoff=300.0)


@attrs.define(eq=False)
class Saga:
    """The compensations owed by a saga: keep one as a field of the data."""

    #: the steps done, in the order they were done (a step done again, in a loop,
    #: once per time); the compensation of each after the first `settled` is owed
    done: list[str] = attrs.field(factory=list)
    #: how many of `done` (the first) an earlier `compensate()` undid already
    settled: int = 0
    #: a compensation ran since the last step was done: the next step done settles
    #: what was done before it (a saga retried in a loop is not undone twice)
    undoing: bool = False

    def step(self, name: str, action: Callable[[], Any], *,
             compensate: Callable[[], Any], retry: Retry | None = None,
             timeout: float | _dt.timedelta | None = None,
             compensate_retry: Retry | None = None) -> Step:
        """A `Step` that, once done, makes `compensate` owed (in the same checkpoint)."""
        if not callable(compensate):
            raise StatementError(f"saga step {name!r}: compensate= is the function that "
                                 f"undoes it, not {compensate!r}")
        _compensations(self)[name] = (compensate, compensate_retry or UNTIL_DONE)
        saga = self

        def run() -> Any:
            result = action()
            if hasattr(result, "__await__"):
                return _then(result, lambda: _record(saga, name))
            _record(saga, name)
            return result

        run.__qualname__ = getattr(action, "__qualname__", name)
        return Step(name, run, retry=retry, timeout=timeout)

    def compensate(self, prefix: str = "undo") -> list[Step]:
        """The compensations owed, newest first, each a step named `undo <step>`;
        a step done again (in a loop) is owed once more each time: `undo <step> 2`,
        `undo <step> 3`... (a compensation that depends on the iteration reads it
        from the data, as its step did). A definition that compensates in two
        places (a failure's Catch and a cancellation's) gives each its own
        `prefix`, since the names of a definition's steps are unique."""
        if not isinstance(prefix, str) or not prefix:
            raise StatementError(f"compensate: prefix is the start of the undo steps' "
                                 f"names (a non-empty str), not {prefix!r}")
        known = _compensations(self)
        steps = []
        for index in reversed(range(self.settled, len(self.done))):
            name = self.done[index]
            if name not in known:
                raise DefinitionError(
                    f"saga step {name!r} is done but this definition no longer builds it, so "
                    "its compensation is unknown: keep the step (or its name) in the code")
            undo, retry = known[name]
            nth = self.done[:index + 1].count(name)
            steps.append(Step(f"{prefix} {name}" if nth == 1 else f"{prefix} {name} {nth}",
                              _undoing(self, undo), retry=retry))
        return steps


def _record(saga: Saga, name: str) -> None:
    # (each execution: a step in a loop is undone as often as it was done; a failed
    # attempt's record is rolled back with the rest of its changes)
    if saga.undoing:  # what was done before the compensation that ran is not owed
        saga.settled, saga.undoing = len(saga.done), False
    saga.done.append(name)


def _undoing(saga: Saga, undo: Callable[[], Any]) -> Callable[[], Any]:
    """`undo`, noting on the saga (with the step's own checkpoint) that it ran."""
    def run() -> Any:
        result = undo()
        if hasattr(result, "__await__"):
            return _then(result, lambda: setattr(saga, "undoing", True))
        saga.undoing = True
        return result

    run.__qualname__ = getattr(undo, "__qualname__", "undo")
    return run


async def _then(awaitable: Any, after: Callable[[], None]) -> Any:
    result = await awaitable
    after()
    return result


#: each saga's compensations, registered afresh by every replay (callables are not data)
_REGISTRY: weakref.WeakKeyDictionary[Saga, dict[str, tuple[Callable[[], Any], Retry]]] = \
    weakref.WeakKeyDictionary()


def _compensations(saga: Saga) -> dict[str, tuple[Callable[[], Any], Retry]]:
    try:
        return _REGISTRY[saga]
    except KeyError:
        _REGISTRY[saga] = {}
        return _REGISTRY[saga]
