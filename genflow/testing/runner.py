"""Run a scenario against the pure core, recording everything a check compares.

A `Run` drives one instance through a `Scenario` as the engine would: start
(resume), then for each event deliver it and resume again. It records

* a *trace*: one `Mark` per checkpoint, with the blob the instance would have
  at that moment and the blob a store would hold (the last durable one; moves
  that only navigate, `AFTER_RESUME`, are not saved);
* the *calls* of user code (steps, handler setup/handle/teardown, condition
  handlers), each with the thread, the name and the counter that identify one
  execution;
* the *outcome* of each event (accepted and what the handler returned, or
  refused and why).

Policies: ``plain`` never stops; ``reload`` saves and reloads at every
checkpoint (and between operations), continuing from the loaded copy, and checks
that the loaded copy equals the one in memory. A run that *crashes* once, after
checkpoint k, is built with `Run.from_mark`: it shares the first k checkpoints
with a plain run, reloads the blob a store held then, and goes on uninterrupted.

User calls are seen by wrapping the moves the core yields to its driver (the
same `(function, args, step_context)` triples `genflow.runtime` runs), so
nothing in the workflow has to be changed to be instrumented.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator
from typing import Any

import attrs

from genflow import runtime
from genflow.clock import FakeClock
from genflow.codec import dumps, loads, unstructure
from genflow.errors import (
    EventError,
    GenflowError,
    HandlerError,
    MoveLimitError,
    NonDeterminismError,
    SerializationError,
    StepError,
)
from genflow.handlers import as_handler
from genflow.replay import as_body, iter_tree
from genflow.state import (
    MAIN_THREAD,
    CallbackRequest,
    CheckpointType,
    State,
    ThreadStatus,
    WaitEventStatus,
    WorkflowStatus,
    new_state,
)
from genflow.statements import Step, Wait, WaitFor
from genflow.testing.scenario import Scenario, Send

__all__ = [
    "Call",
    "Failure",
    "Lost",
    "Mark",
    "Outcome",
    "Run",
    "data_diff",
    "input_type",
    "positions",
    "ready_events",
    "same_instance",
    "thread_words",
    "wait_events",
]

_FINAL = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)
#: kinds of marks a store saves (AFTER_RESUME is recomputed from the last save)
_NOT_DURABLE = frozenset({CheckpointType.AFTER_RESUME.value})


class _Interrupt(Exception):
    """Raised by the checkpoint callback of a `reload` run: reload, then go on."""


@attrs.frozen
class Call:
    """One call of user code. `key` identifies one execution: a step retried
    after a failure has the same key, the same step in the next loop iteration not."""

    kind: str  # step, setup, handle, teardown, condition handler
    thread: str
    name: str
    pc: int
    ok: bool

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.kind, self.thread, self.name, self.pc)

    def words(self) -> str:
        if self.kind == "step":
            return f"step {self.name!r} ({thread_words(self.thread)})"
        if self.kind == "condition handler":
            return f"the handler of WaitFor {self.name!r} ({thread_words(self.thread)})"
        return f"{self.kind} of event {self.name!r} ({thread_words(self.thread)})"


@attrs.frozen
class Mark:
    """A checkpoint of a run (or the start, index 0)."""

    index: int
    kind: str  # a CheckpointType value, "start" or "after_event"
    op: int
    where: str  # in words: what the move that ended here did
    blob: bytes  # the instance as it stands here
    saved: int  # index of the mark whose blob a store holds now
    calls: int  # how many user calls had been made
    now: Any  # the clock
    positions: dict[str, tuple[Any, ...]]

    @property
    def durable(self) -> bool:
        return self.kind not in _NOT_DURABLE


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

    def words(self) -> str:
        if self.accepted:
            out = f", the handler returned {self.output!r}" if self.output is not None else ""
            return f"accepted by {thread_words(self.thread or MAIN_THREAD)}{out}"
        return f"refused: {self.error}"

    def same_as(self, other: Outcome) -> bool:
        return (self.accepted, self.error_type, self.output) == (
            other.accepted, other.error_type, other.output
        )


@attrs.frozen
class Failure:
    """Why a run could not go on (the engine would retry, then mark it FAILED)."""

    kind: str  # step failed, handler failed, non-determinism, definition, move limit, not saved
    message: str
    op: int
    mark: int  # index of the last mark before the failure
    error: BaseException | None = attrs.field(default=None, eq=False)


class _Stop(Exception):
    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


@attrs.frozen
class Lost:
    """Something in memory that a save and reload does not keep."""

    field: str
    in_memory: Any
    loaded: Any
    mark: int
    attribute: bool = False  # an attribute that is not an attrs field


def thread_words(thread_id: str) -> str:
    return "the main thread" if thread_id == MAIN_THREAD else f"thread {thread_id!r}"


def positions(state: State) -> dict[str, tuple[Any, ...]]:
    return {
        t.id: (t.stmt, t.status.value, t.won,
               tuple((e.event, e.status.value) for e in t.events))
        for t in state.threads
    }


def has_async_code(wf: Any) -> bool:
    """Whether any step or handler of the definition (every branch) is `async def`."""
    try:
        for stmt, _ in iter_tree(as_body(wf)):
            fns: list[Any] = []
            if isinstance(stmt, Step):
                fns.append(stmt.action)
            elif isinstance(stmt, WaitFor) and stmt.handler is not None:
                fns.append(stmt.handler)
            elif isinstance(stmt, Wait):
                for on in stmt.events:
                    handler = on.handler
                    fns.append(handler)
                    fns.extend(getattr(handler, n, None) for n in ("setup", "handle", "teardown"))
            if any(_is_async(f) for f in fns if f is not None):
                return True
    except Exception:
        return False
    return False


def _is_async(fn: Any) -> bool:
    fn = getattr(fn, "func", fn)  # functools.partial
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    )


class Run:
    """One instance driven through a scenario under one policy."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        policy: str = "plain",
        start_time: Any = None,
        step_retries: int = 2,
        max_moves: int = 10_000,
        asynchronous: bool | None = None,
        on_mark: Callable[[Run, Mark], None] | None = None,
    ) -> None:
        assert policy in ("plain", "reload")
        self.scenario = scenario
        self.events: list[Send] = list(scenario.events)
        self.policy = policy
        self.clock = FakeClock(start_time)
        self.step_retries = step_retries
        self.max_moves = max_moves
        self.on_mark = on_mark
        self.wf = scenario.data()
        self.state = new_state(scenario.instance_id, self.wf)
        self.asynchronous = has_async_code(self.wf) if asynchronous is None else asynchronous
        self.trace: list[Mark] = []
        self.calls: list[Call] = []
        self.outcomes: list[Outcome] = []
        self.failure: Failure | None = None
        self.lost: list[Lost] = []
        #: events accepted though nobody waited for them, refusals that changed the instance
        self.misdeliveries: list[tuple[Outcome, str]] = []
        #: every request seen live, in order (stale ones are delivered for `Send(stale=True)`)
        self.issued: list[CallbackRequest] = []
        self.issued_at: dict[int, int] = {}
        self.failed_calls = 0
        self.moves_in_op = 0
        self.next_op = 0
        self.op = -1
        self.crashed_at: int | None = None
        self.redo_from: int | None = None
        try:
            self._mark("start", "the instance was created")
        except _Stop as stop:
            self.failure = stop.failure
            self.next_op = self.ops  # nothing can run

    # -- building ------------------------------------------------------------------------

    @classmethod
    def from_mark(cls, base: Run, index: int) -> Run:
        """A run that crashes right after `base`'s checkpoint `index`: it reloads
        the blob a store held then and goes on (plain) to the end."""
        mark = base.trace[index]
        run = cls.__new__(cls)
        run.scenario = base.scenario
        run.events = list(base.events)
        run.policy = "plain"
        run.clock = FakeClock(mark.now)
        run.step_retries = base.step_retries
        run.max_moves = base.max_moves
        run.on_mark = None
        run.asynchronous = base.asynchronous
        run.trace = list(base.trace[: index + 1])
        run.calls = list(base.calls[: mark.calls])
        run.next_op = mark.op + 1 if mark.kind in ("start", "after_event") else mark.op
        run.outcomes = [o for o in base.outcomes if o.op < run.next_op]
        run.failure = None
        run.lost = []
        run.misdeliveries = []
        run.issued = list(base.issued[: base.issued_at.get(run.next_op, len(base.issued))])
        run.issued_at = {}
        run.failed_calls = 0
        run.moves_in_op = 0
        run.op = mark.op
        run.crashed_at = index
        run.redo_from = mark.saved
        run.wf, run.state = loads(base.trace[mark.saved].blob)
        return run

    # -- running -------------------------------------------------------------------------

    @property
    def ops(self) -> int:
        return 2 * len(self.events) + 1

    def run(self) -> Run:
        """Run every remaining operation (stops at a failure)."""
        while self.next_op < self.ops and self.failure is None:
            op = self.next_op
            self.next_op += 1
            self.op = op
            self.issued_at[op] = len(self.issued)
            self.moves_in_op = 0
            try:
                if self.policy == "reload":
                    self.wf, self.state = loads(self.blob())
                if op % 2 == 0:
                    self._resume_op(op)
                else:
                    self._event_op(op, op // 2)
            except _Stop as stop:
                self.failure = stop.failure
            self._note_requests()
        return self

    def send(self, send: Send) -> Outcome | None:
        """Add one event to the scenario and run it (incremental use)."""
        self.events.append(send)
        self.run()
        found = [o for o in self.outcomes if o.number == len(self.events)]
        return found[0] if found else None

    @property
    def finished(self) -> bool:
        return self.state.status in _FINAL

    def blob(self) -> bytes:
        try:
            return dumps(self.wf, self.state)
        except SerializationError as exc:
            raise _Stop(Failure("not saved", str(exc), self.op, len(self.trace) - 1, exc)) \
                from exc

    def ready(self) -> list[tuple[str, str]]:
        """(thread, event) pairs that can be delivered now."""
        return ready_events(self.state)

    # -- operations --

    def _resume_op(self, op: int) -> None:
        failures = 0
        while self.state.status not in _FINAL:
            try:
                self._drive(self._moves_resume())
                return
            except _Interrupt:
                self.wf, self.state = loads(self.trace[-1].blob)
            except (StepError, HandlerError) as exc:
                failures += 1
                if failures > self.step_retries:
                    kind = "step failed" if isinstance(exc, StepError) else "handler failed"
                    raise _Stop(Failure(kind, str(exc), op, len(self.trace) - 1, exc)) from exc
            except NonDeterminismError as exc:
                raise _Stop(Failure("non-determinism", str(exc), op, len(self.trace) - 1, exc)) \
                    from exc
            except MoveLimitError as exc:
                raise _Stop(Failure("move limit", str(exc), op, len(self.trace) - 1, exc)) from exc
            except GenflowError as exc:
                raise _Stop(Failure("definition", f"{type(exc).__name__}: {exc}", op,
                                    len(self.trace) - 1, exc)) from exc

    def _event_op(self, op: int, index: int) -> None:
        send = self.events[index]
        number = index + 1
        target = None if send.stale else self._target(send)
        if target is not None:
            thread_id, req, due = target
            if due is not None and due > self.clock.now:
                self.clock.now = due  # a timer fires when it is due
            self._deliver(op, number, send, req, thread_id, awaited=True)
        else:
            req = self._bogus(send)
            self._deliver(op, number, send, req, req.thread_id, awaited=False)

    def _target(self, send: Send) -> tuple[str, CallbackRequest, Any] | None:
        for thread in self.state.threads:
            if thread.status is not ThreadStatus.WAITING_EVENT:
                continue
            if send.thread is not None and thread.id != send.thread:
                continue
            for event in thread.events:
                if event.event == send.event and event.status is WaitEventStatus.SETUP:
                    return thread.id, event.req, event.due
        return None

    def _bogus(self, send: Send) -> CallbackRequest:
        """A request for an event the instance is not waiting for: for `stale`, an
        old one for the same event when there is one (a stale callback); else one
        built for a live thread (unknown event / not waiting), else for a finished
        instance."""
        state = self.state
        live = {(e.req.thread_id, e.req.event, e.req.pc) for t in state.threads for e in t.events}
        if send.stale:
            for req in reversed(self.issued):
                if req.event == send.event and (req.thread_id, req.event, req.pc) not in live and (
                    send.thread is None or req.thread_id == send.thread
                ):
                    return attrs.evolve(req)
        threads = [t for t in state.threads if send.thread is None or t.id == send.thread]
        if threads:
            # a stale request never issued: the right event with a counter from the past
            pc = threads[0].pc - 1 if send.stale else threads[0].pc
            return CallbackRequest(state.id, threads[0].id, send.event, pc)
        return CallbackRequest(state.id, send.thread or MAIN_THREAD, send.event, state.pc)

    def _deliver(
        self, op: int, number: int, send: Send, req: CallbackRequest, thread: str, awaited: bool
    ) -> None:
        before = dumps(self.wf, self.state)
        try:
            output = self._drive(self._moves_callback(req, send.wire_payload()))
        except GenflowError as exc:
            outcome = Outcome(number, op, send, thread, awaited, False,
                              error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
            self.outcomes.append(outcome)
            if dumps(self.wf, self.state) != before:
                self.misdeliveries.append((outcome, "refusing it changed the instance"))
                self.wf, self.state = loads(before)
            elif not awaited and not isinstance(exc, EventError):
                self.misdeliveries.append((outcome, f"it was refused with {type(exc).__name__}, "
                                                    "not with an EventError"))
            return
        outcome = Outcome(number, op, send, thread, awaited, True, output=unstructure(output))
        self.outcomes.append(outcome)
        if not awaited:
            self.misdeliveries.append((outcome, "nobody waited for it"))
        self._mark("after_event", f"after event #{number} {send.event!r} was handled "
                                  f"({thread_words(thread)})")
        # a store saves here; a reload run goes on from the loaded copy
        if self.policy == "reload":
            self.wf, self.state = loads(self.trace[-1].blob)

    # -- driving the core, with user calls recorded --

    def _moves_resume(self) -> Generator[Any, Any, Any]:
        op = runtime.Operation(self.wf, self.state, self._checkpoint, self.clock)
        return self._recorded(op.resume(self.max_moves))

    def _moves_callback(self, req: CallbackRequest, payload: Any) -> Generator[Any, Any, Any]:
        op = runtime.Operation(self.wf, self.state, None, None)
        return self._recorded(op.callback(req, payload))

    def _drive(self, moves: Generator[Any, Any, Any]) -> Any:
        if self.asynchronous:
            return asyncio.run(runtime.drive_async(moves))
        return runtime.drive(moves)

    def _recorded(self, moves: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                call = moves.throw(error) if error is not None else moves.send(value)
            except StopIteration as stop:
                return stop.value
            fn, args, ctx = call
            if fn != self._checkpoint:
                fn = self._recording(fn, args, ctx)
            try:
                value, error = (yield (fn, args, ctx)), None
            except BaseException as exc:
                value, error = None, exc

    def _recording(self, fn: Callable[..., Any], args: tuple[Any, ...], ctx: Any) -> Any:
        if ctx is not None:
            kind, thread, name, pc = "step", ctx.thread_id, ctx.step, ctx.pc
        elif args and isinstance(args[0], CallbackRequest):
            req = args[0]
            kind = getattr(fn, "__name__", "handle")
            if kind not in ("setup", "handle", "teardown"):
                kind = "handle"
            thread, name, pc = req.thread_id, req.event, req.pc
        else:
            kind, thread, name, pc = "condition handler", "", _fn_name(fn), -1
            holding = self._condition_holding()
            if holding is not None:
                thread, name, pc = holding.id, holding.stmt, holding.pc

        def record(ok: bool) -> None:
            self.calls.append(Call(kind, thread, name, pc, ok))
            if not ok:
                self.failed_calls += 1

        def call(*a: Any) -> Any:
            try:
                result = fn(*a)
            except BaseException:
                record(False)
                raise
            if result is not None and inspect.isawaitable(result):
                return _awaited(result, record)
            record(True)
            return result

        return call

    def _condition_holding(self) -> Any:
        """The thread whose WaitFor handler runs now: the first, in creation order,
        that waits for a condition that holds (the core moves threads in that order)."""
        for thread in self.state.threads:
            if thread.status is not ThreadStatus.WAITING_CONDITION:
                continue
            try:
                _, wait_for = runtime.Operation(self.wf, self.state, None, None).locate(
                    thread, WaitFor)
            except GenflowError:
                continue
            if wait_for.cond:
                return thread
        return None

    def _checkpoint(self, kind: CheckpointType) -> None:
        self._mark(kind.value)
        if self.policy == "reload":
            self.moves_in_op += 1
            if self.moves_in_op > self.max_moves:  # the runtime's own count restarts on reload
                raise _Stop(Failure("move limit", f"more than {self.max_moves} moves in one "
                                    "resume (a loop of steps that never waits?)", self.op,
                                    len(self.trace) - 1))
            last_failed = bool(self.calls) and not self.calls[-1].ok
            if not last_failed:
                if self._check_round_trip():
                    lost = self.lost[0]
                    raise _Stop(Failure("not saved", f"{lost.field!r} is not saved", self.op,
                                        len(self.trace) - 1))
                raise _Interrupt()

    # -- marks --

    def _mark(self, kind: str, where: str | None = None) -> Mark:
        try:
            blob = dumps(self.wf, self.state)
        except SerializationError as exc:
            raise _Stop(Failure("not saved", str(exc), self.op, len(self.trace) - 1, exc)) from exc
        prev = self.trace[-1] if self.trace else None
        now_positions = positions(self.state)
        if where is None:
            where = self._where(kind, prev, now_positions)
        index = len(self.trace)
        durable = kind not in _NOT_DURABLE
        saved = index if durable or prev is None else prev.saved
        mark = Mark(index, kind, self.op, where, blob, saved, len(self.calls), self.clock.now,
                    now_positions)
        self.trace.append(mark)
        if self.on_mark is not None:
            self.on_mark(self, mark)
        return mark

    def _where(self, kind: str, prev: Mark | None, now: dict[str, tuple[Any, ...]]) -> str:
        last = self.calls[-1] if prev is not None and len(self.calls) > prev.calls else None
        before = prev.positions if prev is not None else {}
        if kind == CheckpointType.AFTER_STEP.value and last is not None:
            return f"after step {last.name!r} ran ({thread_words(last.thread)})"
        if kind == CheckpointType.AFTER_SETUP.value:
            if last is not None and last.kind == "setup":
                return f"after event {last.name!r} was set up ({thread_words(last.thread)})"
            for tid, event in _changed_events(before, now):
                return f"after timer {event!r} was set ({thread_words(tid)})"
            return "after a handler was set up"
        if kind == CheckpointType.AFTER_TEARDOWN.value:
            if last is not None and last.kind == "teardown":
                return f"after event {last.name!r} was torn down ({thread_words(last.thread)})"
            for tid, event in _changed_events(before, now):
                return f"after event {event!r} was torn down ({thread_words(tid)})"
            return "after a handler was torn down"
        if kind == CheckpointType.AFTER_CONDITION.value:
            for tid, pos in before.items():
                if pos[1] == ThreadStatus.WAITING_CONDITION.value and now.get(tid) != pos:
                    return f"after the condition of {pos[0]!r} held ({thread_words(tid)})"
            return "after a condition held"
        if kind == CheckpointType.AFTER_RESUME.value:
            return _moved(before, now)
        return kind.replace("_", " ")

    def _check_round_trip(self) -> bool:
        """Whether anything in memory is lost by a save and reload (noted in `lost`)."""
        blob = self.trace[-1].blob
        loaded, _ = loads(blob)
        index = len(self.trace) - 1
        known = {lost.field for lost in self.lost}
        for field in attrs.fields(type(self.wf)):
            mine, theirs = getattr(self.wf, field.name), getattr(loaded, field.name)
            if field.name not in known and not _equal(mine, theirs):
                self.lost.append(Lost(field.name, mine, theirs, index))
        extra = getattr(self.wf, "__dict__", None)
        if extra:
            names = {f.name for f in attrs.fields(type(self.wf))}
            for name, value in extra.items():
                if name not in names and name not in known:
                    self.lost.append(Lost(name, value, "(missing)", index, attribute=True))
        return bool(self.lost)

    def _note_requests(self) -> None:
        seen = {(r.thread_id, r.event, r.pc) for r in self.issued}
        for thread in self.state.threads:
            for event in thread.events:
                req = event.req
                if (req.thread_id, req.event, req.pc) not in seen:
                    self.issued.append(attrs.evolve(req))


def ready_events(state: State) -> list[tuple[str, str]]:
    return [
        (t.id, e.event)
        for t in state.threads
        if t.status is ThreadStatus.WAITING_EVENT
        for e in t.events
        if e.status is WaitEventStatus.SETUP
    ]


def wait_events(wf: Any, state: State) -> dict[str, list[Any]]:
    """For each thread waiting for events: the `On` statements of its `Wait`,
    found by replaying the definition on the current data."""
    found: dict[str, list[Any]] = {}
    for thread in state.threads:
        if thread.status is not ThreadStatus.WAITING_EVENT:
            continue
        try:
            _, wait = runtime.Operation(wf, state, None, None).locate(thread, Wait)
        except GenflowError:
            continue
        found[thread.id] = list(wait.events)
    return found


def input_type(on: Any) -> Any:
    """The payload type the event's handler declares (None: no payload)."""
    try:
        return getattr(as_handler(on.handler), "input_type", None)
    except TypeError:
        return None


def _changed_events(
    before: dict[str, tuple[Any, ...]], now: dict[str, tuple[Any, ...]]
) -> list[tuple[str, str]]:
    changed = []
    for tid, pos in now.items():
        old = dict(before.get(tid, (None, None, None, ()))[3])
        new = dict(pos[3])
        for event in sorted(set(old) | set(new)):
            if old.get(event) != new.get(event):
                changed.append((tid, event))
    for tid, pos in before.items():
        if tid in now:
            continue
        changed.extend((tid, event) for event, _ in pos[3])
    return changed


_STOPS = {
    ThreadStatus.EXECUTING.value: "moved on to step {!r}",
    ThreadStatus.WAITING_EVENT.value: "moved on to wait {!r}",
    ThreadStatus.WAITING_CONDITION.value: "moved on to WaitFor {!r}",
    ThreadStatus.RESUMING.value: "moved on after {!r}",
    ThreadStatus.UNWINDING.value: "left {!r} outward (a failure or a cancellation)",
}


def _moved(before: dict[str, tuple[Any, ...]], now: dict[str, tuple[Any, ...]]) -> str:
    parts = []
    for tid, pos in before.items():
        if tid not in now:
            parts.append(f"{thread_words(tid)} ended")
        elif now[tid] != pos:
            parts.append(f"{thread_words(tid)} " + _STOPS[now[tid][1]].format(now[tid][0]))
    started = [tid for tid in now if tid not in before]
    if started:
        parts.append("started " + ", ".join(thread_words(t) for t in started))
    return "; ".join(parts) or "a thread moved on"


def _fn_name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


async def _awaited(awaitable: Any, record: Callable[[bool], None]) -> Any:
    try:
        result = await awaitable
    except BaseException:
        record(False)
        raise
    record(True)
    return result


def _equal(a: Any, b: Any) -> bool:
    try:
        if a == b:
            return True
    except Exception:
        pass
    try:
        return bool(unstructure(a) == unstructure(b))
    except Exception:
        return False


def same_instance(
    blob_a: bytes, blob_b: bytes, cls: type, ignore: frozenset[str] = frozenset()
) -> bool:
    """Whether two blobs hold the same data (but for `ignore`d fields) and State."""
    if blob_a == blob_b:
        return True
    wf_a, state_a = loads(blob_a)
    wf_b, state_b = loads(blob_b)
    if unstructure(state_a) != unstructure(state_b):
        return False
    return not data_diff(wf_a, wf_b, ignore)


def data_diff(a: Any, b: Any, ignore: frozenset[str] = frozenset()) -> list[tuple[str, Any, Any]]:
    """(field, value in a, value in b) for every field that differs."""
    diffs = []
    for field in attrs.fields(type(a)):
        if field.name in ignore:
            continue
        va, vb = getattr(a, field.name), getattr(b, field.name, None)
        if not _equal(va, vb):
            diffs.append((field.name, va, vb))
    return diffs

