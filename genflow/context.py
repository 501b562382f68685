"""`StepContext` and `current_step()`: where the running step (or handler) stands.

Its own module so that the statements with handlers of genflow's own
(`genflow.children`) can reach the running step's outbox without importing
the runtime that runs them.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
from collections.abc import Callable
from typing import Any, NamedTuple

from genflow.clock import Deadline, checked_deadline, system_clock
from genflow.errors import GenflowError
from genflow.outbox import Outbox
from genflow.state import Failure

__all__ = ["StepContext", "current_step"]

Clock = Callable[[], _dt.datetime]


class StepContext(NamedTuple):  # immutable and, unlike a frozen attrs class, cheap to build
    """Where the running step (or handler) stands; `current_step()` returns it.

    `idempotency_key` is the same every time *this* execution of the step is
    retried (after a crash or failure) and different for the next execution of
    the same step (in a later loop iteration): pass it to outside systems.
    `attempt` counts from 1; `now` is the engine's clock (a `FakeClock` in
    tests): use it instead of reading a clock of your own.
    `deadline` is when the attempt times out (for a step with `timeout=`);
    `failure` the `Failure` a `Try` of the thread handles (in a Catch body).
    For a handler, `step` is its Wait's name and `event` the event's (None for
    a step). Nothing here makes a definition non-deterministic: the definition
    itself sees none of it.
    """

    instance_id: str
    workflow: str
    thread_id: str
    step: str
    pc: int
    attempt: int = 1
    clock: Clock = system_clock
    deadline: _dt.datetime | None = None
    failure: Failure | None = None
    event: str | None = None
    #: the operation's outbox (`genflow.outbox`): what `start`/`send` ask for
    outbox: Outbox | None = None

    @property
    def now(self) -> _dt.datetime:
        """The engine's clock now (read when asked: most steps never ask)."""
        return self.clock()

    @property
    def idempotency_key(self) -> str:
        return f"{self.instance_id}/{self.thread_id}/{self.step}/{self.pc}"

    def start(self, data: Any, *, id: str | None = None,
              at: _dt.datetime | None = None, deadline: Deadline = None) -> str:
        """Start an instance of `data`'s workflow once this step is checkpointed
        (the transactional outbox: written with the checkpoint, never twice).
        Its id is `id`, or one derived from this execution (the same for every
        re-run of the step); returns it. `deadline`, as `Engine.start` takes it
        (a duration counts from its start: `at`, else now), cancels it if it has
        not finished by then. Refused at once, failing the step, for a class
        that is no workflow, data that cannot be stored or a bad deadline
        (`ArgumentError`). An id that exists already is left alone (a start
        is idempotent)."""
        if deadline is not None:
            base = at if isinstance(at, _dt.datetime) and at.tzinfo is not None \
                else self.now  # (a naive `at` is refused below)
            deadline = checked_deadline(deadline, base)
        return self._outbox().start(self.idempotency_key, data, id, at, deadline=deadline)

    def send(self, instance_id: str, event: str, payload: Any = None, *,
             at: _dt.datetime | None = None) -> None:
        """Send `event` with `payload` to `instance_id` (this instance's own id
        too) once this step is checkpointed, delivered exactly once after the
        commit, or at `at` (an aware datetime). A target that does not exist
        fails the step at once (`InstanceNotFoundError`)."""
        self._outbox().send(self.instance_id, instance_id, event, payload, at)

    def cancel(self, instance_id: str) -> None:
        """Cancel `instance_id` once this step is checkpointed, as `Engine.cancel`
        does (its handlers torn down, its cleanup run), carried out exactly once
        after the commit: another instance (Temporal's external workflow handle,
        DBOS's `cancel_workflow`) or this instance's own id (a workflow's own
        timeout, from a daemon thread). An instance that has ended by then is
        left as it is; a target that does not exist fails the step at once
        (`InstanceNotFoundError`)."""
        self._outbox().cancel(self.instance_id, instance_id)

    def _outbox(self) -> Outbox:
        if self.outbox is None:
            raise GenflowError("this step runs without an outbox (run it through an Engine, "
                               "genflow.testing or an Operation)")
        return self.outbox


_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "genflow_step", default=None
)


def current_step() -> StepContext:
    """The context of the step running now (raises outside a step)."""
    ctx = _current.get()
    if ctx is None:
        raise GenflowError("current_step() is only available while a step or handler runs")
    return ctx
