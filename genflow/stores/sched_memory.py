"""`MemoryStore`'s schedules, queues and retention: the same rules as the SQL
stores (`genflow.stores.scheduling`), under the store's one lock."""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from genflow.errors import (
    ConcurrencyError,
    DuplicateInstanceError,
    DuplicateScheduleError,
    QueueNotFoundError,
    ScheduleNotFoundError,
)
from genflow.stores.base import InstanceRecord, lease_free, utcnow
from genflow.stores.scheduling import (
    ENDED,
    Admission,
    Decide,
    Firing,
    QueueEntry,
    QueueRecord,
    ScheduleRecord,
    plan_admission,
)

if TYPE_CHECKING:
    import threading

__all__ = ["SchedulingMemory"]


class SchedulingMemory:
    """Mixed into `MemoryStore` (which calls `_init_scheduling`)."""

    _lock: threading.Condition
    _rows: dict[str, InstanceRecord]
    _ended: dict[str, _dt.datetime]
    _journal: dict[str, Any]

    def _writable(self) -> None: ...  # MemoryStore's

    def _init_scheduling(self) -> None:
        self._schedules: dict[str, ScheduleRecord] = {}
        self._queues: dict[str, QueueRecord] = {}
        self._entries: dict[str, QueueEntry] = {}
        self._seq = itertools.count(1)

    # -- schedules --

    def create_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        self._writable()
        now = utcnow()
        with self._lock:
            if record.id in self._schedules:
                raise DuplicateScheduleError(
                    f"schedule {record.id!r} already exists: to replace it, delete it first "
                    f"(engine.schedules.delete({record.id!r}); the instances it started stay)")
            stored = self._schedules[record.id] = record.replace(
                version=1, created_at=now, updated_at=now)
        return stored

    def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        with self._lock:
            try:
                return self._schedules[schedule_id]
            except KeyError:
                raise ScheduleNotFoundError(f"no schedule {schedule_id!r}") from None

    def list_schedules(self) -> list[ScheduleRecord]:
        with self._lock:
            return sorted(self._schedules.values(), key=lambda r: r.id)

    def save_schedule(self, record: ScheduleRecord, *,
                      expected_version: int) -> ScheduleRecord:
        self._writable()
        with self._lock:
            current = self.get_schedule(record.id)
            if current.version != expected_version:
                raise ConcurrencyError(f"schedule {record.id!r} is at version "
                                       f"{current.version}, not {expected_version}: reload it")
            stored = self._schedules[record.id] = record.replace(
                version=expected_version + 1, created_at=current.created_at,
                updated_at=utcnow())
        return stored

    def delete_schedule(self, schedule_id: str) -> bool:
        self._writable()
        with self._lock:
            return self._schedules.pop(schedule_id, None) is not None

    def fire_schedules(self, now: _dt.datetime, decide: Decide, *, limit: int = 10,
                       workflows: Collection[str] | None = None,
                       schedule_id: str | None = None) -> list[Firing]:
        self._writable()
        with self._lock:
            if schedule_id is not None:
                rows = [self.get_schedule(schedule_id)]
            else:
                rows = sorted((r for r in self._schedules.values()
                               if r.due_at is not None and r.due_at <= now
                               and (workflows is None or r.workflow in workflows)),
                              key=lambda r: (r.due_at, r.id))[:limit]
            done = []
            for row in rows:
                last = self._rows.get(row.last_instance) if row.last_instance else None
                firing = decide(row, None if last is None else last.status)
                if firing is None:
                    continue
                if firing.cancel is None:
                    created = []
                    stamp = utcnow()
                    for record, entry in firing.instances:
                        if record.id in self._rows:
                            continue
                        self._rows[record.id] = record.replace(
                            version=1, lease_owner=None, lease_until=None,
                            created_at=stamp, updated_at=stamp)
                        if entry is not None:
                            self._entries[record.id] = _entry(entry, next(self._seq), stamp)
                        created.append(record.id)
                    self._schedules[row.id] = firing.schedule.replace(
                        version=row.version + 1, created_at=row.created_at, updated_at=stamp)
                    firing = Firing(self._schedules[row.id], firing.instances,
                                    created=tuple(created))
                done.append(firing)
            return done

    def next_schedule_due(self, workflows: Collection[str] | None = None) -> _dt.datetime | None:
        with self._lock:
            return min((r.due_at for r in self._schedules.values() if r.due_at is not None
                        and (workflows is None or r.workflow in workflows)), default=None)

    # -- queues --

    def put_queue(self, record: QueueRecord) -> None:
        self._writable()
        with self._lock:
            self._queues[record.name] = QueueRecord(
                record.name, record.concurrency, record.per_key, record.rate, record.period,
                utcnow())

    def get_queue(self, name: str) -> QueueRecord:
        with self._lock:
            try:
                return self._queues[name]
            except KeyError:
                raise QueueNotFoundError(f"no queue {name!r} is defined in this store: define "
                                         "it first (engine.queues.define(Queue(...)))") from None

    def list_queues(self) -> list[QueueRecord]:
        with self._lock:
            return sorted(self._queues.values(), key=lambda q: q.name)

    def enqueue(self, record: InstanceRecord, entry: QueueEntry) -> InstanceRecord:
        self._writable()
        now = utcnow()
        stored = record.replace(version=1, wake_at=None, lease_owner=None, lease_until=None,
                                created_at=now, updated_at=now)
        with self._lock:
            self.get_queue(entry.queue)
            if record.id in self._rows:
                raise DuplicateInstanceError(f"instance {record.id!r} already exists")
            self._rows[record.id] = stored
            self._entries[record.id] = _entry(entry, next(self._seq), now)
        return stored

    def admit(self, now: _dt.datetime, queues: Collection[str] | None = None) -> Admission:
        self._writable()
        admitted: list[str] = []
        next_at: _dt.datetime | None = None
        with self._lock:
            for queue in list(self._queues.values()):
                if queues is not None and queue.name not in queues:
                    continue
                ids, at = self._admit_one(queue, now)
                admitted += ids
                if at is not None and (next_at is None or at < next_at):
                    next_at = at
        return Admission(tuple(admitted), next_at)

    def _admit_one(self, queue: QueueRecord, now: _dt.datetime
                   ) -> tuple[list[str], _dt.datetime | None]:
        mine = [e for e in self._entries.values() if e.queue == queue.name]
        since = None if queue.period is None else now - _dt.timedelta(seconds=queue.period)
        running: dict[str, int] = {}
        recent = []
        for entry in mine:
            if entry.admitted_at is None:
                continue
            row = self._rows.get(entry.instance_id)
            live = row is not None and row.status not in ENDED
            in_window = since is not None and entry.admitted_at > since
            if live:
                running[entry.key] = running.get(entry.key, 0) + 1
            if in_window:
                recent.append(entry.admitted_at)
            if not live and not in_window:
                del self._entries[entry.instance_id]  # it holds nothing any more
        waiting = sorted((e for e in mine if e.admitted_at is None),
                         key=lambda e: (e.priority, e.seq))

        def fetch(full: Collection[str], after: tuple[int, int] | None,
                  n: int) -> list[tuple[QueueEntry, str | None]]:
            page = [e for e in waiting if e.key not in full
                    and (after is None or (e.priority, e.seq) > after)][:n]
            return [(e, _status(self._rows.get(e.instance_id))) for e in page]

        admit, dropped, next_at = plan_admission(queue, now, running, recent, fetch)
        for entry in dropped:
            self._entries.pop(entry.instance_id, None)
        for entry in admit:
            self._entries[entry.instance_id] = QueueEntry(
                entry.instance_id, entry.queue, entry.key, entry.priority, entry.seq,
                entry.enqueued_at, now)
            row = self._rows[entry.instance_id]
            if row.wake_at is None:
                self._rows[entry.instance_id] = row.replace(wake_at=now)
        return [e.instance_id for e in admit], next_at

    def queue_entry(self, instance_id: str) -> tuple[QueueEntry, int] | None:
        with self._lock:
            entry = self._entries.get(instance_id)
            if entry is None:
                return None
            if entry.admitted_at is not None:
                return entry, 0
            ahead = sum(1 for e in self._entries.values() if e.queue == entry.queue
                        and e.admitted_at is None and (e.priority, e.seq) < (entry.priority,
                                                                            entry.seq))
            return entry, ahead + 1

    def queue_counts(self, name: str) -> tuple[int, int]:
        with self._lock:
            self.get_queue(name)
            waiting = running = 0
            for entry in self._entries.values():
                if entry.queue != name:
                    continue
                if entry.admitted_at is None:
                    waiting += 1
                elif _status(self._rows.get(entry.instance_id)) not in (None, *ENDED):
                    running += 1
            return waiting, running

    def queue_entries(self, queue: str, *, waiting: bool = True,
                      after: tuple[int, int] | None = None,
                      limit: int = 100) -> list[QueueEntry]:
        with self._lock:
            found = sorted((e for e in self._entries.values() if e.queue == queue
                            and (e.admitted_at is None) == waiting
                            and (after is None or (e.priority, e.seq) > after)),
                           key=lambda e: (e.priority, e.seq))
        return found[:max(limit, 0)]

    def _delete_queue_entry(self, instance_id: str) -> None:
        self._entries.pop(instance_id, None)

    # -- retention --

    def _purgeable(self, before: _dt.datetime, statuses: Collection[str],
                   workflow: str | None, exclude: Collection[str], limit: int) -> list[str]:
        wanted = set(statuses) & set(ENDED)
        with self._lock:
            now = utcnow()
            ended = [(self._ended.get(r.id, r.updated_at), r.id) for r in self._rows.values()
                     if r.status in wanted and lease_free(r, None, now)
                     and (workflow is None or r.workflow == workflow)
                     and r.workflow not in exclude]
        return [i for at, i in sorted(e for e in ended if e[0] is not None and e[0] < before)
                ][:limit]

    def trim_journal(self, *, before: _dt.datetime | None = None, keep: int | None = None,
                     workflow: str | None = None, limit: int = 10_000) -> int:
        self._writable()
        removed = 0
        with self._lock:
            for instance_id, entries in list(self._journal.items()):
                if workflow is not None:
                    row = self._rows.get(instance_id)
                    if row is None or row.workflow != workflow:
                        continue
                cut = [n for n, e in enumerate(entries)
                       if (before is not None and e.at < before and n < len(entries) - 1)
                       or (keep is not None and n < len(entries) - keep)]
                cut = cut[:limit - removed]
                if cut:
                    gone = set(cut)
                    self._journal[instance_id] = [e for n, e in enumerate(entries)
                                                  if n not in gone]
                    removed += len(cut)
                if removed >= limit:
                    break
        return removed


def _entry(entry: QueueEntry, seq: int, now: _dt.datetime) -> QueueEntry:
    return QueueEntry(entry.instance_id, entry.queue, entry.key, entry.priority, seq, now, None)


def _status(row: InstanceRecord | None) -> str | None:
    return None if row is None else row.status
