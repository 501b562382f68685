"""What a checker's run records: its checkpoints, the calls of user code, what became of events.

These are plain values: two runs of one scenario are compared record by
record (`genflow.testing.checker`), and the reports are written from them
(`genflow.testing.words`).
"""

from __future__ import annotations

from typing import Any

import attrs

from genflow.state import CheckpointType, State
from genflow.testing.compare import Difference
from genflow.testing.scenario import Send

__all__ = [
    "DURABLE",
    "Call",
    "Failure",
    "Lost",
    "Mark",
    "Outcome",
    "Position",
    "positions",
]

#: Marks a store saves: the start, and every checkpoint the core calls durable
#: (all but a move that only navigates, which a replay from the last save makes
#: again, and which is saved when its operation ends).
DURABLE = frozenset({"start", *(k.value for k in CheckpointType if k.durable)})

#: where one thread stands: (statement, status, the event that won, ((event, status), ...))
Position = tuple[Any, ...]


def positions(state: State) -> dict[str, Position]:
    """Where each live thread stands, as plain values a run can compare."""
    return {
        t.id: (t.stmt, t.status.value, t.won,
               tuple((e.event, e.status.value) for e in t.events))
        for t in state.threads
    }


@attrs.frozen
class Call:
    """One call of user code. `key` identifies one execution: a step retried
    after a failure has the same key, the same step in the next loop iteration
    not. `saved` is the mark a store held when the call began (a crash inside
    the call goes back there); `crashed` marks a call a simulated crash cut short."""

    kind: str  # step, setup, handle, teardown, condition handler
    thread: str
    name: str
    pc: int
    ok: bool
    op: int = -1
    saved: int = 0
    effects: int = 0  # outside effects (of FakeServices) the call made
    crashed: bool = False

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.kind, self.thread, self.name, self.pc)


@attrs.frozen
class Mark:
    """A checkpoint of a run (or the start, index 0, or an event handled)."""

    index: int
    kind: str  # a CheckpointType value, or "start"
    op: int
    where: str  # in words: what the move that ended here did
    blob: bytes  # the instance as it stands here
    saved: int  # index of the mark whose blob a store holds now
    calls: int  # how many user calls had been made
    now: Any  # the clock
    positions: dict[str, Position]
    #: the FakeServices' states here (what the outside world looked like)
    services: tuple[Any, ...] = attrs.field(default=(), eq=False)

    @property
    def durable(self) -> bool:
        return self.kind in DURABLE


@attrs.frozen
class Outcome:
    """What became of one event of the scenario."""

    number: int  # 1-based, as in the scenario
    op: int
    send: Send
    thread: str | None
    awaited: bool
    accepted: bool
    output: Any = None
    error: str = ""  # "TypeName: message" when refused
    error_type: str = ""

    def same_as(self, other: Outcome) -> bool:
        return (self.accepted, self.error_type, self.output) == (
            other.accepted, other.error_type, other.output
        )


@attrs.frozen
class Failure:
    """Why a run could not go on (the engine would retry, then mark it FAILED).

    `kind`: step failed, handler failed, non-determinism, definition, move
    limit, runaway, not saved."""

    kind: str
    message: str
    op: int
    mark: int  # index of the last mark before the failure
    error: BaseException | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Lost:
    """Something in memory that a save and reload does not keep, found at `mark`."""

    mark: int
    difference: Difference

    @property
    def field(self) -> str:
        return self.difference.field

    @property
    def attribute(self) -> bool:
        """An attribute that is not an attrs field (rather than a field's value)."""
        return bool(self.difference.note)
