"""The pure operations on an instance: resume, handle_callback, cancel. No I/O.

Each operation is a generator of *moves* written once; a move yields the user
code it needs to call (`(function, args, step_context)`) to a driver, which calls
it directly (`resume`) or awaits it when it is a coroutine (`resume_async`).
So sync and async share every line of the semantics.

The move loop (`Operation.resume`) is the one place where threads are scheduled:
every move is made by the first thread, in creation order, that can move (a
step may have made an earlier thread's condition true). The order of moves thus
depends on nothing but the data and `State`, so an instance reloaded at any
checkpoint goes on exactly as one that never stopped.

Atomicity: a move decides everything first and changes `State` only once
nothing can fail any more. User code that fails (a step, a handler) has its
changes to the data rolled back from a snapshot taken before it ran. The one
exception is by design: a failed handler setup or teardown is *recorded* in the
event's status and reported through a checkpoint, then retried on the next resume.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import inspect
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import attrs

from genflow.codec import converter, structure_payload
from genflow.errors import (
    DefinitionError,
    DuplicateThreadError,
    EventNotReadyError,
    GenflowError,
    HandlerError,
    MoveError,
    MoveLimitError,
    NonDeterminismError,
    NotWaitingError,
    StaleCallbackError,
    StepError,
    UnknownEventError,
    UnknownThreadError,
    WorkflowFinishedError,
)
from genflow.handlers import TimerHandler, as_handler, overrides
from genflow.replay import END, Definition, Frame, advance, find, follow, path_of, search
from genflow.state import (
    CallbackRequest,
    CheckpointType,
    Origin,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
)
from genflow.statements import Go, Step, Stmt, Wait, WaitFor

__all__ = [
    "Checkpoint",
    "Operation",
    "StepContext",
    "cancel",
    "cancel_async",
    "current_step",
    "diagnose",
    "drive",
    "drive_async",
    "handle_callback",
    "handle_callback_async",
    "move",
    "move_async",
    "resume",
    "resume_async",
]

#: `checkpoint(kind)`: called after each move; save the instance when it matters.
Checkpoint = Callable[[CheckpointType], Any]
Clock = Callable[[], _dt.datetime]

DEFAULT_MAX_MOVES = 100_000

# The enum members the moves use, as module names: in Python 3.11 looking a
# member up on its class takes the slow path of attribute lookup (the metaclass
# defines __getattr__), about 70 ns against 10 for a module name, and the
# move loop does it a few dozen times per step.
_EXECUTING = ThreadStatus.EXECUTING
_RESUMING = ThreadStatus.RESUMING
_WAITING_EVENT = ThreadStatus.WAITING_EVENT
_WAITING_CONDITION = ThreadStatus.WAITING_CONDITION
_SETUP = WaitEventStatus.SETUP
_AFTER_STEP = CheckpointType.AFTER_STEP
_AFTER_RESUME = CheckpointType.AFTER_RESUME
_FINAL = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)
_NEEDS_SETUP = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP_ERROR)
_TEARING_DOWN = (WaitEventStatus.PENDING_TEARDOWN, WaitEventStatus.TEARDOWN_ERROR)
#: the statement a thread in each status stands at (RESUMING: any, just done)
_STANDS_AT: dict[ThreadStatus, type] = {
    _EXECUTING: Step,
    _WAITING_EVENT: Wait,
    _WAITING_CONDITION: WaitFor,
}


class StepContext(NamedTuple):  # immutable and, unlike a frozen attrs class, cheap to build
    """Where the running step stands; `current_step()` returns it inside a step.

    `idempotency_key` is the same every time *this* execution of the step is
    retried (after a crash or failure) and different for the next execution of
    the same step (in a later loop iteration): pass it to outside systems.
    """

    instance_id: str
    workflow: str
    thread_id: str
    step: str
    pc: int

    @property
    def idempotency_key(self) -> str:
        return f"{self.instance_id}/{self.thread_id}/{self.step}/{self.pc}"


_new_tuple = tuple.__new__

_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "genflow_step", default=None
)


def current_step() -> StepContext:
    """The context of the step running now (raises outside a step)."""
    ctx = _current.get()
    if ctx is None:
        raise GenflowError("current_step() is only available while a step runs")
    return ctx


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


# -- drivers ----------------------------------------------------------------------------

_Call = tuple[Callable[..., Any], tuple[Any, ...], StepContext | None]
_Moves = Generator[_Call, Any, Any]


def drive(moves: _Moves) -> Any:
    """Run an operation's moves (see `Operation`), calling the user code they yield."""
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
            value = fn(*args)
            if value is not None and inspect.isawaitable(value):
                getattr(value, "close", lambda: None)()
                raise TypeError(f"{fn!r} is async: use the async API (resume_async, ...)")
        except BaseException as exc:
            error, value = exc, None
        finally:
            if token is not None:
                _current.reset(token)


async def drive_async(moves: _Moves) -> Any:
    """As `drive`, awaiting what user code returns when it is awaitable."""
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
            value = fn(*args)
            if value is not None and inspect.isawaitable(value):
                value = await value
        except BaseException as exc:
            error, value = exc, None
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
    as at the last checkpoint (plus a recorded setup/teardown failure).
    """
    drive(Operation(wf, state, checkpoint, clock).resume(max_moves))


async def resume_async(
    wf: Any,
    state: State,
    checkpoint: Checkpoint | None = None,
    *,
    clock: Clock | None = None,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> None:
    """`resume` for steps, handlers and checkpoints that may be `async def`."""
    await drive_async(Operation(wf, state, checkpoint, clock).resume(max_moves))


def handle_callback(req: CallbackRequest, wf: Any, state: State, payload: Any = None) -> Any:
    """Deliver one event: run its handler and mark the thread to move on.

    Returns what the handler returned. Call `resume` afterwards. On any error
    nothing has changed.
    """
    return drive(Operation(wf, state, None, None).callback(req, payload))


async def handle_callback_async(
    req: CallbackRequest, wf: Any, state: State, payload: Any = None
) -> Any:
    return await drive_async(Operation(wf, state, None, None).callback(req, payload))


def cancel(wf: Any, state: State, checkpoint: Checkpoint | None = None) -> None:
    """Cancel the instance: tear down every handler that is set up.

    The instance is CANCELLED at once; a teardown that fails is recorded and
    retried by calling `cancel` again.
    """
    drive(Operation(wf, state, checkpoint, None).cancel())


async def cancel_async(wf: Any, state: State, checkpoint: Checkpoint | None = None) -> None:
    await drive_async(Operation(wf, state, checkpoint, None).cancel())


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


def move(wf: Any, state: State, thread_id: str, statement: str,
         checkpoint: Checkpoint | None = None, *, clock: Clock | None = None) -> None:
    """An operator's repair: make `statement` (a Step, Wait or WaitFor of that
    thread's definition) the thread's next stop, the "goto" of the Go library.

    Handlers the thread has set up are torn down first; if a teardown fails,
    the move stops there (the teardowns done are kept) and can be tried again.
    Resume afterwards to go on from the new place.
    """
    drive(Operation(wf, state, checkpoint, clock).move(thread_id, statement))


async def move_async(wf: Any, state: State, thread_id: str, statement: str,
                     checkpoint: Checkpoint | None = None, *,
                     clock: Clock | None = None) -> None:
    await drive_async(Operation(wf, state, checkpoint, clock).move(thread_id, statement))


# -- the operations ---------------------------------------------------------------------


class Operation:
    """One operation on one instance, as a generator of the user calls it needs.

    `resume()`, `handle_callback()` and the rest are `drive(Operation(...).resume(...))`.
    Each generator yields `(fn, args, step_context)` for every call of user code
    (a step, a handler's setup/handle/teardown, a condition handler, the
    checkpoint callback) and is sent the result (or thrown its exception). Drive
    one yourself to watch every call: `genflow.testing` does, to tell whether a
    step ran twice. This is the call-level API; most code wants the functions.
    """

    __slots__ = ("calls", "checkpoint", "clock", "definition", "located", "repaths", "state",
                 "wf")

    def __init__(self, wf: Any, state: State, checkpoint: Checkpoint | None, clock: Clock | None):
        self.wf = wf
        self.state = state
        self.checkpoint = checkpoint
        self.clock = clock or _utcnow
        self.definition = Definition(wf.definition)  # every thread's replays start here
        # Where a move just stood each thread: (thread.pc, frames, statement). The
        # move that follows (run the step, set up the wait, go on after a handled
        # event) takes it instead of replaying the definition again. It is valid
        # only until user code runs, since conditions and bodies are computed
        # from the data: `_user_code` empties it and counts the calls.
        self.located: dict[str, tuple[int, list[Frame], Stmt]] = {}
        self.calls = 0
        # Threads whose statement `locate` found by name, off its path hint: a
        # move that commits them there writes the new path (`_path`).
        self.repaths: dict[str, tuple[int, list[int]]] = {}

    # -- the scheduling loop --

    def resume(self, max_moves: int) -> _Moves:
        state = self.state
        if state.status in _FINAL:
            raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
        checkpoint = self.checkpoint
        moves = 0
        # threads found blocked since user code last ran: skipped without a replay
        blocked: set[str] = set()
        calls = self.calls
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
                    kind = yield from self._run_step(thread)
                else:
                    kind = yield from self._move(thread)
                if kind is not None:
                    break
                blocked.add(thread.id)
            else:
                break
            moves += 1
            if self.calls != calls:  # user code ran: blocked threads may move now
                calls = self.calls
                blocked.clear()
            if checkpoint is not None:  # `_checkpoint`, inlined: this loop is the hot path
                state.update_status()
                yield (checkpoint, (kind,), None)
            if moves >= max_moves:
                state.update_status()
                raise MoveLimitError(
                    f"instance {state.id!r} made {moves} moves in one resume "
                    "(a loop of steps that never waits?); resume again to go on"
                )
        state.update_status()

    def _checkpoint(self, kind: CheckpointType) -> _Moves:
        self.state.update_status()
        if self.checkpoint is not None:
            yield (self.checkpoint, (kind,), None)

    def _move(self, thread: Thread) -> _Moves:
        """Make one move of `thread`; return its checkpoint kind, or None if blocked."""
        status = thread.status
        if status is _EXECUTING:
            return (yield from self._run_step(thread))
        if status is _RESUMING:
            if thread.events:
                return (yield from self._teardown(thread, thread.events[0]))
            return self._forward(thread)
        if status is _WAITING_EVENT:
            for event in thread.events:
                if event.status in _NEEDS_SETUP:
                    return (yield from self._setup(thread, event))
            return None
        return (yield from self._check_condition(thread))

    # -- finding statements --

    def _root(self, thread: Thread) -> Any:
        body: Any = self.definition
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
        self, thread: Thread, body: Any, name: str, path: list[int] | None
    ) -> tuple[list[Frame], Stmt] | None:
        """`replay.find`, with what the definition raises worded for its workflow."""
        return self._replaying(thread, find, body, name, path)

    def _replaying(self, thread: Thread, replay: Callable[..., Any], *args: Any) -> Any:
        try:
            return replay(*args)
        except GenflowError:
            raise
        except Exception as exc:
            raise DefinitionError(
                f"definition() of workflow {self.state.workflow!r} raised while replaying "
                f"thread {thread.id!r}: {exc!r}"
            ) from exc

    def locate(self, thread: Thread, kind: type | None) -> tuple[list[Frame], Any]:
        """The frames standing after `thread`'s saved statement, and the statement,
        replayed on the current data (`NonDeterminismError` if it is gone, or is
        not a `kind`)."""
        cached = self.located.pop(thread.id, None)
        if cached is not None and cached[0] == thread.pc and isinstance(cached[2], kind or Stmt):
            return cached[1], cached[2]
        root = self._root(thread)
        found = thread.path and self._replaying(thread, follow, root, thread.stmt, thread.path)
        if not found:  # off its path hint (an edit moved it): found by name
            found = self._replaying(thread, search, root, thread.stmt)
            if found is None:
                raise NonDeterminismError(
                    self.state.workflow, thread.id, thread.stmt, thread.status.value
                )
            self.repaths[thread.id] = (thread.pc, path_of(found[0]))
        if kind is not None and not isinstance(found[1], kind):
            raise NonDeterminismError(
                self.state.workflow,
                thread.id,
                thread.stmt,
                f"it is now a {type(found[1]).__name__}, the thread expects a {kind.__name__}",
            )
        return found

    def _path(self, thread: Thread) -> list[int]:
        """The path hint of the statement `thread` was located at: the same as
        before unless `locate` found it by name."""
        found = self.repaths.pop(thread.id, None)
        return found[1] if found is not None and found[0] == thread.pc else thread.path

    def _on(self, thread: Thread, wait: Wait, event: str) -> tuple[int, Any]:
        for index, on in enumerate(wait.events):
            if on.name == event:
                return index, on
        raise NonDeterminismError(
            self.state.workflow, thread.id, wait.name or "", f"its event {event!r} is gone"
        )

    # -- moves --

    def _forward(self, thread: Thread) -> CheckpointType:
        """Run a thread forward to its next stop (navigation only: no user code)."""
        spawned: list[tuple[Go, list[int]]] = []
        try:
            if not thread.stmt:
                stack = [Frame(None, 0, self._root(thread))]
            elif thread.handled:
                stack, wait = self.locate(thread, Wait)
                index, _ = self._on(thread, wait, thread.handled)
                stack.append(Frame(wait, index, wait.bodies[index]))
            else:
                stack, _ = self.locate(thread, None)
            result = advance(stack, spawned)
            while type(result) is tuple:  # a loop over a one-shot generator: replay afresh
                loop, loop_path = result[1], result[2]
                found = self._find(thread, self._root(thread), loop.name, loop_path)
                if found is None:  # pragma: no cover - the data did not change since
                    raise NonDeterminismError(self.state.workflow, thread.id, loop.name, "loop")
                stack = found[0]
                stack.append(Frame(found[1], 0, found[1].bodies[0], fresh=True))
                result = advance(stack, spawned)
        except GenflowError:
            raise
        except Exception as exc:
            raise DefinitionError(
                f"definition() of workflow {self.state.workflow!r} raised while running "
                f"thread {thread.id!r} forward: {exc!r}"
            ) from exc
        new_threads = self._spawn(thread, spawned) if spawned else ()
        state = self.state
        now = None if type(result) is Step or result is END else self.clock()
        events = self._events(thread, result, state.pc + 1, now) if type(result) is Wait else None
        # -- commit --
        state.pc += 1
        if result is END:
            state.threads.remove(thread)
        else:
            self._stop_at(thread, result, stack, events, now)
            self.located[thread.id] = (thread.pc, stack, result)
        if new_threads:
            state.threads.extend(new_threads)
        return _AFTER_RESUME

    def _stop_at(self, thread: Thread, stmt: Any, stack: list[Frame],
                 events: list[WaitEvent] | None, now: _dt.datetime | None) -> None:
        """Make `stmt` (a Step, Wait or WaitFor) the thread's place at counter
        `state.pc`; `events` are a Wait's (from `_events`), `now` when a wait began."""
        thread.stmt = stmt.name
        thread.path = path_of(stack)
        thread.pc = self.state.pc
        thread.handled = ""
        thread.since = now
        kind = type(stmt)
        if kind is Step:
            thread.status = _EXECUTING
        elif kind is Wait:
            assert events is not None
            thread.status = _WAITING_EVENT
            thread.events = events
        else:
            thread.status = _WAITING_CONDITION

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
            threads.append(Thread(id=go.id, origin=origin))
        return threads

    def _run_step(self, thread: Thread) -> _Moves:
        state = self.state
        _, step = self.locate(thread, Step)
        # tuple.__new__ directly: a NamedTuple's own __new__ is Python code, twice as slow
        ctx = _new_tuple(StepContext, (state.id, state.workflow, thread.id, step.name, thread.pc))
        try:
            yield from self._run_user_code(step.action, (), ctx, thread, "step", step.name)
        except StepError as exc:
            exc.retry = step.retry  # the engine's retry policy for this step
            raise
        state.pc += 1
        thread.status = _RESUMING
        thread.path = self._path(thread)
        thread.pc = state.pc
        return _AFTER_STEP

    def _check_condition(self, thread: Thread) -> _Moves:
        _, wait_for = self.locate(thread, WaitFor)
        if not wait_for.cond:
            return None
        if wait_for.handler is not None:
            yield from self._run_user_code(
                wait_for.handler, (), None, thread, "condition handler", wait_for.name
            )
        state = self.state
        state.pc += 1
        thread.status = _RESUMING
        thread.path = self._path(thread)
        thread.pc = state.pc
        thread.since = None
        return CheckpointType.AFTER_CONDITION

    def _run_user_code(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        ctx: StepContext | None,
        thread: Thread,
        phase: str,
        name: str,
    ) -> _Moves:
        """Call user code that may change the data; roll the data back if it fails."""
        snapshot = converter.unstructure(self.wf)
        self._user_code()
        try:
            return (yield (fn, args, ctx))
        except BaseException as exc:
            _restore(self.wf, snapshot)
            if not isinstance(exc, Exception):
                raise
            if phase == "step":
                raise StepError(name, thread.id, exc) from exc
            raise HandlerError(phase, name, thread.id, exc) from exc

    def _user_code(self) -> None:
        """User code is about to run: what was located from the data may be stale."""
        self.calls += 1
        self.located.clear()

    def _keep(self, thread: Thread, stack: list[Frame], stmt: Stmt) -> None:
        """Keep where `thread` stands for the next move (no user code ran)."""
        self.located[thread.id] = (thread.pc, stack, stmt)

    def _setup(self, thread: Thread, event: WaitEvent) -> _Moves:
        stack, wait = self.locate(thread, Wait)
        handler = as_handler(self._on(thread, wait, event.event)[1].handler)
        if isinstance(handler, TimerHandler):
            event.due = handler.due(self.clock())
            self._keep(thread, stack, wait)
        elif not overrides(handler, "setup"):  # nothing to call: no user code runs
            event.req.setup_data = None
            self._keep(thread, stack, wait)
        else:
            self._user_code()
            try:
                event.req.setup_data = yield (handler.setup, (event.req,), None)
            except Exception as exc:
                event.status = WaitEventStatus.SETUP_ERROR
                event.error = repr(exc)
                yield from self._checkpoint(CheckpointType.AFTER_SETUP)
                raise HandlerError("setup", event.event, thread.id, exc) from exc
        event.status = _SETUP
        event.error = ""
        return CheckpointType.AFTER_SETUP

    def _teardown(self, thread: Thread, event: WaitEvent) -> _Moves:
        stack, wait = self.locate(thread, Wait)
        handler = as_handler(self._on(thread, wait, event.event)[1].handler)
        if isinstance(handler, TimerHandler) or not overrides(handler, "teardown"):
            self._keep(thread, stack, wait)  # nothing to call: no user code runs
        else:
            self._user_code()
            try:
                yield (handler.teardown, (event.req, event.handled), None)
            except Exception as exc:
                event.status = WaitEventStatus.TEARDOWN_ERROR
                event.error = repr(exc)
                yield from self._checkpoint(CheckpointType.AFTER_TEARDOWN)
                raise HandlerError("teardown", event.event, thread.id, exc) from exc
        thread.events.remove(event)
        return CheckpointType.AFTER_TEARDOWN

    # -- events --

    def callback(self, req: CallbackRequest, payload: Any) -> _Moves:
        state = self.state
        if state.status in _FINAL:
            raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
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
        if thread.status is not _WAITING_EVENT:
            raise NotWaitingError(
                f"thread {thread.id!r} of instance {state.id!r} is not waiting for events "
                f"(it is {thread.status.value} at {thread.stmt!r})"
            )
        event = next((e for e in thread.events if e.event == req.event), None)
        if event is None:
            raise UnknownEventError(
                f"thread {thread.id!r} waits at {thread.stmt!r} for "
                f"{[e.event for e in thread.events]}, not for {req.event!r}"
            )
        if event.status is not _SETUP:
            raise EventNotReadyError(
                f"event {req.event!r} is {event.status.value}, not set up: "
                "resume the instance first"
            )
        _, wait = self.locate(thread, Wait)
        _, on = self._on(thread, wait, req.event)
        handler = as_handler(on.handler)
        input_type = getattr(handler, "input_type", None)  # undeclared: no payload
        value = structure_payload(payload, input_type, req.event)
        # what must be torn down: set-up events whose handler's teardown does
        # something (the rest are done with at once, like their setup)
        teardowns = [
            e for e in thread.events
            if e.status is _SETUP
            and overrides(self._on(thread, wait, e.event)[1].handler, "teardown")
        ]
        output = yield from self._run_user_code(
            handler.handle, (event.req, value), None, thread, "handle", req.event
        )
        # -- commit: this event wins the select; every set-up event is torn down --
        state.pc += 1
        event.handled = True
        thread.events = teardowns
        for e in teardowns:
            e.status = WaitEventStatus.PENDING_TEARDOWN
        thread.status = _RESUMING
        thread.handled = req.event
        thread.path = self._path(thread)
        thread.pc = state.pc
        thread.since = None
        state.update_status()
        return output

    # -- operators --

    def check_thread(self, thread: Thread) -> None:
        """Find everything `thread` needs in the replayed definition, or raise."""
        if not thread.stmt:
            self._root(thread)  # the Go statements that started it are still there
            return
        waits = thread.status is _WAITING_EVENT or thread.handled or thread.events
        kind = Wait if waits else _STANDS_AT.get(thread.status)
        _, stmt = self.locate(thread, kind)
        if kind is Wait:
            for name in {e.event for e in thread.events} | ({thread.handled} - {""}):
                self._on(thread, stmt, name)

    def move(self, thread_id: str, target: str) -> _Moves:
        state = self.state
        if state.status in _FINAL:
            raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
        thread = state.thread(thread_id)
        if thread is None:
            raise UnknownThreadError(f"instance {state.id!r} has no live thread {thread_id!r}")
        found = self._find(thread, self._root(thread), target, None)
        if found is None:
            raise MoveError(
                f"thread {thread_id!r} of workflow {state.workflow!r} has no statement "
                f"{target!r} (statements of other threads do not count)"
            )
        stack, stmt = found
        if type(stmt) not in (Step, Wait, WaitFor):
            raise MoveError(
                f"{target!r} is a {type(stmt).__name__}: a thread can only be moved to a "
                "Step, a Wait or a WaitFor"
            )
        now = None if type(stmt) is Step else self.clock()
        events = self._events(thread, stmt, state.pc + 1, now) if type(stmt) is Wait else None
        # what the thread has set up is torn down first (handled=False: nothing won)
        for event in [e for e in thread.events
                      if e.status is _SETUP or e.status in _TEARING_DOWN]:
            yield from self._teardown(thread, event)
            yield from self._checkpoint(CheckpointType.AFTER_TEARDOWN)
        # -- commit --
        state.pc += 1
        thread.events = []
        self._stop_at(thread, stmt, stack, events, now)
        if state.status is WorkflowStatus.FAILED:
            state.status = WorkflowStatus.RESUMING
        state.update_status()

    def cancel(self) -> _Moves:
        state = self.state
        if state.status is WorkflowStatus.FINISHED:
            raise WorkflowFinishedError(f"instance {state.id!r} has finished")
        pending = [e for t in state.threads for e in t.events if e.status in _TEARING_DOWN]
        if state.status is WorkflowStatus.CANCELLED and not pending:
            raise WorkflowFinishedError(f"instance {state.id!r} is already cancelled")
        state.status = WorkflowStatus.CANCELLED
        for thread in state.threads:
            thread.events = [
                e for e in thread.events
                if e.status is _SETUP or e.status in _TEARING_DOWN
            ]
            for e in thread.events:
                e.status = WaitEventStatus.PENDING_TEARDOWN
        yield from self._checkpoint(CheckpointType.AFTER_TEARDOWN)
        for thread in state.threads:
            while thread.events:
                kind = yield from self._teardown(thread, thread.events[0])
                yield from self._checkpoint(kind)


def _restore(wf: Any, snapshot: Any) -> None:
    """Put the data back as the snapshot has it, in place (callers hold `wf`)."""
    fresh = converter.structure(snapshot, type(wf))
    for field in attrs.fields(type(wf)):
        object.__setattr__(wf, field.name, getattr(fresh, field.name))
