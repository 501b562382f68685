"""The exceptions genflow raises, all rooted at `GenflowError`.

Every public operation is atomic: when one of these is raised, the workflow's
data and `State` are exactly as they were before the failing move (failed
handler setups and teardowns are the one documented exception: their status is
recorded so that an operator can see it, and they are retried on the next resume).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArgumentError",
    "Cancelled",
    "ChildFailed",
    "ClockError",
    "ConcurrencyError",
    "CorruptStateError",
    "DataError",
    "DefinitionError",
    "DuplicateInstanceError",
    "DuplicateScheduleError",
    "DuplicateThreadError",
    "EmptyLoopError",
    "EventError",
    "EventNotReadyError",
    "GenflowError",
    "HandlerError",
    "InstanceFailedError",
    "InstanceNotFoundError",
    "InvalidIdError",
    "MailboxFullError",
    "MoveError",
    "MoveLimitError",
    "NoDefaultsError",
    "NonDeterminismError",
    "NonRetryable",
    "NotWaitingError",
    "NothingToRetryError",
    "PayloadError",
    "QueueNotFoundError",
    "ReadOnlyStoreError",
    "RecordedFailure",
    "ResultTimeoutError",
    "ScheduleError",
    "ScheduleNotFoundError",
    "SerializationError",
    "StaleCallbackError",
    "StatementError",
    "StatementTypeError",
    "StepError",
    "StepTimeoutError",
    "StoreError",
    "StoreFullError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "UnknownEventError",
    "UnknownThreadError",
    "UnknownWorkflowError",
    "WorkflowFinishedError",
    "error_text",
    "step_where",
]


class GenflowError(Exception):
    """Base class of every error genflow raises on purpose."""


# -- definitions ---------------------------------------------------------------------


class ArgumentError(GenflowError, ValueError):
    """An argument that cannot work (a token too short; an unknown log level,
    status, diagram format or mode; a count below 1): refused before anything
    runs or is written. (A naive clock is a `ClockError`.)"""


class ChildFailed(GenflowError):
    """A child workflow (`Child`, `Children`) did not finish: it failed, or was
    cancelled, or could not be started (its id belongs to another instance).
    The parent's thread fails at its wait with this error: a `Try` catches it
    (`Catch(errors=ChildFailed)`), its `Failure.message` naming the child, its
    workflow and the child's own error. Uncaught, the parent fails."""

    def __init__(self, child_id: str, workflow: str, status: str, error: str = "") -> None:
        self.child_id = child_id
        self.workflow = workflow
        self.status = status
        self.error = error
        super().__init__(f"child {child_id!r} ({workflow}) {status}"
                         + (f": {error}" if error else ""))


class DefinitionError(GenflowError):
    """The definition itself is wrong: duplicate names, a Break outside a loop,
    something that is not a statement, or `definition()` raised."""


class NoDefaultsError(ArgumentError, DefinitionError):
    """A workflow class was given where an instance is expected (`validate(Order)`,
    `check_replay(Order)`, `to_mermaid(Order)`: it stands for an instance of its
    defaults), and a field has no default. An argument that cannot work, and a
    definition that cannot be built: either `except` catches it."""


class StatementError(DefinitionError, ValueError):
    """A statement (or a `Retry`) was built with an argument it cannot take (a
    negative duration, a naive datetime, errors that are not exception classes).
    Also a `ValueError`, as arguments of the wrong value are in Python."""


class ClockError(GenflowError, ValueError):
    """A clock that tells no aware time (`datetime.utcnow` is naive: a naive
    time means different moments on different machines). Also a `ValueError`."""


class StatementTypeError(StatementError, TypeError):
    """A statement was given an argument of the wrong kind (a `Wait` given a
    `Step` rather than its events). Also a `TypeError`, as in Python."""


class EmptyLoopError(DefinitionError):
    """A loop iteration neither ran a step nor waited: it would spin forever."""


class NonDeterminismError(GenflowError):
    """A saved position no longer exists in the replayed definition.

    Raised instead of silently jumping elsewhere: the definition changed under an
    in-flight instance, or its shape depends on something other than the saved data.
    """

    def __init__(self, workflow: str, thread: str, statement: str, detail: str = "") -> None:
        self.workflow = workflow
        self.thread = thread
        self.statement = statement
        message = (
            f"workflow {workflow!r}, thread {thread!r}: saved statement {statement!r} "
            "is not in the replayed definition"
        )
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class MoveError(GenflowError):
    """An operator's repair move that the definition does not allow (no such
    statement in that thread, or not one a thread can stand at)."""


class MoveLimitError(GenflowError):
    """`resume` made more moves than its `max_moves` budget (a runaway loop of steps?).

    The instance is consistent at its last checkpoint and may be resumed again.
    """


class DuplicateThreadError(GenflowError):
    """Two live threads would share one id (give `Go` a distinct `id=` in loops)."""


# -- running user code ----------------------------------------------------------------


class StepError(GenflowError):
    """A step's action raised, and its `Retry` policy has no attempt left.

    `attempt` is the number of the attempt that failed (from 1), `retry` the
    policy that decided. The instance is FAILED until an operator retries it.
    """

    def __init__(self, step: str, thread: str, cause: BaseException) -> None:
        self.step = step
        self.thread = thread
        self.retry: Any = None  # the `Retry` policy that decided
        self.attempt = 1
        super().__init__(f"{step_where(step, thread)} failed: {error_text(cause)}")
        self.__cause__ = cause


def step_where(step: str, thread: str) -> str:
    """Where a `StepError` happened, in its words; no step is a `Raise(SomeError,
    ...)` that failed the thread from the definition itself."""
    if step:
        return f"step {step!r} in thread {thread!r}"
    return f"thread {thread!r} (a Raise of the definition)"


class StepTimeoutError(GenflowError):
    """An attempt of a step ran past its `timeout`: it counts as failed (retried by
    the step's policy, catchable with `Catch(errors=StepTimeoutError)`)."""


class NonRetryable(Exception):
    """Raise it (or a subclass: `class CardDeclined(NonRetryable)`) from a step
    or a handler for a failure no retry can mend, whatever the `Retry` policy
    says: it fails at its first attempt, as the errors of `Retry.never` do,
    for a `Catch` to take. Temporal's `ApplicationError(non_retryable=True)`:
    said where the error is raised, not in every policy that may meet it."""


class RecordedFailure(Exception):
    """A failure as the State recorded it, for a `StepError` raised after a
    reload or after `Finally` bodies ran (the original exception object is not
    kept: only its type names and message are)."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(f"{type_name}: {message}" if message else type_name)


class Cancelled(BaseException):
    """Cancellation, as a thread's `Try` sees it: `Catch(errors=Cancelled)` runs
    its body as cleanup when the instance is cancelled. Never raised by genflow;
    a `BaseException`, as `asyncio.CancelledError` is, so that `Catch()`'s
    default `errors=Exception` does not take it for a failure."""


class HandlerError(GenflowError):
    """An event handler's setup, handle or teardown raised (or a WaitFor handler)."""

    def __init__(self, phase: str, event: str, thread: str, cause: BaseException) -> None:
        self.phase = phase
        self.event = event
        self.thread = thread
        super().__init__(f"{phase} of event {event!r} in thread {thread!r} failed: "
                         f"{error_text(cause)}")
        self.__cause__ = cause


# -- delivering events ------------------------------------------------------------------


class EventError(GenflowError):
    """An event cannot be delivered. Nothing was changed."""


class WorkflowFinishedError(EventError):
    """The instance has finished (or was cancelled): it takes no more events or moves."""


class InstanceFailedError(EventError):
    """The instance has failed (a step or handler out of attempts, a definition that
    no longer fits): it takes no events until an operator retries or moves it."""


class NothingToRetryError(GenflowError):
    """`Engine.retry` (`genflow retry`) of an instance that has not failed, or
    whose failure left no step to run again: nothing was changed. Cancel it, or
    move its thread (`genflow move`)."""


class ResultTimeoutError(GenflowError, TimeoutError):
    """`Engine.result` waited its `timeout` and the instance had not ended. It
    goes on where it is; wait again, or look at it (`genflow show`)."""


class UnknownThreadError(EventError):
    """No live thread has that id."""


class NotWaitingError(EventError):
    """The thread is not waiting for events right now."""


class UnknownEventError(EventError):
    """The thread is waiting, but not for an event of that name.

    `never` is true when no statement of the workflow can ever wait for it (a
    timer's name, or no such event at all): no later move makes it deliverable,
    so the outbox's relay gives such a letter up rather than trying it again."""

    never: bool = False


class StaleCallbackError(EventError):
    """The callback was issued for an earlier wait (its counter is behind the thread's)."""


class EventNotReadyError(EventError):
    """The event's handler has not been set up yet; resume the instance first."""


class PayloadError(EventError):
    """The payload does not fit the handler's declared input type."""


class MailboxFullError(EventError):
    """The instance keeps as many undelivered messages as its mailbox holds
    (`Engine(mailbox_size=...)`): this one was refused, nothing changed."""


# -- state, codec, stores ----------------------------------------------------------------


class CorruptStateError(GenflowError):
    """A blob is corrupt, truncated, oversized, or not something genflow wrote."""


class SerializationError(GenflowError):
    """The data cannot be serialised (a type the converter does not know, an int
    beyond 64 bits...). The message names the workflow and the field."""


class DataError(SerializationError):
    """A workflow's data does not fit its declared field types (a str where a
    `list[str]` is declared, a float in an `int` field, an unknown field in
    start data). The message names the field: `items: expected list[str], got
    str 'abc'`. Nothing was stored."""


class UnknownWorkflowError(GenflowError):
    """No workflow is registered under that name."""


class InstanceNotFoundError(GenflowError):
    """No instance with that id exists in the store."""


class InvalidIdError(GenflowError, ValueError):
    """An instance id no store can keep (not text, empty, too long, not UTF-8)."""


class DuplicateInstanceError(GenflowError):
    """An instance with that id already exists."""


class ConcurrencyError(GenflowError):
    """Another writer changed the instance first (version mismatch); reload and retry."""


# -- the store's own troubles ---------------------------------------------------------------


class StoreError(GenflowError):
    """The store could not do what was asked, for a reason of its own (the
    database, its disk, its server): nothing was written. Each subclass says
    what to do; this class itself covers the rest (a corrupt file, a server
    error), and its message carries the database's own words."""


class StoreUnavailableError(StoreError):
    """Transient trouble: the connection was lost, the database is locked or
    busy, the server is restarting. The store retried for a while first; try
    again later (a worker does so by itself, with backoff)."""


class StoreFullError(StoreError):
    """The disk (or the database's size limit) is full. Nothing was written:
    free space, and the same call works again."""


class ReadOnlyStoreError(StoreError):
    """The store was opened read-only, or its file, directory or server refuses
    writes. Nothing was written."""


class StoreNotFoundError(StoreError):
    """No store where the URL points: a missing SQLite file (read-only opens
    never create one), a directory that does not exist, a PostgreSQL database
    or schema without genflow's tables. Check the URL."""


# -- schedules, queues and retention --------------------------------------------------------


class ScheduleError(GenflowError, ValueError):
    """A schedule, queue or retention policy that cannot work, refused when it is
    made (a bad cron expression, an unknown time zone or workflow, start data
    that does not fit the workflow's types, a limit below 1): nothing was written."""


class DuplicateScheduleError(GenflowError):
    """A schedule with that id already exists."""


class ScheduleNotFoundError(GenflowError):
    """No schedule with that id exists in the store."""


class QueueNotFoundError(GenflowError):
    """No queue of that name is defined in the store (`engine.queues.define`)."""


def error_text(exc: BaseException) -> str:
    """An error as genflow writes it in a message, a row's error and a thread's:
    `Type: message` (`KeyError: 'Z'`), whichever path recorded it (a step failed
    at once under `Retry(never=...)`, after its retries, or raised again from the
    State as a `RecordedFailure`, which already reads so)."""
    if isinstance(exc, RecordedFailure):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
