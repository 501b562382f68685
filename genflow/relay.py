"""The outbox's engine side: effects written with a checkpoint, carried out after.

A core operation collects what user code asked for (`genflow.outbox`); the
engine's save of the next durable checkpoint hands those intents to
`Relay.write`, inside the same store transaction as the save: a start
creates its instance there (due at once, any worker runs it), a send or a
cancel becomes an outbox row. After the commit, the engine that committed
relays the rows it wrote (`Relay.after`); every worker's housekeeping
round relays the rest (rows left by a process killed between its commit and
its relay, rows due later, rows whose delivery must be tried again).

Exactly once: a row is deleted in the same transaction as the save of the
target it was delivered to (`Engine._send` inside `store.transaction()`,
the event delivered and checkpointed, no moves: the target is moved on
after the commit, by this engine or any worker). A crash before that commit
leaves both as they were, and the row is relayed again.

What cannot be delivered now waits in its row, retried with backoff: the
target does not wait for that event yet, or is busy, or has failed (an
operator may retry it). What can never be (no such instance, the target has
ended, a payload it refuses) is given up: the row stays, `due_at` NULL, with
the error, logged as a warning and listed by `genflow show` of the sender.
A child's report for a wait that is over (a first-k fan-in already went on,
the parent was cancelled) is stale: deleted, on the parent's journal.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import threading
from collections.abc import Collection, Generator
from typing import TYPE_CHECKING, Any

import msgpack

from genflow.codec import load_state
from genflow.errors import (
    ConcurrencyError,
    EventNotReadyError,
    GenflowError,
    HandlerError,
    InstanceFailedError,
    InstanceNotFoundError,
    NotWaitingError,
    StaleCallbackError,
    StoreError,
    UnknownEventError,
    WorkflowFinishedError,
)
from genflow.observe import current_traceparent, fields, traced
from genflow.outbox import CancelIntent, Intent, SendIntent, StartIntent
from genflow.stores.base import InstanceRecord, OutboxEntry
from genflow.stores.retry import Backoff

if TYPE_CHECKING:
    from genflow.engine import Engine

__all__ = ["Relay"]

log = logging.getLogger("genflow.outbox")
_Ops = Generator[Any, Any, Any]

#: waits between deliveries of a row that cannot be delivered yet
OUTBOX_BACKOFF = Backoff(first=0.5, factor=2.0, cap=60.0)
#: the target cannot take it now: try again later
_LATER = (NotWaitingError, UnknownEventError, EventNotReadyError, ConcurrencyError,
          InstanceFailedError, HandlerError)
#: how long a relay waits for a target another worker holds before it tries later
_BUSY_TIMEOUT = 0.05


class Relay:
    """The outbox of one engine (`engine.outbox`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()  # rows this thread committed, to relay next

    # -- inside a checkpoint's transaction --

    def write(self, origin: str, intents: list[Intent]) -> None:
        """Write a checkpoint's intents (inside the transaction of its save)."""
        engine = self.engine
        store = engine.store
        now = engine.clock()
        entries: list[OutboxEntry] = []
        created = False
        # what the operation's own effects (a child's report, a cancel of a child no
        # longer waited for) carry: the trace of the operation that writes them
        here = current_traceparent() if engine.observer.api is not None else None
        for intent in intents:
            if isinstance(intent, StartIntent):
                parent = intent.parent
                if store.create_if_absent(
                        InstanceRecord(id=intent.id, workflow=intent.workflow,
                                       status="resuming", blob=intent.blob,
                                       wake_at=intent.at or now),
                        None if parent is None else (parent.instance_id, parent.index)):
                    created = True
                    engine._record(intent.id, [("start", {"by": origin})])
                else:
                    report = self._existing(intent, origin)
                    if report is not None:
                        entries.append(_entry(origin, report, now, here))
            elif isinstance(intent, SendIntent):
                entries.append(_entry(origin, intent, now, here))
            elif isinstance(intent, CancelIntent):
                entries.append(OutboxEntry(origin, intent.target, "cancel", due_at=now,
                                           trace=here))
        if entries:
            seqs = store.put_outbox(entries)
            self._pending().extend(s for s, e in zip(seqs, entries, strict=True)
                                   if e.due_at is not None and e.due_at <= now)
        if created:
            self._local.wake = True

    def _existing(self, intent: StartIntent, origin: str) -> SendIntent | None:
        """A start whose id exists: a child of this very wait is adopted (its
        start was written before: nothing to do); any other instance is not
        this parent's child, and the parent's wait is told so at once (its
        report says the child failed: `ChildFailed`, catchable). A plain
        start is idempotent: left alone, on the journal."""
        from genflow.children import conflict_report

        parent = intent.parent
        if parent is None:
            self.engine._record(origin, [("start skipped", {"id": intent.id,
                                                             "why": "the id exists"})])
            return None
        existing = self.engine.store.get(intent.id)
        try:
            theirs = load_state(existing.blob).parent
        except GenflowError:
            theirs = None
        if theirs == parent:
            return None
        return conflict_report(intent, existing.workflow)

    def _pending(self) -> list[int]:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    # -- after the commit --

    def after(self) -> _Ops:
        """Relay the rows this thread's operations committed (until none is left:
        a delivery's moves may write more)."""
        local = self._local
        if getattr(local, "busy", False):
            return 0
        local.busy = True
        done = 0
        try:
            while True:
                pending = self._pending()
                if not pending:
                    break
                seqs = list(pending)
                pending.clear()
                done += yield from self.run(seqs)
        finally:
            local.busy = False
            if getattr(local, "wake", False):
                local.wake = False
                self.engine.store.notify_wake()  # children were created: idle workers
        return done

    def run(self, seqs: Collection[int] | None = None, limit: int = 100) -> _Ops:
        """Deliver due rows (those of `seqs`, or any), up to `limit`; how many
        were taken. Each is leased first, so two relays never share one."""
        engine = self.engine
        now = engine.clock()
        entries = engine.store.claim_outbox(engine.owner, now, now + engine.lease, limit, seqs)
        for entry in entries:
            yield from self._carry(entry)
        return len(entries)

    def _carry(self, entry: OutboxEntry) -> _Ops:
        """Deliver one row, in the trace of the code that asked for it: the span of
        its delivery (a send, a cancel) is the asker's child, and the target keeps
        that trace for the steps it runs next (`Observer.keep_trace`)."""
        with traced(entry.trace):
            yield from self._carry_traced(entry)

    def _carry_traced(self, entry: OutboxEntry) -> _Ops:
        engine = self.engine
        store = engine.store
        try:
            if entry.kind == "cancel":
                # (ended, or gone, by itself: nothing to cancel)
                with contextlib.suppress(WorkflowFinishedError, InstanceNotFoundError):
                    yield from engine._cancel(entry.target, _BUSY_TIMEOUT)
                store.done_outbox(entry.seq)  # (a second cancel finds it ended)
                return
            payload = msgpack.unpackb(entry.payload, raw=False, strict_map_key=False)
            engine._acquire(entry.target, _BUSY_TIMEOUT)  # (outside: no wait in a transaction)
            try:
                with store.transaction():
                    yield from self.deliver(entry, payload)
                    store.done_outbox(entry.seq)
            finally:
                engine._release(entry.target)
            yield from engine._run_one(entry.target)
        except StoreError:
            raise  # the store itself is down: the worker loop waits for it
        except (StaleCallbackError, WorkflowFinishedError) as exc:
            if entry.pc is None:
                self._give_up(entry, exc)
            else:  # a report for a wait that is over: nobody waits for it any more
                store.done_outbox(entry.seq)
                engine._record(entry.target, [("stale report", {
                    "from": entry.origin, "event": entry.event, "why": str(exc)})])
        except _LATER as exc:
            if isinstance(exc, UnknownEventError) and exc.never:
                self._give_up(entry, exc)  # no move of the target makes it deliverable
                return
            wait = OUTBOX_BACKOFF.delay(entry.attempts + 1)
            store.retry_outbox(entry.seq, engine.clock() + _dt.timedelta(seconds=wait),
                               entry.attempts + 1, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # no such instance, a refused payload...: never deliverable
            self._give_up(entry, exc)

    def deliver(self, entry: OutboxEntry, payload: Any) -> _Ops:
        """The delivery itself, inside the transaction that deletes the row:
        the event and its checkpoint, no moves. An event the target does not
        wait for yet is kept in its mailbox here (docs/mailbox.md)."""
        yield from self.engine._send(entry.target, entry.event, payload, entry.thread,
                                     entry.pc, _BUSY_TIMEOUT, moves=False)

    def _give_up(self, entry: OutboxEntry, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("outbox: event %r from %s to %s cannot be delivered, given up: %s",
                    entry.event or entry.kind, entry.origin, entry.target, error,
                    extra=fields(entry.origin, target=entry.target, error=error))
        self.engine.store.retry_outbox(entry.seq, None, entry.attempts + 1, error)


def _entry(origin: str, intent: SendIntent, now: _dt.datetime,
           trace: str | None) -> OutboxEntry:
    return OutboxEntry(origin, intent.target, "event", intent.event,
                       msgpack.packb(intent.payload, use_bin_type=True),
                       intent.thread, intent.pc, intent.at or now,
                       trace=intent.trace or trace)
