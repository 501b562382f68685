"""The Engine: the pure core driven over a store, for processes that run for months.

An `Engine` starts instances, delivers events, fires timers and runs due work.
It moves an instance only while it holds that instance's *lease* in the store,
and every write is a compare-and-swap on the instance's version, so two
engines (threads, processes, machines) never move one instance at once.

Durability guarantee (what is saved when):

* at every durable checkpoint (`CheckpointType.durable`: after a step, a
  failed attempt, a handler setup/teardown, a condition handler, an event) the
  instance is saved before anything else runs. A step that finished and was
  checkpointed never runs again;
* a step interrupted mid-run (crash, lost lease) runs again: steps are *at
  least once*. Inside a step, `genflow.current_step().idempotency_key` is the
  same for every re-run of that execution: pass it to outside systems;
* moves that only navigate (`AFTER_RESUME`) are not saved on their own: they
  are recomputed identically from the last save;
* under the async API, steps of different threads run at once, each on its
  own copy of the data: a save made while some run holds none of their
  writes, and a crash then drops them: they run again.

The core decides every move, retries and failures included; the engine adds
the store. Each engine operation is one generator that loads the instance,
`yield from`s one core operation (`genflow.runtime.Operation`), and saves at its
checkpoints (`_Saver`); it is driven by the core's own `drive` (the sync API)
or `drive_async` (the async API, for `async def` steps and handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as _dt
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any

import attrs

from genflow.children import child_effects
from genflow.clock import Deadline, checked_clock, checked_deadline, system_clock
from genflow.codec import check_payload, dumps, loads, unstructure
from genflow.errors import (
    ArgumentError,
    ConcurrencyError,
    CorruptStateError,
    DuplicateInstanceError,
    EventError,
    GenflowError,
    HandlerError,
    InstanceFailedError,
    InstanceNotFoundError,
    MoveLimitError,
    NothingToRetryError,
    ResultTimeoutError,
    StepError,
    StoreError,
    StoreUnavailableError,
    UnknownWorkflowError,
    WorkflowFinishedError,
    error_text,
    step_where,
)
from genflow.lease import KEEPER
from genflow.mailbox import DEFAULT_SIZE, Kept
from genflow.observe import Observer, current_traceparent, fields
from genflow.queues import Queues
from genflow.registry import registered, workflow_class, workflow_name
from genflow.relay import Relay
from genflow.retention import RetentionRunner
from genflow.runtime import (
    CANCEL,
    DEFAULT_MAX_MOVES,
    DEFAULT_PARALLEL_STEPS,
    NEXT,
    ONCE,
    Operation,
    begin_call,
    call_once,
    cancel_flights,
    drive,
    drive_async,
    finish_call,
    landing,
    request_for,
    reset_failures,
    steps_at_once,
)
from genflow.schedules import Schedules
from genflow.state import (
    CallbackRequest,
    CheckpointType,
    Message,
    State,
    ThreadStatus,
    WaitEventStatus,
    WorkflowStatus,
    checked_id,
    new_state,
    unretryable,
)
from genflow.statements import Retry
from genflow.stores.base import InstanceRecord, JournalEntries, Records, Store, new_record
from genflow.stores.retry import Backoff
from genflow.validation import validate
from genflow.wire import storable_key

__all__ = ["Engine", "Instance"]

log = logging.getLogger("genflow.engine")
_worker_log = logging.getLogger("genflow.worker")
#: waits between attempts while the store fails (a database restarting, a full disk)
_STORE_BACKOFF = Backoff(first=0.5, factor=2.0, cap=30.0)

_Ops = Generator[Any, Any, Any]
#: a worker round's turns (`Engine._turns`): it yields (an operation's entry, a call
#: of its user code), and is sent the call's (value, exception)
_Turns = Generator[tuple[list[Any], Any], tuple[Any, BaseException | None], None]
_FINAL = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)
_FAILED = WorkflowStatus.FAILED
_WAITING_EVENT = ThreadStatus.WAITING_EVENT
_SETUP = WaitEventStatus.SETUP
_SETUP_ERROR = WaitEventStatus.SETUP_ERROR
_UNWINDING = ThreadStatus.UNWINDING
_RESUMING = WorkflowStatus.RESUMING
#: threads that move as soon as a worker runs them (a step to run, a thread to move on)
_CAN_MOVE = (ThreadStatus.EXECUTING, ThreadStatus.RESUMING, ThreadStatus.UNWINDING)
#: how long a save waits for others to share its commit in a worker round, at
#: most (`Engine._together`): user code that takes as long has them saved first
_SHARE_BUDGET = 0.001
#: the statuses `Engine.list` filters by
_STATUS_VALUES = frozenset(s.value for s in WorkflowStatus)
#: the statuses a passed deadline cancels: not a finished or cancelled instance,
#: nor a failed one (an operator's; retried past its deadline, it is cancelled then)
_BEFORE_DEADLINE = (WorkflowStatus.RESUMING, WorkflowStatus.WAITING)


@attrs.frozen
class Instance:
    """An instance as the engine sees it: its data, State and stored bookkeeping.

    `waiting_for` is the events its threads wait for now, timers' names too
    (as `Engine.list`'s records and the HTTP API's instance give them): what a
    caller checks before it sends."""

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
    waiting_for: tuple[str, ...] = ()


class Engine:
    """Run workflows over a store.

    `workflows` are the registered classes this engine may load (default: every
    registered workflow). `clock` is injectable so timers can be tested with a
    `FakeClock`. `default_retry` applies to steps without their own `Retry`
    (default: one attempt, so a failing step fails the instance at once);
    `handler_retry` to handler set-ups and teardowns (default: retried forever,
    backing off to five minutes). `journal=True` records every move in the
    store's journal, and each step run and handler call with its start, end
    and attempt (off by default). `mailbox_size` bounds the messages an
    instance keeps for events no thread waits for yet (docs/mailbox.md).
    `parallel_steps` bounds how many steps of one instance the async API runs
    at once (1: one at a time, as the sync API; see "Steps at once" in
    docs/statements.md). `otel=False` keeps OpenTelemetry out of this engine
    even when it is installed (`genflow.observe`); `tracer_provider` and
    `meter_provider` are the OpenTelemetry providers to use instead of the
    global ones (as instrumentations take them). `share_commits` (on by
    default) lets a worker round's instances share commits (`_turns`, under
    `run_due` and `run_due_async`, watched or not; off: each save its own
    commit).
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
        max_moves: int = DEFAULT_MAX_MOVES,
        mailbox_size: int = DEFAULT_SIZE,
        parallel_steps: int = DEFAULT_PARALLEL_STEPS,
        otel: bool = True,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        share_commits: bool = True,
    ) -> None:
        #: worker rounds move their instances side by side, sharing commits
        #: (`_together`; docs/stores.md, "Speed of the store")
        self.share_commits = share_commits
        if type(mailbox_size) is not int or mailbox_size < 0:
            raise ArgumentError(f"mailbox_size is a count of messages (0 or more), not "
                                f"{mailbox_size!r}")
        self.mailbox_size = mailbox_size
        if type(parallel_steps) is not int or parallel_steps < 1:
            raise ArgumentError(f"parallel_steps is a number of steps, at least 1 (1: one at "
                                f"a time), not {parallel_steps!r}")
        self.parallel_steps = parallel_steps
        if isinstance(store, str):
            raise ArgumentError(f"Engine takes a store, not its URL: "
                                f"Engine(open_store({store!r}))")
        if not hasattr(store, "create"):  # duck-typed: a test's proxy of a store is one
            raise ArgumentError(f"Engine takes a store (open_store(url), MemoryStore()), "
                                f"not {store!r}")
        self.store = store
        self.clock = checked_clock(clock)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)) \
                or not lease_seconds > 0:
            raise ArgumentError(f"lease_seconds is a number of seconds above 0, not "
                                f"{lease_seconds!r}")
        self.lease = _dt.timedelta(seconds=lease_seconds)
        for name, policy in (("default_retry", default_retry), ("handler_retry", handler_retry)):
            if policy is not None and not isinstance(policy, Retry):
                hint = f": {name}=Retry(attempts={policy})" if type(policy) is int else ""
                raise ArgumentError(f"{name} takes a genflow.Retry (or None), not "
                                    f"{policy!r}{hint}")
        self.default_retry = default_retry or ONCE
        self.handler_retry = handler_retry or Retry(attempts=None, backoff=1.0, max_backoff=300)
        self.journal = journal
        if type(max_moves) is not int or max_moves < 1:
            raise ArgumentError(f"max_moves is a number of moves, at least 1, not {max_moves!r}")
        self.max_moves = max_moves
        if isinstance(workflows, (str, type)):  # one name or one class, not a list of them
            raise ArgumentError(f"workflows is a list of workflow classes "
                                f"(Engine(store, workflows=[Order])), not {workflows!r}")
        self.workflows: dict[str, type] | None = (
            None if workflows is None else {workflow_name(cls): cls for cls in workflows}
        )
        # Instances this engine saved as due while it held them: it wakes the
        # other workers when it lets them go (`_release`), not at every save.
        self._left_due: set[str] = set()
        #: schedules, queues and retention (genflow.schedules, .queues, .retention)
        self.schedules = Schedules(self)
        self.queues = Queues(self)
        self.retention = RetentionRunner(self)
        #: the transactional outbox's relay (genflow.relay)
        self.outbox = Relay(self)
        self._queue_wake: _dt.datetime | None = None
        #: logs, spans, metrics and the journal's timings (genflow.observe)
        self.observer = Observer(self, otel=otel, tracer_provider=tracer_provider,
                                 meter_provider=meter_provider)

    # -- public sync API --

    def start(self, data: Any, *, id: str | None = None, run: bool = True,
              queue: str | None = None, priority: int = 0,
              if_exists: str = "raise", deadline: Deadline = None) -> str:
        """Start an instance of `data`'s workflow; returns its id.

        With `run` (the default) the instance moves at once until it waits;
        otherwise it is left due for a worker. A duplicate id raises
        `DuplicateInstanceError`; with `if_exists="return"` it returns the id
        of the instance that exists instead, untouched (`data` is not compared
        with it: the first start's data won; an instance of another workflow
        under that id is still refused). With `queue`, it waits until that
        queue admits it (`genflow.queues`; lower `priority` first), then a
        worker runs it.

        `deadline` (DBOS's workflow timeout, Temporal's execution timeout): an
        aware datetime, or a duration from now by the engine's clock (a
        `timedelta`, or seconds). If the instance has not finished by then, a
        worker cancels it as `cancel` does, its cleanup running, and says so
        in the journal. A deadline that is not later than now, a naive
        datetime or a duration beyond `MAX_DEADLINE` is an `ArgumentError`
        with nothing written. It is the first start's: `if_exists="return"`
        leaves an existing instance's as it is (docs/failure.md, "Deadlines").
        """
        return drive(self._relaying(self._start(data, id, run, queue, priority, if_exists,
                                                deadline=deadline)),
                     self.observer.watching())

    def send(
        self,
        instance_id: str,
        event: str,
        payload: Any = None,
        *,
        thread: str | None = None,
        pc: int | None = None,
        keep: bool | None = None,
        start: Any = None,
        timeout: float = 30.0,
        deadline: Deadline = None,
    ) -> Any:
        """Deliver `event` with `payload`, then move the instance until it waits.

        Atomic: on any error (unknown event, payload that does not fit, a
        handler that raises, data the handler left unserialisable...) nothing
        is saved. `thread` picks the thread when several wait for the same
        event; `pc` (from a `CallbackRequest`) makes a stale delivery fail.
        Returns what the handler returned, as it returned it (an attrs object
        stays one: `genflow.codec.unstructure` makes it plain for a wire).
        Timers are fired by the clock only: sending a timer's name is refused.

        An event no thread waits for now (or one behind older kept messages
        of its event) is kept in the instance's mailbox, in order, and
        delivered when a thread waits for it; `send` then returns a
        `genflow.mailbox.Kept` (or the handler's output, when the moves of
        this call delivered it). `keep=False` refuses it instead, as the
        event's `On(keep=...)` or the workflow's default may; an event no
        statement of the workflow can ever wait for is refused either way,
        with the list of its events. A `pc` is one wait's request: never kept.

        `start` (data of the instance's workflow) is signal-with-start: when no
        instance `instance_id` exists, it is started from `start` with this
        event already kept, in one write, and run until it waits; `deadline`
        is that start's (as `start` takes it), and leaves an instance that
        exists as it is.
        """
        return drive(self._relaying(self._send(instance_id, event, payload, thread, pc,
                                               timeout, keep, start, deadline=deadline)),
                     self.observer.watching())

    def deliver(self, req: CallbackRequest, payload: Any = None, *, timeout: float = 30.0) -> Any:
        """`send` for a `CallbackRequest` an outside system was given at setup."""
        _checked_request(req)
        return self.send(
            req.instance_id, req.event, payload, thread=req.thread_id, pc=req.pc, timeout=timeout
        )

    def cancel(self, instance_id: str, *, timeout: float = 30.0) -> None:
        """Cancel an instance, tearing down the handlers it has set up.

        Each thread's cleanup (`Catch(errors=Cancelled)` and `Finally` bodies)
        runs in this call; the instance is CANCELLED when this returns, or
        CANCELLING while a cleanup waits (a step's retry, an event, a timer),
        which workers and events then carry on (a second `cancel` does not
        start it over). A teardown that fails does not make `cancel` raise: it
        is recorded on its event, logged as a warning (logger `genflow.engine`),
        and retried by workers with the engine's `handler_retry` policy
        (`genflow show` lists it); the instance is CANCELLING until that retry
        succeeds, then CANCELLED (it takes no events meanwhile). Refused with
        nothing changed when the instance has finished, or when the definition
        no longer has a handler it must tear down (`NonDeterminismError`).
        """
        drive(self._relaying(self._cancel(instance_id, timeout)), self.observer.watching())

    def move(self, instance_id: str, thread: str, statement: str, *,
             timeout: float = 30.0) -> None:
        """Operator: make `statement` (a Step, Wait or WaitFor) the next stop of
        `thread`, tearing down what it has set up, then move the instance on.

        Refused with `MoveError` (nothing changed) when that thread has no such
        statement or a thread cannot stand there. Recorded in the journal even
        when the journal is off: repairs are always on record.
        """
        drive(self._relaying(self._move(instance_id, thread, statement, timeout)),
              self.observer.watching())

    def run_due(self, limit: int = 100) -> int:
        """Move every instance whose work is due now (resumes, retries, timers),
        up to `limit`; returns how many were processed. An instance that cannot
        be run at all (a corrupt blob, a row and blob that disagree) is marked
        failed with the reason and skipped until an operator acts."""
        _checked_limit(limit)
        watch = self.observer.watching()
        if self.store.grouping() or not self.share_commits:
            return drive(self._relaying(self._run_due(limit)), watch)
        moved = self._run_round(limit, watch)
        drive(self.outbox.after(), watch)  # the relay of the outbox rows the round committed
        return moved

    # -- public async API --

    async def start_async(self, data: Any, *, id: str | None = None, run: bool = True,
                          queue: str | None = None, priority: int = 0,
                          if_exists: str = "raise", deadline: Deadline = None) -> str:
        return await drive_async(self._relaying(self._start(data, id, run, queue, priority,
                                                            if_exists, deadline=deadline)),
                                 self.observer.watching())

    async def send_async(
        self,
        instance_id: str,
        event: str,
        payload: Any = None,
        *,
        thread: str | None = None,
        pc: int | None = None,
        keep: bool | None = None,
        start: Any = None,
        timeout: float = 30.0,
        deadline: Deadline = None,
    ) -> Any:
        return await drive_async(self._relaying(self._send(instance_id, event, payload, thread,
                                                           pc, timeout, keep, start,
                                                           deadline=deadline)),
                                 self.observer.watching())

    async def deliver_async(self, req: CallbackRequest, payload: Any = None, *,
                            timeout: float = 30.0) -> Any:
        _checked_request(req)
        return await self.send_async(req.instance_id, req.event, payload, thread=req.thread_id,
                                     pc=req.pc, timeout=timeout)

    async def cancel_async(self, instance_id: str, *, timeout: float = 30.0) -> None:
        await drive_async(self._relaying(self._cancel(instance_id, timeout)),
                          self.observer.watching())

    async def move_async(self, instance_id: str, thread: str, statement: str, *,
                         timeout: float = 30.0) -> None:
        await drive_async(self._relaying(self._move(instance_id, thread, statement, timeout)),
                          self.observer.watching())

    async def run_due_async(self, limit: int = 100) -> int:
        """`run_due` for async user code: the same round, its instances' saves
        sharing commits (`_together_async`), their async steps and handlers
        awaited one after another."""
        _checked_limit(limit)
        watch = self.observer.watching()
        if self.store.grouping() or not self.share_commits:
            return await drive_async(self._relaying(self._run_due(limit)), watch)
        moved = await self._run_round_async(limit, watch)
        await drive_async(self.outbox.after(), watch)  # (as `run_due`)
        return moved

    # -- reading --

    def get(self, instance_id: str) -> Instance:
        """The instance's data, State and bookkeeping (no lease needed)."""
        return self._instance(self.store.get(checked_id(instance_id)))

    def result(self, instance_id: str, *, timeout: float | None = None,
               until: Callable[[Any], Any] | None = None) -> Any:
        """Wait until the instance has finished; its data, as `get(...).data`.

        Temporal's `handle.result()`, DBOS's `get_result()`: the caller waits
        while workers (of this process or of others on the same store) move
        the instance; `result` itself moves nothing and writes nothing. It
        raises `InstanceFailedError` (with the instance's error) when the
        instance fails, since it then waits for an operator (`retry`), and
        `WorkflowFinishedError` when it was cancelled: it has no result.
        `timeout` is in seconds of wall time (whatever the engine's clock, a
        `FakeClock` too); past it, `ResultTimeoutError`, and the instance is
        as it was. An id no instance has is `InstanceNotFoundError` at once.

        `until`, a function of the data, waits for what a running instance
        publishes instead (DBOS's `get_event`: a step sets a field, the caller
        reads it): the data as soon as `until(data)` holds, finished or not.
        An instance that finished without it ever holding is
        `WorkflowFinishedError` (waiting longer would not help).
        """
        pauses = _pauses(timeout, until)
        while True:
            data = self._result(instance_id, until)
            if data is not _NO_RESULT:
                return data
            pause = next(pauses)
            if pause is None:
                raise ResultTimeoutError(_no_result(instance_id, timeout, until))
            time.sleep(pause)

    async def result_async(self, instance_id: str, *, timeout: float | None = None,
                           until: Callable[[Any], Any] | None = None) -> Any:
        """`result`, waiting with `asyncio.sleep` between its reads of the store."""
        pauses = _pauses(timeout, until)
        while True:
            data = self._result(instance_id, until)
            if data is not _NO_RESULT:
                return data
            pause = next(pauses)
            if pause is None:
                raise ResultTimeoutError(_no_result(instance_id, timeout, until))
            await asyncio.sleep(pause)

    def _result(self, instance_id: str, until: Callable[[Any], Any] | None) -> Any:
        """One read of `result`: the data it answers, or `_NO_RESULT` (not yet)."""
        if until is None:
            record = self._ended(instance_id)
            return _NO_RESULT if record is None else self._instance(record).data
        record = self.store.get(checked_id(instance_id))
        data = self._instance(record).data
        if until(data):
            return data
        if record.status == _FINISHED_VALUE:
            raise WorkflowFinishedError(
                f"instance {instance_id!r} finished and the condition it was waited for never "
                "held: it never will")
        self._ended(instance_id)  # a failed or cancelled instance raises, as without `until`
        return _NO_RESULT

    def _ended(self, instance_id: str) -> InstanceRecord | None:
        """The instance's record once it has finished (None while it has not
        ended); a failed or cancelled instance raises, as `result` says."""
        record = self.store.get(checked_id(instance_id))
        status = record.status
        if status == _FINISHED_VALUE:
            return record
        if status == _FAILED.value:
            raise InstanceFailedError(
                f"instance {instance_id!r} failed: {record.error or 'see genflow show'}; "
                "an operator retries it (Engine.retry, genflow retry), then wait again")
        if status == WorkflowStatus.CANCELLED.value:
            raise WorkflowFinishedError(f"instance {instance_id!r} was cancelled: it has no "
                                        "result")
        return None

    def list(
        self, *, workflow: str | None = None, status: WorkflowStatus | str | None = None,
        waiting: str | None = None, limit: int | None = None, after: str | None = None,
        parent: str | None = None,
    ) -> Records:
        """Stored records filtered by workflow, status and an event they wait
        for (blobs not decoded); with `parent`, only that instance's children
        (`genflow.children`), in the order they were started. A workflow or an
        event no store could keep (a NUL, a lone surrogate) selects nothing;
        `after` such a text is an `ArgumentError` (no page ends with it)."""
        status_value = status.value if isinstance(status, WorkflowStatus) else status
        if status_value is not None and status_value not in _STATUS_VALUES:
            raise ArgumentError(f"status is one of {', '.join(sorted(_STATUS_VALUES))}, not "
                                f"{status!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 0):
            raise ArgumentError(f"limit is a count of 0 or more (or None: all), not {limit!r}")
        for what, text in (("workflow", workflow), ("waiting", waiting), ("after", after)):
            if text is not None and not isinstance(text, str):
                raise ArgumentError(f"{what} is a text, not {text!r}")
        if parent is not None:
            checked_id(parent)  # InvalidIdError, whatever the other filters
        if any(text is not None and not storable_key(text) for text in (workflow, waiting)):
            return []  # (no store holds it: PostgreSQL would refuse the query, a StoreError)
        if after and not storable_key(after):
            raise ArgumentError(f"after is the id the previous page ended with (valid UTF-8 "
                                f"text, no NUL), not {after!r}")
        if parent is not None:
            found = []
            for child, _ in self.store.children(parent):  # (checked above)
                try:
                    record = self.store.get(child)
                except GenflowError:
                    continue  # purged since
                if (workflow is None or record.workflow == workflow) and \
                        (status_value is None or record.status == status_value) and \
                        (waiting is None or waiting in record.waiting_for) and \
                        (after is None or record.id > after):
                    found.append(record)
            return found if limit is None else found[:limit]
        return self.store.list(workflow=workflow, status=status_value, waiting=waiting,
                               limit=limit, after=after)

    def retry(self, instance_id: str, *, timeout: float = 30.0) -> None:
        """Operator: make a FAILED instance due again; its failed step (or
        handler) runs again, with its whole retry policy."""
        record = self._acquire(instance_id, timeout)
        saved = record
        try:
            wf, state = self._load(record)
            if state.status is not _FAILED and not record.error:
                raise NothingToRetryError(
                    f"instance {instance_id!r} has not failed (it is {state.status.value}): "
                    "there is nothing to retry")
            if unretryable(state):
                raise NothingToRetryError(
                    f"instance {instance_id!r} cannot be retried: a failure nothing caught "
                    "ended its thread after the thread's Catch and Finally bodies ran, so there "
                    "is no step to run again; cancel it, or move the thread to a statement")
            reset_failures(state)
            state.update_status()
            saved = self._save(record, wf, state, error="", wake_at=self.clock(), release=True)
            self._record(record.id, [("retry", {"by": self.owner})], repair=True)
        finally:
            self._release(instance_id, saved)

    def work(
        self,
        *,
        stop: Callable[[], bool] | None = None,
        idle_sleep: float = 1.0,
        until_idle: bool = False,
        until_done: bool = False,
        batch: int = 100,
    ) -> int:
        """The worker loop: run due work until `stop()` is true, or until there
        is none left. Returns how many instances it processed (ticks fired,
        admissions and purged rows included).

        Each round first fires the schedules' due ticks (`genflow.schedules`),
        admits queued instances (`genflow.queues`) and, at most every
        `retention.every`, applies the retention policies (`genflow.retention`);
        then it runs the due instances.

        * `until_idle`: return once nothing this engine runs is due now, nor due
          within `idle_sleep` seconds. Work due sooner (a retry after its
          backoff, a timer about to fire, an instance another worker holds) is
          waited for and run; instances that only wait for events, and timers
          further off, leave the worker idle. So does a schedule's next tick,
          however near: the ticks due now fire, and a schedule every second
          would otherwise keep the worker busy for ever.
        * `until_done`: return once no instance this engine runs has any due
          work left (none has a `wake_at`: each finished, failed or waits for
          an event); until then sleep until the next wake, however far. The
          two exclude each other (`ArgumentError`, as for any bad argument,
          before anything runs).

        Between rounds the worker sleeps at most `idle_sleep` seconds (less
        when work falls due sooner), waking early when another process
        signals new work (`Store.notify_wake`). It sleeps on its clock when
        the clock can sleep (`FakeClock.sleep` jumps ahead: `until_done`
        then runs a day of timers at once), else on the store.

        The store's troubles (`StoreError`: a database restarting, locked or
        unreachable, a full disk) never end the loop: each failed round is
        logged on `genflow.worker` (a warning with the attempt and the wait)
        and retried after a capped exponential backoff (0.5 s doubling to
        30 s). An instance claimed before the failure is never lost: its lease
        expires and a worker claims it again.
        """
        loop = self._worker(stop, idle_sleep, until_idle, until_done, batch)
        watch = self.observer.watching()
        reply: Any = None  # (what the loop is sent: a round's count, or its StoreError)
        while True:
            try:
                request = loop.throw(reply) if isinstance(reply, StoreError) else \
                    loop.send(reply)
            except StopIteration as end:
                return int(end.value)
            if request is None:
                try:
                    reply = drive(self._housekeeping(), watch) + self.run_due(batch)
                except StoreError as exc:
                    reply = exc
            else:
                self._sleep(request)
                reply = 0

    async def work_async(
        self,
        *,
        stop: Callable[[], bool] | None = None,
        idle_sleep: float = 1.0,
        until_idle: bool = False,
        until_done: bool = False,
        batch: int = 100,
    ) -> int:
        """`work` for workflows with `async def` steps or handlers: the same loop
        (the same parameters, decisions and return value), its rounds run by
        the async API (`run_due_async`; the schedules' cancels and the outbox
        relay by `drive_async` too), so async user code is awaited on this
        event loop. Its sleeps leave the loop free: on a clock that can sleep
        it jumps as `work`'s does, else it waits on the store
        (`Store.wait_wake`, woken by `notify_wake`) in a thread of the
        loop's executor. A round's saves share commits as under `work`
        (`_together_async`), its instances' async steps and handlers awaited
        one after another (each instance's own steps at once, as
        `parallel_steps` allows); `stop` is a plain function, called before
        each round as `work` calls it."""
        loop = self._worker(stop, idle_sleep, until_idle, until_done, batch)
        watch = self.observer.watching()
        reply: Any = None  # (what the loop is sent: a round's count, or its StoreError)
        while True:
            try:
                request = loop.throw(reply) if isinstance(reply, StoreError) else \
                    loop.send(reply)
            except StopIteration as end:
                return int(end.value)
            if request is None:
                try:
                    reply = (await drive_async(self._housekeeping(), watch)
                             + await self.run_due_async(batch))
                except StoreError as exc:
                    reply = exc
            else:
                await self._sleep_async(request)
                reply = 0

    def _worker(self, stop: Callable[[], bool] | None, idle_sleep: float, until_idle: bool,
                until_done: bool, batch: int) -> Generator[float | None, int, int]:
        """The worker loop's decisions, carried out by `work` and `work_async`:
        it yields None for "run a round" (sent back: how many it processed; a
        `StoreError` of the round is thrown in) or a number of seconds to
        sleep; it returns the total."""
        if stop is not None and not callable(stop):
            raise ArgumentError(f"stop is a function the loop calls before each round (True: "
                                f"stop now), not {stop!r}")
        _checked_limit(batch)
        if type(until_idle) is not bool or type(until_done) is not bool:
            raise ArgumentError(f"until_idle and until_done are True or False, not "
                                f"{until_idle!r} and {until_done!r}")
        if until_idle and until_done:
            raise ArgumentError("give until_idle (return when nothing is due soon) or "
                                "until_done (sleep to each next wake until none is left), "
                                "not both")
        if isinstance(idle_sleep, bool) or not isinstance(idle_sleep, (int, float)) \
                or not 0 <= idle_sleep < math.inf:
            raise ArgumentError(f"idle_sleep is a number of seconds, not {idle_sleep!r}")
        if idle_sleep == 0 and not (until_idle or until_done):
            raise ArgumentError("idle_sleep=0 would poll the store with no pause, for ever: "
                                "give it seconds above 0 (or until_idle=True)")
        total = 0
        failures = 0
        while stop is None or not stop():
            try:
                done = yield None
                # (a schedule never runs out of ticks: until_idle and until_done fire
                # the ticks due now, and wait for none to come, or they would not end)
                next_wake = None if done else self._next_wake(until_idle or until_done)
            except StoreError as exc:
                failures += 1
                wait = _STORE_BACKOFF.delay(failures)
                _worker_log.warning(
                    "worker %s: the store failed (attempt %d): %s; next attempt in %.1fs",
                    self.owner, failures, exc, wait,
                    extra=fields(attempt=failures, wait=wait, error=type(exc).__name__))
                yield wait
                continue
            if failures:
                _worker_log.info("worker %s: the store works again after %d failed attempt(s)",
                                 self.owner, failures, extra=fields(attempts=failures))
                failures = 0
            total += done
            if done:
                continue
            if next_wake is None:
                if until_idle or until_done:
                    return total
                pause = idle_sleep
            else:
                left = (next_wake - self.clock()).total_seconds()
                if until_idle and left > idle_sleep:
                    return total
                if left <= 0:
                    # Due but nothing claimed: other workers hold it. They wake us when
                    # they let it go, and a dead one's lease expires: no hot polling.
                    pause = idle_sleep
                elif until_done and hasattr(self.clock, "sleep"):
                    pause = left  # no one else makes work appear while a fake clock jumps
                else:
                    pause = min(idle_sleep, left)
            yield pause
        return total

    def _housekeeping(self) -> _Ops:
        """The worker's round before it runs instances: fire due schedule ticks
        (cancelling the previous runs their overlap policy ends), admit queued
        instances, apply retention (at most every so often), relay the outbox
        rows left for any worker. One operation, driven by `drive` or
        `drive_async`: a cancel's teardowns and a relayed event's handlers
        may be async."""
        done = 0
        for name, part in (("schedules", self.schedules.firing), ("queues", self._admit),
                           ("retention", self._retain), ("outbox", self._relay_due)):
            try:
                done += yield from part()
            except StoreError:
                raise  # the store itself is down: the worker loop waits for it
            except Exception as exc:  # a bug there must not end the worker loop
                _worker_log.error("worker %s: %s failed: %s: %s", self.owner, name,
                                  type(exc).__name__, exc,
                                  extra=fields(error=type(exc).__name__))
        return done

    def _relay_due(self) -> _Ops:
        """The outbox rows left for any worker (a relay that died, a retry due)."""
        return self._relaying(self.outbox.run())

    def _relaying(self, ops: _Ops) -> _Ops:
        """An operation, then the relay of the outbox rows it committed."""
        result = yield from ops
        yield from self.outbox.after()
        return result

    def _admit(self) -> _Ops:
        yield from ()  # (no user code: a part of `_housekeeping` all the same)
        admission = self.queues.admit()
        self._queue_wake = admission.next_at
        return len(admission.admitted)

    def _retain(self) -> _Ops:
        yield from ()  # (no user code)
        return self.retention.run_if_due()

    def _next_wake(self, instances_only: bool) -> _dt.datetime | None:
        """When the worker next has something to do: an instance's wake, a queue's
        rate limit letting one more in, a schedule's tick (not with `until_done` or
        `until_idle`, which wait for instances only: a schedule never runs out of
        ticks)."""
        wakes = [self.store.next_wake(self.runs()), self._queue_wake,
                 self.store.next_outbox_due()]
        if not instances_only:
            wakes.append(self.schedules.next_due(self.clock()))
        present = [w for w in wakes if w is not None]
        return min(present) if present else None

    def _sleep(self, seconds: float) -> None:
        """The worker's wait: on the clock when it can sleep (a FakeClock jumps),
        else on the store (woken early by `notify_wake`)."""
        sleep = getattr(self.clock, "sleep", None)
        if sleep is not None:
            sleep(seconds)
        else:
            self.store.wait_wake(seconds)

    async def _sleep_async(self, seconds: float) -> None:
        """`_sleep` leaving the event loop free: a FakeClock jumps (and the loop
        runs its other tasks once), the store's wait runs in a thread."""
        sleep = getattr(self.clock, "sleep", None)
        if sleep is not None:
            sleep(seconds)
            await asyncio.sleep(0)
        else:
            await asyncio.to_thread(self.store.wait_wake, seconds)

    # -- operations, one generator each, driven by the core's drivers --

    def _operation(self, wf: Any, state: State, checkpoint: Any) -> Operation:
        op = Operation(wf, state, checkpoint, self.clock, retry=self.default_retry,
                       handler_retry=self.handler_retry,
                       parallel_steps=self.parallel_steps)
        op.outbox.exists = self._exists
        if self.observer.api is not None:  # what it starts joins the asking step's trace
            op.outbox.traceparent = current_traceparent
        if isinstance(checkpoint, _Saver):
            if checkpoint.op is not None and checkpoint.op.unseen:
                checkpoint.dirty = True  # (the navigations of the op before this one)
            checkpoint.op = op  # its saves write what the op's user code asked for
            # navigations only mark it dirty, unless they are journalled or logged
            op.durable_only = not (checkpoint.debug or self.journal)
        return op

    def _exists(self, instance_id: str) -> bool:
        """Is there such an instance (an outbox send's target)?"""
        try:
            self.store.get(checked_id(instance_id))
        except InstanceNotFoundError:
            return False
        return True

    def _start(self, data: Any, instance_id: str | None, run: bool, queue: str | None = None,
               priority: int = 0, if_exists: str = "raise", mail: Any = None,
               deadline: Deadline = None) -> _Ops:
        """Start an instance; `mail` (event, payload, thread) is signal-with-start's
        event, kept in the new State before its first write (it returns what
        `send` returns then, or `_EXISTS` when the instance exists)."""
        if if_exists not in ("raise", "return"):
            raise ArgumentError(f"if_exists is 'raise' or 'return', not {if_exists!r}")
        if type(run) is not bool:  # ("no" is true: it would run)
            raise ArgumentError(f"run is True (move the instance until it waits) or False "
                                f"(leave it due for a worker), not {run!r}")
        if isinstance(data, type):
            raise ArgumentError(f"the data to start from is an instance of the workflow's class "
                                f"({data.__qualname__}(...)), not the class {data.__qualname__} "
                                f"itself")
        if queue is None and priority != 0:
            raise ArgumentError(f"priority={priority!r} orders a queue's admission: give the "
                                f"queue too (queue=...)")
        name = workflow_name(data)
        self._class(name)  # this engine must know the workflow
        instance_id = uuid.uuid4().hex if instance_id is None else checked_id(instance_id)
        validate(data)
        state = new_state(instance_id, data)
        if deadline is not None:
            state.deadline = checked_deadline(deadline, self.clock())
        watch = self.observer.begin("start", instance_id)
        try:
            self.observer.keep_trace(state)
            return (yield from self._started(data, state, name, run, queue, priority,
                                            if_exists, mail))
        finally:
            watch.end()

    def _started(self, data: Any, state: State, name: str, run: bool, queue: str | None,
                 priority: int, if_exists: str, mail: Any) -> _Ops:
        """`start`, the State made: signal-with-start's event kept in it, stored
        (or queued for admission), then run."""
        instance_id = state.id
        kept: Kept | None = None
        if mail is not None:  # the checks of a send, before anything is written
            event, payload, thread_id = mail
            try:
                check_payload(payload, event)
                kept = yield from self._operation(data, state, None).keep(
                    event, payload, thread=thread_id, keep=True,
                    limit=max(self.mailbox_size, 1))
            except EventError as refused:
                try:  # an instance that exists: its own definition decides, not `data`'s
                    self.store.get(instance_id)
                except InstanceNotFoundError:
                    raise refused from None
                self._same_workflow(instance_id, name)  # (another workflow's: refused)
                return _EXISTS
        now = self.clock()
        try:
            if queue is not None:  # it waits for admission: no wake_at, no lease
                self.queues.enqueue(InstanceRecord(
                    id=instance_id, workflow=name, status=state.status.value,
                    blob=dumps(data, state, check=True)), data, queue, priority)
                self._record(instance_id,
                             [("start", {"data": unstructure(data), "queue": queue})])
                self.store.notify_wake()
                return instance_id
            record = self.store.create(
                InstanceRecord(
                    id=instance_id, workflow=name, status=state.status.value,
                    blob=dumps(data, state, check=True), wake_at=now,
                ),
                lease_owner=self.owner if run else None,
                lease_until=now + self.lease if run else None,
            )
        except DuplicateInstanceError as exc:
            if mail is None and if_exists == "raise":
                raise DuplicateInstanceError(
                    f"{exc} (to have its id back instead, start with if_exists='return')"
                ) from None
            self._same_workflow(instance_id, name)
            return _EXISTS if mail is not None else instance_id
        entries: list[tuple[str, dict[str, Any]]] = [("start", {"data": unstructure(data)})]
        if mail is not None:
            entries.append(("event", {"event": mail[0], "thread": mail[2],
                                      "payload": unstructure(mail[1])}))
        self._record(instance_id, entries)
        if run:
            KEEPER.hold(self, instance_id)
            saver = _Saver(self, record, data, state)
            try:
                op = self._operation(data, state, saver)
                yield from op.run(self.max_moves)
                self._settle(saver, op)
            finally:
                self._release(instance_id, saver.record)
            if kept is not None and op.taken and kept.seq in op.taken:
                return op.taken[kept.seq]
        else:
            self.store.notify_wake()  # due now: an idle worker may take it at once
        return kept if kept is not None else instance_id

    def _same_workflow(self, instance_id: str, name: str) -> None:
        """`if_exists="return"` and signal-with-start take an existing instance
        only of the same workflow: another workflow's under that id is a mistake."""
        existing = self.store.get(instance_id)
        if existing.workflow != name:
            raise DuplicateInstanceError(
                f"instance {instance_id!r} exists, as an instance of workflow "
                f"{existing.workflow!r}, not {name!r}: choose another id")

    def _send(
        self, instance_id: str, event: str, payload: Any, thread_id: str | None,
        pc: int | None, timeout: float, keep: bool | None = None, start: Any = None, *,
        moves: bool = True, deadline: Deadline = None,
    ) -> _Ops:
        if pc is not None and (type(pc) is not int or pc < 0):
            raise ArgumentError(f"pc is a thread's counter (a CallbackRequest's pc, an int), "
                                f"not {pc!r}")
        if keep is not None and type(keep) is not bool:
            raise ArgumentError(f"keep is True (keep the event until a thread waits for it), "
                                f"False (refuse it) or None (as the workflow declares), not "
                                f"{keep!r}")
        if deadline is not None and start is None:
            raise ArgumentError("send(deadline=...) is the deadline of signal-with-start's "
                                "instance: give the data to start from too (start=...)")
        if start is not None:
            if pc is not None:
                raise ArgumentError("send(start=...) takes no pc: a new instance has no "
                                    "request to answer")
            sent = yield from self._start(start, instance_id, True,
                                          mail=(event, payload, thread_id), deadline=deadline)
            if sent is not _EXISTS:
                return sent
        watch = self.observer.begin("send", instance_id)
        try:
            record = self._acquire(instance_id, timeout)
        except InstanceNotFoundError as exc:
            watch.end()
            if start is not None or pc is not None:
                raise
            raise InstanceNotFoundError(  # Temporal's and DBOS's signal-with-start, in words
                f"{exc} (to start it with this event, send it with the data to start from: "
                f"start=...)") from None
        except BaseException:
            watch.end()
            raise
        saver = _Saver(self, record, None, None)
        try:
            wf, state = self._load(record)
            check_payload(payload, event)  # (before the journal's note unstructures it)
            saver.bind(wf, state)
            self.observer.keep_trace(state)
            op = self._operation(wf, state, saver)
            if pc is not None:  # one wait's request: delivered to it, or refused
                req = attrs.evolve(request_for(state, event, thread_id), pc=pc)
                saver.note(("event", {"event": event, "thread": req.thread_id,
                                      "payload": unstructure(payload)}))
                output = yield from op.deliver(req, payload,
                                                self.max_moves if moves else 0)
            else:
                saver.note(("event", {"event": event, "thread": thread_id,
                                      "payload": unstructure(payload)}))
                if record.wake_at is None and state.status is WorkflowStatus.RESUMING:
                    # its queue has not admitted it: kept, and left for the queue (not due)
                    output = yield from self._operation(wf, state, None).keep(
                        event, payload, thread=thread_id, keep=keep, limit=self.mailbox_size)
                    self._note_kept(saver, output)
                    saver.flush(release=True, wake_at=None)
                    return output
                output = yield from op.send(event, payload, thread=thread_id, keep=keep,
                                            limit=self.mailbox_size,
                                            max_moves=self.max_moves if moves else 0)
                self._note_kept(saver, output)
            self._settle(saver, op)
        finally:
            watch.end()
            self._release(instance_id, saver.record)
        return output

    def _cancel(self, instance_id: str, timeout: float) -> _Ops:
        watch = self.observer.begin("cancel", instance_id)
        saver = None
        try:
            record = self._acquire(instance_id, timeout)
            saver = _Saver(self, record, None, None)
            wf, state = self._load(record)
            saver.bind(wf, state)
            yield from self._cancel_moves(saver, wf, state)
            self._record(instance_id, [("cancel", {"by": self.owner})], repair=True)
        finally:
            watch.end()
            if saver is not None:
                self._release(instance_id, saver.record)

    def _cancel_moves(self, saver: _Saver, wf: Any, state: State, why: str = "") -> _Ops:
        """Cancel under the lease: teardowns that fail are retried later, by policy.
        `why` is what the threads' cleanup is told (`Operation.cancel`)."""
        op = self._operation(wf, state, saver)
        try:
            yield from op.cancel(why=why)
        except HandlerError as exc:  # out of attempts: given up, on record
            self._record(state.id, [("failure", {"error": str(exc)})])
        self._note_mailbox(saver, op)
        saver.flush(release=True)
        left = [f"{e.event!r} ({e.error})" for t in state.threads for e in t.events if e.error]
        if left:
            log.warning("instance %s is %s, but tearing down %s failed: retried by workers",
                        state.id, state.status.value, ", ".join(left),
                        extra=fields(state.id, state.workflow))

    def _deadline_passed(self, saver: _Saver, wf: Any, state: State) -> _Ops:
        """A worker found the instance past its deadline: it is cancelled as
        `cancel` cancels it (the deadline first, before any timer due with
        it), and the journal's entry, always written, goes in with the save
        that makes it CANCELLING."""
        assert state.deadline is not None
        when = state.deadline.isoformat()
        saver.note(("cancel", {"by": self.owner, "deadline": when}), repair=True)
        log.info("instance %s passed its deadline %s: cancelled", state.id, when,
                 extra=fields(state.id, state.workflow))
        yield from self._cancel_moves(saver, wf, state,
                                      f"the instance was cancelled: its deadline {when} passed")

    def _move(self, instance_id: str, thread_id: str, statement: str, timeout: float) -> _Ops:
        watch = self.observer.begin("move", instance_id)
        try:
            record = self._acquire(instance_id, timeout)
        except BaseException:
            watch.end()
            raise
        saver = _Saver(self, record, None, None)
        try:
            wf, state = self._load(record)
            saver.bind(wf, state)
            thread = state.thread(thread_id)
            was = "" if thread is None else thread.stmt
            op = self._operation(wf, state, saver)  # saves each teardown as it happens
            yield from op.move(thread_id, statement)
            self._record(instance_id, [("move", {"thread": thread_id, "from": was,
                                                 "to": statement, "by": self.owner})],
                         repair=True)
            saver.dirty = True
            op = self._operation(wf, state, saver)
            yield from op.run(self.max_moves)
            self._settle(saver, op)
        finally:
            watch.end()
            self._release(instance_id, saver.record)

    def _claim(self, limit: int) -> tuple[_dt.datetime, Records]:
        now = self.clock()
        return now, self.store.claim_due(self.owner, now, now + self.lease, limit,
                                         workflows=self.runs())

    def _run_due(self, limit: int) -> _Ops:
        now, records = self._claim(limit)
        for record in records:
            yield from self._due_one(record, now, shared=False)
        return len(records)

    def _run_round(self, limit: int, watch: Observer | None) -> int:
        """`run_due` of the sync API: the claimed instances move side by side,
        and the saves they reach together share one commit (`_together`);
        `watch` sees their step calls, as `drive`'s."""
        now, records = self._claim(limit)
        if len(records) < 2:
            for record in records:
                drive(self._due_one(record, now, shared=False), watch)
        else:
            self._together([self._due_one(record, now, shared=True) for record in records],
                           watch)
        return len(records)

    async def _run_round_async(self, limit: int, watch: Observer | None) -> int:
        """`_run_round` of the async API (`_together_async`)."""
        now, records = self._claim(limit)
        if len(records) < 2:
            for record in records:
                await drive_async(self._due_one(record, now, shared=False), watch)
        else:
            await self._together_async([self._due_one(record, now, shared=True)
                                        for record in records], watch)
        return len(records)

    def _due_one(self, record: InstanceRecord, now: _dt.datetime, *, shared: bool) -> _Ops:
        """Run one claimed instance's due work under the lease `claim_due` took.
        `shared`: its saves may share a commit with other instances' (`_together`)."""
        KEEPER.hold(self, record.id)
        if record.taken_from is not None:
            self.observer.took_over(record.id, record.workflow, record.taken_from)
        saver = _Saver(self, record, None, None)
        saver.shared = shared
        watch = None
        try:
            wf, state = self._load(record)
            saver.bind(wf, state)
            watch = self.observer.begin("run", record.id, state)
            if state.status is WorkflowStatus.CANCELLED:
                yield from self._cancel_moves(saver, wf, state)
            elif state.deadline is not None and state.deadline <= now \
                    and state.status in _BEFORE_DEADLINE:
                yield from self._deadline_passed(saver, wf, state)
            else:
                op = self._operation(wf, state, saver)
                fired = yield from op.fire_due(now, self.max_moves)
                yield (self._settle, (saver, op), None)  # (a save: `_together` groups it)
                if fired:
                    self._record(record.id, [("timer", {"event": event, "thread": thread})
                                             for thread, event in fired])
        except ConcurrencyError:
            pass  # someone else moved it first; their write stands
        except StoreError:
            raise  # the store itself is down: the worker loop waits for it
        except Exception as exc:  # one instance, whatever it raises, must not stop the worker
            self._quarantine(saver.record, exc)
        finally:
            if watch is not None:
                watch.end()
            self._release(record.id, saver.record)

    def _together(self, ops: Sequence[_Ops], watch: Observer | None) -> None:
        """Drive several instances' operations side by side, as `drive` drives
        one: the sync driver of `_turns`, each call of user code made in its
        operation's context (`runtime.call_once`, through `watch`)."""
        turns = self._turns(ops, at_once=False)
        try:
            entry, call = next(turns)
            while True:
                entry, call = turns.send(entry[3](call_once, call, watch))
        except StopIteration:
            return

    async def _together_async(self, ops: Sequence[_Ops], watch: Observer | None) -> None:
        """`_together` as `drive_async` drives one operation: the async driver of
        `_turns`. Each call of user code is awaited to its end before any other
        operation goes on (the operations of a round take turns; each one's own
        steps run at once, as under `drive_async`, in tasks of its own
        `flights`). A call begins in its operation's context
        (`runtime.begin_call`); what it leaves to await is awaited in a task of
        the event loop in that same context, so what it makes current (its
        span, `current_step`) stays that operation's across its awaits."""
        turns = self._turns(ops, at_once=True)
        task = asyncio.get_running_loop().create_task
        kept: list[dict[asyncio.Future[Any], Any]] = []  # each operation's flights
        failed: BaseException | None = None
        try:
            entry, call = next(turns)
            while True:
                flights = entry[5]
                if flights is None:
                    flights = entry[5] = {}
                    kept.append(flights)
                reply: tuple[Any, BaseException | None]
                try:
                    if call is NEXT:
                        reply = (await landing(flights), None)
                    elif call is CANCEL:
                        await cancel_flights(flights)
                        reply = (None, None)
                    else:
                        value, left = entry[3](begin_call, call, watch, flights)
                        if left is not None:  # (in a task: awaited in the operation's context)
                            value = await task(finish_call(left, call[2]), context=entry[4])
                        reply = (value, None)
                except BaseException as exc:
                    reply = (None, exc)
                entry, call = turns.send(reply)
        except StopIteration:
            pass
        except BaseException as exc:
            failed = exc  # (no await in an except block: docs/compiled.md)
        for flights in kept:  # a step an operation did not apply: a crash interrupted it
            if flights:
                await cancel_flights(flights)
        if failed is not None:
            raise failed

    def _turns(self, ops: Sequence[_Ops], *, at_once: bool) -> _Turns:
        """The turns of a worker round, for a driver (`_together`, `_together_async`):
        each turn, each operation runs until its next save (a durable
        checkpoint, or its last save), and the saves of a turn run in one
        transaction, so they share a commit. Each instance goes on only after
        its own save has committed (a commit that fails is raised into every
        operation whose save it held), so what a checkpoint guarantees does
        not change. The calls of user code are yielded, as (the operation's
        entry, the call), to the driver, which sends back their (value,
        exception); the saves are made here.

        While saves wait for the turn's commit, other instances' user code
        runs, and a crash then would run their finished steps again (at least
        once, as a crash in a step would). So the waiting is bounded: when
        user code is slow (the last call took `_SHARE_BUDGET` or more) or the
        oldest waiting save has waited that long, the waiting saves commit
        before the next user code runs. Quick steps share commits; slow ones
        are saved as they end, as one instance at a time would be.

        Each operation runs in a `contextvars` context of its own, a copy of
        the caller's: everything of it (its moves, its calls, its saves) runs
        inside it, so what it makes current stays its own while the others
        run between its turns: its `genflow.run` span (`Observer.begin`, the
        parent of its steps' spans, which `watch` makes current while each
        call runs), attached and detached in order in that context alone.
        `at_once`: the driver runs each operation's steps at once (the async
        one), so the core may yield `Start`, `NEXT` and `CANCEL`."""
        settle = self._settle
        live: list[list[Any]] = []
        for op in ops:
            context = contextvars.copy_context()
            context.run(steps_at_once, at_once)  # (what this driver does, whatever the caller's)
            # op, value, error, `run` of its context, the context, its flights
            live.append([op, None, None, context.run, context, None])
        clock = time.perf_counter
        budget = _SHARE_BUDGET
        slow = False
        try:
            while live:
                saves: list[tuple[list[Any], Any]] = []
                since = 0.0
                going = []
                for entry in live:
                    op, run = entry[0], entry[3]
                    while True:  # run this one until it reaches a save, or ends
                        value, error = entry[1], entry[2]
                        entry[1] = entry[2] = None
                        try:
                            call = run(op.throw, error) if error is not None else \
                                run(op.send, value)
                        except StopIteration:
                            break
                        if call is not NEXT and call is not CANCEL:  # (steps run at once)
                            fn = call[0]
                            if type(fn) is _Saver:
                                if call[1][0].durable:
                                    if not saves:
                                        since = clock()
                                    saves.append((entry, call))  # (a checkpoint that saves)
                                    going.append(entry)
                                    break
                                entry[1], entry[2] = run(call_once, call, None)  # (marks it dirty)
                                continue
                            if fn == settle:
                                if not saves:
                                    since = clock()
                                saves.append((entry, call))  # (its last save)
                                going.append(entry)
                                break
                        if saves and (slow or clock() - since >= budget):
                            self._save_together(saves)  # before user code: they waited enough
                            saves = []
                        began = clock()
                        entry[1], entry[2] = yield entry, call
                        slow = clock() - began >= budget
                live = going
                self._save_together(saves)
        finally:
            for entry in live:  # (an operation raised: the others stop, releasing)
                entry[3](entry[0].close)

    def _save_together(self, saves: Sequence[tuple[Any, Any]]) -> None:
        """Run the saves of a turn with one commit (`Store.saves_together`);
        each one's outcome goes back to its operation.

        A turn's commit holds whole saves only: a save that failed after
        writing part of itself (its row, then not its outbox rows), or a
        crash (an exception that is no `Exception`), rolls the whole turn
        back, and then no operation of the turn goes on as if saved: the one
        whose save failed gets its error, the others a `ConcurrencyError`
        (their instance runs again from its last committed save, at the next
        round). A save refused before it wrote anything (someone else's
        version or lease) leaves the others' standing, as alone."""
        if len(saves) == 1:
            entry, call = saves[0]
            entry[1], entry[2] = entry[3](call_once, call, None)  # (in its operation's context)
            return
        if not saves:
            return
        savers = [(entry, call, _saver_of(call)) for entry, call in saves]
        kept = [(entry, call, saver, saver.record) for entry, call, saver in savers]
        refused: dict[str, Exception] = {}
        try:
            with self.store.saves_together() as refused:
                for entry, call, saver, before in kept:
                    entry[1], entry[2] = entry[3](call_once, call, None)
                    error = entry[2]
                    if error is not None and (not isinstance(error, Exception)
                                              or saver.record is not before):
                        raise _TurnUndone(error)  # (the transaction rolls back)
        except BaseException as exc:  # not committed: no save of the turn stands
            undone = isinstance(exc, _TurnUndone)
            cause = exc.error if isinstance(exc, _TurnUndone) else exc
            crash = not isinstance(cause, Exception)
            for entry, _, saver, before in kept:
                saver.record = before  # (as stored: its release drops the lease)
                if crash:
                    entry[2] = cause
                elif before.id in refused:
                    entry[2] = refused[before.id]
                elif entry[2] is None:  # (a save of its own that failed keeps its error)
                    entry[2] = cause if not undone else ConcurrencyError(
                        f"instance {before.id!r}: its save was rolled back with its turn's "
                        f"({error_text(cause)}): it runs again")
                entry[1] = None
            return
        for entry, _, saver, before in kept:
            error = refused.get(before.id)
            if error is not None:  # put off by the store, then refused: nothing written
                saver.record = before
                entry[1], entry[2] = None, error

    def _note_kept(self, saver: _Saver, output: Any) -> None:
        if isinstance(output, Kept) and self.journal:
            saver.note(("kept", {"event": output.event, "seq": output.seq}))

    def _note_mailbox(self, saver: _Saver, op: Operation) -> None:
        """Put on record what the moves did with kept messages: each one set aside
        undelivered always (a signal not delivered is never silent), each one
        delivered when the journal is on."""
        if op.taken and self.journal:
            for seq in op.taken:
                saver.note(("taken", {"seq": seq}))
        box = op.state.mailbox
        if box is None or not box.undelivered:
            return  # (nothing set aside: no need to ask the operation which are new)
        for message in op.set_aside_since():
            saver.note(("undelivered", _message_entry(message)), repair=True)
            log.warning("instance %s: message %d (%r) is undelivered: %s", saver.record.id,
                        message.seq, message.event, message.reason,
                        extra=fields(saver.record.id, saver.record.workflow,
                                     thread_id=message.thread, event=message.event))

    def _run_one(self, instance_id: str) -> _Ops:
        """Move one instance on if it is due and free (the relay, after a delivery),
        as a worker's round would (`_due_one`); busy or not due, it is left to
        the workers."""
        now = self.clock()
        try:
            record = self.store.acquire(instance_id, self.owner, now, now + self.lease)
        except InstanceNotFoundError:
            return
        if record is None:
            return
        if record.wake_at is None or record.wake_at > now or record.workflow not in self.runs():
            self._release(instance_id, record)
            return
        yield from self._due_one(record, now, shared=False)

    def _settle(self, saver: _Saver, op: Operation) -> None:
        """Record how a core operation's moves ended (they ran under the lease,
        saved at every durable checkpoint, a refusal raised before anything was
        saved); the last save drops the lease."""
        state = saver.state
        assert state is not None
        self._note_mailbox(saver, op)
        failure = op.failure
        if failure is None:
            saver.flush(release=True)
        elif isinstance(failure, MoveLimitError):  # consistent: go on at the next round
            saver.flush(wake_at=self.clock(), release=True)
        elif isinstance(failure, (StepError, HandlerError)) and state.status is _FAILED:
            saver.flush(release=True)  # out of attempts: the core recorded it at a checkpoint
        else:  # a definition that no longer fits this instance: an operator must act
            state.status = _FAILED
            saver.flush(error=error_text(failure), wake_at=None, release=True)
        if failure is not None:
            self._record(state.id, [("failure", {"error": error_text(failure)})])
            self.observer.settled(state, failure)

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
            raise UnknownWorkflowError(
                f"this engine does not run workflow {name!r} (it runs "
                f"{', '.join(repr(w) for w in sorted(self.workflows)) or 'none'}; pass its "
                "class in Engine(workflows=...))") from None

    def _load(self, record: InstanceRecord) -> tuple[Any, State]:
        """The instance a row holds, checked against the row: a blob of another
        workflow or of another instance is refused (`CorruptStateError`), never run."""
        cls = self._class(record.workflow)
        try:
            wf, state = loads(record.blob, {record.workflow: cls})
        except CorruptStateError as exc:  # which instance, and what can be done
            raise CorruptStateError(
                f"instance {record.id!r} of workflow {record.workflow!r} cannot be loaded: "
                f"{exc} (workers skip it: repair its blob, or install the code that wrote "
                "it, then retry it)") from exc
        if state.id != record.id:
            raise CorruptStateError(
                f"row {record.id!r} holds the blob of instance {state.id!r}: it was copied "
                "from another row; restore this row's own blob")
        return wf, state

    def _instance(self, record: InstanceRecord) -> Instance:
        wf, state = self._load(record)
        return Instance(
            id=record.id, workflow=record.workflow, status=state.status, data=wf, state=state,
            version=record.version, attempts=record.attempts, error=record.error,
            wake_at=record.wake_at, updated_at=record.updated_at,
            waiting_for=tuple(record.waiting_for),
        )

    def _acquire(self, instance_id: str, timeout: float) -> InstanceRecord:
        """Take the instance's lease, waiting up to `timeout` seconds while another
        worker holds it or the store is unavailable (each failure logged, then
        retried with backoff: taking one's own lease again only extends it)."""
        instance_id = checked_id(instance_id)
        deadline = time.monotonic() + timeout
        pause = 0.001
        failures = 0
        while True:
            now = self.clock()
            try:
                record = self.store.acquire(instance_id, self.owner, now, now + self.lease)
            except StoreUnavailableError as exc:
                failures += 1
                wait = _STORE_BACKOFF.delay(failures)
                if time.monotonic() + wait >= deadline:
                    raise
                log.warning(
                    "instance %s: the store failed (attempt %d): %s; next attempt in %.1fs",
                    instance_id, failures, exc, wait,
                    extra=fields(instance_id, attempt=failures, wait=wait))
                time.sleep(wait)
                continue
            if record is not None:
                KEEPER.hold(self, instance_id)  # renewed while a long step runs
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
        status = state.status
        if status is WorkflowStatus.RESUMING:  # (first: the save after every step)
            return now
        if status is WorkflowStatus.FINISHED or status is _FAILED:
            return None
        cancelled = status is WorkflowStatus.CANCELLED
        cancelling = status is WorkflowStatus.CANCELLING
        wakes = []
        if state.deadline is not None and not (cancelled or cancelling):
            wakes.append(state.deadline)  # (a worker cancels it then: `_deadline_passed`)
        for thread in state.threads:
            if thread.retry_at is not None:
                wakes.append(thread.retry_at)
            elif cancelling and not thread.events and thread.status in _CAN_MOVE:
                wakes.append(now)  # cleanup left to run (a crash stopped it): go on with it
            for event in thread.events:
                if event.retry_at is not None:
                    wakes.append(event.retry_at)
                elif event.status is _SETUP:
                    if event.due is not None and not cancelled:
                        wakes.append(event.due)
                else:  # a setup or teardown to do now
                    wakes.append(now)
        return min(wakes) if wakes else None

    def _save(self, record: InstanceRecord, wf: Any, state: State, *,
              error: str | None = None, wake_at: Any = attrs.NOTHING,
              release: bool = False) -> InstanceRecord:
        """Save `state` over `record` (compare-and-swap on its version, under this
        engine's lease). This runs at every durable checkpoint, so it is written
        for the commonest save, a step's (RESUMING, one thread, nothing failed):
        one clock reading, one record built, no pass it does not need."""
        now = self.clock()  # one reading per save
        status = state.status
        if wake_at is attrs.NOTHING:
            due = record.wake_at
            if status is _RESUMING:  # after a step: due now, or kept if already due
                wake_at = due if due is not None and due <= now else now
            else:
                wake_at = self.wake_at(state, now)
                if wake_at is not None and due is not None and due <= wake_at <= now:
                    wake_at = due  # already due: keep it (no index update per step)
        waiting: tuple[str, ...] = ()
        attempts = 0
        failed = ""
        for thread in state.threads:  # one pass: what it waits for, what failed
            if thread.attempts:
                attempts = max(attempts, thread.attempts)
                failed = f"StepError: step {thread.stmt!r} in thread {thread.id!r} failed: " \
                         f"{thread.error}"
            elif thread.status is _UNWINDING and thread.unwind == "fail" and thread.failures:
                uncaught = thread.failures[-1]  # (it ended the thread after its cleanup)
                attempts = max(attempts, uncaught.attempt)
                failed = f"StepError: {step_where(uncaught.step, thread.id)} failed: " \
                         f"{uncaught.type}: {uncaught.message}"
            events = thread.events
            if events:
                if thread.status is _WAITING_EVENT:
                    waiting += tuple(e.event for e in events)
                for event in events:
                    if event.attempts:
                        attempts = max(attempts, event.attempts)
                        phase = "setup" if event.status is _SETUP_ERROR else "teardown"
                        failed = f"HandlerError: {phase} of event {event.event!r} in " \
                                 f"thread {thread.id!r} failed: {event.error}"
        if len(waiting) > 1:
            waiting = tuple(sorted(set(waiting)))
        new = new_record(  # positionally: `replace` would be a second call per save
            record.id, record.workflow, status._value_, dumps(wf, state), record.version,
            wake_at, waiting, attempts, failed if error is None else error,
            record.lease_owner, record.lease_until, record.created_at, record.updated_at)
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
        dropped the lease (`_settle`), there is nothing to write."""
        KEEPER.drop(self, instance_id)
        if self.observer.pending:  # step calls whose timings no checkpoint wrote
            self._record(instance_id, self.observer.take(instance_id))
        if record is None or record.lease_owner is not None:
            self.store.release(instance_id, self.owner)
        if instance_id in self._left_due:
            self._left_due.discard(instance_id)
            self.store.notify_wake()

    def _quarantine(self, record: InstanceRecord, exc: BaseException) -> None:
        """The instance cannot be run at all (its blob does not load, or does
        not belong to its row, or the code raised something genflow cannot
        place): mark the row failed with the reason, its blob untouched, and
        stop waking it. `genflow show` prints the reason; an operator repairs the
        row or the code, then retries it."""
        reason = error_text(exc)
        log.error("instance %s cannot be run and is set aside: %s", record.id, reason,
                  extra=fields(record.id, record.workflow, error=reason))
        with contextlib.suppress(GenflowError):
            self.store.save(
                record.replace(status=_FAILED.value, error=reason, wake_at=None,
                               attempts=record.attempts + 1),
                expected_version=record.version, lease_owner=self.owner,
            )

    def _record(self, instance_id: str, entries: JournalEntries, *,
                repair: bool = False) -> None:
        if self.journal or repair:
            self.store.append_journal(  # details made plain here: a store knows no types
                instance_id, [(kind, unstructure(d)) for kind, d in entries], self.clock())


class _Saver:
    """The checkpoint callback of one operation: saves at durable checkpoints and
    keeps the record (and its version) current. `note` queues journal entries
    that go in with the next save (an event is on record only if it was saved)."""

    __slots__ = ("debug", "dirty", "engine", "notes", "op", "record", "shared", "state", "wf")

    def __init__(self, engine: Engine, record: InstanceRecord, wf: Any, state: State | None):
        self.engine = engine
        self.record = record
        self.wf = wf
        self.state = state
        self.dirty = False
        #: saved at each durable checkpoint even inside `transaction()`: the
        #: transaction is `Engine._together`'s, which shares one commit between
        #: the saves of one turn (not a batch's, which saves once per operation)
        self.shared = False
        self.op: Operation | None = None  # whose outbox its saves write
        self.notes: list[tuple[tuple[str, dict[str, Any]], bool]] = []
        self.debug = log.isEnabledFor(logging.DEBUG)  # (once: moves are debug records)

    def bind(self, wf: Any, state: State) -> None:
        self.wf, self.state = wf, state

    def note(self, entry: tuple[str, dict[str, Any]], *, repair: bool = False) -> None:
        self.notes.append((entry, repair))

    def __call__(self, kind: CheckpointType) -> None:
        engine = self.engine
        state = self.state
        assert state is not None
        op = self.op
        if not kind.durable or (engine.store.grouping() and not self.shared):
            # (grouped: saved at the end)
            self.dirty = True
        else:
            if state.parent is None and (op is None or not op.outbox.intents):
                # nothing to write with it (the commonest save): `_write`'s, without its call
                self.record = engine._save(self.record, self.wf, state)
            else:
                self._write()
            self.dirty = False
            if op is not None:
                op.unseen = False  # (this save holds the navigations before it)
            if self.notes:
                self._journal()
        if self.debug or (op is not None and op.failed is not None):
            engine.observer.checkpoint(state, kind, op)  # (a failure to log; debug moves)
        if engine.journal:
            engine._record(self.record.id, [*engine.observer.take(state.id),
                                            (kind.value, _positions(state))])

    def _journal(self) -> None:
        """Write the noted entries: they are on record once what they tell is saved."""
        for entry, repair in self.notes:
            self.engine._record(self.record.id, [entry], repair=repair)
        self.notes.clear()

    def flush(self, *, release: bool = False, **overrides: Any) -> None:
        """The operation's last save (if anything is unsaved, or the row is stale),
        dropping the lease."""
        assert self.state is not None
        op = self.op
        if self.dirty or (op is not None and op.unseen) or overrides or self.notes \
                or self.record.error or self._stale():
            self._write(release=release, **overrides)
            self.dirty = False
            if op is not None:
                op.unseen = False
            self._journal()

    def _write(self, **overrides: Any) -> None:
        """The save, and in its transaction the effects its moves asked for
        (`genflow.relay`): outbox intents, a child's report to its parent."""
        engine, state = self.engine, self.state
        assert state is not None
        op = self.op
        intents = op.outbox.take() if op is not None and op.outbox.intents else None
        if state.parent is not None and state.status.value != self.record.status:
            intents = [*(intents or ()), *child_effects(self.wf, state, overrides.get("error"))]
        if not intents:
            self.record = engine._save(self.record, self.wf, state, **overrides)
            return
        with engine.store.transaction():
            self.record = engine._save(self.record, self.wf, state, **overrides)
            engine.outbox.write(self.record.id, intents)


    def _stale(self) -> bool:
        """Does the row say something else than the State about when it is due, or
        its status? (A claimed instance with nothing to do, or a State that ended
        without a move: left as it was, it would be claimed again at every round.)"""
        record, state = self.record, self.state
        assert state is not None
        if record.status != state.status.value:
            return True
        due = record.wake_at
        return due is not None and due <= self.engine.clock() and \
            self.engine.wake_at(state, due) != due


class _TurnUndone(Exception):
    """`Engine._save_together`: roll the turn's transaction back for `error`."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _saver_of(call: tuple[Any, tuple[Any, ...], Any]) -> _Saver:
    """The `_Saver` of a save a turn holds: a durable checkpoint's, or `_settle`'s."""
    fn, args, _ = call
    return fn if type(fn) is _Saver else args[0]


def _positions(state: State) -> dict[str, Any]:
    return {"threads": [[t.id, t.stmt, t.status.value, t.pc] for t in state.threads],
            "status": state.status.value}


def _checked_request(req: Any) -> None:
    """`deliver` answers a `CallbackRequest` (a handler's `req`); an id is `send`'s."""
    if not isinstance(req, CallbackRequest):
        raise ArgumentError(f"deliver takes the CallbackRequest a handler was given (its "
                            f"`req`), not {req!r}: to send an event by instance id, use "
                            f"send(instance_id, event, payload)")


_FINISHED_VALUE = WorkflowStatus.FINISHED.value


#: what `Engine._result` answers while there is nothing to answer yet
_NO_RESULT = object()


def _pauses(timeout: Any, until: Any = None) -> Iterator[float | None]:
    """The waits between `Engine.result`'s reads of the store: 5 ms, half as
    long again each time, up to a tenth of a second (a result soon after the
    call is seen within milliseconds; a long wait costs ten reads a second and
    sees the result within 0.1 s), the last cut to `timeout`; then None: the
    time is up. `timeout` and `until` are checked here, at once."""
    if until is not None and not callable(until):
        raise ArgumentError(f"until is a function of the instance's data (true: the wait "
                            f"is over), not {until!r}")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (int, float))
                                or not 0 <= timeout < float("inf")):
        raise ArgumentError(f"timeout is a number of seconds (0 or more) or None, not "
                            f"{timeout!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    return _paused(deadline)


def _paused(deadline: float | None) -> Iterator[float | None]:
    pause = 0.005
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                yield None
                return
            pause = min(pause, left)
        yield pause
        pause = min(pause * 1.5, 0.1)


def _no_result(instance_id: str, timeout: float | None, until: Any = None) -> str:
    what = "finished" if until is None else "met the condition it was waited for"
    return (f"instance {instance_id!r} had not {what} after {timeout} s: it goes on where "
            "it is (is a worker running? genflow worker, Engine.work); wait again, or look at "
            "it (genflow show)")


def _checked_limit(limit: Any) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ArgumentError(f"limit is a count of 1 or more, not {limit!r}")


def _message_entry(message: Message) -> dict[str, Any]:
    return {"seq": message.seq, "event": message.event, "thread": message.thread,
            "payload": message.payload, "reason": message.reason}


#: `_start`'s answer to signal-with-start when the instance exists: send to it
_EXISTS: Any = object()


