"""`Instance`: one workflow instance driven through the core by hand, as a process would.

Three modes, for tests that want to see the same behaviour whatever happens
between the moves:

* ``plain``: one instance in memory, never serialised;
* ``reload``: saved and loaded (`dumps`/`loads`) between operations and at every
  checkpoint, going on from the loaded copy, which must equal the one in memory
  exactly (`Unsaved` names what a save loses);
* ``crash``: as a process that dies right after each save: at every durable
  checkpoint (`CheckpointType.durable`) the memory is thrown away, the blob a
  store holds is loaded and the operation goes on from it. A crash right after
  a failure was saved reports that failure, as a caller would learn it.

A scenario run in each mode must end with byte-identical blobs; `blob()`
gives the instance's bytes, `checkpointed` the blob at the last checkpoint,
`saved` what a store would hold (the last durable checkpoint, or the end of
the last operation), `kinds` every checkpoint the core reported, and `calls`
every call of user code (see `genflow.testing.driver`).

    run = Instance(Order(), mode="crash")
    run.resume()
    run.send("add", Pizza("margherita"))     # the core's delivery: handler, then moves
    assert run.wf.pizzas == [Pizza("margherita")]

`handle_callback` runs the event's handler alone (`genflow.handle_callback`:
no checkpoint, no moves); `resume(max_moves=...)` bounds the moves of one call,
across the reloads and crashes of its mode. Errors of the core reach the
caller as they are (`pytest.raises(StepError)`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

from genflow.children import ChildReport, child_ids
from genflow.clock import FakeClock
from genflow.codec import dumps, loads, unstructure
from genflow.errors import (
    ArgumentError,
    GenflowError,
    HandlerError,
    MoveLimitError,
    RecordedFailure,
    SerializationError,
    StepError,
)
from genflow.mailbox import Kept
from genflow.outbox import Intent
from genflow.registry import workflow_name
from genflow.runtime import DEFAULT_MAX_MOVES, DEFAULT_PARALLEL_STEPS, FAILURES, direct_request
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
from genflow.statements import Retry
from genflow.testing.compare import Difference, differences
from genflow.testing.driver import CrashInCall, Recorder, has_async_code, operation
from genflow.testing.records import Call

__all__ = ["MODES", "Instance", "ResumeFrom", "Unsaved", "recorded_failure", "request"]

MODES = ("plain", "reload", "crash")
_FINAL = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)


class Unsaved(AssertionError):
    """A save and reload does not give back the instance in memory."""

    def __init__(self, found: list[Difference], kind: CheckpointType | None):
        self.differences = found
        self.kind = kind
        where = f"at checkpoint {kind.value}" if kind is not None else "between operations"
        super().__init__(f"a save and reload {where} loses: " + "; ".join(
            d.words(("in memory", "after dumps/loads")) for d in found))


class ResumeFrom(Exception):
    """Raised at a checkpoint (by the mode, or by `on_checkpoint`): memory is
    dropped and the operation goes on from `blob`."""

    def __init__(self, blob: bytes):
        super().__init__("reload")
        self.blob = blob


def request(state: State, event: str, thread: str = MAIN_THREAD) -> CallbackRequest:
    """The live request for `event` of a waiting thread (AssertionError if none)."""
    found = state.thread(thread)
    assert found is not None, f"no thread {thread!r} in {[t.id for t in state.threads]}"
    for waiting in found.events:
        if waiting.event == event:
            return waiting.req
    raise AssertionError(f"thread {thread!r} does not wait for {event!r}: {found}")


def _waits_for(state: State, event: str, thread: str) -> CallbackRequest | None:
    found = state.thread(thread)
    if found is None or found.status is not ThreadStatus.WAITING_EVENT:
        return None
    return next((e.req for e in found.events if e.event == event), None)


def recorded_failure(state: State) -> GenflowError:
    """The error a FAILED instance's State records (what its caller was told)."""
    for thread in state.threads:
        if thread.error:
            return StepError(thread.stmt, thread.id, _recorded(thread.error))
        if thread.failures:  # a failure whose thread ended after its cleanup ran
            failure = thread.failures[-1]
            return StepError(failure.step, thread.id,
                             RecordedFailure(failure.type, failure.message))
        for event in thread.events:
            if event.error:
                return HandlerError("setup", event.event, thread.id, _recorded(event.error))
    return GenflowError(f"instance {state.id!r} failed")


def _recorded(text: str) -> RecordedFailure:
    """A thread's or an event's error text (`Type: message`, `error_text`) as the
    error it was, so that the caller is told it in the same words."""
    type_name, _, message = text.partition(": ")
    return RecordedFailure(type_name, message)


class Instance:
    """One instance in one of `MODES`; see the module docstring. `retry` and
    `handler_retry` are the policies the core applies to steps without one of
    their own and to handler set-ups and teardowns (default: the core's)."""

    def __init__(
        self,
        wf: Any,
        mode: str = "plain",
        *,
        instance_id: str = "i-1",
        clock: FakeClock | None = None,
        state: State | None = None,
        asynchronous: bool | None = None,
        retry: Retry | None = None,
        handler_retry: Retry | None = None,
        on_checkpoint: Callable[[CheckpointType], Any] | None = None,
        on_reload: Callable[[bytes, bool], Any] | None = None,
        parallel_steps: int = DEFAULT_PARALLEL_STEPS,
    ) -> None:
        if mode not in MODES:
            raise ArgumentError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.wf = wf
        self.state = new_state(instance_id, wf) if state is None else state
        self.clock = clock if clock is not None else FakeClock()
        self.retry = retry
        self.handler_retry = handler_retry
        self.parallel_steps = parallel_steps
        self.kinds: list[CheckpointType] = []
        #: called after each checkpoint is recorded; may raise to stop the operation
        self.on_checkpoint = on_checkpoint
        #: called with (blob, crashed) when an operation goes on from a loaded blob:
        #: a reload, or (crashed) what a store held when a call of user code crashed
        self.on_reload = on_reload
        #: context stamped on each recorded call: (operation number, mark a store held)
        self.context: Callable[[], tuple[int, int]] = lambda: (-1, 0)
        self.recorder = Recorder(self, has_async_code(wf) if asynchronous is None
                                 else asynchronous, lambda: self.context())
        try:
            start = self.blob()
        except SerializationError:  # the caller finds out when it saves
            start = b""
        self.checkpointed = start  # the blob at the last checkpoint
        self.saved = start  # what a store holds
        self._moves = 0
        self._limit = DEFAULT_MAX_MOVES
        self._seen = 0  # calls recorded at the last checkpoint
        self._delivered = False  # the delivery in progress got past its AFTER_EVENT
        #: what checkpointed user code asked the outbox for (`genflow.outbox`):
        #: starts, sends, children's starts and cancels, in order, as plain data
        self.outbox: list[Intent] = []
        self._op: Any = None

    @property
    def calls(self) -> list[Call]:
        return self.recorder.calls

    @property
    def finished(self) -> bool:
        return self.state.status in _FINAL

    def blob(self) -> bytes:
        return dumps(self.wf, self.state)

    def request(self, event: str, thread: str = MAIN_THREAD) -> CallbackRequest:
        return request(self.state, event, thread)

    # -- operations --------------------------------------------------------------------

    def resume(self, *, max_moves: int = DEFAULT_MAX_MOVES) -> None:
        """Move every thread on until blocked or finished (`runtime.resume`),
        with this mode's reloads and crashes; then a store saves the result."""
        self.between_operations()
        self._moves, self._limit = 0, max_moves
        self._moves_on(max_moves)
        self.saved = self.blob()

    def send(self, event: str, payload: Any = None, thread: str | None = None, *,
             keep: bool | None = None, max_moves: int = DEFAULT_MAX_MOVES) -> Any:
        """Send an event the way `Engine.send` does (`Operation.send`): delivered
        to the thread waiting for it (the handler, checkpoint AFTER_EVENT, then
        the moves; the handler's output), or, when none waits for it now, kept
        in the mailbox (checkpoint AFTER_MAILBOX; a `Kept`) and the instance
        moved on, which delivers it once a thread waits for it. `thread` (the
        main thread, when it waits for the event, if not given) addresses one
        thread. The payload is sent as over the wire (`Pizza(...)` as its mapping).
        A kept send that a reload or crash interrupted answers its `Kept`, even
        when the moves after it took the message (compare blobs, not answers)."""
        self.between_operations()
        payload = unstructure(payload)
        waits = _waits_for(self.state, event, MAIN_THREAD if thread is None else thread)
        req = waits or direct_request(self.state, event, thread)  # (a timer too: by hand)
        if req is not None:
            return self.send_request(req, payload, max_moves=max_moves)
        return self._keep(event, payload, thread, keep, max_moves)

    def _keep(self, event: str, payload: Any, thread: str | None, keep: bool | None,
              max_moves: int) -> Any:
        """A send that keeps the event: a crash before its save sends it again
        (as a sender whose request failed would); after it, the moves go on
        from what the store holds, as a worker's would."""
        self._moves, self._limit = 0, max_moves
        box = self.state.mailbox
        seq = 0 if box is None else box.sent
        while True:
            op = self._operation()
            try:
                output = self.recorder.drive(op.send(event, payload, thread=thread, keep=keep,
                                                     max_moves=max_moves))
                failure = op.failure
                break
            except ResumeFrom as reload:
                self._load(reload.blob, False)
            except CrashInCall:
                self._load(self.saved, True)
            box = self.state.mailbox
            if box is None or box.sent <= seq:
                continue  # the keep was lost with the process: sent again
            output = Kept(self.state.id, event, seq, len(box.kept))
            failure = self._moves_on(max_moves, keep=True)
            break
        self.saved = self.blob()
        if failure is not None:
            raise failure
        return output

    def send_request(self, req: CallbackRequest, payload: Any = None, *,
                     max_moves: int = DEFAULT_MAX_MOVES) -> Any:
        """`send` with a request of your own (a stale or forged one...). A crash
        inside the handler delivers the event again, as a sender whose request
        failed would; a failure of the moves after the event is raised once the
        event is saved."""
        self._moves, self._limit = 0, max_moves
        while True:
            self._delivered = False
            op = self._operation()
            try:
                output = self.recorder.drive(op.deliver(req, payload, max_moves))
                failure = op.failure
                break
            except ResumeFrom as reload:  # at AFTER_EVENT or later: the event is in
                self._load(reload.blob, False)
            except CrashInCall:
                self._load(self.saved, True)
                if not self._delivered:
                    continue  # the handler's work was lost with the process: again
            output = self.recorder.handled
            failure = self._moves_on(max_moves, keep=True)
            break
        self.saved = self.blob()
        if failure is not None:
            raise failure
        return output

    def fire_due(self, *, max_moves: int = DEFAULT_MAX_MOVES) -> list[tuple[str, str]]:
        """Fire the timers due at the clock's time, as the engine does (each
        waiting thread's earliest), then move on; the (thread, event) pairs fired."""
        self.between_operations()
        self._moves, self._limit = 0, max_moves
        first = len(self.calls)
        now = self.clock()
        while True:
            op = self._operation()
            try:
                self.recorder.drive(op.fire_due(now, max_moves))
                failure = op.failure
                break
            except ResumeFrom as reload:  # the timers not fired yet fire on the next try
                self._load(reload.blob, False)
            except CrashInCall:
                self._load(self.saved, True)
            if self.finished or not self._timers_due(now):
                failure = None if self.finished else self._moves_on(max_moves, keep=True)
                break
        self.saved = self.blob()
        if failure is not None:
            raise failure
        return [(c.thread, c.name) for c in self.calls[first:] if c.kind == "handle" and c.ok]

    def _timers_due(self, now: _dt.datetime) -> bool:
        return any(e.due is not None and e.due <= now and e.status is WaitEventStatus.SETUP
                   for t in self.state.threads if t.status is ThreadStatus.WAITING_EVENT
                   or t.status is ThreadStatus.WAITING_CONDITION for e in t.events)

    def cancel(self, *, max_moves: int = DEFAULT_MAX_MOVES) -> None:
        """Cancel the instance (`runtime.cancel`: cancellation reaches every
        thread, which runs its cleanup), with this mode's reloads and crashes:
        after one, cancelling again goes on where it stood."""
        self.between_operations()
        self._moves, self._limit = 0, max_moves
        while True:
            op = self._operation()
            try:
                self.recorder.drive(op.cancel(max_moves))
                failure = op.failure
                break
            except ResumeFrom as reload:
                self._load(reload.blob, False)
            except CrashInCall:
                self._load(self.saved, True)
            if self.finished:
                failure = None
                break
        self.saved = self.blob()
        if failure is not None:
            raise failure

    def handle_callback(self, event: str, payload: Any = None,
                        thread: str = MAIN_THREAD) -> Any:
        """Run the event's handler alone (`genflow.handle_callback`: no
        checkpoint, no moves; call `resume` after); returns its output."""
        self.between_operations()
        return self.handle_request(self.request(event, thread), unstructure(payload))

    def handle_request(self, req: CallbackRequest, payload: Any = None) -> Any:
        while True:
            try:
                output = self.recorder.drive(self._operation().callback(req, payload))
                break
            except CrashInCall:
                self._load(self.saved, True)
        self.saved = self.blob()
        return output

    def retry_due(self) -> _dt.datetime | None:
        """When the earliest failed step or handler is due to be tried again."""
        due = [t.retry_at for t in self.state.threads if t.retry_at is not None]
        due.extend(e.retry_at for t in self.state.threads for e in t.events
                   if e.retry_at is not None)
        return min(due) if due else None

    def _operation(self) -> Any:
        self._op = operation(self.wf, self.state, self._checkpoint, self.clock,
                             retry=self.retry, handler_retry=self.handler_retry,
                             parallel_steps=self.parallel_steps)
        return self._op

    # -- child workflows (`Child`, `Children`): their ends, faked --

    def finish_child(self, statement: str, data: Any, index: int = 0, *,
                     thread: str = MAIN_THREAD) -> None:
        """Child number `index` of the wait `statement` finished with `data` (an
        instance of its workflow, as it would be at its end): its report
        reaches the wait, as the engine's relay delivers it."""
        req, child_id = self._child(statement, index, thread)
        self.send_request(req, unstructure(ChildReport(
            index, child_id, workflow_name(data), "finished", unstructure(data))))

    def fail_child(self, statement: str, error: str = "it failed", index: int = 0, *,
                   workflow: str = "", status: str = "failed",
                   thread: str = MAIN_THREAD) -> None:
        """Child number `index` of the wait `statement` failed (or, with
        `status="cancelled"`, was cancelled) with `error`: the wait fails with
        `ChildFailed`, which the parent's Try may catch."""
        req, child_id = self._child(statement, index, thread)
        self.send_request(req, unstructure(ChildReport(index, child_id, workflow, status,
                                                       error=error)))

    def _child(self, statement: str, index: int, thread: str) -> tuple[CallbackRequest, str]:
        self.between_operations()
        found = self.state.thread(thread)
        if found is None or found.stmt != statement or not found.events:
            raise GenflowError(f"thread {thread!r} does not wait at {statement!r} for children")
        event = found.events[0]
        ids = child_ids(event.req.setup_data)
        if not 0 <= index < len(ids):
            raise GenflowError(f"{statement!r} started {len(ids)} children: no number {index}")
        return event.req, ids[index]

    def _moves_on(self, max_moves: int, keep: bool = False) -> GenflowError | None:
        """Resume until blocked, going on from each reload or crash; with `keep`,
        what the moves fail with is returned rather than raised."""
        while True:
            try:
                self.recorder.drive(self._operation().resume(max_moves))
                return None
            except ResumeFrom as reload:
                self._load(reload.blob, False)
            except CrashInCall:
                self._load(self.saved, True)
            except FAILURES as exc:
                if keep:
                    return exc
                raise
            if self.finished:
                return None
            if self.state.status is WorkflowStatus.FAILED:
                # the crash came right after the failure was saved: what a caller then
                # learns is the failed State, so the run reports it as raised
                failure = recorded_failure(self.state)
                if keep:
                    return failure
                raise failure

    # -- modes ---------------------------------------------------------------------------

    def between_operations(self) -> None:
        """What happens between two operations: in reload and crash modes, a
        save and load (checked to lose nothing)."""
        if self.mode != "plain":
            blob = self.blob()
            self._round_trip(blob, None)
            self.wf, self.state = loads(blob)

    def _load(self, blob: bytes, crashed: bool) -> None:
        self.wf, self.state = loads(blob)
        if self.on_reload is not None:
            self.on_reload(blob, crashed)

    def _checkpoint(self, kind: CheckpointType) -> None:
        self.kinds.append(kind)
        if kind is CheckpointType.AFTER_EVENT:
            self._delivered = True
        blob = self.blob()
        self.checkpointed = blob
        if kind.durable:
            self.saved = blob
            if self._op is not None and self._op.outbox.intents:  # written with the save
                self.outbox.extend(self._op.outbox.take())
        if self.on_checkpoint is not None:
            self.on_checkpoint(kind)
        calls = self.recorder.calls
        since, self._seen = self._seen, len(calls)
        if self.mode == "plain" or any(not c.ok for c in calls[since:]):
            return  # (after a failed attempt the core raises or retries next: let it)
        if self.mode == "reload" and self.state.status is WorkflowStatus.FAILED:
            return  # the instance failed: the core raises next (a crash here is crash mode's)
        self._moves += 1
        if self._moves >= self._limit:  # the core's own count restarts at each reload
            raise MoveLimitError(
                f"instance {self.state.id!r} made {self._moves} moves in one operation "
                f"({self.mode} mode; a loop of steps that never waits?)")
        if self.mode == "reload":
            self._round_trip(blob, kind)
            raise ResumeFrom(blob)
        if kind.durable:  # crash: the process dies right after the save
            raise ResumeFrom(blob)

    def _round_trip(self, blob: bytes, kind: CheckpointType | None) -> None:
        wf, state = loads(blob)
        found = differences(self.wf, wf) + differences(self.state, state)
        if found:
            raise Unsaved(found, kind)
