"""What the stores keep for schedules, queues and retention, and the one
admission rule every store applies.

The stores know no workflows, cron expressions or time zones: a schedule is a
row (`ScheduleRecord`) whose `spec` the engine packs and reads
(`genflow.schedules`), with the few columns the store must compare itself:
when it is next due, whether it is paused, which instance its last tick
started. A tick is fired inside one store transaction (`Store.fire_schedules`):
the store locks the due rows (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite:
its single writer; memory: its lock), asks the engine what each should do
(`Firing`), and writes the new instances and the advanced schedule in that
same transaction. So a tick starts its instance exactly once, whatever crashes.

A queue is a row of limits (`QueueRecord`); an instance started on it has a
`QueueEntry` and no `wake_at` until it is admitted. Admission
(`Store.admit`) runs in one transaction per queue, holding that queue's row
(PostgreSQL: `FOR UPDATE SKIP LOCKED`, so a second worker skips the queue
rather than waiting), and counts what is running from the rows themselves:
no counter lives in a process. `plan_admission` is the rule, the same on
every store.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Collection, Iterable
from typing import Any

import attrs

from genflow.stores.base import InstanceRecord

__all__ = ["ENDED", "Admission", "Firing", "QueueEntry", "QueueRecord", "ScheduleRecord",
           "plan_admission"]

#: the statuses of an instance that holds no queue slot and that retention may delete
ENDED = ("finished", "cancelled", "failed")

_KEEP: Any = object()


@attrs.frozen
class ScheduleRecord:
    """One stored schedule.

    `spec` is the engine's (packed): the store never reads it. `next_tick` is
    the nominal time of the next tick, `due_at` when it fires (the tick plus
    its jitter); `due_at` is None while the schedule is paused. `last_tick`
    and `last_instance` are the last tick that started an instance, which the
    overlap policy looks at; `fired` and `skipped` count ticks; `error` is why
    the last tick could not start its instance ("" when it could).
    """

    id: str
    workflow: str
    spec: bytes
    next_tick: _dt.datetime | None
    due_at: _dt.datetime | None
    paused: bool = False
    last_tick: _dt.datetime | None = None
    last_instance: str | None = None
    fired: int = 0
    skipped: int = 0
    error: str = ""
    version: int = 0
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None

    def replace(self, **changes: Any) -> ScheduleRecord:
        return attrs.evolve(self, **changes)


@attrs.frozen
class QueueRecord:
    """A queue's limits, as every worker reads them from the store.

    `concurrency`: at most this many of its instances admitted and not ended
    (None: no limit); `per_key`: at most this many per key; `rate` per
    `period` seconds: at most this many admitted in any such window."""

    name: str
    concurrency: int | None = None
    per_key: int | None = None
    rate: int | None = None
    period: float | None = None
    updated_at: _dt.datetime | None = None


@attrs.frozen
class QueueEntry:
    """An instance's place in a queue. `seq` orders entries of one priority
    (the store assigns it); lower `priority` numbers are admitted first."""

    instance_id: str
    queue: str
    key: str = ""
    priority: int = 0
    seq: int = 0
    enqueued_at: _dt.datetime | None = None
    admitted_at: _dt.datetime | None = None


@attrs.frozen
class Firing:
    """What one schedule's turn writes, as the engine decided it.

    `schedule` is the row to save (advanced past the ticks handled);
    `instances` the instances to create, each with its queue entry or None
    (an instance whose id exists already is left alone: that tick fired
    before). With `cancel`, nothing is written for this schedule: the engine
    cancels that instance (the previous run, under the overlap policy
    "cancel") and the tick fires on a later turn."""

    schedule: ScheduleRecord
    instances: tuple[tuple[InstanceRecord, QueueEntry | None], ...] = ()
    cancel: str | None = None
    #: after the store wrote it: the ids it created (the others existed)
    created: tuple[str, ...] = ()


#: the engine's decision for one locked schedule row, given the status of the
#: instance its last tick started (None: none, or it is gone)
Decide = Callable[[ScheduleRecord, "str | None"], "Firing | None"]


@attrs.frozen
class Admission:
    """What one admission round did: the instances admitted (now due), and
    when the rate limit next lets one more in (None: it does not hold anything back)."""

    admitted: tuple[str, ...] = ()
    next_at: _dt.datetime | None = None


#: (keys to leave out, after (priority, seq), how many) -> waiting entries in
#: admission order, each with its instance's status (None: the row is gone)
Fetch = Callable[[Collection[str], "tuple[int, int] | None", int],
                 "list[tuple[QueueEntry, str | None]]"]


def plan_admission(queue: QueueRecord, now: _dt.datetime, running: dict[str, int],
                   recent: Iterable[_dt.datetime], fetch: Fetch,
                   ) -> tuple[list[QueueEntry], list[QueueEntry], _dt.datetime | None]:
    """Which waiting entries to admit now: (admitted, dropped, next_at).

    `running` counts the admitted, not ended instances by key; `recent` are
    the admission times within the rate period. Entries are taken in order
    (priority, then seq), skipping keys that are full, so one busy tenant
    never holds the others back; entries whose instance ended or vanished
    while waiting are `dropped`. `next_at` is when the rate limit frees a
    place, if it is what stops admission."""
    total = sum(running.values())
    free = None if queue.concurrency is None else queue.concurrency - total
    recent_times = sorted(recent)
    budget = None if queue.rate is None else queue.rate - len(recent_times)
    admitted: list[QueueEntry] = []
    dropped: list[QueueEntry] = []
    counts = dict(running)
    after: tuple[int, int] | None = None

    def room() -> int | None:
        limits = [n for n in (free, budget) if n is not None]
        return min(limits) if limits else None

    while True:
        left = room()
        if left is not None and left <= 0:
            break
        full = ([key for key, n in counts.items() if n >= queue.per_key]
                if queue.per_key is not None else [])
        want = 100 if left is None else max(left, 16)
        page = fetch(full, after, want)
        for entry, status in page:
            after = (entry.priority, entry.seq)
            if status is None or status in ENDED:
                dropped.append(entry)
                continue
            if queue.per_key is not None and counts.get(entry.key, 0) >= queue.per_key:
                continue
            admitted.append(entry)
            counts[entry.key] = counts.get(entry.key, 0) + 1
            if free is not None:
                free -= 1
            if budget is not None:
                budget -= 1
            left = room()
            if left is not None and left <= 0:
                break
        if len(page) < want:
            break
    next_at = None
    if budget is not None and budget <= 0 and queue.period is not None:
        # the admissions of the window, this round's included: the oldest leaves first
        times = [*recent_times, *(now for _ in admitted)]
        if len(times) >= (queue.rate or 0):
            next_at = times[len(times) - (queue.rate or 0)] + _dt.timedelta(
                seconds=queue.period)
    return admitted, dropped, next_at
