"""The pure operations on an instance: resume, deliver, cancel, move. No I/O.

Each operation is a generator written once: it yields every call of user code
it needs (`(function, args, step_context)`) to a *driver*, which calls it
directly (`drive`) or awaits it when it is a coroutine (`drive_async`). So sync
and async share every line of the semantics, and so does the `Engine`, whose
operations are generators that `yield from` these and are driven the same way.

The move loop (`Operation.resume`) is the one place where threads are scheduled:
every move is made by the first thread, in creation order, that can move (a
step may have made an earlier thread's condition true). The order of moves thus
depends on nothing but the data, `State` and the clock's readings, so an
instance reloaded at any checkpoint goes on exactly as one that never stopped.

Under a driver that runs steps at once (`drive_async`), a thread standing at
a step waits until no thread can move otherwise; then every due step starts,
each on its own copy of the data, and each is applied, with its checkpoint, as
it ends (`Operation._at_once`). The order they end in is recorded by those
checkpoints; what each wrote is merged place by place, and a step whose
writes conflict with what was applied while it ran runs again alone. So a
checkpoint never saves half a step, and a crash drops the steps in flight,
which run again, as a crash drops a step run alone.

Failure is decided here too. A step that raises is tried again by its `Retry`
policy: the attempt count, the error and the next try time are recorded on its
thread (a durable checkpoint, `AFTER_FAILURE`), and the thread waits for that
time while the others go on. When no attempt is left the instance is FAILED and
the step's `StepError` is raised. Handler set-ups and teardowns are retried the
same way when a policy is given (the engine gives one); without one, the
failure is recorded on the event and raised, and the next resume tries again.

Atomicity: a move decides everything first and changes `State` only once
nothing can fail any more. User code that fails has its changes to the data
rolled back from a snapshot taken before it ran.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import datetime as _dt
import inspect
from collections.abc import Callable, Generator
from typing import Any, ClassVar, Final, NamedTuple, Protocol

import attrs

from genflow.children import (
    CHILD_EVENT,
    Children,
    ChildReport,
    arrived_of,
    child_ids,
    keep_arrived,
)
from genflow.clock import system_clock
from genflow.codec import (
    check_payload,
    converter,
    structure_payload,
    unstructure,
    unstructure_hook,
)
from genflow.context import StepContext, _current, current_step
from genflow.errors import (
    ArgumentError,
    Cancelled,
    ChildFailed,
    DefinitionError,
    DuplicateThreadError,
    EventNotReadyError,
    GenflowError,
    HandlerError,
    InstanceFailedError,
    MailboxFullError,
    MoveError,
    MoveLimitError,
    NonDeterminismError,
    NotWaitingError,
    PayloadError,
    RecordedFailure,
    StaleCallbackError,
    StepError,
    UnknownEventError,
    UnknownThreadError,
    WorkflowFinishedError,
    error_text,
)
from genflow.handlers import TimerHandler, as_handler, overrides
from genflow.handlers import _payload_parameter as _handler_input
from genflow.mailbox import DEFAULT_SIZE, Kept, keeps, sendable
from genflow.outbox import Outbox
from genflow.replay import (
    END,
    FAIL,
    RESTART,
    Definition,
    Flow,
    Frame,
    advance,
    done_reading,
    find,
    follow,
    iter_tree,
    path_of,
    reading,
    search,
    tracer,
    unwind,
)
from genflow.state import (
    _AFTER_CANCEL,
    _AFTER_FAILURE,
    _AFTER_RESUME,
    _AFTER_STEP,
    _CANCELLED,
    _CANCELLING,
    _EXECUTING,
    _FAILED,
    _FINISHED,
    _RESUMING,
    _SETUP,
    _UNWINDING,
    _WAITING_CONDITION,
    _WAITING_EVENT,
    _WF_RESUMING,
    CallbackRequest,
    CheckpointType,
    Failure,
    Mailbox,
    Message,
    Origin,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    unretryable,
)
from genflow.statements import Go, Retry, Step, Stmt, Switch, Timeout, Try, Wait, WaitFor, type_key
from genflow.timeouts import timed

__all__ = [
    "CANCEL",
    "DEFAULT_PARALLEL_STEPS",
    "NEXT",
    "PENDING",
    "Checkpoint",
    "Conflict",
    "Location",
    "Operation",
    "Start",
    "StepContext",
    "begin_call",
    "call_once",
    "cancel",
    "cancel_async",
    "cancel_flights",
    "current_step",
    "deliver",
    "deliver_async",
    "diagnose",
    "direct_request",
    "drive",
    "drive_async",
    "finish_call",
    "handle_callback",
    "handle_callback_async",
    "landing",
    "locate",
    "move",
    "move_async",
    "request_for",
    "reset_failures",
    "resume",
    "resume_async",
    "send",
    "send_async",
    "steps_at_once",
]

#: `checkpoint(kind)`: called after each move; save the instance when `kind.durable`.
Checkpoint = Callable[[CheckpointType], Any]
Clock = Callable[[], _dt.datetime]

DEFAULT_MAX_MOVES = 100_000
#: how many steps of one instance a driver that runs them at once runs together
DEFAULT_PARALLEL_STEPS = 100

#: A step without a policy of its own, and no default given: one attempt.
ONCE: Final = Retry(attempts=1)

_FINAL: Final = (_FINISHED, _CANCELLED)
#: the types a field's saved value has as it is (no unstructuring): compared directly
_PLAIN: Final = frozenset({int, str, bool, float, bytes, type(None)})
#: Recording what a replay reads costs more than most replays (Python-level
#: properties), so it is done where it has paid: per workflow class and statement
#: a thread replays from ((recording class, statement, forward?) -> tries left;
#: -1: it has paid, always record). Replays from a statement recorded `_TRIES`
#: times without once being kept across user code are not recorded any more.
#: Correctness never depends on it: unrecorded frames are dropped when user code
#: runs, as when nothing is recorded at all.
_PAYS: Final[dict[tuple[type, str, bool], int]] = {}
_TRIES: Final = 3
_GATES: Final = 4096  # at most this many statements remembered (then forgotten, relearned)
_AFTER_MAILBOX: Final = CheckpointType.AFTER_MAILBOX
_NO_SEQS: Final[frozenset[int]] = frozenset()
_NEEDS_SETUP: Final = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP_ERROR)
_TEARING_DOWN: Final = (WaitEventStatus.PENDING_TEARDOWN, WaitEventStatus.TEARDOWN_ERROR)
#: the statement a thread in each status stands at (RESUMING: any, just done)
_STANDS_AT: Final[dict[ThreadStatus, type]] = {
    _EXECUTING: Step,
    _WAITING_EVENT: Wait,
    _WAITING_CONDITION: WaitFor,
}
#: A name a caller gives (an event, a thread's id, a statement): a `str`. Typed Any where
#: it arrives from the caller unchecked: compiled (docs/compiled.md), an annotation is
#: checked at the call, and a name of another type must be refused as an unknown name
#: is, with the same GenflowError in both builds.
Name = Any

#: What a move can fail with after an operation has begun changing the instance:
#: `deliver` keeps these apart from a refused event (see `Operation.deliver`).
FAILURES: Final = (StepError, HandlerError, MoveLimitError, DefinitionError, NonDeterminismError,
            DuplicateThreadError)


_new_tuple: Final = tuple.__new__


# -- drivers ----------------------------------------------------------------------------

_Call = tuple[Callable[..., Any], tuple[Any, ...], StepContext | None]
_Moves = Generator[Any, Any, Any]


class Start(NamedTuple):
    """A step's call that a driver may leave running (yielded by the core only
    to a driver that runs steps at once: `drive_async`). Call it as any call;
    if it returns an awaitable, send back `PENDING` instead of awaiting it, and
    the call's outcome later, at a `NEXT`."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    ctx: StepContext


class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"genflow.runtime.{self.name}"


#: sent back for a `Start` whose call is left running
PENDING: Final = _Signal("PENDING")
#: yielded: wait for the first started call to end; send `(ctx, result, exception)`
NEXT: Final = _Signal("NEXT")
#: yielded: cancel every started call still running, and wait for them to end
CANCEL: Final = _Signal("CANCEL")

#: does the driver now running the moves run steps at once? (`drive_async` does)
_at_once: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar("genflow_at_once",
                                                                default=False)


class Watcher(Protocol):
    """What a driver calls user code through when something watches it (the
    engine's `genflow.observe.Observer`: spans, timings, logs)."""

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], ctx: StepContext) -> Any: ...

    async def call_async(self, fn: Callable[..., Any], args: tuple[Any, ...],
                         ctx: StepContext) -> Any: ...

    def open_call(self, fn: Callable[..., Any], ctx: StepContext) -> Any: ...

    def close_call(self, opened: Any, ctx: StepContext, error: BaseException | None) -> None: ...

    def leave(self, opened: Any) -> None: ...

    async def finish(self, awaitable: Any, opened: Any, ctx: StepContext) -> Any: ...


def drive(moves: _Moves, watch: Watcher | None = None) -> Any:
    """Run an operation's moves (see `Operation`), calling the user code they yield.

    With `watch`, each step and handler call (those with a `StepContext`) is
    made through `watch.call`; without, this loop is all there is."""
    if watch is not None:
        return _drive_watched(moves, watch)
    value: Any = None
    error: BaseException | None = None
    # (one at a time, also when called from a step the async driver runs)
    at_once = _at_once.set(False) if _at_once.get() else None
    try:
        while True:
            try:
                call = moves.throw(error) if error is not None else moves.send(value)
            except StopIteration as stop:
                return stop.value
            error = None
            fn, args, ctx = call
            token = _current.set(ctx) if ctx is not None else None
            try:
                value = fn(*args)
                if value is not None and inspect.isawaitable(value):
                    getattr(value, "close", lambda: None)()
                    raise TypeError(_ASYNC_IN_SYNC.format(fn=fn))
            except BaseException as exc:
                error, value = exc, None
            finally:
                if token is not None:
                    _current.reset(token)
    finally:
        if at_once is not None:
            _at_once.reset(at_once)


def _drive_watched(moves: _Moves, watch: Watcher) -> Any:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = moves.throw(error) if error is not None else moves.send(value)
        except StopIteration as stop:
            return stop.value
        error = None
        fn, args, ctx = call
        token = _current.set(ctx) if ctx is not None else None
        try:
            value = fn(*args) if ctx is None else watch.call(_sync_only(fn), args, ctx)
            if value is not None and inspect.isawaitable(value):
                getattr(value, "close", lambda: None)()
                raise TypeError(_ASYNC_IN_SYNC.format(fn=fn))
        except BaseException as exc:
            error, value = exc, None
        finally:
            if token is not None:
                _current.reset(token)


_ASYNC_IN_SYNC = (
    "{fn!r} is async: the sync API cannot await it; call the async twin (the Engine's "
    "start_async, send_async, run_due_async..., a worker's work_async or `genflow worker "
    "--async`; the core's resume_async...), or make it a plain def")


def _sync_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, refusing a coroutine it returns (the sync driver's rule) inside the watch."""
    def call(*args: Any) -> Any:
        value = fn(*args)
        if value is not None and inspect.isawaitable(value):
            getattr(value, "close", lambda: None)()
            raise TypeError(_ASYNC_IN_SYNC.format(fn=fn))
        return value
    call.__name__ = getattr(fn, "__name__", "call")
    return call


async def drive_async(moves: _Moves, watch: Watcher | None = None) -> Any:
    """As `drive`, awaiting what user code returns when it is awaitable.

    It also runs steps at once: a `Start` call that returns an awaitable
    becomes a task and `PENDING` is sent back at once; `NEXT` waits for the
    first of those tasks to end (the earliest started, when several have) and
    sends back `(its StepContext, result, exception)`; `CANCEL` cancels every
    task still running and waits for them. Whatever is left running when the
    moves end (they raised) is cancelled the same way: a step the core did
    not apply is a step a crash interrupted. With `watch`, each step and
    handler call is made through it (`Watcher`), those left running too.
    """
    value: Any = None
    error: BaseException | None = None
    flights: dict[asyncio.Future[Any], StepContext] = {}  # in the order they started
    at_once = _at_once.set(True)
    result: Any = None
    failed: BaseException | None = None
    try:
        while True:
            try:
                call = moves.throw(error) if error is not None else moves.send(value)
            except StopIteration as stop:
                result = stop.value
                break
            error = None
            if call is NEXT:
                try:
                    value = await landing(flights)
                except BaseException as exc:  # (this task was cancelled)
                    error, value = exc, None
                continue
            if call is CANCEL:
                await cancel_flights(flights)
                value = None
                continue
            fn, args, ctx = call
            token = _current.set(ctx) if ctx is not None else None
            try:
                # (an else, not a `continue`: mypyc compiles no continue inside try/finally)
                if watch is not None and ctx is not None:
                    value = await _watched(watch, call, flights)
                else:
                    value = fn(*args)
                    if value is not None and inspect.isawaitable(value):
                        if type(call) is Start:
                            assert ctx is not None
                            flights[asyncio.ensure_future(value)] = ctx
                            value = PENDING
                        else:
                            value = await value
            except BaseException as exc:
                error, value = exc, None
            finally:
                if token is not None:
                    _current.reset(token)
    except BaseException as exc:
        failed = exc
    # What a `finally` would do, after it: no await inside an except or finally block
    # (docs/compiled.md). Compiled, a coroutine suspended there leaves the exception it
    # handles as the interpreter's while others run, and the tasks cancelled here run.
    try:
        if flights:
            await cancel_flights(flights)
    except BaseException as exc:
        if failed is not None and exc is not failed:
            exc.__context__ = failed  # (as a `finally` chains it)
        raise
    finally:
        _at_once.reset(at_once)
    if failed is not None:
        raise failed
    return result


async def _watched(watch: Watcher, call: Any, flights: dict[asyncio.Future[Any], StepContext]
                   ) -> Any:
    """`drive_async`'s call of user code through `watch`: a `Start` whose call
    returns an awaitable is left running as a task (its span and timing end
    with it), as unwatched."""
    fn, args, ctx = call
    if type(call) is not Start:
        return await watch.call_async(fn, args, ctx)
    opened = watch.open_call(fn, ctx)
    try:
        value = fn(*args)
    except BaseException as exc:
        watch.close_call(opened, ctx, exc)
        raise
    if value is None or not inspect.isawaitable(value):
        watch.close_call(opened, ctx, None)
        return value
    flights[asyncio.ensure_future(watch.finish(value, opened, ctx))] = ctx  # (sees its span)
    watch.leave(opened)  # the driver goes on outside the step's span
    return PENDING


async def landing(flights: dict[asyncio.Future[Any], StepContext]
                   ) -> tuple[StepContext, Any, BaseException | None]:
    """The first call started in `flights` to have ended: its context, result and
    exception (what `drive_async` sends back for `NEXT`)."""
    if not flights:
        raise RuntimeError("NEXT with no call started: the core waits for nothing")
    done = next((f for f in flights if f.done()), None)
    if done is None:
        await asyncio.wait(list(flights), return_when=asyncio.FIRST_COMPLETED)
        done = next(f for f in flights if f.done())
    ctx = flights.pop(done)
    if done.cancelled():
        return ctx, None, asyncio.CancelledError()
    error = done.exception()
    return ctx, (None if error is not None else done.result()), error


async def cancel_flights(flights: dict[asyncio.Future[Any], StepContext]) -> None:
    """Cancel every call still running in `flights` and wait for them to end."""
    for future in flights:
        future.cancel()
    await asyncio.gather(*flights, return_exceptions=True)
    flights.clear()


# -- one call at a time, for a driver of several operations -------------------------------
#
# The engine's worker round drives several instances' operations side by side
# (`Engine._turns`), so it cannot hand each one to `drive` or `drive_async`; it makes
# each call of user code with these, exactly as those two make it (the step made
# current, a coroutine refused by the sync driver, a `Start` left running by the
# async one), so that there is one way to call user code, and it is here.


def steps_at_once(flag: bool) -> None:
    """Tell the moves run in this context whether their driver runs steps at
    once (`Start`, `NEXT`, `CANCEL`), as `drive_async` does and `drive` not."""
    _at_once.set(flag)


def call_once(call: tuple[Any, tuple[Any, ...], Any],
              watch: Watcher | None) -> tuple[Any, BaseException | None]:
    """Run one call the moves yielded, as `drive` runs it (through `watch` when
    given, as its watched loop): its value and the exception it raised (to
    throw back into the moves)."""
    fn, args, ctx = call
    token = _current.set(ctx) if ctx is not None else None
    try:
        value = fn(*args) if watch is None or ctx is None else \
            watch.call(_sync_only(fn), args, ctx)
        if value is not None and inspect.isawaitable(value):
            getattr(value, "close", lambda: None)()
            raise TypeError(_ASYNC_IN_SYNC.format(fn=fn))
        return value, None
    except BaseException as exc:
        return None, exc
    finally:
        if token is not None:
            _current.reset(token)


def begin_call(call: tuple[Any, tuple[Any, ...], Any], watch: Watcher | None,
               flights: dict[asyncio.Future[Any], StepContext]) -> tuple[Any, Any]:
    """Begin one call as `drive_async` makes it, up to what it leaves to await:
    (its value, None) when it is done (a `Start`'s awaitable left running in
    `flights`: `PENDING`), or (None, the awaitable) for `finish_call`. A call
    that raises raises."""
    fn, args, ctx = call
    token = _current.set(ctx) if ctx is not None else None
    watching = watch if ctx is not None else None  # (steps and handlers only)
    try:
        opened: Any = watching.open_call(fn, ctx) if watching is not None else None
        try:
            value = fn(*args)
        except BaseException as exc:
            if watching is not None:
                watching.close_call(opened, ctx, exc)
            raise
        if value is None or not inspect.isawaitable(value):
            if watching is not None:
                watching.close_call(opened, ctx, None)
            return value, None
        if watching is not None:
            value = watching.finish(value, opened, ctx)  # (it ends the span)
        if type(call) is not Start:
            return None, value
        flights[asyncio.ensure_future(value)] = ctx  # (a task in a copy of this context)
        if watching is not None:
            watching.leave(opened)  # (the driver goes on outside the step's span)
        return PENDING, None
    finally:
        if token is not None:
            _current.reset(token)


async def finish_call(awaitable: Any, ctx: StepContext | None) -> Any:
    """The rest of a call `begin_call` began, its step current again while it runs."""
    token = _current.set(ctx) if ctx is not None else None
    try:
        return await awaitable
    finally:
        if token is not None:
            _current.reset(token)


# -- public operations -------------------------------------------------------------------


def resume(
    wf: Any,
    state: State,
    checkpoint: Checkpoint | None = None,
    *,
    clock: Clock | None = None,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> None:
    """Move every thread on until each is blocked or finished.

    `checkpoint(kind)` is called after every move. On error, data and State are
    as at the last checkpoint (which records a failed attempt or set-up).
    """
    op = _carried(Operation(wf, state, checkpoint, clock))
    drive(op.resume(max_moves))
    _carry(op)


async def resume_async(
    wf: Any,
    state: State,
    checkpoint: Checkpoint | None = None,
    *,
    clock: Clock | None = None,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> None:
    """`resume` for steps, handlers and checkpoints that may be `async def`."""
    op = _carried(Operation(wf, state, checkpoint, clock))
    await drive_async(op.resume(max_moves))
    _carry(op)


def deliver(
    req: CallbackRequest,
    wf: Any,
    state: State,
    payload: Any = None,
    checkpoint: Checkpoint | None = None,
    *,
    clock: Clock | None = None,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> Any:
    """Deliver one event and move the instance on until it blocks: the handler
    runs, `checkpoint(AFTER_EVENT)`, then `resume`. Returns what the handler returned.

    A refused event (`EventError`, a handler that raises) changes nothing. If a
    move after the event fails, the event stays delivered and the failure is
    raised as `resume` raises it.
    """
    op = _carried(Operation(wf, state, checkpoint, clock))
    output = drive(op.deliver(req, payload, max_moves))
    if op.failure is not None:
        raise op.failure
    _carry(op)
    return output


async def deliver_async(
    req: CallbackRequest,
    wf: Any,
    state: State,
    payload: Any = None,
    checkpoint: Checkpoint | None = None,
    *,
    clock: Clock | None = None,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> Any:
    op = _carried(Operation(wf, state, checkpoint, clock))
    output = await drive_async(op.deliver(req, payload, max_moves))
    if op.failure is not None:
        raise op.failure
    _carry(op)
    return output


def handle_callback(req: CallbackRequest, wf: Any, state: State, payload: Any = None) -> Any:
    """Deliver one event: run its handler and mark the thread to move on.

    Returns what the handler returned. Call `resume` afterwards (or use
    `deliver`, which does both). On any error nothing has changed.
    """
    op = _carried(Operation(wf, state, None, None))
    output = drive(op.callback(req, payload))
    _carry(op)
    return output


async def handle_callback_async(
    req: CallbackRequest, wf: Any, state: State, payload: Any = None
) -> Any:
    op = _carried(Operation(wf, state, None, None))
    output = await drive_async(op.callback(req, payload))
    _carry(op)
    return output


def send(
    wf: Any,
    state: State,
    event: Name,
    payload: Any = None,
    checkpoint: Checkpoint | None = None,
    *,
    thread: Name | None = None,
    keep: bool | None = None,
    limit: int = DEFAULT_SIZE,
    clock: Clock | None = None,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> Any:
    """Send `event`: delivered (as `deliver`) when a thread waits for it now and
    nothing older of that event is kept; otherwise kept in the instance's
    mailbox (`checkpoint(AFTER_MAILBOX)`) for the move that finds a thread
    waiting for it, then the instance moves on. Returns the handler's output
    when the event was handled during this call, else a `Kept`.

    `keep` overrides what the event's `On`s declare (default: kept). Refused
    with nothing changed: an event no statement of the definition can wait for
    (`UnknownEventError`, listing the events), a payload that does not fit a
    handler of the event (`PayloadError`), a mailbox holding `limit` messages
    (`MailboxFullError`), and what `deliver` refuses.
    """
    op = _carried(Operation(wf, state, checkpoint, clock))
    output = drive(op.send(event, payload, thread=thread, keep=keep, limit=limit,
                           max_moves=max_moves))
    if op.failure is not None:
        raise op.failure
    _carry(op)
    return output


async def send_async(
    wf: Any,
    state: State,
    event: Name,
    payload: Any = None,
    checkpoint: Checkpoint | None = None,
    *,
    thread: Name | None = None,
    keep: bool | None = None,
    limit: int = DEFAULT_SIZE,
    clock: Clock | None = None,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> Any:
    op = _carried(Operation(wf, state, checkpoint, clock))
    output = await drive_async(op.send(event, payload, thread=thread, keep=keep, limit=limit,
                                       max_moves=max_moves))
    if op.failure is not None:
        raise op.failure
    _carry(op)
    return output


def cancel(wf: Any, state: State, checkpoint: Checkpoint | None = None, *,
           clock: Clock | None = None, max_moves: int = DEFAULT_MAX_MOVES) -> None:
    """Cancel the instance: cancellation reaches every thread.

    Everything it needs is found first: if the definition lost a statement or
    handler a thread needs, `NonDeterminismError` is raised and nothing changes.
    Then the instance is CANCELLING: each thread's handlers are torn down, then
    it runs its cleanup (`Catch(errors=Cancelled)` and `Finally` bodies of the
    `Try`s it is in) durably and ends; the instance is CANCELLED when every
    thread has ended. A teardown that fails is recorded and raised; calling
    `cancel` (or `resume`) again goes on where it stopped (it never restarts).
    """
    op = Operation(wf, state, checkpoint, clock)
    drive(op.cancel(max_moves))
    if op.failure is not None:
        raise op.failure


async def cancel_async(wf: Any, state: State, checkpoint: Checkpoint | None = None, *,
                       clock: Clock | None = None,
                       max_moves: int = DEFAULT_MAX_MOVES) -> None:
    op = Operation(wf, state, checkpoint, clock)
    await drive_async(op.cancel(max_moves))
    if op.failure is not None:
        raise op.failure


def diagnose(wf: Any, state: State) -> list[GenflowError]:
    """What `state` needs that the definition, replayed on `wf`, no longer has:
    a thread's statement, the `Go` that started it, an event it waits for.

    Nothing runs and nothing changes; an empty list means every thread can
    move on with the code now installed (the deploy check).
    """
    operation = Operation(wf, state, None, None)
    problems: list[GenflowError] = []
    for thread in state.threads:
        try:
            operation.check_thread(thread)
        except GenflowError as exc:  # NonDeterminismError, or a definition that raised
            problems.append(exc)
    return problems


def reset_failures(state: State) -> None:
    """An operator's retry: a FAILED instance becomes resumable, and each failed
    step or handler gets its whole retry policy again."""
    for thread in state.threads:
        thread.attempts, thread.error, thread.retry_at = 0, "", None
        for event in thread.events:
            event.attempts, event.retry_at = 0, None
    if state.status is _FAILED:
        state.status = _WF_RESUMING


class Location(NamedTuple):
    """Where a thread stands in the definition replayed on the current data.

    `statement` is the saved statement (None: the thread has not started);
    `path` is its path hint within the thread's body (the indices `Thread.path`
    holds); `origins` holds the path of each `Go` that started the thread,
    outermost first, each within the body of the thread that ran it.
    """

    statement: Stmt | None
    path: list[int]
    origins: list[list[int]]


def locate(wf: Any, state: State, thread_id: str) -> Location:
    """Find where thread `thread_id` stands, as a move would (nothing runs but
    the definition; nothing changes). `NonDeterminismError` if it is gone."""
    operation = Operation(wf, state, None, None)
    thread = state.thread(thread_id)
    if thread is None:
        raise UnknownThreadError(f"instance {state.id!r} has no live thread {thread_id!r}")
    return operation.where(thread)


def move(wf: Any, state: State, thread_id: Name, statement: Name,
         checkpoint: Checkpoint | None = None, *, clock: Clock | None = None) -> None:
    """An operator's repair: make `statement` (a Step, Wait or WaitFor of that
    thread's definition) the thread's next stop, the "goto" of the Go library.

    Handlers the thread has set up are torn down first; if a teardown fails,
    the move stops there (the teardowns done are kept) and can be tried again.
    Resume afterwards to go on from the new place.
    """
    drive(Operation(wf, state, checkpoint, clock).move(thread_id, statement))


async def move_async(wf: Any, state: State, thread_id: Name, statement: Name,
                     checkpoint: Checkpoint | None = None, *,
                     clock: Clock | None = None) -> None:
    await drive_async(Operation(wf, state, checkpoint, clock).move(thread_id, statement))


# -- the operations ---------------------------------------------------------------------


class Operation:
    """One operation on one instance, as a generator of the user calls it needs.

    `resume()`, `deliver()` and the rest are `drive(Operation(...).resume(...))`.
    Each generator yields `(fn, args, step_context)` for every call of user code
    (a step, a handler's setup/handle/teardown, a condition handler, the
    checkpoint callback) and is sent the result (or thrown its exception). Drive
    one yourself to watch every call: `genflow.testing` does, to tell whether a
    step ran twice, and the `Engine` does, to save at each checkpoint. This is
    the call-level API; most code wants the functions.

    `retry` is the policy of steps without one of their own (default: one
    attempt); `handler_retry` that of handler set-ups and teardowns (default
    None: a failure is raised at once and tried again on the next resume).
    """

    __slots__ = ("aside", "at_once", "calls", "checkpoint", "clock", "definition",
                 "durable_only", "failed", "failing", "failure", "handler_retry", "located",
                 "outbox", "parallel_steps", "repaths", "retry", "started", "state", "taken",
                 "tracer", "unseen", "unstructure", "wf")

    #: keep what a replay located across user code that changed nothing it read
    #: (False: replay after all user code, the rule's reference in the tests; a ClassVar,
    #: so that compiled too the class's value is read, not a copy made per instance)
    reuse: ClassVar[bool] = True

    def __init__(self, wf: Any, state: State, checkpoint: Checkpoint | None,
                 clock: Clock | None, *, retry: Retry | None = None,
                 handler_retry: Retry | None = None,
                 parallel_steps: int = DEFAULT_PARALLEL_STEPS):
        self.wf = wf
        self.state = state
        self.checkpoint = checkpoint
        #: the checkpoint is called at durable checkpoints only (the move loop's
        #: AFTER_RESUME navigations are left out, and `unseen` set instead): for
        #: a checkpoint that only saves, such as the engine's when it neither
        #: journals nor logs each move
        self.durable_only = False
        self.unseen = False
        self.clock = clock or system_clock
        self.retry = retry or ONCE
        self.handler_retry = handler_retry
        #: what the moves after a delivered event failed with (`deliver`)
        self.failure: GenflowError | None = None
        #: a failure that reached a thread's top after its Finally bodies ran:
        #: raised by the loop once its checkpoint is made
        self.failing: StepError | None = None
        #: the (thread, event or None) whose step or handler failed last: its
        #: attempt, error and next try are on it (the engine logs them)
        self.failed: tuple[Thread, WaitEvent | None] | None = None
        # every thread's replays start here (made by the first: `_definition`)
        self.definition: Definition | None = None
        #: the class that records what replays read (None: every user code replays)
        cls = type(wf)
        self.tracer = tracer(cls) if self.reuse else None
        #: the data's snapshot before user code runs (looked up once per operation:
        #: hooks registered later are seen by the next one)
        self.unstructure = unstructure_hook(cls)
        # Where a move just stood each thread: (thread.pc, frames, statement). The
        # move that follows (run the step, set up the wait, go on after a won
        # event) takes it instead of replaying the definition again. It is valid
        # only until user code runs, since conditions and bodies are computed
        # from the data: `_user_code` empties it and counts the calls.
        self.located: dict[str, tuple[int, list[Frame], Stmt]] = {}
        self.calls = 0
        # Threads started by a move, not moved yet: (`calls` then, their Go). Their
        # first move takes the Go from here instead of replaying the thread that
        # ran it, until user code runs (a fan-out of N threads: N replays fewer).
        self.started: dict[str, tuple[int, Go]] = {}
        # Threads whose statement `locate` found by name, off its path hint: a
        # move that commits them there writes the new path (`_path`).
        self.repaths: dict[str, tuple[int, list[int]]] = {}
        #: the effects on other instances user code asked for (`genflow.outbox`),
        #: taken by the engine's next save
        self.outbox = Outbox()
        # Steps at once, under a driver that runs them (`drive_async`): at most
        # `parallel_steps`; what they need is made when the first starts.
        self.parallel_steps = parallel_steps
        self.at_once: _AtOnce | None = None
        # Kept messages this operation delivered (seq -> the handler's output),
        # and those undelivered when it began: the engine puts the changes on record.
        self.taken: dict[int, Any] | None = None
        box = state.mailbox
        self.aside = _NO_SEQS if box is None else frozenset(m.seq for m in box.undelivered)

    @property
    def conflicts(self) -> list[Conflict]:
        """Steps run at once whose writes conflicted, and that ran again alone."""
        return [] if self.at_once is None else self.at_once.conflicts

    # -- the scheduling loop --

    def resume(self, max_moves: int) -> _Moves:
        state = self.state
        if state.status in _FINAL:
            raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
        if state.status is _FAILED:  # resuming a failed instance is an operator's retry
            return (yield from self._retrying(max_moves))
        checkpoint = self.checkpoint
        moves = 0
        # threads found blocked since user code last ran: skipped without a replay
        blocked: set[str] = set()
        calls = self.calls
        # Under a driver that runs steps at once, a thread at a step waits until
        # no thread can move otherwise; then every due step starts (`_at_once`).
        at_once = _at_once.get() and self.parallel_steps > 1
        failed: BaseException | None = None
        try:
            while True:
                for thread in state.threads:
                    if thread.id in blocked:
                        continue
                    # The two commonest moves are dispatched here, without the
                    # generator `_move` would add to every call of user code.
                    status = thread.status
                    if status is _RESUMING and not thread.events:
                        kind = self._forward(thread)
                    elif status is _EXECUTING:
                        if thread.retry_at is not None and thread.retry_at > self.clock():
                            kind = None  # waits for its next attempt
                        elif at_once:
                            continue  # it starts with the others' steps, below
                        else:
                            kind = yield from self._run_step(thread)
                    else:
                        kind = yield from self._move(thread)
                    if kind is not None:
                        break
                    blocked.add(thread.id)
                else:
                    if not at_once:
                        break
                    kind = yield from self._at_once()
                    if kind is None:
                        break
                moves += 1
                if self.calls != calls:  # user code ran: blocked threads may move now
                    calls = self.calls
                    blocked.clear()
                    if self.failing is not None:  # a thread ended with a failure: saved, raised
                        failing, self.failing = self.failing, None
                        yield from self._checkpoint(kind)
                        raise failing
                if checkpoint is not None:  # `_checkpoint`, inlined: this loop is the hot path
                    state.update_status()
                    if kind is not _AFTER_RESUME or not self.durable_only:
                        yield (checkpoint, (kind,), None)
                    else:  # a navigation its checkpoint does not want to see: noted
                        self.unseen = True
                if moves >= max_moves:
                    state.update_status()
                    raise MoveLimitError(
                        f"instance {state.id!r} made {moves} moves in one resume "
                        "(a loop of steps that never waits?); resume again to go on"
                    )
        except BaseException as exc:
            failed = exc  # (no yield in an except block: drive_async, docs/compiled.md)
        running = self.at_once
        if failed is not None:
            if running is not None and running.flights and not isinstance(failed, GeneratorExit):
                # what runs still is dropped, as a crash would drop it: each runs
                # again at the next move of its thread
                running.flights.clear()
                yield CANCEL
            raise failed
        if running is not None and running.flights:  # (threads cancellation reached)
            running.flights.clear()
            yield CANCEL
        state.update_status()

    def _at_once(self) -> _Moves:
        """No thread can move but by its step: start every due step (at most
        `parallel_steps` at once), each on its own copy of the data, then
        apply the first to end (`_landed`). Returns the checkpoint kind of the
        move that applied one; None when no step is left to start or wait for.

        A step found alone (nothing else running) runs as the sync API runs it,
        on the data itself; so does a step whose writes conflicted with what was
        applied while it ran (its thread is in `alone`): once the others have
        ended, and before anything new starts.
        """
        if self.at_once is None:
            self.at_once = _AtOnce()
        state, flights, alone = self.state, self.at_once.flights, self.at_once.alone
        while True:
            now = None
            due = []
            for thread in state.threads:
                if thread.status is _EXECUTING and (thread.id, thread.pc) not in flights:
                    if thread.retry_at is not None:
                        now = now or self.clock()
                        if thread.retry_at > now:
                            continue
                    due.append(thread)
            running = sum(1 for flight in flights.values() if flight.current())
            if not due and not running:
                return None
            solo = next((t for t in due if t.id in alone), None) if alone else None
            if solo is not None:
                if not running:
                    alone.discard(solo.id)
                    return (yield from self._run_step(solo))
            elif due:
                stack, step = self.locate(due[0], Step)
                if len(due) == 1 and not running and not step.blocking:
                    self._keep(due[0], stack, step)
                    return (yield from self._run_step(due[0]))
                for thread in due[:max(self.parallel_steps - running, 0)]:
                    if thread is not due[0]:
                        stack, step = self.locate(thread, Step)
                    kind = yield from self._start(thread, stack, step)
                    if kind is not None:
                        return kind
            if flights:
                ctx, result, error = yield NEXT
                flight = flights.pop((ctx.thread_id, ctx.pc), None)
                if flight is not None:
                    kind = yield from self._landed(flight, result, error)
                    if kind is not None:
                        return kind

    def _start(self, thread: Thread, stack: list[Frame], step: Step) -> _Moves:
        """Start `thread`'s step on its own copy of the data (`Start`): None if it
        runs on, else the kind of the move that applied it (it ended at once)."""
        state, wf, running = self.state, self.wf, self.at_once
        assert running is not None
        if running.base is None or running.base[0] != self.calls:
            running.base = (self.calls, converter.unstructure(wf))
        # (from values of its own: structuring may share them with the object)
        mine = converter.structure(converter.unstructure(wf), type(wf))
        _, own = Operation(mine, state, None, self.clock).locate(thread, Step)
        # its own outbox too: what it asks for lands with its writes, or goes with them
        box = Outbox()
        box.exists, box.traceparent = self.outbox.exists, self.outbox.traceparent
        ctx = _new_tuple(StepContext, (state.id, state.workflow, thread.id, step.name,
                                       thread.pc, thread.attempts + 1, self.clock, None,
                                       thread.failures[-1] if thread.failures else None, None,
                                       box))
        action = own.action if own.timeout is None else timed(own, ctx)
        if own.blocking:
            action = _in_worker(action)
        flight = _Flight(thread, thread.pc, stack, step, running.base[1], mine, self.calls, box)
        failed: BaseException | None = None
        try:
            outcome = yield Start(action, (), ctx)
        except BaseException as exc:
            failed = exc  # (no yield in an except block: drive_async, docs/compiled.md)
        if failed is not None:
            return (yield from self._landed(flight, None, failed))
        if outcome is PENDING:
            running.flights[(thread.id, thread.pc)] = flight
            return None
        return (yield from self._landed(flight, outcome, None))

    def _landed(self, flight: _Flight, result: Any, error: BaseException | None) -> _Moves:
        """A step started at once has ended: a failure goes to `_step_failed` as
        when the step runs alone; a result is merged into the data (`_merge`)
        and the step's move made. None when nothing was applied: its thread was
        cancelled meanwhile, or its writes conflicted (it runs again, alone)."""
        thread, step = flight.thread, flight.step
        if not flight.current():
            return None
        self._user_code()
        if error is not None:
            if not isinstance(error, Exception):
                raise error
            failure = StepError(step.name or "", thread.id, error)
            failure.__cause__ = error
            return (yield from self._step_failed(thread, step, flight.stack, failure))
        conflict = self._merge(flight)
        if conflict is not None:
            assert self.at_once is not None
            self.at_once.conflicts.append(Conflict(thread.id, step.name or "", conflict))
            self.at_once.alone.add(thread.id)
            return None
        # -- commit (as `_run_step`'s), with what it asked of other instances --
        self.outbox.intents.extend(flight.outbox.intents)
        state = self.state
        state.pc += 1
        thread.status = _RESUMING
        if self.repaths:  # (a path `locate` found by name: `_path`)
            thread.path = self._path(thread)
        thread.pc = state.pc
        if thread.attempts:
            thread.attempts, thread.error, thread.retry_at = 0, "", None
        return _AFTER_STEP

    def _merge(self, flight: _Flight) -> str | None:
        """Write what the step changed in its copy into the data. Nothing else
        changed meanwhile: the copy's fields are taken as they are. Otherwise
        each value it wrote (a field, a key, an index, as deep as the data
        goes) is written over the data as it is now, unless one of them has
        changed since the step began: a conflict, whose place is returned and
        where nothing is written."""
        wf, mine = self.wf, flight.mine
        if self.calls == flight.calls + 1:  # (only its own landing since it began)
            for field in attrs.fields(type(wf)):
                object.__setattr__(wf, field.name, getattr(mine, field.name))
            return None
        writes: list[tuple[tuple[Any, ...], Any]] = []
        _writes(flight.base, converter.unstructure(mine), (), writes)
        if not writes:
            return None
        now = converter.unstructure(wf)
        for path, value in writes:
            if not _writable(now, flight.base, path, value):
                return path_words(path)
        for path, value in writes:
            _put(now, path, value)
        try:
            _restore(wf, now)
        except Exception:  # the values together do not make the data (a validator)
            return path_words(writes[0][0])
        return None

    def _retrying(self, max_moves: int) -> _Moves:
        """`resume` of a FAILED instance: each failed step or handler gets its
        whole policy again; refused before any move, nothing has changed."""
        state = self.state
        before = copy.deepcopy(state)
        reset_failures(state)
        try:
            return (yield from self.resume(max_moves))
        except BaseException:
            if state.pc == before.pc:
                for field in attrs.fields(State):
                    setattr(state, field.name, getattr(before, field.name))
            raise

    def run(self, max_moves: int) -> _Moves:
        """`resume`, with what the moves fail with kept in `self.failure` rather
        than raised (the engine's way: the failure is recorded, then saved)."""
        try:
            yield from self.resume(max_moves)
        except FAILURES as exc:
            self.failure = exc

    def deliver(self, req: CallbackRequest, payload: Any, max_moves: int) -> _Moves:
        """The one delivery operation: the handler runs (`callback`; a refusal
        changes nothing), checkpoint AFTER_EVENT, then the instance moves on.

        What those moves fail with (a step out of attempts, a definition that
        raises) is kept in `self.failure`, not raised: the event was delivered
        and checkpointed, and its sender gets the handler's result either way.
        """
        output = yield from self.callback(req, payload)
        yield from self._checkpoint(CheckpointType.AFTER_EVENT)
        if max_moves <= 0:  # the event only (the outbox's relay: a worker moves it on)
            return output
        try:  # (`run`, inlined: one generator less on every yield of the moves)
            yield from self.resume(max_moves)
        except FAILURES as exc:
            self.failure = exc
        return output

    def fire_due(self, now: _dt.datetime, max_moves: int) -> _Moves:
        """Fire each waiting thread's earliest timer that is due at `now`
        (checkpoint AFTER_EVENT after each), then move on. Returns the (thread,
        event) pairs fired; failures after them are kept in `self.failure`."""
        fired: list[tuple[str, str]] = []
        for thread in list(self.state.threads):
            status = thread.status
            if status is not _WAITING_EVENT and status is not _WAITING_CONDITION:
                continue
            due = [e for e in thread.events
                   if e.due is not None and e.due <= now and e.status is _SETUP]
            if due:
                timer = min(due, key=_due_time)
                if status is _WAITING_EVENT:
                    yield from self.callback(timer.req, None)
                elif not (yield from self._expire(thread, timer)):
                    continue  # its condition holds: the moves below take it
                yield from self._checkpoint(CheckpointType.AFTER_EVENT)
                fired.append((thread.id, timer.event))
        yield from self.run(max_moves)
        return fired

    def _checkpoint(self, kind: CheckpointType) -> _Moves:
        self.state.update_status()
        if self.checkpoint is not None:
            yield (self.checkpoint, (kind,), None)

    def _move(self, thread: Thread) -> _Moves:
        """A move of `thread` that is neither a step nor a plain forward (those
        are dispatched by `resume` itself): a teardown, a setup or a condition.
        Returns the checkpoint kind, or None if the thread is blocked."""
        status = thread.status
        if status is _RESUMING or status is _UNWINDING:  # tear events down, in order, first
            if not thread.events:  # (UNWINDING: then the thread leaves its statement)
                return self._forward(thread)
            event = thread.events[0]
            if event.retry_at is not None and event.retry_at > self.clock():
                return None
            return (yield from self._teardown(thread, event))
        if status is _WAITING_EVENT:
            now = None
            for event in thread.events:
                if event.status in _NEEDS_SETUP:
                    if event.retry_at is not None:
                        now = now or self.clock()
                        if event.retry_at > now:
                            continue
                    return (yield from self._setup(thread, event))
            box = self.state.mailbox
            if box is not None and box.kept:  # a kept message it waits for: delivered now
                message = _next_message(thread, box.kept)
                if message is not None:
                    return (yield from self._take(thread, message))
            return None
        return (yield from self._check_condition(thread))

    # -- finding statements --

    def _definition(self) -> Definition:
        """The definition as a replay's root (an operation that replays nothing makes none)."""
        made = self.definition = Definition(self.wf.definition)
        return made

    def _root(self, thread: Thread) -> Any:
        body: Any = self.definition or self._definition()
        for origin in thread.origin:
            found = self._find(thread, body, origin.go, origin.path)
            if found is None or type(found[1]) is not Go:
                raise NonDeterminismError(
                    self.state.workflow, thread.id, origin.go,
                    "the Go statement that started the thread",
                )
            body = found[1].body_for(origin.thread_id)
        return body

    def _find(
        self, thread: Thread, body: Any, name: Name, path: list[int] | None
    ) -> tuple[list[Frame], Stmt] | None:
        """`replay.find`, with what the definition raises worded for its workflow."""
        return self._replaying(thread, find, body, name, path)

    def _replaying(self, thread: Thread, replay: Callable[..., Any], *args: Any) -> Any:
        try:
            return replay(*args)
        except GenflowError:
            raise
        except Exception as exc:
            raise self._raised(thread, exc) from exc

    def _raised(self, thread: Thread, exc: Exception) -> DefinitionError:
        return DefinitionError(f"definition() of workflow {self.state.workflow!r} raised while "
                               f"replaying thread {thread.id!r}: {exc!r}")

    def locate(self, thread: Thread, kind: type | None,
               recording: bool = False) -> tuple[list[Frame], Any]:
        """The frames standing after `thread`'s saved statement, and the statement,
        replayed on the current data (`NonDeterminismError` if it is gone, or is
        not a `kind`). `recording`: the caller records what the replay reads."""
        cached = self.located.pop(thread.id, None)
        if cached is not None and cached[0] == thread.pc and isinstance(cached[2], kind or Stmt):
            return cached[1], cached[2]
        tracer = self.tracer
        reads = None
        if tracer is not None and not recording:  # record what it reads, where that has paid
            gate = (tracer, thread.stmt, False)
            left = _PAYS.get(gate, _TRIES)
            if left:
                reads = reading(self.wf, tracer)
                if left > 0:
                    _try(gate, left)
        try:
            root = self._root(thread) if thread.origin else \
                self.definition or self._definition()
            try:  # (`_replaying`, inlined: a replay is the commonest call of a move)
                found = follow(root, thread.stmt, thread.path) if thread.path else None
                searched = found is None
                if searched:  # off its path hint (an edit moved it): found by name
                    found = search(root, thread.stmt)
            except GenflowError:
                raise
            except Exception as exc:
                raise self._raised(thread, exc) from exc
            if found is None:
                raise NonDeterminismError(
                    self.state.workflow, thread.id, thread.stmt, thread.status.value
                )
            if searched:
                self.repaths[thread.id] = (thread.pc, path_of(found[0]))
        finally:
            if reads is not None:
                done_reading(self.wf, reads)
        found[0][0].reads = None if reads is None else (gate, reads)
        if kind is not None and not isinstance(found[1], kind):
            raise NonDeterminismError(
                self.state.workflow,
                thread.id,
                thread.stmt,
                f"it is now a {type(found[1]).__name__}, the thread expects a {kind.__name__}",
            )
        return found

    def where(self, thread: Thread) -> Location:
        """`locate`'s answer for people and tools: the statement and the paths."""
        body: Any = self.definition or self._definition()
        origins: list[list[int]] = []
        for origin in thread.origin:
            found = self._find(thread, body, origin.go, origin.path)
            if found is None or type(found[1]) is not Go:
                raise NonDeterminismError(self.state.workflow, thread.id, origin.go,
                                          "the Go statement that started the thread")
            origins.append(path_of(found[0]))
            body = found[1].body_for(origin.thread_id)
        if not thread.stmt:
            return Location(None, [], origins)
        stack, stmt = self.locate(thread, None)
        return Location(stmt, path_of(stack), origins)

    def _path(self, thread: Thread) -> list[int]:
        """The path hint of the statement `thread` was located at: the same as
        before unless `locate` found it by name."""
        found = self.repaths.pop(thread.id, None)
        return found[1] if found is not None and found[0] == thread.pc else thread.path

    def _on(self, thread: Thread, wait: Wait | WaitFor, event: str) -> tuple[int, Any]:
        if isinstance(wait, WaitFor):  # its one event: the timeout, whose body is branch 0
            if wait.timeout is not None and wait.timeout.name == event:
                return 0, wait.timeout
        else:
            for index, on in enumerate(wait.events):
                if on.name == event:
                    return index, on
        raise NonDeterminismError(
            self.state.workflow, thread.id, wait.name or "", f"its event {event!r} is gone"
        )

    def _won_at(self, thread: Thread, recording: bool) -> tuple[list[Frame], Any]:
        """`locate` for a thread whose wait an event won: a Wait, or a WaitFor whose
        timeout fired (the thread's state says not which)."""
        stack, stmt = self.locate(thread, None, recording)
        if not isinstance(stmt, (Wait, WaitFor)):
            raise NonDeterminismError(
                self.state.workflow, thread.id, thread.stmt,
                f"it is now a {type(stmt).__name__}, the thread expects a Wait or a WaitFor")
        return stack, stmt

    # -- moves --

    def _forward(self, thread: Thread) -> CheckpointType:
        """Run a thread forward to its next stop (navigation only: no user code).

        From after its statement, or into the On body of the event that won its
        wait, or into the Try branch it enters; an UNWINDING thread first
        leaves its statement outward with what it carries (a failure, a
        cancellation) for the Catch or Finally that applies."""
        flow = Flow()
        if thread.unwind or thread.failures:
            flow.unwind, flow.failures = thread.unwind, thread.failures
        tracer = self.tracer
        reads = None
        if tracer is not None:  # record what this replay reads, where that has paid
            gate = (tracer, thread.stmt, True)
            left = _PAYS.get(gate, _TRIES)
            if left:
                reads = reading(self.wf, tracer)
                if left > 0:
                    _try(gate, left)
        started = None
        body: Any  # (a Go's tuple or the root: compiled, a local keeps its first type)
        try:
            if not thread.stmt:
                started = self.started.pop(thread.id, None) if self.started else None
                if started is not None and started[0] == self.calls:
                    body = started[1].body_for(thread.id)  # its Go, just passed
                else:
                    started, body = None, self._root(thread)
                stack = [Frame(None, 0, body)]
            elif thread.won:
                stack, wait = self._won_at(thread, reads is not None)
                index, _ = self._on(thread, wait, thread.won)
                if wait.bodies[index]:  # (an On with no body: on after the Wait at once)
                    stack.append(Frame(wait, index, wait.bodies[index]))
            elif thread.enter:
                stack, try_ = self.locate(thread, Try, reads is not None)
                index = try_.branch(thread.enter)
                if index is None:
                    raise NonDeterminismError(self.state.workflow, thread.id, thread.stmt,
                                              f"its branch {thread.enter!r} is gone")
                stack.append(Frame(try_, index, try_.bodies[index]))
            else:
                stack, _ = self.locate(thread, None, reads is not None)
            if thread.status is _UNWINDING:
                how, flow.unwind = flow.unwind, ""
                result = unwind(stack, how, flow)
                if result is None:
                    result = advance(stack, flow)
            else:
                result = advance(stack, flow)
            while type(result) is tuple and result[0] is RESTART:  # a one-shot loop: afresh
                loop, loop_path = result[1], result[2]
                found = self._find(thread, self._root(thread), loop.name, loop_path)
                if found is None:  # pragma: no cover - the data did not change since
                    raise NonDeterminismError(self.state.workflow, thread.id, loop.name, "loop")
                stack = found[0]
                stack.append(Frame(found[1], 0, found[1].bodies[0], fresh=True))
                result = advance(stack, flow)
        except GenflowError:
            raise
        except Exception as exc:
            raise DefinitionError(
                f"definition() of workflow {self.state.workflow!r} raised while running "
                f"thread {thread.id!r} forward: {exc!r}"
            ) from exc
        finally:
            if reads is not None:
                done_reading(self.wf, reads)
        if tracer is not None and stack:  # (empty at the thread's end)
            root = stack[0]
            if reads is None or started is not None:  # reads unknown: the stack is not kept
                root.reads = None
            elif root.reads is None:
                root.reads = (gate, reads)
            else:
                root.reads = (gate, root.reads[1] | reads)
        new_threads = self._spawn(thread, flow.spawned) if flow.spawned else ()
        if new_threads:
            for go, _ in flow.spawned or ():  # (each thread's first move takes its Go from here)
                self.started[go.id] = (self.calls, go)
        state = self.state
        if type(result) is tuple:  # (ENTER, try, catch, how): a move of its own
            return self._enter_catch(thread, stack, result, flow, new_threads)
        if result is FAIL:
            return self._fail_thread(thread, flow, new_threads)
        now = None if type(result) is Step or result is END else self.clock()
        events = self._events(thread, result, state.pc + 1, now) \
            if isinstance(result, Wait) else self._timer(thread, result, state.pc + 1, now) \
            if type(result) is WaitFor and result.timeout is not None and not result.cond \
            else None  # (a condition that holds already, to run its handler: no timer)
        # -- commit --
        state.pc += 1
        if result is END:
            state.threads.remove(thread)
            if not thread.daemon:
                self._cancel_daemons()
        else:
            self._stop_at(thread, result, stack, events, now)
            if flow.unwind != thread.unwind or (flow.failures is not thread.failures
                                                and (flow.failures or thread.failures)):
                thread.unwind, thread.failures = flow.unwind, list(flow.failures)
            self.located[thread.id] = (thread.pc, stack, result)
        if new_threads:
            state.threads.extend(new_threads)
        return _AFTER_RESUME

    def _enter_catch(self, thread: Thread, stack: list[Frame], result: Any, flow: Flow,
                     new_threads: Any) -> CheckpointType:
        """Stand the thread at a Try, about to enter the Catch that caught what it
        carries; the failure goes into the data field the Catch names first
        (before the catch body is replayed on the data)."""
        _, try_, catch, how = result
        failure = attrs.evolve(flow.failures[-1], at=try_.name)
        flow.failures[-1] = failure
        state = self.state
        if catch.into is not None:
            setattr(self.wf, catch.into, failure)
            self._user_code()  # the data changed: what was located from it is stale
        # -- commit --
        state.pc += 1
        thread.stmt = try_.name
        thread.path = path_of(stack)
        thread.pc = state.pc
        thread.status = _RESUMING
        thread.won = ""
        thread.enter = catch.name
        thread.unwind = "cancel" if how == "cancel" else ""
        thread.failures = flow.failures
        thread.events = []
        thread.since = None
        thread.attempts, thread.error, thread.retry_at = 0, "", None
        if new_threads:
            state.threads.extend(new_threads)
        return _AFTER_RESUME

    def _fail_thread(self, thread: Thread, flow: Flow, new_threads: Any) -> CheckpointType:
        """A failure left a thread's Catch or Finally bodies and nothing caught it:
        the instance fails. The thread stays, UNWINDING with the failure it
        carries, so the State says why (and an operator's retry meets the same
        failure again: its cleanup already ran, there is no step to run again).
        A cleanup failing for good while the instance is cancelled only ends its
        thread."""
        failure = flow.failures[-1]
        state = self.state
        # -- commit --
        state.pc += 1
        if new_threads:
            state.threads.extend(new_threads)
        if state.status is _CANCELLING:
            state.threads.remove(thread)
            return _AFTER_RESUME
        thread.status = _UNWINDING
        thread.unwind = "fail"
        thread.failures = list(flow.failures)
        thread.events = []
        thread.pc = state.pc
        state.status = _FAILED
        self.failing = StepError(failure.step, thread.id,
                                 RecordedFailure(failure.type, failure.message))
        self.failing.attempt = failure.attempt
        self.calls += 1  # the loop looks for `failing` only when something like user code ran
        return _AFTER_FAILURE

    def _cancel_daemons(self) -> None:
        """The last non-daemon thread ended: cancellation reaches the daemon threads."""
        threads = self.state.threads
        if threads and all(t.daemon for t in threads):
            for thread in threads:
                if thread.unwind != "cancel":
                    self._reach(thread)
            # the move loop skips the threads it found blocked until user code runs;
            # a daemon found waiting earlier in this loop can move now, as if some had
            self.calls += 1

    def _reach(self, thread: Thread, why: str = "") -> None:
        """Cancellation reaches `thread` (commit only: the caller found what it needs)."""
        _tear_down_all(thread)
        thread.status = _UNWINDING
        thread.unwind = "cancel"
        thread.failures = [*thread.failures, Failure(
            type="Cancelled", message=why or _CANCELLED_WHY, step=thread.stmt,
            types=_CANCELLED_TYPES, path=tuple(thread.path))]
        thread.retry_at = None

    def _stop_at(self, thread: Thread, stmt: Any, stack: list[Frame],
                 events: list[WaitEvent] | None, now: _dt.datetime | None) -> None:
        """Make `stmt` (a Step, Wait or WaitFor) the thread's place at counter
        `state.pc`; `events` are a Wait's (from `_events`), `now` when a wait began."""
        thread.stmt = stmt.name
        thread.path = path_of(stack)
        thread.pc = self.state.pc
        thread.won = ""
        thread.since = now
        if thread.attempts or thread.enter:  # a failed step's count belongs to that step
            thread.attempts, thread.error, thread.retry_at, thread.enter = 0, "", None, ""
        kind = type(stmt)
        if kind is Step:
            thread.status = _EXECUTING
        elif isinstance(stmt, Wait):
            assert events is not None
            thread.status = _WAITING_EVENT
            thread.events = events
        else:
            thread.status = _WAITING_CONDITION
            if events is not None:  # its timeout's timer (`_timer`)
                thread.events = events

    def _events(self, thread: Thread, wait: Wait, pc: int, now: Any) -> list[WaitEvent]:
        """What `thread` listens for at `wait` from counter `pc` on (the wait began `now`).

        A handler with nothing to set up (a plain function, or a timer, whose
        due time is all its setup) is set up at once: no move, no checkpoint,
        no save of its own. Only handlers whose `setup` does something start
        PENDING_SETUP, to be set up (and retried) by moves of their own.
        """
        if not wait.events:
            raise DefinitionError(f"Wait {wait.name!r} has no events: it would wait forever")
        state = self.state
        events = []
        for on in wait.events:
            event = WaitEvent(on.event, CallbackRequest(state.id, thread.id, on.event, pc))
            handler = on.handler
            if isinstance(handler, TimerHandler):
                event.due = handler.due(now)
                event.status = _SETUP
            elif not overrides(handler, "setup"):
                event.status = _SETUP
            events.append(event)
        return events

    def _timer(self, thread: Thread, wait_for: WaitFor, pc: int, now: Any,
               began: Any = None) -> list[WaitEvent]:
        """The timer of `wait_for`'s timeout, as a thread's events from counter `pc`
        on: set up at once, as a Wait's timer is (`_events`), due from `began`
        (when the wait began; default `now`)."""
        timeout = wait_for.timeout
        assert timeout is not None
        event = WaitEvent(timeout.event, CallbackRequest(self.state.id, thread.id,
                                                         timeout.event, pc))
        event.due = timeout.handler.due(began or now)
        event.status = _SETUP
        return [event]

    def _spawn(self, parent: Thread, spawned: list[tuple[Go, list[int]]]) -> list[Thread]:
        taken = {t.id for t in self.state.threads}
        threads = []
        for go, path in spawned:
            if go.id in taken:
                raise DuplicateThreadError(
                    f"Go {go.name!r} would start thread {go.id!r}, but a live thread already has "
                    "that id (give Go a distinct id=... when it runs in a loop)"
                )
            taken.add(go.id)
            origin = [*parent.origin, Origin(go.name or "", go.id, path)]
            threads.append(Thread(id=go.id, origin=origin, daemon=go.daemon))
        return threads

    def _run_step(self, thread: Thread) -> _Moves:
        state = self.state
        stack, step = self.locate(thread, Step)
        # tuple.__new__ directly: a NamedTuple's own __new__ is Python code, twice as slow
        ctx = _new_tuple(StepContext, (state.id, state.workflow, thread.id, step.name,
                                       thread.pc, thread.attempts + 1, self.clock, None,
                                       thread.failures[-1] if thread.failures else None, None,
                                       self.outbox))
        action = step.action if step.timeout is None else timed(step, ctx)
        if stack[0].reads is not None:  # kept if the step changes nothing its replay read
            self.located[thread.id] = (thread.pc, stack, step)
        # `_run_user_code`, inlined (one generator less on the hot path)
        wf = self.wf
        snapshot = self.unstructure(wf)
        kept, self.located = self.located, {}
        self.calls += 1
        asked = len(self.outbox.intents)
        error: StepError | None = None
        try:
            yield (action, (), ctx)
        except BaseException as exc:
            _restore(wf, snapshot)
            del self.outbox.intents[asked:]  # what it asked for goes with its changes
            if not isinstance(exc, Exception):
                raise
            error = StepError(step.name, thread.id, exc)
            error.__cause__, error.__suppress_context__ = exc, True
        if error is not None:  # (no yield in an except block: drive_async, docs/compiled.md)
            return (yield from self._step_failed(thread, step, stack, error))
        if kept and type(snapshot) is dict:
            self._keep_unchanged(kept, snapshot)
        state.pc += 1
        thread.status = _RESUMING
        if self.repaths:  # (a path `locate` found by name: `_path`)
            thread.path = self._path(thread)
        if self.located:
            self._moved(thread, state.pc)
        else:
            thread.pc = state.pc
        if thread.attempts:
            thread.attempts, thread.error, thread.retry_at = 0, "", None
        return _AFTER_STEP

    def _step_failed(self, thread: Thread, step: Step, stack: list[Frame],
                     exc: StepError) -> _Moves:
        """Record a failed attempt of `step` on its thread: retried by its policy
        after a backoff (the thread waits, the others go on); with no attempt
        left, the thread unwinds to the Try that applies, or, when none does,
        the instance is FAILED and `exc` raised."""
        policy = step.retry or self.retry
        attempt = thread.attempts + 1
        cause = exc.__cause__ or exc
        exc.retry, exc.attempt = policy, attempt
        state = self.state
        self.failed = (thread, None)
        # -- commit: the attempt is counted; the thread stays at the step, with
        # the same counter, so the retry keeps the step's idempotency key --
        state.pc += 1
        if self.repaths:  # (a path `locate` found by name: `_path`)
            thread.path = self._path(thread)
        thread.attempts = attempt
        thread.error = error_text(cause)
        if policy.retries(cause) and policy.allows(attempt + 1):
            thread.retry_at = self.clock() + _dt.timedelta(seconds=policy.delay(attempt))
            return _AFTER_FAILURE
        thread.retry_at = None
        types = _type_keys(type(cause))
        if _applies(stack, types):  # a Try on the way: the thread leaves the step for it
            thread.status = _UNWINDING
            thread.unwind = "fail"
            thread.failures = [*thread.failures, Failure(
                type=type(cause).__qualname__, message=str(cause), step=step.name or "",
                attempt=attempt, types=types, path=tuple(thread.path))]
            return _AFTER_FAILURE
        if state.status is _CANCELLING:
            # a cleanup step out of attempts with no Try left to take it ends its
            # thread, as one that reached a Finally does (`_fail_thread`): the
            # instance is cancelled all the same
            state.threads.remove(thread)
            return _AFTER_FAILURE
        state.status = _FAILED
        yield from self._checkpoint(_AFTER_FAILURE)
        raise exc

    def _check_condition(self, thread: Thread) -> _Moves:
        stack, wait_for = self.locate(thread, WaitFor)
        if not wait_for.cond:
            timeout, armed = wait_for.timeout, thread.events
            if (armed[0].event if armed else None) == (None if timeout is None else timeout.name):
                return None  # its timer is its timeout's (or it has neither): blocked
            return self._rearm(thread, stack, wait_for)
        if stack[0].reads is not None:
            self.located[thread.id] = (thread.pc, stack, wait_for)
        if wait_for.handler is not None:
            yield from self._run_user_code(
                wait_for.handler, (), None, thread, "condition handler", wait_for.name
            )
        state = self.state
        state.pc += 1
        if thread.events:  # its timeout's timer: nothing to tear down, dropped
            thread.events = []
        self._past_wait(thread)
        return CheckpointType.AFTER_CONDITION

    def _rearm(self, thread: Thread, stack: list[Frame], wait_for: WaitFor) -> CheckpointType:
        """The thread waits at `wait_for` with a timer its timeout no longer has (an
        edit of the definition added, renamed or removed the timeout while it
        waited; a State saved before WaitFor had timeouts has none): its timer
        becomes the timeout's, due from when the wait began. Nothing runs."""
        events = [] if wait_for.timeout is None else \
            self._timer(thread, wait_for, thread.pc, self.clock(), thread.since)
        # -- commit --
        thread.events = events
        self._keep(thread, stack, wait_for)
        return CheckpointType.AFTER_SETUP

    def _expire(self, thread: Thread, event: WaitEvent) -> _Moves:
        """The timer of the WaitFor `thread` waits at is due: the timeout wins, as a
        Timeout wins a Wait (`callback`), unless the condition holds (then the
        moves after take it: False, nothing changed) or the timer is no longer
        the WaitFor's (`_rearm` mends it: False). True when it fired."""
        state = self.state
        if state.status in _FINAL:  # (refused as `callback` refuses a Wait's timer)
            raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
        if state.status is _FAILED:
            raise InstanceFailedError(_failed_words(state))
        stack, wait_for = self.locate(thread, WaitFor)
        timeout = wait_for.timeout
        if wait_for.cond or timeout is None or timeout.name != event.event:
            self._keep(thread, stack, wait_for)
            return False
        if timeout.raises is not None:  # a timer declared an error
            self._unwind_from(thread, Failure(
                type=timeout.raises.__qualname__, message=f"timer {event.event!r} fired",
                step=thread.stmt, types=_type_keys(timeout.raises), path=tuple(thread.path)))
            thread.pc = state.pc
            return True
        if stack[0].reads is not None:
            self.located[thread.id] = (thread.pc, stack, wait_for)
        handler = timeout.handler
        yield from self._run_user_code(
            handler.handle, (event.req, None), self._handler_context(thread, wait_for, event),
            thread, "handle", event.event)
        # -- commit: the timeout wins the wait --
        state.pc += 1
        event.won = True
        thread.events = []
        thread.won = event.event
        self._past_wait(thread)
        return True

    def _run_user_code(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        ctx: StepContext | None,
        thread: Thread,
        phase: str,
        name: str,
    ) -> _Moves:
        """Call user code that may change the data; roll the data back if it fails
        (and what it asked of the outbox).

        What was located before it stays located if the code changed no field
        its replay read (their saved values compared before and after)."""
        wf = self.wf
        snapshot = self.unstructure(wf)
        kept, self.located = self.located, {}
        self.calls += 1
        asked = len(self.outbox.intents)
        try:
            output = yield (fn, args, ctx)
        except BaseException as exc:
            _restore(wf, snapshot)
            del self.outbox.intents[asked:]  # what it asked for goes with its changes
            if not isinstance(exc, Exception):
                raise
            if phase == "step":
                raise StepError(name, thread.id, exc) from exc
            raise HandlerError(phase, name, thread.id, exc) from exc
        if kept and type(snapshot) is dict:
            self._keep_unchanged(kept, snapshot)
        return output

    def _keep_unchanged(self, kept: dict[str, tuple[int, list[Frame], Stmt]],
                        snapshot: dict[str, Any]) -> None:
        """Locate again what was located before user code ran, if the code
        changed no field its replay read (`snapshot`: the data before it ran)."""
        wf = self.wf
        now = None
        for thread_id, entry in kept.items():
            recorded = entry[1][0].reads
            if recorded is None:
                continue
            gate, reads = recorded
            for field in reads:
                before = snapshot.get(field, snapshot)  # (not saved: never the same)
                value = getattr(wf, field)
                if type(value) in _PLAIN:  # saved as it is
                    if type(before) is not type(value) or before != value:
                        break
                else:
                    if now is None:
                        now = self.unstructure(wf)
                    if before != now.get(field, snapshot):
                        break
            else:
                for frame in entry[1]:  # the thread stopped in each: none ran empty
                    frame.fresh = False
                self.located[thread_id] = entry
                _PAYS[gate] = -1

    def _past_wait(self, thread: Thread) -> None:
        """The thread leaves the wait it was at (its event, its timer or its
        condition won; the commit counted `state.pc` first): it resumes from
        there, where it stands kept if it was located."""
        pc = self.state.pc
        thread.status = _RESUMING
        if self.repaths:  # (a path `locate` found by name: `_path`)
            thread.path = self._path(thread)
        if self.located:
            self._moved(thread, pc)
        else:
            thread.pc = pc
        thread.since = None

    def _moved(self, thread: Thread, pc: int) -> None:
        """The thread moved on at its statement to counter `pc`: where it stands
        (if still located) is where it stood."""
        cached = self.located.get(thread.id)
        if cached is not None and cached[0] == thread.pc:
            self.located[thread.id] = (pc, cached[1], cached[2])
        thread.pc = pc

    def _user_code(self) -> None:
        """User code is about to run: what was located from the data may be stale."""
        self.calls += 1
        self.located.clear()

    def _keep(self, thread: Thread, stack: list[Frame], stmt: Stmt) -> None:
        """Keep where `thread` stands for the next move (no user code ran)."""
        self.located[thread.id] = (thread.pc, stack, stmt)

    def _handler(self, thread: Thread, wait: Wait, event: WaitEvent) -> Any:
        return as_handler(self._on(thread, wait, event.event)[1].handler)

    def _setup(self, thread: Thread, event: WaitEvent) -> _Moves:
        stack, wait = self.locate(thread, Wait)
        handler = self._handler(thread, wait, event)
        if isinstance(handler, TimerHandler):
            event.due = handler.due(self.clock())
            self._keep(thread, stack, wait)
        elif not overrides(handler, "setup"):  # nothing to call: no user code runs
            event.req.setup_data = None
            self._keep(thread, stack, wait)
        else:
            self._user_code()
            asked = len(self.outbox.intents)
            failed: Exception | None = None
            try:
                event.req.setup_data = yield (handler.setup, (event.req,),
                                              self._handler_context(thread, wait, event))
            except Exception as exc:
                del self.outbox.intents[asked:]
                failed = exc  # (no yield in an except block: drive_async, docs/compiled.md)
            if failed is not None:
                return (yield from self._handler_failed(
                    thread, event, "setup", failed, WaitEventStatus.SETUP_ERROR,
                    CheckpointType.AFTER_SETUP,
                    getattr(handler, "retry", None) or self.handler_retry, stack))
        event.status = _SETUP
        event.error = ""
        event.attempts, event.retry_at = 0, None
        return CheckpointType.AFTER_SETUP

    def _teardown(self, thread: Thread, event: WaitEvent, *, retried: bool = True) -> _Moves:
        stack, wait = self.locate(thread, Wait)
        handler = self._handler(thread, wait, event)
        if isinstance(handler, TimerHandler) or not overrides(handler, "teardown"):
            self._keep(thread, stack, wait)  # nothing to call: no user code runs
        else:
            self._user_code()
            asked = len(self.outbox.intents)
            failed: Exception | None = None
            try:
                yield (handler.teardown, (event.req, event.won),
                       self._handler_context(thread, wait, event))
            except Exception as exc:
                del self.outbox.intents[asked:]
                failed = exc  # (no yield in an except block: drive_async, docs/compiled.md)
            if failed is not None:
                return (yield from self._handler_failed(
                    thread, event, "teardown", failed, WaitEventStatus.TEARDOWN_ERROR,
                    CheckpointType.AFTER_TEARDOWN, self.handler_retry if retried else None))
        thread.events.remove(event)
        return CheckpointType.AFTER_TEARDOWN

    def _handler_context(self, thread: Thread, wait: Wait | WaitFor,
                         event: WaitEvent) -> StepContext:
        state = self.state
        return _new_tuple(StepContext, (
            state.id, state.workflow, thread.id, wait.name, thread.pc, event.attempts + 1,
            self.clock, None, thread.failures[-1] if thread.failures else None, event.event,
            self.outbox))

    def _handler_failed(self, thread: Thread, event: WaitEvent, phase: str, exc: Exception,
                        status: WaitEventStatus, kind: CheckpointType,
                        policy: Retry | None, stack: list[Frame] | None = None) -> _Moves:
        """Record a failed setup or teardown on its event. With a policy and an
        attempt left, its retry waits for a backoff while the others go on;
        otherwise the failure is checkpointed and raised (with no policy, the next
        resume tries again; with one exhausted, the instance is FAILED)."""
        event.status = status
        event.error = error_text(exc)
        self.failed = (thread, event)
        error = HandlerError(phase, event.event, thread.id, exc)
        error.__cause__ = exc
        if policy is not None:
            attempt = event.attempts + 1
            event.attempts = attempt
            if policy.retries(exc) and policy.allows(attempt + 1):
                event.retry_at = self.clock() + _dt.timedelta(seconds=policy.delay(attempt))
                return kind
            event.retry_at = None
            types = _type_keys(type(exc))
            if phase == "setup" and stack is not None and _applies(stack, types):
                # a Try on the way: the thread leaves its Wait for it
                thread.events.remove(event)
                self._unwind_from(thread, Failure(
                    type=type(exc).__qualname__, message=str(exc), step=thread.stmt,
                    attempt=attempt, types=types, path=tuple(thread.path)))
                return kind
            if self.state.status is not _CANCELLING:
                self.state.status = _FAILED
        yield from self._checkpoint(kind)
        raise error

    def _unwind_from(self, thread: Thread, failure: Failure) -> None:
        """The thread leaves its statement outward with `failure` (commit only)."""
        _tear_down_all(thread)
        self.state.pc += 1
        thread.status = _UNWINDING
        thread.unwind = "fail"
        thread.failures = [*thread.failures, failure]
        thread.since = None

    # -- events --

    def callback(self, req: CallbackRequest, payload: Any) -> _Moves:
        """Run the handler of the event `req` names (a timer's too: this is the
        low-level call; the Engine fires timers by the clock only and refuses
        their names from senders)."""
        state = self.state
        if state.status in _FINAL:
            raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
        if state.status is _FAILED:
            raise InstanceFailedError(_failed_words(state))
        if req.instance_id != state.id:
            raise UnknownThreadError(
                f"callback is for instance {req.instance_id!r}, not {state.id!r}"
            )
        thread = state.thread(req.thread_id)
        if thread is None:
            raise UnknownThreadError(f"instance {state.id!r} has no live thread {req.thread_id!r}")
        if req.pc != thread.pc:  # first: a second event for a wait that ended is stale
            raise StaleCallbackError(
                f"callback for thread {thread.id!r} carries counter {req.pc}, but the thread "
                f"is {thread.status.value} at {thread.stmt!r} since counter {thread.pc}"
            )
        if thread.status is _WAITING_CONDITION:  # a WaitFor's timer, by name: fired now
            timer = next((e for e in thread.events if e.event == req.event), None)
            if timer is not None:
                if not (yield from self._expire(thread, timer)):
                    raise NotWaitingError(
                        f"thread {thread.id!r} of instance {state.id!r} waits at WaitFor "
                        f"{thread.stmt!r} whose condition holds (or whose timeout is no "
                        f"longer {req.event!r}): resume the instance, it moves on")
                state.update_status()
                return None
        if thread.status is not _WAITING_EVENT:
            raise NotWaitingError(
                f"thread {thread.id!r} of instance {state.id!r} is not waiting for events "
                f"(it is {thread.status.value} at {thread.stmt!r})"
            )
        for event in thread.events:
            if event.event == req.event:
                break
        else:
            raise UnknownEventError(
                f"thread {thread.id!r} waits at {thread.stmt!r} for "
                f"{_event_words(thread)}, not for {req.event!r}"
            )
        if event.status is not _SETUP:
            raise EventNotReadyError(
                f"event {req.event!r} is {event.status.value}, not set up: "
                "resume the instance first"
            )
        stack, wait = self.locate(thread, Wait)
        _, on = self._on(thread, wait, req.event)
        handler = as_handler(on.handler)
        input_type = getattr(handler, "input_type", None)  # undeclared: no payload
        value = structure_payload(payload, input_type, req.event, handler)
        if isinstance(wait, Children):  # a child's report: counted on the wait
            return (yield from self._arrive(thread, wait, event, value))
        # what must be torn down: set-up events whose handler's teardown does
        # something (the rest are done with at once, like their setup)
        teardowns = [
            e for e in thread.events
            if e.status is _SETUP
            and overrides(on.handler if e is event else self._on(thread, wait, e.event)[1].handler,
                          "teardown")
        ]
        if isinstance(on, Timeout) and on.raises is not None:  # a timer declared an error
            self._unwind_from(thread, Failure(
                type=on.raises.__qualname__, message=f"timer {req.event!r} fired",
                step=thread.stmt, types=_type_keys(on.raises), path=tuple(thread.path)))
            thread.pc = state.pc
            state.update_status()
            return None
        if stack[0].reads is not None:
            self.located[thread.id] = (thread.pc, stack, wait)
        output = yield from self._run_user_code(
            handler.handle, (event.req, value), self._handler_context(thread, wait, event),
            thread, "handle", req.event
        )
        # -- commit: this event wins the select; every set-up event is torn down --
        state.pc += 1
        event.won = True
        thread.events = teardowns
        for e in teardowns:
            e.status = WaitEventStatus.PENDING_TEARDOWN
        thread.won = req.event
        self._past_wait(thread)
        state.update_status()
        return output

    # -- the mailbox --

    def send(self, event: Name, payload: Any, *, thread: Name | None = None,
             keep: bool | None = None, limit: int = DEFAULT_SIZE,
             max_moves: int = DEFAULT_MAX_MOVES) -> _Moves:
        """The one send operation (see `send`): delivered now, or kept and the
        instance moved on. What the moves fail with is kept in `self.failure`."""
        state = self.state
        if event == CHILD_EVENT:  # (the relay answers the wait's own request: `deliver`)
            raise UnknownEventError(
                f"{event!r} is the report a child workflow's end sends to its parent's "
                f"Child or Children wait, by the engine alone; no sender can send it to "
                f"instance {state.id!r}")
        req = direct_request(state, event, thread)
        if req is not None:
            return (yield from self.deliver(req, payload, max_moves))
        kept = yield from self.keep(event, payload, thread=thread, keep=keep, limit=limit)
        if _waiting(state, event, thread) or state.status is _WF_RESUMING:  # a move may take it
            try:
                yield from self.resume(max_moves)
            except FAILURES as exc:
                self.failure = exc
        taken = self.taken
        return taken.get(kept.seq, kept) if taken else kept

    def keep(self, event: Name, payload: Any, *, thread: Name | None = None,
             keep: bool | None = None, limit: int = DEFAULT_SIZE) -> _Moves:
        """Keep `event` in the mailbox (checkpoint AFTER_MAILBOX; no move): the
        checks a delivery makes come first, and a refusal changes nothing."""
        state = self.state
        if state.status in _FINAL:
            raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
        if state.status is _FAILED:
            raise InstanceFailedError(_failed_words(state))
        events, timers, threads = sendable(self.wf)
        if thread is not None and state.thread(thread) is None and thread not in threads:
            raise UnknownThreadError(
                f"instance {state.id!r} has no live thread {thread!r}, nor does a Go of its "
                f"definition start one (they start {', '.join(repr(t) for t in sorted(threads))})")
        ons = events.get(event)
        if ons is None:  # (a timer's name too: no sender can ever send it)
            refused = UnknownEventError(_unknown_event(state, event, events, timers))
            refused.never = True
            raise refused
        waiting = _waiting(state, event, thread)
        if len(waiting) > 1 and thread is None:
            raise UnknownEventError(
                f"threads {[t.id for t, _ in waiting]} all wait for {event!r}: pass thread=...")
        if state.status is _CANCELLING or not keeps(self.wf, ons, keep):
            raise request_refusal(state, event, thread)  # (cancelled: it takes no more)
        check_payload(payload, event)
        plain: Any = None
        for handler in {id(h): h for h in (as_handler(on.handler) for on in ons)}.values():
            value = structure_payload(payload, getattr(handler, "input_type", None), event,
                                      handler)
            if plain is None and value is not None:
                plain = unstructure(value)
        box = state.mailbox
        if box is not None and len(box.kept) >= limit:
            raise MailboxFullError(
                f"instance {state.id!r} keeps {len(box.kept)} messages no thread has waited "
                f"for yet (its mailbox holds {limit}): {event!r} is refused; let the instance "
                "take them (does it still wait for what it was sent?) or raise mailbox_size")
        # -- commit --
        if box is None:
            box = state.mailbox = Mailbox()
        message = Message(box.sent, event, plain, thread or "", self.clock())
        box.sent += 1
        box.kept.append(message)
        yield from self._checkpoint(_AFTER_MAILBOX)
        return Kept(state.id, event, message.seq, len(box.kept))

    def _take(self, thread: Thread, message: Message) -> _Moves:
        """Deliver the kept `message` to `thread`, which waits for its event:
        it leaves the mailbox in the same commit as its handler's work. A
        handler (or a deploy's new payload type) that refuses it sets it aside
        as undelivered, with why; the thread waits on."""
        state = self.state
        box = state.mailbox
        assert box is not None
        event = next(e for e in thread.events if e.event == message.event and e.due is None)
        try:
            output = yield from self.callback(event.req, message.payload)
        except (HandlerError, PayloadError) as exc:
            box.kept.remove(message)
            box.set_aside([attrs.evolve(message, reason=error_text(exc))])
            return _AFTER_MAILBOX
        box.kept.remove(message)
        if self.taken is None:
            self.taken = {}
        self.taken[message.seq] = output
        return CheckpointType.AFTER_EVENT

    def set_aside_since(self) -> list[Message]:
        """The messages set aside undelivered since this operation began (a
        handler refused one; the instance ended with some kept): for the record."""
        box = self.state.mailbox
        if box is None or not box.undelivered:
            return []
        before = self.aside
        return [m for m in box.undelivered if m.seq not in before]

    def _arrive(self, thread: Thread, wait: Children, event: WaitEvent,
                report: ChildReport) -> _Moves:
        """A child's report reached its parent's wait (`genflow.children`): counted;
        the wait goes on when enough children finished (their results into the
        data), or fails with `ChildFailed` when one did not finish."""
        state = self.state
        kept = event.req.setup_data or {}
        ids = child_ids(kept)
        arrived = arrived_of(kept)
        index = report.index
        if not 0 <= index < len(ids) or ids[index] != report.id:
            raise UnknownEventError(
                f"wait {wait.name!r} of instance {state.id!r} did not start child "
                f"{report.id!r} (as number {index}): it waits for {ids!r}")
        if any(a[0] == index for a in arrived):
            return None  # told twice (a failed child retried by an operator): counted once
        if report.status != "finished":
            failure = ChildFailed(report.id, report.workflow, report.status, report.error)
            event.req.setup_data = keep_arrived(kept, [*arrived, [index, None]])  # (no cancel)
            self._unwind_from(thread, Failure(
                type="ChildFailed", message=str(failure), step=thread.stmt,
                types=_type_keys(ChildFailed), path=tuple(thread.path)))
            thread.pc = state.pc
            state.update_status()
            return None
        value = report.data
        if wait.result is not None:
            if not isinstance(value, dict) or wait.result not in value:
                # the child ended: its report is final, so the wait fails (catchable)
                # rather than the report being refused and the parent left waiting
                return self._unfit_report(thread, event, kept, [*arrived, [index, None]],
                                          PayloadError(
                    f"child {report.id!r} has no field {wait.result!r} "
                    f"({'Child' if wait.single else 'Children'} {wait.name!r}, result=)"))
            value = value[wait.result]
        arrived.append([index, value])
        kept = keep_arrived(kept, arrived)
        if len(arrived) < wait.needed:  # -- commit: the wait goes on --
            state.pc += 1
            event.req.setup_data = kept
            state.update_status()
            return None
        results: Any = arrived[0][1] if wait.single else \
            [v for _, v in (arrived if wait.first else sorted(arrived))]
        if wait.into is not None:
            field = attrs.fields_dict(type(self.wf)).get(wait.into)
            if field is None:
                raise DefinitionError(f"Children {wait.name!r}: into={wait.into!r} is not a "
                                      f"field of {type(self.wf).__name__}")
            try:
                typed = structure_payload(results, Any if field.type is None else _resolved(
                    type(self.wf), wait.into), CHILD_EVENT)
            except PayloadError as exc:
                return self._unfit_report(thread, event, kept, arrived, PayloadError(
                    f"{'Child' if wait.single else 'Children'} {wait.name!r}: the result "
                    f"does not fit into={wait.into!r}: {exc}"))
            setattr(self.wf, wait.into, typed)
            self._user_code()
        if wait.handler is not None:
            _, input_type = _handler_input(wait.handler)
            typed = structure_payload(results, input_type, CHILD_EVENT)
            yield from self._run_user_code(wait.handler, (typed,),
                                           self._handler_context(thread, wait, event),
                                           thread, "handle", wait.name or CHILD_EVENT)
        # -- commit: the wait won; children still running are torn down (cancelled) --
        state.pc += 1
        event.won = True
        event.req.setup_data = kept
        left = len(arrived) < len(ids) and kept.get("policy") == "cancel"
        if left:
            event.status = WaitEventStatus.PENDING_TEARDOWN
        thread.events = [event] if left else []
        thread.status = _RESUMING
        thread.won = CHILD_EVENT
        if self.repaths:  # (a path `locate` found by name: `_path`)
            thread.path = self._path(thread)
        thread.pc = state.pc
        thread.since = None
        state.update_status()
        return None

    def _unfit_report(self, thread: Thread, event: WaitEvent, kept: dict[str, Any],
                      arrived: list[list[Any]], error: PayloadError) -> None:
        """A child's report that its wait cannot take (no `result` field, a value
        that does not fit `into`) fails the thread at the wait, as a failed child
        does: a `Try` catches it, and the children still running are torn down."""
        event.req.setup_data = keep_arrived(kept, arrived)
        self._unwind_from(thread, Failure(
            type=type(error).__name__, message=str(error), step=thread.stmt,
            types=_type_keys(type(error)), path=tuple(thread.path)))
        thread.pc = self.state.pc
        self.state.update_status()

    # -- operators --

    def check_thread(self, thread: Thread) -> None:
        """Find everything `thread` needs in the replayed definition, or raise."""
        if not thread.stmt:
            self._root(thread)  # the Go statements that started it are still there
            return
        if thread.won and not thread.enter:  # a Wait, or a WaitFor its timeout won
            _, stmt = self._won_at(thread, False)
            for name in {e.event for e in thread.events} | {thread.won}:
                self._on(thread, stmt, name)
            return
        waits = thread.status is _WAITING_EVENT or thread.events
        kind = Try if thread.enter else Wait if waits and thread.status is not \
            _WAITING_CONDITION else _STANDS_AT.get(thread.status)
        _, stmt = self.locate(thread, kind)
        if kind is Try and stmt.branch(thread.enter) is None:
            raise NonDeterminismError(self.state.workflow, thread.id, thread.stmt,
                                      f"its branch {thread.enter!r} is gone")
        if kind is Wait:
            for name in {e.event for e in thread.events} | ({thread.won} - {""}):
                self._on(thread, stmt, name)

    def move(self, thread_id: Name, target: Name) -> _Moves:
        state = self.state
        if state.status in _FINAL:
            raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
        thread = state.thread(thread_id)
        if thread is None:
            raise UnknownThreadError(f"instance {state.id!r} has no live thread {thread_id!r}")
        root = self._root(thread)
        found = self._find(thread, root, target, None)
        kind = type(found[1]).__name__ if found is not None else \
            self._kind_named(thread, root, target)
        if kind is None:
            raise MoveError(
                f"thread {thread_id!r} of workflow {state.workflow!r} has no statement "
                f"{target!r} (statements of other threads do not count)"
            )
        if found is None or not isinstance(found[1], (Step, Wait, WaitFor)):
            article = "an" if kind[0] in "AEIOU" else "a"
            raise MoveError(f"{target!r} is {article} {kind}: {article} {kind} cannot be a "
                            "move target; choose a Step, Wait or WaitFor")
        stack, stmt = found
        # everything the teardowns need is found before anything changes
        tearing = [e for e in thread.events if e.status is _SETUP or e.status in _TEARING_DOWN] \
            if thread.status is not _WAITING_CONDITION else []  # (a WaitFor's timer: dropped)
        if tearing:
            _, wait = self.locate(thread, Wait)
            for event in tearing:
                self._handler(thread, wait, event)
        now = None if type(stmt) is Step else self.clock()
        events = self._events(thread, stmt, state.pc + 1, now) if isinstance(stmt, Wait) \
            else self._timer(thread, stmt, state.pc + 1, now) \
            if type(stmt) is WaitFor and stmt.timeout is not None and not stmt.cond else None
        # what the thread has set up is torn down first (won=False: nothing won)
        for event in tearing:
            yield from self._teardown(thread, event, retried=False)
            yield from self._checkpoint(CheckpointType.AFTER_TEARDOWN)
        # -- commit --
        state.pc += 1
        thread.events = []
        self._stop_at(thread, stmt, stack, events, now)
        if state.status is _FAILED:
            state.status = _WF_RESUMING
        state.update_status()

    def _kind_named(self, thread: Thread, root: Any, name: Name) -> str | None:
        """The kind of the statement (or branch) of this thread called `name`, if any."""
        for stmt, _ in self._replaying(thread, lambda: list(iter_tree(root, into_threads=False))):
            if isinstance(stmt, Switch):
                if any(case.name == name for case in stmt.cases):
                    return type(stmt).__name__  # an If or a Switch: its branches are its names
            elif isinstance(stmt, Try) and stmt.name != name and stmt.branch(name) is not None:
                return "Catch" if stmt.finally_ is None or stmt.finally_.name != name \
                    else "Finally"  # a Try's branch: move to a statement inside it
            elif stmt.name == name:
                return type(stmt).__name__
        return None

    def cancel(self, max_moves: int = DEFAULT_MAX_MOVES, why: str = "") -> _Moves:
        """Cancellation reaches every thread; then the moves run until blocked
        (teardowns, then each thread's cleanup). Failures of those moves are
        kept in `self.failure`. On an instance already CANCELLING, the moves go
        on where they stopped: a second cancel never restarts the cleanup.
        `why` is the message of the `Cancelled` failure the threads' cleanup
        sees (default: "the instance was cancelled")."""
        state = self.state
        if state.status is _FINISHED:
            raise WorkflowFinishedError(f"instance {state.id!r} has finished")
        if state.status is _CANCELLED:
            yield from self._legacy_cancelled()
            return
        if state.status is not _CANCELLING:
            # Everything the cancellation needs is found before anything changes: a
            # definition that lost a handler that must be torn down refuses it, the
            # instance as it was. A thread whose statement is gone otherwise (an
            # instance broken by a deploy, which is what operators cancel) cannot
            # be replayed to its cleanup: it ends at once.
            lost: list[Thread] = []
            for thread in state.threads:
                owes = [e for e in thread.events
                        if e.status is _SETUP or e.status in _TEARING_DOWN] \
                    if thread.status is not _WAITING_CONDITION else None
                if owes:
                    _, wait = self.locate(thread, Wait)
                    for event in owes:
                        self._handler(thread, wait, event)
                elif thread.stmt:
                    try:
                        self.locate(thread, Try if thread.enter else None)
                    except NonDeterminismError:
                        lost.append(thread)
            # -- commit --
            state.status = _CANCELLING
            state.pc += 1
            for thread in lost:
                state.threads.remove(thread)
            for thread in state.threads:
                self._reach(thread, why)
            state.update_status()
            yield from self._checkpoint(_AFTER_CANCEL)
        if state.status is not _CANCELLING:  # (every thread ended at once)
            return
        try:
            yield from self.resume(max_moves)
        except FAILURES as exc:
            self.failure = exc

    def _legacy_cancelled(self) -> _Moves:
        """A CANCELLED instance with teardowns left (written before CANCELLING
        existed): tear them down."""
        state = self.state
        pending = [e for t in state.threads for e in t.events if e.status in _TEARING_DOWN]
        if not pending:
            raise WorkflowFinishedError(f"instance {state.id!r} is already cancelled")
        now = self.clock()
        for thread in state.threads:
            while thread.events:
                event = thread.events[0]
                if event.retry_at is not None and event.retry_at > now:
                    break  # its retry is due later: a worker tears it down then
                kind = yield from self._teardown(thread, event)
                yield from self._checkpoint(kind)
                if thread.events and thread.events[0] is event:
                    break  # it failed and waits for its retry


# -- carried between operations ------------------------------------------------------------
#
# A caller that runs operations one after another on the same objects (`resume`,
# then `handle_callback`, then `resume`, as tests and batch scripts do) would
# have each operation replay the definition to where the last one left every
# thread. The last operation's frames are as good, on the rule that keeps them
# across user code (`Operation._keep_unchanged`): the definition is a function of
# the data, so where the fields its replays read hold the same values, it builds
# the same statements. Between operations the caller may change anything, in
# place too, and no snapshot was taken, so only frames whose reads all hold
# plain values (`_PLAIN`: compared as they are) are carried, and only to an
# operation on the very same objects at the same counter.


#: (the data, its State, State.pc, [(thread id, located entry, its recording's gate,
#: [(field, value)])]),
#: or None. One slot for the process: an operation takes it only for its very
#: objects, so operations on other instances meanwhile (other threads) cost a
#: carry, never a wrong one.
_carried_last: tuple[Any, State, int, list[tuple[str, Any, Any, list[tuple[str, Any]]]]] \
    | None = None


def _carry(op: Operation) -> None:
    """`op` completed: keep what it located for the next operation on its objects."""
    located = op.located
    kept = []
    if located:
        wf = op.wf
        for thread_id, entry in located.items():
            recorded = entry[1][0].reads
            if recorded is None:
                continue
            values = []
            for field in recorded[1]:
                value = getattr(wf, field)
                if type(value) not in _PLAIN:  # (could change in place unseen)
                    break
                values.append((field, value))
            else:
                kept.append((thread_id, entry, recorded[0], values))
    global _carried_last
    # (strong references: the frames hold the data anyway, through the bound
    # methods of the definition they iterate; held until the next operation)
    _carried_last = (op.wf, op.state, op.state.pc, kept) if kept else None


def _carried(op: Operation) -> Operation:
    """`op`, starting with what the last operation on its objects located, where
    the fields those replays read hold the values they held then."""
    global _carried_last
    # data of one registered workflow and the State of another: refused before
    # anything runs (another definition would move the threads), as dumps refuses it
    name = type(op.wf).__dict__.get("__genflow_workflow__")
    if name is not None and name != op.state.workflow:
        raise ArgumentError(f"data is a {name!r} workflow but the state belongs to "
                            f"{op.state.workflow!r}: give the data this State was made for")
    last = _carried_last
    if last is None or op.tracer is None or last[0] is not op.wf or last[1] is not op.state:
        return op
    _carried_last = None  # (taken once: the frames move on with this operation)
    if last[2] != op.state.pc:
        return op
    wf = op.wf
    for thread_id, entry, gate, values in last[3]:
        for field, before in values:
            value = getattr(wf, field)
            if type(value) is not type(before) or value != before:
                break
        else:
            for frame in entry[1]:  # the thread stopped in each: none ran empty
                frame.fresh = False
            op.located[thread_id] = entry
            _PAYS[gate] = -1
    return op


def _try(gate: tuple[type, str, bool], left: int) -> None:
    """A recording from `gate` is tried: one try fewer left (see `_PAYS`)."""
    if len(_PAYS) >= _GATES:
        _PAYS.clear()
    _PAYS[gate] = left - 1


def _failure_words(state: State) -> str:
    for thread in state.threads:
        if thread.error:
            return f"step {thread.stmt!r}: {thread.error}"
        if thread.unwind == "fail" and thread.failures:
            failure = thread.failures[-1]
            return f"step {failure.step!r}: {failure.type}({failure.message!r}), uncaught"
        for event in thread.events:
            if event.error:
                return f"handler of {event.event!r}: {event.error}"
    return "see its error"


def _failed_words(state: State) -> str:
    if unretryable(state):
        return (f"instance {state.id!r} has failed ({_failure_words(state)}): cancel it, or "
                "move the failed thread to a statement (`genflow move`), before sending events")
    return (f"instance {state.id!r} has failed ({_failure_words(state)}): retry it "
            "(Engine.retry, `genflow retry`) or move the failed thread before sending events")


def _waiting(state: State, event: Name, thread_id: Name | None
             ) -> list[tuple[Thread, WaitEvent]]:
    """The threads (of `thread_id`, if given) that wait for `event` (not a timer) now."""
    return [(t, e) for t in state.threads if t.status is _WAITING_EVENT
            and (thread_id is None or t.id == thread_id)
            for e in t.events if e.event == event and e.due is None]


def direct_request(state: State, event: Name, thread_id: Name | None
                   ) -> CallbackRequest | None:
    """The request a send of `event` is delivered to at once: the one thread
    (of `thread_id`, if given) waiting for it with its handler set up, and no
    message of that event kept ahead of it (a send never overtakes). None: the
    send keeps the event, or refuses it."""
    waiting = _waiting(state, event, thread_id)
    if len(waiting) != 1 or waiting[0][1].status is not _SETUP:
        return None
    box = state.mailbox
    if box is not None and any(m.event == event and (thread_id is None or not m.thread
                                                     or m.thread == thread_id)
                               for m in box.kept):
        return None
    return waiting[0][1].req


def _next_message(thread: Thread, kept: list[Message]) -> Message | None:
    """The oldest kept message `thread` may take: for an event it waits for
    (set up, not a timer), addressed to it or to any thread."""
    names = {e.event for e in thread.events if e.status is _SETUP and e.due is None}
    for message in kept:
        if message.event in names and (not message.thread or message.thread == thread.id):
            return message
    return None


def _unknown_event(state: State, event: Name, events: dict[str, Any], timers: set[str]) -> str:
    words = ", ".join(repr(e) for e in sorted(events)) or "none"
    if state.pc == 0 and all(t.stmt == "" and t.status is _RESUMING for t in state.threads):
        # (a signal-with-start's instance, or one started with run=False)
        now = f"instance {state.id!r} has not started yet"
    else:
        now = str(request_refusal(state, event, None, timer_words=False))
    if event in timers:
        return (f"{now}; {event!r} is a timer of workflow {state.workflow!r}: timers fire by "
                f"themselves when they are due; the events a sender can send are {words}")
    return (f"{now}; workflow {state.workflow!r} has no event {event!r} at all (no statement "
            f"of it can ever wait for one): its events are {words}")


def request_for(state: State, event: str, thread_id: str | None) -> CallbackRequest:
    """The request of the (single) thread waiting for `event` now, or the
    refusal that says why there is none (`request_refusal`)."""
    if state.status in _FINAL:
        raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
    candidates = [
        (t, e) for t in state.threads for e in t.events
        if e.event == event and e.due is None and (thread_id is None or t.id == thread_id)
    ]
    if not candidates:
        raise request_refusal(state, event, thread_id)
    if len(candidates) > 1:
        raise UnknownEventError(
            f"threads {[t.id for t, _ in candidates]} all wait for {event!r}: pass thread=..."
        )
    return candidates[0][1].req


def request_refusal(state: State, event: Name, thread_id: Name | None, *,
                    timer_words: bool = True) -> GenflowError:
    """Why `event` cannot be delivered to `state` now (an event not kept).
    `timer_words`: say so when `event` is a timer's (a caller that says it
    itself passes False)."""
    if state.status in _FINAL:
        return WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
    if thread_id is not None and state.thread(thread_id) is None:
        return UnknownThreadError(f"instance {state.id!r} has no live thread {thread_id!r}")
    waits = [(t, [e.event for e in t.events if e.due is None],
              [e.event for e in t.events if e.due is not None])
             for t in state.threads if t.status is _WAITING_EVENT]
    for thread, events, _ in waits:
        if event in events and (thread_id is None or thread.id == thread_id):
            return EventNotReadyError(f"the handler of event {event!r} is not set up yet: "
                                      "resume the instance first")
    timer = any(event in timers for _, _, timers in waits)
    if not waits:
        return NotWaitingError(
            f"instance {state.id!r} is not waiting for any event (status {state.status.value})")
    sendable_now = sorted({e for _, events, _ in waits for e in events})
    return UnknownEventError(
        f"instance {state.id!r} does not wait for {event!r}"
        + (" (it is a timer: timers fire by themselves when they are due)"
           if timer and timer_words else "")
        + "; it waits for " + (", ".join(repr(e) for e in sendable_now) if sendable_now
                               else "no event a sender can send (only timers)"))


def _due_time(event: WaitEvent) -> _dt.datetime:
    assert event.due is not None
    return event.due


def _event_words(thread: Thread) -> str:
    """The events a thread waits for, as a sender can send them (timers apart)."""
    events = [e.event for e in thread.events if e.due is None]
    timers = [e.event for e in thread.events if e.due is not None]
    words = ", ".join(repr(e) for e in events) or "no event a sender can send"
    if timers:
        words += f" (and the timer{'s' if len(timers) > 1 else ''} "
        words += ", ".join(repr(t) for t in timers) + ")"
    return words


def _resolved(cls: type, field: str) -> Any:
    """A field's declared type, resolved (string annotations too)."""
    import typing

    try:
        return typing.get_type_hints(cls).get(field, Any)
    except Exception:
        return Any


def _restore(wf: Any, snapshot: Any) -> None:
    """Put the data back as the snapshot has it, in place (callers hold `wf`)."""
    fresh = converter.structure(snapshot, type(wf))
    for field in attrs.fields(type(wf)):
        object.__setattr__(wf, field.name, getattr(fresh, field.name))


#: the message of a cancellation's failure, unless the canceller says why
_CANCELLED_WHY: Final = "the instance was cancelled"
#: how cancellation is kept on a thread's failures (what `Catch(errors=Cancelled)` matches)
_CANCELLED_TYPES: Final = (type_key(Cancelled), type_key(BaseException))


def _type_keys(cls: type) -> tuple[str, ...]:
    """A failure's class and its bases, as `Catch` matches them (also after a reload)."""
    return tuple(type_key(c) for c in cls.__mro__ if c is not object)


def _applies(stack: list[Frame], types: tuple[str, ...]) -> bool:
    """Is there a Try on the way out of `stack` that a failure of `types` reaches
    (a Catch that matches, from its body, or a Finally)?"""
    for frame in stack:
        owner = frame.owner
        if type(owner) is Try:
            fin = owner.finally_
            if fin is not None and frame.branch != fin.index:
                return True
            if frame.branch == 0 and owner.catching(types) is not None:
                return True
    return False


def _tear_down_all(thread: Thread) -> None:
    """What the thread has set up is to be torn down; what it has not is dropped."""
    if thread.status is _WAITING_CONDITION:  # a WaitFor's timer: nothing to tear down
        thread.events = []
        return
    thread.events = [e for e in thread.events if e.status is _SETUP or e.status in _TEARING_DOWN]
    for event in thread.events:
        if event.status is _SETUP:
            event.status = WaitEventStatus.PENDING_TEARDOWN


# -- steps at once ------------------------------------------------------------------------


class Conflict(NamedTuple):
    """A step started at once whose result was not applied: it wrote where the
    data changed while it ran (`place`, as `results[3]`); it ran again alone."""

    thread_id: str
    step: str
    place: str


class _AtOnce:
    """The steps running at once, by (thread id, counter), each on its own copy
    of the data; `base`, the data they started from as plain values, with the
    `calls` it was read at; `alone`, the threads whose writes conflicted, to run
    again on their own; `conflicts` records those."""

    __slots__ = ("alone", "base", "conflicts", "flights")

    def __init__(self) -> None:
        self.flights: dict[tuple[str, int], _Flight] = {}
        self.base: tuple[int, Any] | None = None
        self.alone: set[str] = set()
        self.conflicts: list[Conflict] = []


class _Flight:
    """A step started at once: where its thread stood, the data it began from
    (plain values, as `base`, and `mine`, its own copy, which it changes), the
    `calls` then, and its own `outbox` (applied with its writes)."""

    __slots__ = ("base", "calls", "mine", "outbox", "pc", "stack", "step", "thread")

    def __init__(self, thread: Thread, pc: int, stack: list[Frame], step: Step, base: Any,
                 mine: Any, calls: int, outbox: Outbox):
        self.thread, self.pc, self.stack, self.step = thread, pc, stack, step
        self.base, self.mine, self.calls, self.outbox = base, mine, calls, outbox

    def current(self) -> bool:
        """Does its thread still stand at this step? (Cancellation moves it on.)"""
        thread = self.thread
        return thread.status is _EXECUTING and thread.pc == self.pc


def _in_worker(action: Callable[[], Any]) -> Callable[[], Any]:
    """A blocking step's call: it runs in a worker thread, and the driver awaits it."""
    def attempt() -> Any:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, contextvars.copy_context().run, action)

    return attempt


_GONE: Final[Any] = _Signal("GONE")  # a key a step deleted


class _Appended:
    """A write that appends `items` to the list at its place: steps at once that
    each append to one list (a fan-in's results) all land, in the order they end."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]):
        self.items = items


def _same(a: Any, b: Any) -> bool:
    """Equal as the store keeps them: 1, 1.0 and True differ, so does key order."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(_same(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _writes(base: Any, after: Any, path: tuple[Any, ...], out: list[Any]) -> None:
    """What turned `base` into `after`, as (path, value) writes: into dicts key by
    key and lists of one length index by index; anything else whole."""
    if _same(base, after):
        return
    if type(base) is dict and type(after) is dict:
        kept = [k for k in base if k in after]
        added = [k for k in after if k not in base]
        if list(after) != kept + added:  # reordered: the whole dict
            out.append((path, after))
            return
        for k in kept:
            _writes(base[k], after[k], (*path, k), out)
        out.extend(((*path, k), _GONE) for k in base if k not in after)
        out.extend(((*path, k), after[k]) for k in added)
    elif type(base) is list and type(after) is list and len(base) == len(after):
        for i, (x, y) in enumerate(zip(base, after, strict=True)):
            _writes(x, y, (*path, i), out)
    elif type(base) is list and type(after) is list and len(base) < len(after) and all(
            _same(x, y) for x, y in zip(base, after, strict=False)):
        out.append((path, _Appended(after[len(base):])))
    else:
        out.append((path, after))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if type(value) is dict:
            value = value.get(key, _GONE)
        elif type(value) is list and type(key) is int and 0 <= key < len(value):
            value = value[key]
        else:
            return _GONE
    return value


def _writable(now: Any, base: Any, path: tuple[Any, ...], value: Any = None) -> bool:
    """May a write at `path` made from `base` go over `now`: is the value there,
    and the container holding it, as the step saw them? (An append needs only
    the list's items the step saw, in their places: others may have appended.)"""
    if type(value) is _Appended:
        was, there = _at(base, path), _at(now, path)
        return type(there) is list and type(was) is list and len(there) >= len(was) and all(
            _same(x, y) for x, y in zip(was, there, strict=False))
    if not _same(_at(now, path), _at(base, path)):
        return False
    parent = _at(now, path[:-1])
    was = _at(base, path[:-1])
    if type(parent) is not type(was) or type(parent) not in (dict, list):
        return False
    return type(parent) is dict or path[-1] < len(parent)


def _put(data: Any, path: tuple[Any, ...], value: Any) -> None:
    if type(value) is _Appended:
        _at(data, path).extend(value.items)
        return
    parent = _at(data, path[:-1])
    if value is _GONE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def path_words(path: tuple[Any, ...]) -> str:
    """`results[3]`, `by_name['ada'].total`: a place in the data, as code names it."""
    words = ""
    for i, key in enumerate(path):
        if i == 0:
            words = str(key)
        elif type(key) is int:
            words += f"[{key}]"
        else:
            words += f"[{key!r}]"
    return words
