"""`Run`: one instance driven through a `Scenario`, recording everything a check compares.

A run drives an `Instance` as the engine would: operation 0 starts it (a
resume), operation k delivers the k-th event (the core's delivery: the
handler, checkpoint AFTER_EVENT, the moves after it), or, for a timer, moves
the clock to its due time and fires what is due. A failed step or handler that
its policy retries later makes the clock move to the retry, as a worker would
when it is due. It records

* a *trace*: one `Mark` per checkpoint, with the blob the instance has at that
  moment and the blob a store would hold (the last durable one; a move that
  only navigates, `AFTER_RESUME`, is saved when its operation ends);
* the *calls* of user code (see `genflow.testing.driver`);
* the *outcome* of each event (accepted and what the handler returned, or
  refused and why).

Policies: ``plain`` never stops; ``reload`` saves and reloads at every
checkpoint (the `Instance`'s reload mode). A run that *crashes* is built from
another: `Run.from_mark` crashes right after one of its checkpoints (it reloads
the blob a store held then, finishes that operation, as a worker resumes an
instance left moving, and goes on), `Run.crashing_in` inside one of its calls
of user code (after the call's outside effect, before its checkpoint).

A run built against a *twin* (the run that never stopped) keeps to it where
the difference is the workflow's right: a step that runs again after a crash
and stores another `random()` or `time()` than the first time did stores a
value, and the definition may branch on it. When a run's move starts from the
same blob as the twin's, makes the same single call and ends elsewhere, the
run takes the twin's result (noted in `adopted`) and goes on. It also stops
when it makes far more moves than its twin in one operation (`runaway`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from genflow.clock import FakeClock
from genflow.codec import dumps, loads, unstructure
from genflow.errors import (
    ArgumentError,
    EventError,
    GenflowError,
    HandlerError,
    MoveLimitError,
    NonDeterminismError,
    SerializationError,
    StepError,
)
from genflow.replay import as_body, iter_tree
from genflow.state import (
    MAIN_THREAD,
    CallbackRequest,
    CheckpointType,
    State,
    ThreadStatus,
    WaitEventStatus,
    WorkflowStatus,
)
from genflow.statements import Retry, Timeout
from genflow.testing.driver import CrashPlan
from genflow.testing.instance import Instance, ResumeFrom, Unsaved, recorded_failure
from genflow.testing.records import DURABLE, Call, Failure, Lost, Mark, Outcome, positions
from genflow.testing.scenario import Scenario, Send
from genflow.testing.words import thread_words, where_words

__all__ = ["Run", "ready_events"]

_FINAL = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)
#: moves a run may make in one operation beyond its twin's before it is a runaway
RUNAWAY_SLACK = 50
#: times the clock moves to a retry in one operation before a step counts as failing
RETRY_ROUNDS = 20


class _Stop(Exception):
    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


def ready_events(state: Any) -> list[tuple[str, str]]:
    """Every (thread, event) that could be delivered right now, in a stable order
    (a WaitFor's timer too: its timeout fires when the clock moves to it)."""
    return [
        (t.id, e.event)
        for t in state.threads
        if t.status is ThreadStatus.WAITING_EVENT or t.status is ThreadStatus.WAITING_CONDITION
        for e in t.events
        if e.status is WaitEventStatus.SETUP
    ]


#: the kind of a run's `Failure` when the instance failed as its definition says:
#: the failure left a thread after its Try's Catch and Finally bodies ran, or a
#: `Raise` started it (Temporal's money transfer fails with the deposit's error
#: once the refund is made). Such a run ended; the checker compares it.
FAILED = "failed"


def failed_by_definition(state: State) -> bool:
    """Did a thread's failure go through the definition's own handling (a Try's
    bodies, a Raise) before it failed the instance? (`runtime`'s `_fail_thread`
    leaves that thread UNWINDING with `unwind == "fail"`.)"""
    return state.status is WorkflowStatus.FAILED and any(
        t.status is ThreadStatus.UNWINDING and t.unwind == "fail" for t in state.threads)


def _op_words(op: int) -> str:
    return "start" if op <= 0 else f"delivery of event #{op}"


class Run:
    """One instance driven through a scenario under one policy.

    `step_retries` is how many times a failing step (or handler set-up) without
    a policy of its own is tried again before the run reports it failing."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        policy: str = "plain",
        start_time: Any = None,
        step_retries: int = 2,
        max_moves: int = 1_000,
        asynchronous: bool | None = None,
        on_mark: Callable[[Run, Mark], None] | None = None,
        twin: Run | None = None,
        services: Sequence[Any] = (),
    ) -> None:
        if policy not in ("plain", "reload"):
            raise ArgumentError(f"policy must be 'plain' or 'reload', not {policy!r}")
        self.scenario = scenario
        self.events: list[Send] = list(scenario.events)
        self.policy = policy
        self.step_retries = step_retries
        self.max_moves = max_moves
        self.on_mark = on_mark
        self.twin = twin
        self.services = tuple(services)
        self.trace: list[Mark] = []
        self.outcomes: list[Outcome] = []
        self.failure: Failure | None = None
        self.lost: list[Lost] = []
        #: events accepted though nobody waited for them, refusals that changed the instance
        self.misdeliveries: list[tuple[Outcome, str]] = []
        #: every request seen live, in order (stale ones are delivered for `Send(stale=True)`)
        self.issued: list[CallbackRequest] = []
        self.issued_at: dict[int, int] = {}
        #: (mark index, call) where the run took its twin's result (see the module docstring)
        self.adopted: list[tuple[int, Call]] = []
        self.next_op = 0
        self.op = -1
        self.finish_op = False  # a crash run first finishes the operation it crashed in
        self.crashed_at: int | None = None
        self.redo_from: int | None = None
        self.crashed_in: Call | None = None
        self.offset = 0  # a mark of this run stands for the twin's mark index + offset
        self._delivering: tuple[int, Send, str] | None = None
        self.instance = self._instance(scenario.data(), None, FakeClock(start_time),
                                       asynchronous)
        self._stood: tuple[bytes | None, int] = (self.instance.checkpointed, 0)
        self._before: tuple[bytes | None, int] = (None, 0)
        try:
            self._mark("start", "the instance was created")
        except _Stop as stop:
            self.failure = stop.failure
            self.next_op = self.ops  # nothing can run

    def _instance(self, wf: Any, state: Any, clock: FakeClock,
                  asynchronous: bool | None) -> Instance:
        attempts = Retry(attempts=self.step_retries + 1, backoff=0)
        # One step at a time: the runs are compared checkpoint by checkpoint, and
        # a reload or crash drops the steps running at once (they run again), so
        # steps at once would make the runs differ by when each step ended.
        # `Instance` in crash mode covers steps at once (docs/testing.md).
        instance = Instance(wf, "reload" if self.policy == "reload" else "plain",
                            instance_id=self.scenario.instance_id, clock=clock, state=state,
                            asynchronous=asynchronous, retry=attempts, handler_retry=attempts,
                            parallel_steps=1,
                            on_checkpoint=self._checkpoint, on_reload=self._reloaded)
        instance.context = lambda: (self.op, self.trace[-1].saved if self.trace else 0)
        return instance

    # -- building ------------------------------------------------------------------------

    @classmethod
    def from_mark(cls, base: Run, index: int, *, twin: Run | None = None) -> Run:
        """A run that crashes right after `base`'s checkpoint `index`: it reloads
        the blob a store held then, finishes that operation and goes on (plain)
        to the end."""
        mark = base.trace[index]
        run = cls.__new__(cls)
        run.scenario = base.scenario
        run.events = list(base.events)
        run.policy = "plain"
        run.step_retries = base.step_retries
        run.max_moves = base.max_moves
        run.on_mark = None
        run.twin = twin
        run.services = base.services
        run.trace = list(base.trace[: index + 1])
        run.next_op = mark.op + 1
        run.finish_op = mark.kind != "start"
        run.outcomes = [o for o in base.outcomes if o.op <= mark.op]
        run.failure = None
        run.lost = []
        run.misdeliveries = []
        run.issued = list(base.issued[: base.issued_at.get(run.next_op, len(base.issued))])
        run.issued_at = {}
        run.adopted = []
        run.op = mark.op
        run.crashed_at = index
        run.redo_from = mark.saved
        run.crashed_in = None
        run.offset = mark.saved - index
        run._delivering = None
        wf, state = loads(base.trace[mark.saved].blob)
        run.instance = run._instance(wf, state, FakeClock(mark.now),
                                     base.instance.recorder.asynchronous)
        run.instance.recorder.calls.extend(base.calls[: mark.calls])
        run._stood = (base.trace[mark.saved].blob, len(run.calls))
        run._before = (None, 0)
        return run

    @classmethod
    def crashing_in(cls, base: Run, call_index: int, effect: int | None = None, *,
                    twin: Run | None = None) -> Run:
        """A run that crashes inside `base`'s user call number `call_index`: right
        after its `effect`-th outside effect (None: right after it returns), before
        the checkpoint that would save its work; it reloads what a store held and
        goes on, running the call again."""
        call = base.calls[call_index]
        saved = base.trace[call.saved]
        run = cls.from_mark(base, call.saved, twin=twin)
        run.crashed_at = None
        run.redo_from = call.saved
        run.crashed_in = call
        run.offset = 0
        if saved.op < call.op:  # the call is the next operation's: that one is redone
            run.finish_op = False
        run.instance.recorder.crash = CrashPlan(0, effect)
        return run

    # -- the instance --------------------------------------------------------------------

    @property
    def wf(self) -> Any:
        return self.instance.wf

    @property
    def state(self) -> Any:
        return self.instance.state

    @property
    def clock(self) -> FakeClock:
        return self.instance.clock

    @property
    def calls(self) -> list[Call]:
        return self.instance.calls

    @property
    def asynchronous(self) -> bool:
        return self.instance.recorder.asynchronous

    @property
    def ops(self) -> int:
        return len(self.events) + 1

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

    # -- running -------------------------------------------------------------------------

    def run(self) -> Run:
        """Run every remaining operation (stops at a failure)."""
        if self.finish_op and self.failure is None:
            self.finish_op = False
            try:
                self._guarded(lambda: self._finish_operation(self.op))
            except _Stop as stop:
                self.failure = stop.failure
        while self.next_op < self.ops and self.failure is None:
            op = self.next_op
            self.next_op += 1
            self.op = op
            self.issued_at[op] = len(self.issued)
            try:
                if op == 0:
                    self._guarded(lambda: self.instance.resume(max_moves=self._budget(0)))
                    self._guarded(lambda: self._retries(0))
                    self._stored(0)
                else:
                    self._event_op(op)
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

    def _finish_operation(self, op: int) -> None:
        """What a worker does for an instance a crash left moving: fire the timers
        still due (a crash may come between two that fired together), resume it."""
        if self.state.status is WorkflowStatus.FAILED:  # saved failed: nothing moves it
            raise recorded_failure(self.state)
        timer = op >= 1 and self.events[op - 1].timer
        if timer and not self.finished:
            self.instance.fire_due(max_moves=self._budget(op))
        elif not self.finished:
            self.instance.resume(max_moves=self._budget(op))
        self._retries(op)
        self._stored(op)

    def _retries(self, op: int) -> None:
        """Move the clock to each retry its policy asks for, and resume."""
        for _ in range(RETRY_ROUNDS):
            due = self.instance.retry_due()
            if due is None or self.finished:
                return
            if due > self.clock.now:
                self.clock.now = due
            self.instance.resume(max_moves=self._budget(op))
        if self.instance.retry_due() is not None:
            raise _Stop(Failure("step failed", f"still failing after {RETRY_ROUNDS} retries "
                                "its policy asked for", op, len(self.trace) - 1))

    def _stored(self, op: int) -> None:
        """The engine saves at the end of an operation, whatever its last checkpoint."""
        last = self.trace[-1] if self.trace else None
        if last is not None and last.op == op and last.saved != last.index:
            self.trace[-1] = attrs.evolve(last, saved=last.index)

    def _guarded(self, operation: Callable[[], Any]) -> Any:
        """Run an operation of the instance; what the workflow fails with becomes
        this run's `failure` (`_Stop`)."""
        try:
            return operation()
        except (GenflowError, Unsaved) as exc:
            raise self._stop(exc) from exc

    def _stop(self, exc: BaseException) -> _Stop:
        """The `_Stop` that ends this run for `exc`."""
        op = self.op
        index = len(self.trace) - 1
        if isinstance(exc, (StepError, HandlerError)):
            kind = "step failed" if isinstance(exc, StepError) else "handler failed"
            if isinstance(exc, StepError) and failed_by_definition(self.state):
                kind = FAILED  # an end the runs are compared at, not a problem
            return _Stop(Failure(kind, str(exc), op, index, exc))
        if isinstance(exc, Unsaved):
            self.lost.extend(Lost(index, d) for d in exc.differences)
            return _Stop(Failure("not saved", str(exc), op, index, exc))
        if isinstance(exc, NonDeterminismError):
            return _Stop(Failure("non-determinism", str(exc), op, index, exc))
        if isinstance(exc, MoveLimitError):
            if self.twin is not None:
                theirs = sum(1 for m in self.twin.trace if m.op == op)
                return _Stop(Failure(
                    "runaway", f"it made {self._budget(op)} moves in operation {op} (the "
                    f"{_op_words(op)}), where the run that never stopped made {theirs}: "
                    "stopped there. A loop whose way out the interruption lost?", op, index,
                    exc))
            return _Stop(Failure("move limit", str(exc), op, index, exc))
        if isinstance(exc, SerializationError):
            return _Stop(Failure("not saved", str(exc), op, index, exc))
        return _Stop(Failure("definition", f"{type(exc).__name__}: {exc}", op, index, exc))

    def _budget(self, op: int) -> int:
        """Moves this operation may make: its twin's for the same operation and
        some slack (a copy that loops stops early), within `max_moves`."""
        if self.twin is None:
            return self.max_moves
        theirs = sum(1 for m in self.twin.trace if m.op == op)
        return min(self.max_moves, theirs + RUNAWAY_SLACK + 1)

    # -- events --

    def _event_op(self, number: int) -> None:
        send = self.events[number - 1]
        target = None if send.stale else self._target(send)
        instance = self.instance
        self._guarded(instance.between_operations)
        if target is not None and send.timer:
            self._fire(number, send, *target)
            return
        if send.timer:
            self._no_such_timer(send)
        if target is not None:
            thread_id, req, _ = target
            self._deliver(number, send, req, thread_id, awaited=True)
        elif send.keep and not send.stale:
            self._keep(number, send)
        else:
            req = self._bogus(send)
            self._deliver(number, send, req, req.thread_id, awaited=False)

    def _no_such_timer(self, send: Send) -> None:
        """A scenario's `Send(name, timer=True)` that names no timer of the workflow
        (on its data now) is the test's mistake, not an event to refuse: say which
        timers there are (a `Sleep`'s is `wake`)."""
        try:
            timers = sorted({stmt.name for stmt, _ in iter_tree(as_body(self.instance.wf))
                             if isinstance(stmt, Timeout) and stmt.name})
        except Exception:  # a definition that does not build: the runs report that
            return
        if send.event not in timers:
            raise ArgumentError(
                f"Send({send.event!r}, timer=True): workflow {self.state.workflow!r} has no "
                f"timer {send.event!r}; its timers are "
                f"{', '.join(map(repr, timers)) or 'none'} (a Timeout's name; a Sleep's "
                f"timer is 'wake')")

    def _target(self, send: Send) -> tuple[str, CallbackRequest, Any] | None:
        for thread in self.state.threads:
            if thread.status is not ThreadStatus.WAITING_EVENT and \
                    thread.status is not ThreadStatus.WAITING_CONDITION:
                continue  # (a WaitFor's one event: its timeout's timer)
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

    def _fire(self, number: int, send: Send, thread: str, req: CallbackRequest,
              due: Any) -> None:
        """A timer fires when it is due: the clock moves there, what is due fires."""
        if due is not None and due > self.clock.now:
            self.clock.now = due
        self._delivering = (number, send, thread)
        fired = self._guarded(lambda: self.instance.fire_due(max_moves=self._budget(number)))
        accepted = (thread, send.event) in fired
        outcome = Outcome(number, number, send, thread, True, accepted,
                          error="" if accepted else "the timer did not fire",
                          error_type="" if accepted else "NotFired")
        self.outcomes.append(outcome)
        self._guarded(lambda: self._retries(number))
        self._stored(number)

    def _deliver(self, number: int, send: Send, req: CallbackRequest, thread: str,
                 awaited: bool) -> None:
        instance = self.instance
        before = self.blob()
        self._stood = (before, len(self.calls))
        self._delivering = (number, send, thread)
        outcome = None
        try:
            output = instance.send_request(req, send.wire_payload(),
                                           max_moves=self._budget(number))
        except Unsaved as exc:
            raise self._stop(exc) from exc
        except GenflowError as exc:
            if not self.trace or self.trace[-1].op != number:  # refused: no AFTER_EVENT
                refused = Outcome(number, number, send, thread, awaited, False,
                                  error=f"{type(exc).__name__}: {exc}",
                                  error_type=type(exc).__name__)
                self.outcomes.append(refused)
                if self.blob() != before:
                    self.misdeliveries.append((refused, "refusing it changed the instance"))
                    instance.wf, instance.state = loads(before)
                elif not awaited and not isinstance(exc, EventError):
                    self.misdeliveries.append((refused, f"it was refused with "
                                                        f"{type(exc).__name__}, not with an "
                                                        "EventError"))
                return
            # delivered; the moves after it failed
            outcome = Outcome(number, number, send, thread, awaited, True,
                              output=unstructure(instance.recorder.handled))
            self.outcomes.append(outcome)
            raise self._stop(exc) from exc
        outcome = Outcome(number, number, send, thread, awaited, True, output=unstructure(output))
        self.outcomes.append(outcome)
        if not awaited:
            self.misdeliveries.append((outcome, "nobody waited for it"))
        self._guarded(lambda: self._retries(number))
        self._stored(number)

    def _keep(self, number: int, send: Send) -> None:
        """A send no thread waits for, kept (`Instance.send`): its outcome is the
        message's number, whenever it is taken (a crash may part the two)."""
        instance = self.instance
        before = self.blob()
        self._stood = (before, len(self.calls))
        self._delivering = (number, send, send.thread or MAIN_THREAD)
        box = self.state.mailbox
        seq = 0 if box is None else box.sent
        try:
            instance._keep(send.event, send.wire_payload(), send.thread, None,
                           self._budget(number))
        except Unsaved as exc:
            raise self._stop(exc) from exc
        except GenflowError as exc:
            if not self.trace or self.trace[-1].op != number:  # refused: nothing kept
                refused = Outcome(number, number, send, send.thread, False, False,
                                  error=f"{type(exc).__name__}: {exc}",
                                  error_type=type(exc).__name__)
                self.outcomes.append(refused)
                if self.blob() != before:
                    self.misdeliveries.append((refused, "refusing it changed the instance"))
                    instance.wf, instance.state = loads(before)
                return
            self.outcomes.append(Outcome(number, number, send, send.thread, False, True,
                                         output={"kept": seq}))
            raise self._stop(exc) from exc
        self.outcomes.append(Outcome(number, number, send, send.thread, False, True,
                                     output={"kept": seq}))
        self._guarded(lambda: self._retries(number))
        self._stored(number)

    # -- checkpoints --

    def _checkpoint(self, kind: CheckpointType) -> None:
        where = None
        if kind is CheckpointType.AFTER_EVENT and self._delivering is not None:
            number, send, thread = self._delivering
            last = self.calls[-1] if self.calls else None
            if send.timer and last is not None and last.kind == "handle":
                # the timers due at that time fire together, each thread's own
                where = f"after timer {last.name!r} fired ({thread_words(last.thread)})"
            else:
                where = (f"after event #{number} {send.event!r} was handled "
                         f"({thread_words(thread)})")
        mark = self._mark(kind.value, where)
        adopted = self._adoption(mark)
        if adopted is not None:
            if kind is CheckpointType.AFTER_EVENT and self.twin is not None:
                self._adopt_output(mark)
            raise ResumeFrom(adopted)

    def _adopt_output(self, mark: Mark) -> None:
        """What the handler chose to return, too, when its run is the twin's."""
        assert self.twin is not None
        self.instance.recorder.handled = next(
            (o.output for o in self.twin.outcomes if o.op == mark.op), None)

    def _reloaded(self, blob: bytes, crashed: bool) -> None:
        if crashed and self.redo_from is not None:
            # the moves the crashed process made since the last save are gone with it
            del self.trace[self.redo_from + 1:]
        self._stood = (blob, len(self.calls))

    def _mark(self, kind: str, where: str | None = None) -> Mark:
        blob = self.blob()
        prev = self.trace[-1] if self.trace else None
        now_positions = positions(self.state)
        if where is None:
            last = self.calls[-1] if prev is not None and len(self.calls) > prev.calls else None
            where = where_words(kind, prev.positions if prev is not None else {},
                                now_positions, last)
        index = len(self.trace)
        saved = index if kind in DURABLE or prev is None else prev.saved
        mark = Mark(index, kind, self.op, where, blob, saved, len(self.calls), self.clock.now,
                    now_positions, tuple(s.snapshot() for s in self.services))
        self.trace.append(mark)
        # the blob this move started from (and the calls made by then), for `_adoption`
        self._before, self._stood = self._stood, (blob, len(self.calls))
        if self.on_mark is not None:
            self.on_mark(self, mark)
        return mark

    def _adoption(self, mark: Mark) -> bytes | None:
        """The twin's blob when this move differs from the twin's only by what a
        step (or handler) chose to store (see the module docstring), else None."""
        twin = self.twin
        stood, calls_then = self._before
        if twin is None or stood is None:
            return None
        index = mark.index + self.offset
        if not 0 < index < len(twin.trace):
            return None
        theirs = twin.trace[index]
        if theirs.blob == mark.blob or theirs.kind != mark.kind:
            return None
        if twin.trace[index - 1].blob != stood:
            return None
        mine = [c for c in self.calls[calls_then:] if c.ok]
        made = [c for c in twin.calls[twin.trace[index - 1].calls:theirs.calls] if c.ok]
        if len(mine) != 1 or len(made) != 1 or mine[0].key != made[0].key:
            return None
        self.trace[-1] = attrs.evolve(mark, blob=theirs.blob, positions=theirs.positions)
        self.adopted.append((mark.index, mine[0]))
        return theirs.blob

    def _note_requests(self) -> None:
        seen = {(r.thread_id, r.event, r.pc) for r in self.issued}
        for thread in self.state.threads:
            for event in thread.events:
                req = event.req
                if (req.thread_id, req.event, req.pc) not in seen:
                    self.issued.append(attrs.evolve(req))
