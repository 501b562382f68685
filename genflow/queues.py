"""Queues: instances admitted under limits that hold across every worker.

`engine.start(data, queue="reports")` creates the instance with no `wake_at`
and a place in the queue, in one transaction: no worker claims it until the
queue admits it. Workers admit (`Engine.work` does, every round) in one store
transaction per queue, holding that queue's row (PostgreSQL: `SELECT ... FOR
UPDATE SKIP LOCKED`, so a second worker skips a queue being admitted rather
than waiting for it; SQLite: its single writer) and counting what runs from
the rows themselves. Nothing is counted in a process, so limits hold across
processes and machines.

The limits (`Queue`): `concurrency` (at most so many admitted and not
ended), `per_key` (at most so many per key, the key computed from the data:
a field name or a function, such as a tenant), `rate` per `per` (at most so
many admitted in any window of that length), and each instance's
`priority` (lower first, then first come, first served).

"Running" is *admitted and not ended*: an instance holds its slot from its
admission until it finishes, fails or is cancelled, also while it waits for
an event or a timer. DBOS counts a dequeued workflow against the queue's
concurrency until it completes, waits included, and Hatchet's concurrency
keys hold a run's slot until it finishes; genflow does the same. Releasing
the slot while an instance waits would need a second admission before the
instance could move again (every `send` to it would have to queue), so it is
not offered; a workflow that waits for days should start its limited part
as a separate instance on the queue.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from genflow.errors import GenflowError, ScheduleError
from genflow.stores.base import InstanceRecord
from genflow.stores.scheduling import Admission, QueueEntry, QueueRecord

if TYPE_CHECKING:
    from genflow.engine import Engine

__all__ = ["Queue", "QueuePlace", "Queues"]


@attrs.frozen
class Queue:
    """A queue's limits. `key` is a field name of the data (dotted for a nested
    one) or a function of the data, giving the key `per_key` limits; `per`
    is the rate's period (a timedelta or seconds)."""

    name: str
    concurrency: int | None = None
    per_key: int | None = None
    key: str | Callable[[Any], Any] | None = None
    rate: int | None = None
    per: _dt.timedelta | float | None = None

    def key_of(self, data: Any) -> str:
        if self.key is None:
            return ""
        if callable(self.key):
            value = self.key(data)
        else:
            try:
                value = operator.attrgetter(self.key)(data)
            except AttributeError:
                raise GenflowError(f"queue {self.name!r}: the data {type(data).__name__} has no "
                                   f"field {self.key!r} to key it by") from None
        return str(value)

    def record(self) -> QueueRecord:
        period = self.per.total_seconds() if isinstance(self.per, _dt.timedelta) else self.per
        return QueueRecord(self.name, self.concurrency, self.per_key, self.rate,
                           None if period is None else float(period))


@attrs.frozen
class QueuePlace:
    """Where an instance stands in its queue (`genflow show` prints it)."""

    queue: str
    key: str
    priority: int
    position: int  #: 1 = admitted next; 0 = admitted already
    enqueued_at: _dt.datetime | None
    admitted_at: _dt.datetime | None

    def text(self) -> str:
        key = f", key {self.key!r}" if self.key else ""
        if self.admitted_at is not None:
            return f"admitted by queue {self.queue!r}{key}"
        return (f"waits in queue {self.queue!r} for admission: position {self.position}{key}"
                + (f", priority {self.priority}" if self.priority else ""))


class Queues:
    """`engine.queues`: define queues, place instances on them, admit them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local: dict[str, Queue] = {}

    def define(self, queue: Queue) -> Queue:
        """Store the queue's limits (every worker reads them from the store; the
        last definition wins) and keep its key function in this process. Each
        process that starts instances on a keyed queue defines it."""
        if not isinstance(queue.name, str) or not queue.name:
            raise ScheduleError(f"a queue needs a non-empty name, not {queue.name!r}")
        for what in ("concurrency", "per_key", "rate"):
            value = getattr(queue, what)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ScheduleError(f"queue {queue.name!r}: {what} is a whole number of 1 or "
                                    f"more (or None: no limit), not {value!r}")
        if (queue.rate is None) != (queue.per is None):
            raise ScheduleError(f"queue {queue.name!r}: a rate limit is rate=N with per=PERIOD")
        period = queue.record().period
        if period is not None and period <= 0:
            raise ScheduleError(f"queue {queue.name!r}: per= is a positive period, not "
                                f"{queue.per!r}")
        if queue.per_key is not None and queue.key is None:
            raise ScheduleError(f"queue {queue.name!r}: per_key needs key= (a field name or a "
                                "function of the data)")
        self.engine.store.put_queue(queue.record())
        self._local[queue.name] = queue
        return queue

    def get(self, name: str) -> QueueRecord:
        """The queue's limits as stored (`QueueNotFoundError` if none)."""
        return self.engine.store.get_queue(name)

    def list(self) -> builtins.list[QueueRecord]:
        return self.engine.store.list_queues()

    def counts(self, name: str) -> tuple[int, int]:
        """(waiting, running) instances of the queue."""
        return self.engine.store.queue_counts(name)

    def place(self, instance_id: str) -> QueuePlace | None:
        """The instance's place in its queue, or None when it is on none."""
        found = self.engine.store.queue_entry(instance_id)
        if found is None:
            return None
        entry, position = found
        return QueuePlace(entry.queue, entry.key, entry.priority, position, entry.enqueued_at,
                          entry.admitted_at)

    def admit(self) -> Admission:
        """One admission round over every queue; what it admitted."""
        return self.engine.store.admit(self.engine.clock()) or Admission()

    # -- the engine's part --

    def entry_for(self, queue: str, instance_id: str, data: Any, priority: int) -> QueueEntry:
        """The queue entry of a new instance: its key computed by this process's
        definition of the queue."""
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ScheduleError(f"a priority is a whole number, not {priority!r}")
        local = self._local.get(queue)
        if local is None:
            stored = self.get(queue)  # QueueNotFoundError
            if stored.per_key is not None:
                raise ScheduleError(f"queue {queue!r} limits each key: this process must define "
                                    "it (engine.queues.define(Queue(...))) to know the key")
            local = Queue(queue)
        return QueueEntry(instance_id, queue, local.key_of(data), priority)

    def enqueue(self, record: InstanceRecord, data: Any, queue: str,
                priority: int) -> InstanceRecord:
        entry = self.entry_for(queue, record.id, data, priority)
        return self.engine.store.enqueue(record, entry)
