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

from genflow.errors import QueueNotFoundError, ScheduleError, error_text
from genflow.state import checked_id
from genflow.stores.base import InstanceRecord
from genflow.stores.scheduling import Admission, QueueEntry, QueueRecord
from genflow.wire import storable_key

if TYPE_CHECKING:
    from genflow.engine import Engine

__all__ = ["Queue", "QueuePlace", "Queues", "cursor_after"]

#: the longest queue name (a store's key; a schedule's id is as long)
MAX_NAME = 200
#: the longest key an instance is queued under (what a store keeps beside it, no index)
MAX_KEY = 100_000


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
            try:
                value = self.key(data)
            except Exception as exc:  # the user's function: refused as the start's error
                raise ScheduleError(f"queue {self.name!r}: its key function raised "
                                    f"{error_text(exc)} on the data {type(data).__name__}: "
                                    "nothing was started") from exc
        else:
            try:
                value = operator.attrgetter(self.key)(data)
            except AttributeError:
                raise ScheduleError(f"queue {self.name!r}: the data {type(data).__name__} has no "
                                    f"field {self.key!r} to key it by") from None
        key = str(value)
        if not storable_key(key, MAX_KEY) and key:
            raise ScheduleError(f"queue {self.name!r}: the key {key[:60]!r} is no key a store "
                                f"can keep (at most {MAX_KEY:,} characters of valid UTF-8, "
                                "no NUL): nothing was started")
        return key

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
        if not isinstance(queue, Queue):
            raise ScheduleError(f"define takes a genflow.queues.Queue, not {queue!r}: "
                                f"define(Queue({queue!r}, concurrency=...))"
                                if isinstance(queue, str) else
                                f"define takes a genflow.queues.Queue, not {queue!r}")
        if not storable_key(queue.name, MAX_NAME):
            raise ScheduleError(f"a queue needs a non-empty name of at most {MAX_NAME} characters "
                                f"(valid UTF-8, no NUL), not {queue.name!r}")
        for what in ("concurrency", "per_key", "rate"):
            value = getattr(queue, what)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 1 <= value < 2**63):
                raise ScheduleError(f"queue {queue.name!r}: {what} is a whole number of 1 or "
                                    f"more (or None: no limit), not {value!r}")
        if (queue.rate is None) != (queue.per is None):
            raise ScheduleError(f"queue {queue.name!r}: a rate limit is rate=N with per=PERIOD")
        per = queue.per
        if per is not None and (
                isinstance(per, bool) or not isinstance(per, _dt.timedelta | int | float)
                or not 0 < (per.total_seconds() if isinstance(per, _dt.timedelta) else per)
                < 10**9):
            raise ScheduleError(f"queue {queue.name!r}: per= is a positive period (a timedelta "
                                f"or a number of seconds), not {queue.per!r}")
        if queue.key is not None and not ((isinstance(queue.key, str) and queue.key)
                                          or callable(queue.key)):
            raise ScheduleError(f"queue {queue.name!r}: key= is a field name or a function of "
                                f"the data, not {queue.key!r}")
        if queue.per_key is not None and queue.key is None:
            raise ScheduleError(f"queue {queue.name!r}: per_key needs key= (a field name or a "
                                "function of the data)")
        self.engine.store.put_queue(queue.record())
        self._local[queue.name] = queue
        return queue

    def get(self, name: str) -> QueueRecord:
        """The queue's limits as stored (`QueueNotFoundError` if none: a name no
        store could keep names none, and no store is asked for it)."""
        return self.engine.store.get_queue(_known(name))

    def list(self) -> builtins.list[QueueRecord]:
        return self.engine.store.list_queues()

    def counts(self, name: str) -> tuple[int, int]:
        """(waiting, running) instances of the queue (`QueueNotFoundError` if none)."""
        return self.engine.store.queue_counts(_known(name))

    def place(self, instance_id: str) -> QueuePlace | None:
        """The instance's place in its queue, or None when it is on none (an id
        no store could keep is an `InvalidIdError`, as `Engine.get` says)."""
        found = self.engine.store.queue_entry(checked_id(instance_id))
        if found is None:
            return None
        entry, position = found
        return QueuePlace(entry.queue, entry.key, entry.priority, position, entry.enqueued_at,
                          entry.admitted_at)

    def waiting(self, name: str, *, after: str | None = None, limit: int = 50
                ) -> tuple[builtins.list[tuple[QueueEntry, int]], str | None]:
        """One page of the instances waiting in queue `name`, in admission order,
        each with its position (1 = admitted next), and the cursor of the next
        page (None: this is the last). `after` is the cursor a page gave: a
        keyset, so reading a page deep in a long queue costs what the first
        costs; the first position of a page is counted once, as `place` counts
        it (an index range as long as the position)."""
        _limit(limit)
        self.get(name)  # QueueNotFoundError
        phase, key = _cursor(after)
        if phase == "a":
            raise ScheduleError("this cursor pages a queue's instances, not its waiting ones: "
                                "start again from the first page")
        store = self.engine.store
        page = store.queue_entries(name, waiting=True, after=key, limit=limit + 1)
        more, page = len(page) > limit, page[:limit]
        first = 1
        if page:
            found = store.queue_entry(page[0].instance_id)
            first = found[1] if found is not None and found[1] > 0 else 1
        out = [(entry, first + n) for n, entry in enumerate(page)]
        return out, cursor_after(page[-1]) if more and page else None

    def entries(self, name: str, *, after: str | None = None, limit: int = 100
                ) -> tuple[builtins.list[QueueEntry], str | None]:
        """One page of every instance queue `name` holds: first the admitted ones it
        still counts (running, or within the rate window), then the waiting ones,
        each part in admission order; and the cursor of the next page (None: the
        last). An instance that ended leaves the queue at the next admission round,
        so the ended ones are not here (the instance list's other filters find them)."""
        _limit(limit)
        self.get(name)  # QueueNotFoundError
        store = self.engine.store
        phase, key = _cursor(after)
        out: builtins.list[QueueEntry] = []
        if phase in (None, "a"):
            out = store.queue_entries(name, waiting=False, after=key, limit=limit + 1)
            key = None
        if len(out) <= limit:
            out += store.queue_entries(name, waiting=True, after=key,
                                       limit=limit + 1 - len(out))
        more, out = len(out) > limit, out[:limit]
        if not more or not out:
            return out, None
        return out, cursor_after(out[-1])

    def admit(self) -> Admission:
        """One admission round over every queue; what it admitted."""
        return self.engine.store.admit(self.engine.clock()) or Admission()

    # -- the engine's part --

    def entry_for(self, queue: str, instance_id: str, data: Any, priority: int) -> QueueEntry:
        """The queue entry of a new instance: its key computed by this process's
        definition of the queue."""
        if not isinstance(priority, int) or isinstance(priority, bool) \
                or not -2**63 <= priority < 2**63:
            raise ScheduleError(f"a priority is a whole number (64 bits), not {priority!r}")
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


def _known(name: Any) -> str:
    """`name`, or `QueueNotFoundError` when no store could keep it as a queue's name
    (`define` refuses such a name: no queue has it, and no store is asked)."""
    if not storable_key(name, MAX_NAME):
        raise QueueNotFoundError(f"no queue {name!r}: a queue's name is a non-empty text "
                                 f"of at most {MAX_NAME} characters (valid UTF-8, no NUL)")
    return str(name)


def _limit(limit: Any) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
        raise ScheduleError(f"a page's limit is a whole number from 1 to 100,000, not {limit!r}")


def cursor_after(entry: QueueEntry) -> str:
    """The cursor of the page that follows `entry` (`Queues.entries`, `.waiting`)."""
    phase = "w" if entry.admitted_at is None else "a"
    return f"{phase}{entry.priority}:{entry.seq}"


def _cursor(text: str | None) -> tuple[str | None, tuple[int, int] | None]:
    """A page's cursor (`a` admitted / `w` waiting, then priority:seq), read back."""
    if not text:
        return None, None
    phase, body = text[:1], text[1:]
    priority, _, seq = body.partition(":")
    try:
        if phase not in ("a", "w"):
            raise ValueError(phase)
        key = (int(priority), int(seq))
        if not all(-2**63 <= n < 2**63 for n in key):
            raise ValueError(key)
        return phase, key
    except ValueError:
        raise ScheduleError(f"{text!r} is not a cursor of a queue's page: give the `next` the "
                            "previous page answered (or none for the first page)") from None
