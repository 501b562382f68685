"""The Engine: the pure core driven over a store, for processes that run for months.

An `Engine` starts instances, delivers events, fires timers and runs due work.
It moves an instance only while it holds that instance's *lease* in the store,
and every write is a compare-and-swap on the instance's version, so two
engines (threads, processes, machines) never move one instance at once.

Durability guarantee (what is saved when):

* after every step, handler setup/teardown, condition handler and event: the
  instance is saved before anything else runs. A step that finished and was
  checkpointed never runs again;
* a step interrupted mid-run (crash, lost lease) runs again: steps are *at
  least once*. Inside a step, `genflow.current_step().idempotency_key` is the
  same for every re-run of that execution: pass it to outside systems;
* moves that only navigate (`AFTER_RESUME`) are not saved on their own: they
  are recomputed identically from the last save.

Each operation is written once, as a generator of core calls (`_Core`); the
sync API runs it with `_run`, the async API (for `async def` steps and
handlers) with `_run_async`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
import time
import uuid
from collections.abc import Callable, Generator, Iterable
from typing import Any

import attrs

from genflow import runtime
from genflow.clock import system_clock
from genflow.codec import dumps, loads, unstructure
from genflow.errors import (
    ConcurrencyError,
    GenflowError,
    HandlerError,
    MoveLimitError,
    NotWaitingError,
    StepError,
    UnknownEventError,
    UnknownThreadError,
    UnknownWorkflowError,
    WorkflowFinishedError,
)
from genflow.registry import registered, workflow_class, workflow_name
from genflow.state import (
    CallbackRequest,
    CheckpointType,
    State,
    ThreadStatus,
    WaitEventStatus,
    WorkflowStatus,
    new_state,
)
from genflow.statements import Retry
from genflow.stores.base import InstanceRecord, JournalEntries, Records, Store
from genflow.validation import validate

__all__ = ["Engine", "Instance"]

_NOT_SAVED = frozenset({CheckpointType.AFTER_RESUME})
_PROGRESS = frozenset({CheckpointType.AFTER_STEP, CheckpointType.AFTER_CONDITION})
# Handler set-ups and teardowns still to (re)try: the instance needs the engine now.
_HANDLER_WORK = frozenset({WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP_ERROR,
                           WaitEventStatus.PENDING_TEARDOWN, WaitEventStatus.TEARDOWN_ERROR})


@attrs.frozen
class Instance:
    """An instance as the engine sees it: its data, State and stored bookkeeping."""

    id: str
    workflow: str
    status: WorkflowStatus
    data: Any
    state: State
    version: int
    attempts: int = 0
    error: str = ""
    wake_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None


# -- core calls, run by a sync or an async driver -------------------------------------------


@attrs.frozen
class _Core:
    """A call into the pure core: `name` is resume, handle_callback or cancel."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = attrs.field(factory=dict)


_SYNC: dict[str, Callable[..., Any]] = {
    "resume": runtime.resume,
    "handle_callback": runtime.handle_callback,
    "cancel": runtime.cancel,
    "move": runtime.move,
}
_ASYNC: dict[str, Callable[..., Any]] = {
    "resume": runtime.resume_async,
    "handle_callback": runtime.handle_callback_async,
    "cancel": runtime.cancel_async,
    "move": runtime.move_async,
}
_Ops = Generator[_Core, Any, Any]


def _run(op: _Ops) -> Any:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(value)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            value = _SYNC[call.name](*call.args, **call.kwargs)
        except BaseException as exc:
            error, value = exc, None


async def _run_async(op: _Ops) -> Any:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(value)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            value = await _ASYNC[call.name](*call.args, **call.kwargs)
        except BaseException as exc:
            error, value = exc, None


# -- the engine ------------------------------------------------------------------------------


class Engine:
    """Run workflows over a store.

    `workflows` are the registered classes this engine may load (default: every
    registered workflow). `clock` is injectable so timers can be tested with a
    `FakeClock`. `default_retry` applies to steps without their own `Retry`
    (default: one attempt, so a failing step fails the instance at once).
    `journal=True` records every move in the store's journal (off by default).
    """

    def __init__(
        self,
        store: Store,
        workflows: Iterable[type] | None = None,
        *,
        clock: Callable[[], _dt.datetime] = system_clock,
        owner: str | None = None,
        lease_seconds: float = 60.0,
        default_retry: Retry | None = None,
        handler_retry: Retry | None = None,
        journal: bool = False,
        max_moves: int = runtime.DEFAULT_MAX_MOVES,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = _dt.timedelta(seconds=lease_seconds)
        self.default_retry = default_retry or Retry(attempts=1)
        self.handler_retry = handler_retry or Retry(
            attempts=1_000_000, backoff=1.0, max_backoff=300
        )
        self.journal = journal
        self.max_moves = max_moves
        self.workflows: dict[str, type] | None = (
            None if workflows is None else {workflow_name(cls): cls for cls in workflows}
        )
        # Instances this engine saved as due while it held them: it wakes the
        # other workers when it lets them go (`_release`), not at every save.
        self._left_due: set[str] = set()

    # -- public sync API --

    def start(self, data: Any, *, id: str | None = None, run: bool = True) -> str:
        """Start an instance of `data`'s workflow; returns its id.

        With `run` (the default) the instance moves at once until it waits;
        otherwise it is left due for a worker. A duplicate id raises
        `DuplicateInstanceError`.
        """
        return _run(self._start(data, id, run))

    def send(
        self,
        instance_id: str,
        event: str,
        payload: Any = None,
        *,
        thread: str | None = None,
        pc: int | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """Deliver `event` with `payload`, then move the instance until it waits.

        Atomic: on any error (unknown event, payload that does not fit, a
        handler that raises...) nothing is saved. `thread` picks the thread when
        several wait for the same event; `pc` (from a `CallbackRequest`) makes a
        stale delivery fail. Returns what the handler returned (unstructured).
        """
        return _run(self._send(instance_id, event, payload, thread, pc, timeout))

    def deliver(self, req: CallbackRequest, payload: Any = None, *, timeout: float = 30.0) -> Any:
        """`send` for a `CallbackRequest` an outside system was given at setup."""
        return self.send(
            req.instance_id, req.event, payload, thread=req.thread_id, pc=req.pc, timeout=timeout
        )

    def cancel(self, instance_id: str, *, timeout: float = 30.0) -> None:
        """Cancel an instance, tearing down the handlers it has set up."""
        _run(self._cancel(instance_id, timeout))

    def move(self, instance_id: str, thread: str, statement: str, *,
             timeout: float = 30.0) -> None:
        """Operator: make `statement` (a Step, Wait or WaitFor) the next stop of
        `thread`, tearing down what it has set up, then move the instance on.

        Refused with `MoveError` (nothing changed) when that thread has no such
        statement or a thread cannot stand there. Recorded in the journal even
        when the journal is off: repairs are always on record.
        """
        _run(self._move(instance_id, thread, statement, timeout))

    def run_due(self, limit: int = 100) -> int:
        """Move every instance whose work is due now (resumes, retries, timers),
        up to `limit`; returns how many were processed."""
        return _run(self._run_due(limit))

    # -- public async API --

    async def start_async(self, data: Any, *, id: str | None = None, run: bool = True) -> str:
        return await _run_async(self._start(data, id, run))

    async def send_async(
        self,
        instance_id: str,
        event: str,
        payload: Any = None,
        *,
        thread: str | None = None,
        pc: int | None = None,
        timeout: float = 30.0,
    ) -> Any:
        return await _run_async(self._send(instance_id, event, payload, thread, pc, timeout))

    async def cancel_async(self, instance_id: str, *, timeout: float = 30.0) -> None:
        await _run_async(self._cancel(instance_id, timeout))

    async def move_async(self, instance_id: str, thread: str, statement: str, *,
                         timeout: float = 30.0) -> None:
        await _run_async(self._move(instance_id, thread, statement, timeout))

    async def run_due_async(self, limit: int = 100) -> int:
        return await _run_async(self._run_due(limit))

    # -- reading --

    def get(self, instance_id: str) -> Instance:
        """The instance's data, State and bookkeeping (no lease needed)."""
        return self._instance(self.store.get(instance_id))

    def list(
        self, *, workflow: str | None = None, status: WorkflowStatus | str | None = None,
        waiting: str | None = None, limit: int | None = None, after: str | None = None,
    ) -> Records:
        """Stored records filtered by workflow, status and an event they wait
        for (blobs not decoded)."""
        status_value = status.value if isinstance(status, WorkflowStatus) else status
        return self.store.list(workflow=workflow, status=status_value, waiting=waiting,
                               limit=limit, after=after)

    def retry(self, instance_id: str, *, timeout: float = 30.0) -> None:
        """Operator: make a FAILED instance due again (its failing step runs again)."""
        record = self._acquire(instance_id, timeout)
        try:
            wf, state = self._load(record)
            if state.status is not WorkflowStatus.FAILED and not record.error:
                raise GenflowError(
                    f"instance {instance_id!r} has not failed (it is {state.status.value})"
                )
            state.status = WorkflowStatus.RESUMING
            state.update_status()
            record = self._save(record, wf, state, attempts=0, error="", wake_at=self.clock())
            self._record(record.id, [("retry", {"by": self.owner})], repair=True)
        finally:
            self._release(instance_id)

    def work(
        self,
        *,
        stop: Callable[[], bool] | None = None,
        idle_sleep: float = 1.0,
        until_idle: bool = False,
        batch: int = 100,
    ) -> int:
        """The worker loop: run due work until `stop()` is true (or, with
        `until_idle`, until nothing is due now). Returns instances processed."""
        total = 0
        while stop is None or not stop():
            done = self.run_due(batch)
            total += done
            if done:
                continue
            if until_idle:
                return total
            next_wake = self.store.next_wake(self.runs())
            pause = idle_sleep
            if next_wake is not None:
                left = (next_wake - self.clock()).total_seconds()
                # Due but nothing claimed: other workers hold it. They wake us when
                # they let it go, and a dead one's lease expires: no hot polling.
                if left > 0:
                    pause = min(pause, left)
            self.store.wait_wake(pause)
        return total

    # -- operations, written once for both drivers --

    def _start(self, data: Any, instance_id: str | None, run: bool) -> _Ops:
        name = workflow_name(data)
        self._class(name)  # this engine must know the workflow
        validate(data)
        instance_id = instance_id or uuid.uuid4().hex
        state = new_state(instance_id, data)
        now = self.clock()
        record = self.store.create(
            InstanceRecord(
                id=instance_id, workflow=name, status=state.status.value,
                blob=dumps(data, state, check=True), wake_at=now,
            ),
            lease_owner=self.owner if run else None,
            lease_until=now + self.lease if run else None,
        )
        self._record(instance_id, [("start", {"data": unstructure(data)})])
        if run:
            try:
                record = yield from self._advance(record, data, state, release=True)
            finally:
                self._release(instance_id, record)
        else:
            self.store.notify_wake()  # due now: an idle worker may take it at once
        return instance_id

    def _send(
        self, instance_id: str, event: str, payload: Any, thread_id: str | None,
        pc: int | None, timeout: float,
    ) -> _Ops:
        record = self._acquire(instance_id, timeout)
        try:
            wf, state = self._load(record)
            req = _request_for(state, event, thread_id)
            if pc is not None:
                req = attrs.evolve(req, pc=pc)
            output = yield _Core("handle_callback", (req, wf, state, payload))
            self._record(instance_id, [("event", {"event": event, "thread": req.thread_id,
                                                  "payload": payload})])
            if not self.store.grouping():  # grouped: the resume's final save covers it
                record = self._save(record, wf, state, attempts=0, error="")
            record = yield from self._advance(record, wf, state, release=True)
        finally:
            self._release(instance_id, record)
        return unstructure(output)

    def _cancel(self, instance_id: str, timeout: float) -> _Ops:
        record = self._acquire(instance_id, timeout)
        try:
            wf, state = self._load(record)
            saver = _Saver(self, record, wf, state)
            try:
                yield _Core("cancel", (wf, state, saver))
            finally:
                saver.flush()
            self._record(instance_id, [("cancel", {"by": self.owner})], repair=True)
        finally:
            self._release(instance_id)

    def _move(self, instance_id: str, thread_id: str, statement: str, timeout: float) -> _Ops:
        record = self._acquire(instance_id, timeout)
        try:
            wf, state = self._load(record)
            thread = state.thread(thread_id)
            was = "" if thread is None else thread.stmt
            saver = _Saver(self, record, wf, state)  # saves each teardown as it happens
            yield _Core("move", (wf, state, thread_id, statement, saver), {"clock": self.clock})
            self._record(instance_id, [("move", {"thread": thread_id, "from": was,
                                                 "to": statement, "by": self.owner})],
                         repair=True)
            record = self._save(saver.record, wf, state, attempts=0, error="")
            record = yield from self._advance(record, wf, state, release=True)
        finally:
            self._release(instance_id, record)

    def _run_due(self, limit: int) -> _Ops:
        now = self.clock()
        records = self.store.claim_due(self.owner, now, now + self.lease, limit,
                                       workflows=self.runs())
        for record in records:
            latest = record
            try:
                wf, state = self._load(record)
                if state.status is WorkflowStatus.CANCELLED:
                    yield from self._cancel_leased(record, wf, state)
                else:
                    latest = yield from self._fire_timers(record, wf, state)
            except ConcurrencyError:
                pass  # someone else moved it first; their write stands
            except GenflowError as exc:
                self._fail(record, exc)
            finally:
                self._release(record.id, latest)
        return len(records)

    def _cancel_leased(self, record: InstanceRecord, wf: Any, state: State) -> _Ops:
        saver = _Saver(self, record, wf, state)
        try:
            yield _Core("cancel", (wf, state, saver))
        except HandlerError:
            pass  # recorded on the event; retried with backoff
        finally:
            saver.flush()

    def _fire_timers(self, record: InstanceRecord, wf: Any, state: State) -> _Ops:
        """Fire every due timer (each thread's earliest), then resume."""
        now = self.clock()
        fired = False
        for thread in list(state.threads):
            if thread.status is not ThreadStatus.WAITING_EVENT:
                continue
            timers = [e for e in thread.events
                      if e.due is not None and e.due <= now and e.status is WaitEventStatus.SETUP]
            if timers:
                timer = min(timers, key=lambda e: e.due)  # type: ignore[arg-type, return-value]
                yield _Core("handle_callback", (timer.req, wf, state, None))
                self._record(record.id, [("timer", {"event": timer.event, "thread": thread.id})])
                fired = True
        if fired:
            record = self._save(record, wf, state, attempts=0, error="")
        return (yield from self._advance(record, wf, state, release=True))

    def _advance(self, record: InstanceRecord, wf: Any, state: State, *,
                 release: bool = False) -> _Ops:
        """Resume under the lease, saving at every durable checkpoint; returns
        the record as last saved. With `release` the operation ends here: its
        last save also drops the lease (one statement fewer; `_release` then
        has nothing to write)."""
        if state.status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED):
            return self._save(record, wf, state, release=release)
        if state.status is WorkflowStatus.FAILED:
            state.status = WorkflowStatus.RESUMING
        saver = _Saver(self, record, wf, state)
        try:
            yield _Core("resume", (wf, state, saver),
                        {"clock": self.clock, "max_moves": self.max_moves})
        except MoveLimitError:
            saver.flush(wake_at=self.clock(), release=release)
        except StepError as exc:
            saver.flush_failure(exc, exc.retry or self.default_retry, release=release)
        except HandlerError as exc:
            saver.flush_failure(exc, self.handler_retry, release=release)
        except GenflowError as exc:  # non-determinism, a broken definition: an operator must act
            saver.flush_failure(exc, None, release=release)
        else:
            saver.flush(release=release)
        return saver.record

    # -- helpers --

    def runs(self) -> set[str]:
        """The workflows this engine can run: it claims no one else's instances."""
        return set(registered() if self.workflows is None else self.workflows)

    def _class(self, name: str) -> type:
        if self.workflows is None:
            return workflow_class(name)
        try:
            return self.workflows[name]
        except KeyError:
            raise UnknownWorkflowError(f"this engine does not run workflow {name!r}") from None

    def _load(self, record: InstanceRecord) -> tuple[Any, State]:
        self._class(record.workflow)
        return loads(record.blob, self.workflows)

    def _instance(self, record: InstanceRecord) -> Instance:
        wf, state = self._load(record)
        return Instance(
            id=record.id, workflow=record.workflow, status=state.status, data=wf, state=state,
            version=record.version, attempts=record.attempts, error=record.error,
            wake_at=record.wake_at, updated_at=record.updated_at,
        )

    def _acquire(self, instance_id: str, timeout: float) -> InstanceRecord:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            now = self.clock()
            record = self.store.acquire(instance_id, self.owner, now, now + self.lease)
            if record is not None:
                return record
            if time.monotonic() >= deadline:
                raise ConcurrencyError(
                    f"instance {instance_id!r} is busy (leased by another worker) "
                    f"for over {timeout}s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def wake_at(self, state: State, now: _dt.datetime) -> _dt.datetime | None:
        """When an instance in `state` next needs the engine (None: only an event)."""
        if state.status in (WorkflowStatus.FINISHED, WorkflowStatus.FAILED):
            return None
        if state.status is WorkflowStatus.RESUMING:  # (first: the save after every step)
            return now
        pending = [e for t in state.threads for e in t.events if e.status in _HANDLER_WORK]
        if state.status is WorkflowStatus.CANCELLED:
            return now if pending else None
        if pending:
            return now
        dues = [e.due for t in state.threads for e in t.events
                if e.due is not None and e.status is WaitEventStatus.SETUP]
        return min(dues) if dues else None

    def _save(self, record: InstanceRecord, wf: Any, state: State, *,
              attempts: int | None = None, error: str | None = None,
              wake_at: Any = attrs.NOTHING, release: bool = False) -> InstanceRecord:
        now = self.clock()  # one reading per save (the system clock costs ~0.25 us a call)
        if wake_at is attrs.NOTHING:
            wake_at = self.wake_at(state, now)
            if wake_at is not None and record.wake_at is not None \
                    and record.wake_at <= wake_at <= now:
                wake_at = record.wake_at  # already due: keep it (no index update per step)
        waiting: tuple[str, ...] = ()
        if any(t.status is ThreadStatus.WAITING_EVENT for t in state.threads):  # not after a step
            waiting = tuple(sorted({e.event for t in state.threads for e in t.events
                                    if t.status is ThreadStatus.WAITING_EVENT}))
        new = record.replace(
            status=state.status.value, blob=dumps(wf, state), wake_at=wake_at,
            waiting_for=waiting,
            attempts=record.attempts if attempts is None else attempts,
            error=record.error if error is None else error,
        )
        saved = self.store.save(new, expected_version=record.version, lease_owner=self.owner,
                                previous=record, release=release)
        if wake_at is not None and wake_at <= now:
            self._left_due.add(record.id)
        else:
            self._left_due.discard(record.id)
        return saved

    def _release(self, instance_id: str, record: InstanceRecord | None = None) -> None:
        """Let go of an instance; if it is left due, wake idle workers now (while
        this engine held the lease, no one else could have taken it). `record`
        is the instance as this engine last wrote it: if that write already
        dropped the lease (`_advance(release=True)`), there is nothing to write."""
        if record is None or record.lease_owner is not None:
            self.store.release(instance_id, self.owner)
        if instance_id in self._left_due:
            self._left_due.discard(instance_id)
            self.store.notify_wake()

    def _fail(self, record: InstanceRecord, exc: BaseException) -> None:
        """The instance cannot even be loaded: record why, stop waking it."""
        with contextlib.suppress(GenflowError):
            self.store.save(
                attrs.evolve(record, error=f"{type(exc).__name__}: {exc}", wake_at=None,
                             attempts=record.attempts + 1),
                expected_version=record.version, lease_owner=self.owner,
            )

    def _record(self, instance_id: str, entries: JournalEntries, *,
                repair: bool = False) -> None:
        if self.journal or repair:
            self.store.append_journal(instance_id, entries, self.clock())


class _Saver:
    """The checkpoint callback of one resume: saves at durable checkpoints and
    keeps the record (and its version) current."""

    __slots__ = ("dirty", "engine", "record", "state", "wf")

    def __init__(self, engine: Engine, record: InstanceRecord, wf: Any, state: State):
        self.engine = engine
        self.record = record
        self.wf = wf
        self.state = state
        self.dirty = False

    def __call__(self, kind: CheckpointType) -> None:
        engine = self.engine
        if engine.journal:
            engine._record(self.record.id, [(kind.value, _positions(self.state))])
        if kind in _NOT_SAVED or engine.store.grouping():  # (grouped: saved at the end)
            self.dirty = True
            return
        if kind in _PROGRESS:  # real progress clears a failure streak
            self.record = engine._save(self.record, self.wf, self.state, attempts=0, error="")
        else:  # set-ups and teardowns keep counting, so their backoff grows
            self.record = engine._save(self.record, self.wf, self.state)
        self.dirty = False

    def flush(self, *, release: bool = False, **overrides: Any) -> None:
        if self.dirty or overrides or self.record.attempts:
            if not overrides:
                overrides = {"attempts": 0, "error": ""}
            self.record = self.engine._save(self.record, self.wf, self.state, release=release,
                                            **overrides)
            self.dirty = False

    def flush_failure(self, exc: GenflowError, policy: Retry | None, *,
                      release: bool = False) -> None:
        """Record a failure: retry after a backoff, or mark the instance FAILED."""
        engine = self.engine
        attempts = self.record.attempts + 1
        error = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__ or exc
        if policy is not None and attempts < policy.attempts and policy.retries(cause):
            wake_at = engine.clock() + _dt.timedelta(seconds=policy.delay(attempts))
        else:
            self.state.status = WorkflowStatus.FAILED
            wake_at = None
        engine._record(self.record.id, [("failure", {"error": error, "attempt": attempts})])
        self.record = engine._save(self.record, self.wf, self.state, attempts=attempts,
                                   error=error, wake_at=wake_at, release=release)


def _positions(state: State) -> dict[str, Any]:
    return {"threads": [[t.id, t.stmt, t.status.value, t.pc] for t in state.threads],
            "status": state.status.value}


def _request_for(state: State, event: str, thread_id: str | None) -> CallbackRequest:
    """The request of the (single) thread waiting for `event`, with a clear error if none."""
    if state.status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED):
        raise WorkflowFinishedError(f"instance {state.id!r} is {state.status.value}")
    candidates = [
        (t, e) for t in state.threads for e in t.events
        if e.event == event and (thread_id is None or t.id == thread_id)
    ]
    if not candidates:
        if thread_id is not None and state.thread(thread_id) is None:
            raise UnknownThreadError(f"instance {state.id!r} has no live thread {thread_id!r}")
        waiting = {t.id: [e.event for e in t.events] for t in state.threads
                   if t.status is ThreadStatus.WAITING_EVENT}
        if not waiting:
            raise NotWaitingError(
                f"instance {state.id!r} is not waiting for any event (status {state.status.value})"
            )
        raise UnknownEventError(
            f"instance {state.id!r} does not wait for {event!r}; it waits for {waiting}"
        )
    if len(candidates) > 1:
        raise UnknownEventError(
            f"threads {[t.id for t, _ in candidates]} all wait for {event!r}: pass thread=..."
        )
    return candidates[0][1].req
