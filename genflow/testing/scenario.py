"""What a test feeds an instance: a start (the workflow's data) and a list of events.

A `Send` is one event as a sender would deliver it: the event's name, its
payload (as the handler receives it: a `Pizza`, not a dict) and, when several
threads wait for the same event, the thread. Whether the instance waits for it
is decided when the scenario runs, from the instance's State: an event nobody
waits for is delivered anyway, and must be refused with an `EventError` that
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from genflow.codec import converter, structure
from genflow.errors import ArgumentError
from genflow.registry import on_defaults, workflow_name
from genflow.state import MAIN_THREAD

__all__ = ["Scenario", "Send", "as_scenario", "as_send"]


@attrs.frozen(repr=False)
class Send:
    """One event to deliver.

    `awaited` records what the strategy that drew it knew (None: nobody said);
    `stale` asks for a request issued for an *earlier* wait, like a second
    click on an old link. Neither changes how the event is delivered: the
    runner looks at the instance's State each time. `keep` sends it as
    `Engine.send` does: when no thread waits for it then, it is kept in the
    mailbox and taken when one does (without it, such an event is delivered
    to a request for the wrong wait, to see it refused).
    """

    event: str
    payload: Any = None
    thread: str | None = None
    awaited: bool | None = None
    stale: bool = False
    timer: bool = False
    keep: bool = False

    def wire_payload(self) -> Any:
        """The payload as it arrives over the wire (what `handle_callback` structures)."""
        return converter.unstructure(self.payload)

    def __str__(self) -> str:
        text = repr(self.event)
        if self.payload is not None:
            text += f" {_short(self.payload)}"
        if self.thread is not None and self.thread != MAIN_THREAD:
            text += f" to thread {self.thread!r}"
        if self.timer:
            text += " (timer fires)"
        if self.stale:
            text += " (an old request, for an earlier wait)"
        elif self.keep:
            text += " (kept until awaited)"
        elif self.awaited is False:
            text += " (not awaited)"
        return text

    def __repr__(self) -> str:
        args = [repr(self.event)]
        if self.payload is not None:
            args.append(repr(self.payload))
        for name in ("thread", "awaited"):
            value = getattr(self, name)
            if value is not None:
                args.append(f"{name}={value!r}")
        for name in ("stale", "timer", "keep"):
            if getattr(self, name):
                args.append(f"{name}=True")
        return f"Send({', '.join(args)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis' and IPython's printer
        p.text(repr(self))


def as_send(item: Any) -> Send:
    """A `Send` from a `Send`, an event name, or `(event, payload[, thread])`."""
    if isinstance(item, Send):
        return item
    if isinstance(item, str):
        return Send(item)
    if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3 and isinstance(item[0], str):
        return Send(*item)
    raise ArgumentError(
        f"{item!r} is not an event: give a Send, an event name or (event, payload[, thread])"
    )


@attrs.define(repr=False)
class Scenario:
    """A workflow class, its start data (unstructured, so every run starts afresh)
    and the events to deliver, in order; `reset` and `services`, when `runs()`
    was given them, go with it to the check (see `check_replay`)."""

    workflow: type
    start: Any
    events: list[Send] = attrs.field(factory=list)
    instance_id: str = "test-1"
    reset: Callable[[], Any] | None = attrs.field(default=None, eq=False)
    services: tuple[Any, ...] = attrs.field(default=(), eq=False)

    def data(self) -> Any:
        """A fresh copy of the start data."""
        return structure(self.start, self.workflow)

    @property
    def name(self) -> str:
        return workflow_name(self.workflow)

    def with_events(self, events: Iterable[Send]) -> Scenario:
        return attrs.evolve(self, events=list(events))

    def __repr__(self) -> str:
        return f"Scenario({self.data()!r}, {self.events!r})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis' and IPython's printer
        p.text(repr(self))

    def __str__(self) -> str:
        return "\n".join(f"{i}. {send}" for i, send in enumerate(self.events, 1)) or "(no events)"


def as_scenario(workflow: Any, events: Iterable[Any] = (), instance_id: str = "test-1") -> Scenario:
    """A `Scenario` from a scenario, a workflow instance (the start data) or a
    workflow class (started with its defaults), and events."""
    one = isinstance(events, (str, bytes, Send)) or (  # a str: one event per letter
        isinstance(events, tuple) and not all(isinstance(e, (str, tuple, list, Send))
                                              for e in events))  # ("pay", 5)
    if one:
        raise ArgumentError(f"the events are a list of them, not one event {events!r}: "
                            f"write [{events!r}]")
    if isinstance(workflow, Scenario):
        extra = [as_send(e) for e in events]
        if extra:
            return workflow.with_events([*workflow.events, *extra])
        return workflow
    cls = workflow if isinstance(workflow, type) else type(workflow)
    workflow_name(cls)  # a clear error for something that is not a workflow
    data = workflow if not isinstance(workflow, type) else on_defaults(
        cls, "give the start data as an instance, {name}(...), or draw it with "
        "runs({name}, start=...)")
    return Scenario(cls, converter.unstructure(data), [as_send(e) for e in events], instance_id)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
