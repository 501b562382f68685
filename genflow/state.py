"""What genflow persists besides the workflow's own data: one `State` per instance.

There is no event history. A `State` is the instance id, the workflow's name, a
status and one `Thread` per live thread; each thread is a program counter (the
statement it stands at, why it stands there, a path hint to find that statement
fast) plus the events it waits for.
"""

from __future__ import annotations

import datetime as _dt
import enum
import types
from typing import Any, Final

import attr
import attrs

from genflow.errors import InvalidIdError
from genflow.registry import workflow_name

__all__ = [
    "MAIN_THREAD",
    "MAX_ID_LENGTH",
    "CallbackRequest",
    "CheckpointType",
    "Failure",
    "Mailbox",
    "Message",
    "Parent",
    "State",
    "Thread",
    "ThreadStatus",
    "WaitEvent",
    "WaitEventStatus",
    "WorkflowStatus",
    "checked_id",
    "new_state",
]

MAIN_THREAD = "_main_"
#: the longest instance id a store keeps (ids are primary keys on every store)
MAX_ID_LENGTH = 255


def _probe() -> None:
    """Nothing: its type tells whether this module runs compiled (docs/compiled.md)."""


# The mutable classes below are attrs classes in both builds, slotted in pure Python.
# Compiled, mypyc makes them native classes (the move loop reads their attributes
# directly), which have a fixed layout of their own: attrs must not make a slotted
# copy, as mypyc keeps only the class it made (and the copy's eq and repr would be
# lost). mypy wants a literal there, hence the ignores.
_PURE = isinstance(_probe, types.FunctionType)


class WorkflowStatus(str, enum.Enum):  # noqa: UP042 - str() and format() as before
    RESUMING = "resuming"  #: at least one thread can move on: call resume()
    WAITING = "waiting"  #: every thread waits for an event, a condition or a time
    FINISHED = "finished"  #: every thread has ended
    FAILED = "failed"  #: a step exhausted its retries; an operator may retry it
    CANCELLING = "cancelling"  #: cancelled: its threads run their cleanup, then end
    CANCELLED = "cancelled"  #: cancelled; every thread has ended, its handlers torn down


class ThreadStatus(str, enum.Enum):  # noqa: UP042 - str() and format() as before
    EXECUTING = "executing"  #: about to run the step `Thread.stmt`
    RESUMING = "resuming"  #: `stmt` is done (or "" = not started): continue after it
    WAITING_EVENT = "waiting_event"  #: waits at the `Wait` named `stmt`
    #: waits at the `WaitFor` named `stmt` (its timeout's timer, if it has one, is
    #: its one event: `Thread.events`)
    WAITING_CONDITION = "waiting_condition"
    #: the thread leaves `stmt` outward carrying `Thread.unwind` ("fail": its step
    #: failed for good; "cancel": cancellation reached it): its handlers are torn
    #: down first, then it enters the nearest `Catch` or `Finally` that applies,
    #: or ends (a failure nothing catches fails the instance)
    UNWINDING = "unwinding"


class WaitEventStatus(str, enum.Enum):  # noqa: UP042 - str() and format() as before
    """Where an event's handler is in its life: set-ups and teardowns that fail are
    recorded (with `WaitEvent.error`) and retried on the next resume."""

    PENDING_SETUP = "pending_setup"
    SETUP = "setup"
    SETUP_ERROR = "setup_error"
    PENDING_TEARDOWN = "pending_teardown"
    TEARDOWN_ERROR = "teardown_error"


class CheckpointType(str, enum.Enum):  # noqa: UP042 - str() and format() as before
    AFTER_STEP = "after_step"  #: a step ran: save, or it may run again
    AFTER_SETUP = "after_setup"  #: a handler was set up (or its setup failed)
    AFTER_TEARDOWN = "after_teardown"  #: a handler was torn down (or its teardown failed)
    AFTER_RESUME = "after_resume"  #: a thread moved to its next stop (nothing ran)
    AFTER_CONDITION = "after_condition"  #: a WaitFor's condition held and its handler ran
    AFTER_EVENT = "after_event"  #: an event's handler ran (`deliver`)
    AFTER_FAILURE = "after_failure"  #: a step failed: its attempt is counted, a retry due
    AFTER_CANCEL = "after_cancel"  #: cancellation reached every thread (cleanup follows)
    #: the mailbox changed on its own: a message was kept (no thread waited for
    #: it), or one a handler refused was set aside undelivered
    AFTER_MAILBOX = "after_mailbox"

    #: Must the instance be saved at this checkpoint? Every checkpoint but
    #: AFTER_RESUME records something that happened outside the definition (user
    #: code ran, an attempt failed); AFTER_RESUME only navigates, and a replay
    #: from the last durable checkpoint makes the same move again. The engine
    #: saves exactly these, and the testing toolkit crashes exactly here. (A
    #: member's attribute, set below, not a property: the engine asks at every
    #: checkpoint, and a property is a Python call each time.)
    durable: bool


@attr.s(auto_attribs=True, slots=_PURE, weakref_slot=_PURE, order=False)  # type: ignore[literal-required]
class CallbackRequest:
    """Everything needed to deliver one event to one waiting thread.

    `pc` is the thread's counter when it began to wait: a request for an earlier
    wait is refused as stale. `setup_data` is what the handler's setup returned.
    """

    instance_id: str
    thread_id: str
    event: str
    pc: int
    setup_data: Any = None


@attr.s(auto_attribs=True, slots=_PURE, weakref_slot=_PURE, order=False)  # type: ignore[literal-required]
class WaitEvent:
    """One event a waiting thread listens for."""

    event: str
    req: CallbackRequest
    status: WaitEventStatus = WaitEventStatus.PENDING_SETUP
    #: this event won its wait: its teardown is told so.
    won: bool = False
    error: str = ""
    #: for timers: when the event fires by itself (UTC).
    due: _dt.datetime | None = None
    #: failed setups or teardowns of this handler so far, and when the next try is due
    #: (None: at once). They belong to the handler, not to the instance.
    attempts: int = 0
    retry_at: _dt.datetime | None = None


@attrs.frozen
class Failure:
    """A failure a `Try` handles: what failed, how, and where.

    `type` is the exception's class name, `types` the module-qualified names of
    that class and its bases (what `Catch(errors=...)` matches, also after a
    reload), `step` the statement that failed and `path` its place in its
    thread (an instance that fails for good after its `Finally` bodies ran
    stands there again, for an operator's retry), `attempt` the attempts made.
    `at` is the `Try` that caught it ("" while it travels outward).
    """

    type: str
    message: str
    step: str
    attempt: int = 1
    types: tuple[str, ...] = ()
    path: tuple[int, ...] = ()
    at: str = ""


@attr.s(auto_attribs=True, slots=_PURE, weakref_slot=_PURE, order=False)  # type: ignore[literal-required]
class Origin:
    """The `Go` statement that started a thread, and its path hint."""

    go: str
    thread_id: str
    path: list[int] = attr.ib(factory=list)


@attr.s(auto_attribs=True, slots=_PURE, weakref_slot=_PURE, order=False)  # type: ignore[literal-required]
class Thread:
    """One thread's program counter.

    `stmt` is the statement's unique name and `path` a hint to reach it fast
    (indices through the nested bodies); if an edit of the definition made the
    hint wrong, the replay searches by name instead. `pc` is the instance's move
    counter when the thread last moved; callbacks carry it.
    """

    id: str
    stmt: str = ""
    status: ThreadStatus = ThreadStatus.RESUMING
    pc: int = 0
    path: list[int] = attr.ib(factory=list)
    events: list[WaitEvent] = attr.ib(factory=list)
    #: the event that won the thread's wait (its handler ran); its `On` body runs next.
    won: str = ""
    #: the chain of `Go` statements that started this thread (empty for main).
    origin: list[Origin] = attr.ib(factory=list)
    #: when the thread began to wait (UTC), for operators.
    since: _dt.datetime | None = None
    #: failed attempts of the step the thread stands at, the last one's error, and
    #: when the next attempt is due. They belong to this step: nothing else that
    #: happens to the instance resets them; the step's success or a move does.
    attempts: int = 0
    error: str = ""
    retry_at: _dt.datetime | None = None
    #: the branch (a Catch or the Finally) of the `Try` named `stmt` the thread
    #: enters next ("": it goes on after `stmt`).
    enter: str = ""
    #: what a `Finally` the thread runs must go on with when it ends: "break",
    #: "continue", "return", "fail" or "cancel" ("": nothing, go on after the Try).
    unwind: str = ""
    #: the failures the thread's `Try`s handle (innermost last), and the one
    #: travelling outward (`at` "").
    failures: list[Failure] = attr.ib(factory=list)
    #: started by `Go(daemon=True)`: cancelled when the main thread ends.
    daemon: bool = False


@attrs.frozen
class Parent:
    """The instance that started this one as a child, and how it learns the
    child's end: event `event` of `instance_id`, as child number `index` of
    the statement that started it (`genflow.children`), for the wait of
    thread `thread` that began at counter `pc` (a report for a wait that is
    over is stale: the parent went on without it)."""

    instance_id: str
    event: str
    index: int = 0
    thread: str = MAIN_THREAD
    pc: int = 0


@attrs.frozen
class Message:
    """An event kept in an instance's mailbox until a thread waits for it.

    `seq` is its number among every message the instance ever kept (their
    order: the oldest is delivered first); `payload` the payload as plain
    values, checked against the event's handlers when it was sent; `thread`
    the only thread that may take it ("": any); `sent_at` when it was kept.
    `reason` says why it was set aside undelivered ("" while it is kept).
    """

    seq: int
    event: str
    payload: Any = None
    thread: str = ""
    sent_at: _dt.datetime | None = None
    reason: str = ""


@attr.s(auto_attribs=True, slots=_PURE, weakref_slot=_PURE, order=False)  # type: ignore[literal-required]
class Mailbox:
    """The messages an instance keeps (`genflow.runtime.Operation.send`).

    `kept` are waiting for a thread to wait for their event, oldest first;
    `undelivered` were set aside: the instance ended with them still kept, or
    the handler that took one refused it (at most `limit` of these are kept,
    the newest; the journal has every one). `sent` counts every message ever
    kept: the next one's `seq`.
    """

    sent: int = 0
    kept: list[Message] = attr.ib(factory=list)
    undelivered: list[Message] = attr.ib(factory=list)

    def set_aside(self, messages: list[Message]) -> None:
        """Put `messages` (each with its reason) among the undelivered ones."""
        self.undelivered = [*self.undelivered, *messages][-KEPT_UNDELIVERED:]

    def close(self, why: str) -> None:
        """The instance ended: what is kept is set aside, undelivered, with `why`."""
        self.set_aside([attrs.evolve(m, reason=why) for m in self.kept])
        self.kept = []


#: how many undelivered messages a State keeps on view (the newest; the journal has all)
KEPT_UNDELIVERED = 100


@attr.s(auto_attribs=True, slots=_PURE, weakref_slot=_PURE, order=False)  # type: ignore[literal-required]
class State:
    """An instance's position: everything but its data."""

    id: str
    workflow: str
    status: WorkflowStatus = WorkflowStatus.RESUMING
    threads: list[Thread] = attr.ib(factory=list)
    #: grows by one on every move of any thread.
    pc: int = 0
    #: set for a child workflow: whom to tell when it ends
    parent: Parent | None = None
    #: the W3C ``traceparent`` of the operation that last moved the instance for
    #: a caller (`start`, `send`), when OpenTelemetry traced it: the steps a worker
    #: runs later are in that trace (`genflow.observe`). The core never reads it.
    trace: str | None = None
    #: the events kept for it until a thread waits for them (None: it never kept one)
    mailbox: Mailbox | None = None
    #: when the instance is cancelled if it has not finished by then (UTC; None:
    #: never). Set at its start and never changed; the engine enforces it
    #: (docs/failure.md, "Deadlines"): the core only carries it.
    deadline: _dt.datetime | None = None

    def thread(self, thread_id: Any) -> Thread | None:
        # (Any: a caller's name arrives unchecked, and one that is not a str is no
        # thread's, compiled too: docs/compiled.md)
        for thread in self.threads:
            if thread.id == thread_id:
                return thread
        return None

    def update_status(self) -> None:
        """Derive the status from the threads. FAILED and CANCELLED are set by the
        moves that decide them and stay until an operator (or `cancel`) acts.

        A step or handler waiting for its retry time counts as waiting, like a
        timer: the instance needs the engine at a time, not now."""
        if self.status is _CANCELLED or self.status is _FAILED:
            return
        if self.status is _CANCELLING:  # until every thread has ended its cleanup
            if not self.threads:
                self.status = _CANCELLED
                if self.mailbox is not None and self.mailbox.kept:  # in the same move
                    self.mailbox.close("the instance was cancelled before a thread waited "
                                       "for it")
            return
        if not self.threads:
            self.status = WorkflowStatus.FINISHED
            if self.mailbox is not None and self.mailbox.kept:  # in the same move
                self.mailbox.close("the instance finished before a thread waited for it")
            return
        # plain loops and module names for the members: this runs at every
        # checkpoint, so it is on the hot path
        for thread in self.threads:
            status = thread.status
            if status is _RESUMING or status is _UNWINDING:  # moving on, or tearing down
                events = thread.events
                if not events or events[0].retry_at is None:
                    self.status = _WF_RESUMING
                    return
            elif status is _EXECUTING:
                if thread.retry_at is None:
                    self.status = _WF_RESUMING
                    return
            else:
                for event in thread.events:  # a setup to do now
                    if event.status is not _SETUP and event.retry_at is None:
                        self.status = _WF_RESUMING
                        return
        self.status = WorkflowStatus.WAITING


for _kind in CheckpointType:
    _kind.durable = _kind is not CheckpointType.AFTER_RESUME
del _kind

# The enum members the hot paths compare with, as module names, in one place
# (runtime imports them from here): in Python 3.11 looking a member up on its
# class takes the slow path of attribute lookup (the metaclass defines
# __getattr__), and the move loop does it a few dozen times per step.
_WF_RESUMING: Final = WorkflowStatus.RESUMING
_FINISHED: Final = WorkflowStatus.FINISHED
_FAILED: Final = WorkflowStatus.FAILED
_CANCELLED: Final = WorkflowStatus.CANCELLED
_CANCELLING: Final = WorkflowStatus.CANCELLING
_UNWINDING: Final = ThreadStatus.UNWINDING
_EXECUTING: Final = ThreadStatus.EXECUTING
_RESUMING: Final = ThreadStatus.RESUMING
_WAITING_EVENT: Final = ThreadStatus.WAITING_EVENT
_WAITING_CONDITION: Final = ThreadStatus.WAITING_CONDITION
_SETUP: Final = WaitEventStatus.SETUP
_AFTER_STEP: Final = CheckpointType.AFTER_STEP
_AFTER_RESUME: Final = CheckpointType.AFTER_RESUME
_AFTER_FAILURE: Final = CheckpointType.AFTER_FAILURE
_AFTER_CANCEL: Final = CheckpointType.AFTER_CANCEL


def unretryable(state: State) -> bool:
    """Has a failure nothing caught ended a thread, after the thread's `Catch`
    and `Finally` bodies ran? Then no step is left to run again: `Engine.retry`
    refuses, and an operator cancels the instance or moves the thread."""
    return any(t.status is _UNWINDING and t.unwind == "fail" for t in state.threads)


def new_state(id: Any, workflow: Any) -> State:
    """A fresh State for instance `id` of `workflow` (a registered class, an
    instance of one, or its registered name): the main thread, not started. An id
    that no blob could load again (empty, not a str: `None` would become "None")
    is an `InvalidIdError` here, as `Engine.start` refuses it."""
    # (`id` Any, not str: compiled, an annotation is checked at the call, before the
    # clear error of `checked_id`; docs/compiled.md)
    return State(id=checked_id(id), workflow=workflow_name(workflow),
                 threads=[Thread(id=MAIN_THREAD)])


def checked_id(instance_id: Any) -> str:
    """An instance id as every store can keep it, or `InvalidIdError` at once
    (before a store sees it: sqlite3 would raise UnicodeEncodeError mid-operation)."""
    if not isinstance(instance_id, str):
        raise InvalidIdError(f"an instance id is a str, not {type(instance_id).__name__} "
                             f"{instance_id!r}")
    if not instance_id or len(instance_id) > MAX_ID_LENGTH:
        raise InvalidIdError(f"an instance id has 1 to {MAX_ID_LENGTH} characters, not "
                             f"{len(instance_id)}")
    try:
        instance_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdError(f"instance id {instance_id!r} is not valid text (a lone surrogate?): "
                             "ids must be encodable as UTF-8") from None
    if "\x00" in instance_id:
        raise InvalidIdError(f"instance id {instance_id!r} contains a NUL character")
    return instance_id


def _annotated_from_source() -> None:
    """Compiled, mypyc hands attrs each field's class rather than its type (`list`
    for `list[Thread]`, `type` for `Any` or a union), which cattrs and
    `typing.get_type_hints` would go by: each attrs class here gets the
    annotations of its source, the `.py` beside the extension, as pure Python
    has them, and its fields the types they name."""
    import ast  # (here: the pure build never needs it)
    from pathlib import Path

    source = Path(__file__).with_name("state.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        cls = globals().get(node.name)
        if cls is not None and attrs.has(cls):
            cls.__annotations__ = {item.target.id: ast.unparse(item.annotation)
                                   for item in node.body if isinstance(item, ast.AnnAssign)
                                   and isinstance(item.target, ast.Name)}
            attrs.resolve_types(cls)


if not _PURE:
    _annotated_from_source()
