"""The transactional outbox, as the core sees it: effects on other instances,
collected as plain data ("intents") while user code runs.

A step or handler asks for them through `current_step()`:
`ctx.start(data, id=...)` starts another instance, `ctx.send(instance_id,
event, payload, at=...)` sends an event (to another instance or to its own:
`ctx.send(ctx.instance_id, ...)`), now or at a time. Nothing happens at the
call: the intent is kept on the running `Operation` (its `Outbox`), checked
there (the workflow registered, the data and payload storable), dropped if
the user code that asked fails (its data changes are rolled back the same
way), and written by the engine in the same store transaction as the next
durable checkpoint's save. After that commit a relay carries each one out
exactly once (`genflow.engine`); a crash before the commit loses the step's
result and its intents together, and the step's re-run asks for them again.

The core knows no store: the engine may give the `Outbox` an `exists`
probe, so a send to an instance that does not exist fails the step at once
(`InstanceNotFoundError`, with the step's retry policy) rather than leaving
a letter nobody can receive.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

import attrs

from genflow.codec import check_payload, dumps, unstructure
from genflow.errors import ArgumentError, InstanceNotFoundError, StatementError
from genflow.registry import workflow_name
from genflow.state import Parent, checked_id, new_state

__all__ = ["CancelIntent", "Intent", "Outbox", "SendIntent", "StartIntent"]


@attrs.frozen
class StartIntent:
    """Create instance `id` of `workflow` from `blob` (data and a fresh State),
    due at `at` (None: at once). An id that exists already is left alone
    (a child of the same parent is adopted; see `genflow.children`)."""

    id: str
    workflow: str
    blob: bytes
    at: _dt.datetime | None = None
    parent: Parent | None = None


@attrs.frozen
class SendIntent:
    """Deliver `event` with `payload` (plain values) to `target`, at `at` (None:
    at once); `thread` and `pc` pin the wait it is for (a child's report).
    `trace`: the asker's ``traceparent`` (the delivery joins its trace)."""

    target: str
    event: str
    payload: Any = None
    at: _dt.datetime | None = None
    thread: str | None = None
    pc: int | None = None
    trace: str | None = None


@attrs.frozen
class CancelIntent:
    """Cancel `target`: a child whose parent no longer waits for it, or an
    instance a step cancels (`StepContext.cancel`)."""

    target: str


Intent = StartIntent | SendIntent | CancelIntent


class Outbox:
    """The intents of one operation, in the order they were asked for.

    `exists(instance_id)` (given by the engine) says whether a send's target
    is there; `origin` is the instance whose user code asks. `traceparent()`
    (given by the engine when OpenTelemetry traces it) is the trace context of
    the code that asks: an instance it starts (a child too) keeps it, so its
    steps are in the same trace; an event it sends carries it, so the delivery
    (and what the target runs after it) is too."""

    __slots__ = ("exists", "intents", "traceparent")

    def __init__(self) -> None:
        self.intents: list[Intent] = []
        self.exists: Callable[[str], bool] | None = None
        self.traceparent: Callable[[], str | None] | None = None

    def take(self) -> list[Intent]:
        """The intents asked for so far, handed over (to a save) and forgotten here."""
        intents, self.intents = self.intents, []
        return intents

    # -- asked for through StepContext --

    def start(self, key: str, data: Any, id: str | None, at: _dt.datetime | None,
              parent: Parent | None = None, deadline: _dt.datetime | None = None) -> str:
        name = workflow_name(data)  # UnknownWorkflowError for a class that is none
        if id is None:
            count = sum(1 for i in self.intents if isinstance(i, StartIntent))
            id = f"{key}/{count}"  # the same for every re-run of this execution
        else:  # as `Engine.start` checks it: a store must never see an id it cannot keep
            id = checked_id(id)
        state = new_state(id, data)
        state.parent = parent
        state.deadline = deadline  # (checked by the asker: `checked_deadline`)
        if self.traceparent is not None:
            state.trace = self.traceparent()
        blob = dumps(data, state, check=True)  # SerializationError / DataError now
        self.intents.append(StartIntent(id, name, blob, _aware(at, "start"), parent))
        return id

    def send(self, origin: str, target: str, event: str, payload: Any,
             at: _dt.datetime | None) -> None:
        if not isinstance(target, str) or not target:
            raise StatementError(f"send: an instance id is a non-empty str, not {target!r}")
        if not isinstance(event, str) or not event:
            raise StatementError(f"send: an event name is a non-empty str, not {event!r}")
        plain = unstructure(payload)
        check_payload(plain, event)
        if target != origin and self.exists is not None and not self._known(target) \
                and not self.exists(target):
            raise InstanceNotFoundError(
                f"send of event {event!r}: no instance {target!r} (start it first, or check "
                "the id); nothing was sent")
        trace = self.traceparent() if self.traceparent is not None else None
        self.intents.append(SendIntent(target, event, plain, _aware(at, "send"), trace=trace))

    def cancel(self, origin: str, target: str) -> None:
        if not isinstance(target, str) or not target:
            raise StatementError(f"cancel: an instance id is a non-empty str, not {target!r}")
        if target != origin and self.exists is not None and not self._known(target) \
                and not self.exists(target):
            raise InstanceNotFoundError(f"cancel: no instance {target!r} (check the id); "
                                        "nothing was cancelled")
        self.intents.append(CancelIntent(target))

    def _known(self, target: str) -> bool:
        """Started by this very operation (not yet in the store)."""
        return any(isinstance(i, StartIntent) and i.id == target for i in self.intents)


def _aware(at: Any, what: str) -> _dt.datetime | None:
    if at is None:
        return None
    if not isinstance(at, _dt.datetime) or at.tzinfo is None:
        raise ArgumentError(f"{what}(at=...) takes an aware datetime (UTC), not {at!r}")
    return at
