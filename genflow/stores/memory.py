"""`MemoryStore`: instances in a dict, for tests and single-process tools.

It keeps the same guarantees as the durable stores (compare-and-swap, leases,
due work) so code tested against it behaves the same on SQLite or PostgreSQL;
only durability is missing. `readonly=True` refuses every write with
`ReadOnlyStoreError`, as the durable stores opened read-only do.
"""

from __future__ import annotations

import datetime as _dt
import threading
import zlib
from collections.abc import Collection

from genflow.errors import DuplicateInstanceError, InstanceNotFoundError, ReadOnlyStoreError
from genflow.stores.base import (
    InstanceRecord,
    Journal,
    JournalEntries,
    JournalEntry,
    Records,
    Store,
    lease_free,
    pack_detail,
    refused_save,
    unpack_detail,
    utcnow,
)
from genflow.stores.sched_memory import SchedulingMemory

__all__ = ["MemoryStore"]


class MemoryStore(SchedulingMemory, Store):
    """Thread-safe in-memory store (one process)."""

    def __init__(self, *, readonly: bool = False) -> None:
        self.readonly = readonly
        self._rows: dict[str, InstanceRecord] = {}
        self._journal: dict[str, Journal] = {}
        self._lock = threading.Condition()
        self._woken = False
        self._init_scheduling()  # schedules, queues: genflow.stores.sched_memory

    def create(self, record: InstanceRecord, *, lease_owner: str | None = None,
               lease_until: _dt.datetime | None = None) -> InstanceRecord:
        self._writable()
        now = utcnow()
        stored = record.replace(version=1, lease_owner=lease_owner,
                              lease_until=lease_until, created_at=now, updated_at=now)
        with self._lock:
            if record.id in self._rows:
                raise DuplicateInstanceError(f"instance {record.id!r} already exists")
            self._rows[record.id] = stored
        return stored

    def get(self, instance_id: str) -> InstanceRecord:
        with self._lock:
            return self._row(instance_id)

    def save(self, record: InstanceRecord, *, expected_version: int,
             lease_owner: str | None = None,
             previous: InstanceRecord | None = None,
             release: bool = False) -> InstanceRecord:
        self._writable()
        with self._lock:
            current = self._row(record.id)
            refused = refused_save(record.id, current.version, current.lease_owner,
                                   expected_version, lease_owner)
            if refused is not None:
                raise refused
            stored = current.replace(
                status=record.status, blob=record.blob, wake_at=record.wake_at,
                waiting_for=tuple(record.waiting_for), attempts=record.attempts,
                error=record.error, version=expected_version + 1, updated_at=utcnow(),
            )
            if release and lease_owner is not None and stored.lease_owner == lease_owner:
                stored = stored.replace(lease_owner=None, lease_until=None)
            self._rows[record.id] = stored
        return stored

    def delete(self, instance_id: str) -> None:
        self._writable()
        with self._lock:
            self._rows.pop(instance_id, None)
            self._journal.pop(instance_id, None)
            self._delete_queue_entry(instance_id)

    def list(self, *, workflow: str | None = None, status: str | None = None,
             limit: int | None = None, after: str | None = None,
             waiting: str | None = None, shard: tuple[int, int] | None = None) -> Records:
        with self._lock:
            rows = sorted(
                (r for r in self._rows.values() if _matches(r, workflow, status, waiting)
                 and (after is None or r.id > after)
                 and (shard is None or zlib.crc32(r.id.encode()) % shard[1] == shard[0])),
                key=lambda r: r.id,
            )
        return rows if limit is None else rows[:limit]

    def count(self, *, workflow: str | None = None, status: str | None = None,
              waiting: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._rows.values() if _matches(r, workflow, status, waiting))

    def acquire(self, instance_id: str, owner: str, now: _dt.datetime,
                until: _dt.datetime) -> InstanceRecord | None:
        self._writable()
        with self._lock:
            row = self._row(instance_id)
            if not lease_free(row, owner, now):
                return None
            row = self._rows[instance_id] = row.replace(lease_owner=owner, lease_until=until)
            return row

    def claim_due(self, owner: str, now: _dt.datetime, until: _dt.datetime,
                  limit: int, workflows: Collection[str] | None = None) -> Records:
        self._writable()
        with self._lock:
            due = sorted(
                (r for r in self._rows.values()
                 if r.wake_at is not None and r.wake_at <= now and lease_free(r, None, now)
                 and (workflows is None or r.workflow in workflows)),
                key=lambda r: (r.wake_at, r.id),
            )[:limit]
            claimed = []
            for row in due:
                previous = row.lease_owner  # (an expired lease: lease_free)
                row = self._rows[row.id] = row.replace(lease_owner=owner, lease_until=until)
                claimed.append(row if previous is None else row.replace(taken_from=previous))
            return claimed

    def count_due(self, now: _dt.datetime, workflows: Collection[str] | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._rows.values()
                       if r.wake_at is not None and r.wake_at <= now and lease_free(r, None, now)
                       and (workflows is None or r.workflow in workflows))

    def release(self, instance_id: str, owner: str) -> None:
        self._writable()
        with self._lock:
            row = self._rows.get(instance_id)
            if row is not None and row.lease_owner == owner:
                self._rows[instance_id] = row.replace(lease_owner=None, lease_until=None)

    def next_wake(self, workflows: Collection[str] | None = None) -> _dt.datetime | None:
        with self._lock:
            return min((r.wake_at for r in self._rows.values() if r.wake_at is not None
                        and (workflows is None or r.workflow in workflows)), default=None)

    def notify_wake(self) -> None:
        with self._lock:
            self._woken = True
            self._lock.notify_all()

    def wait_wake(self, seconds: float) -> None:
        with self._lock:
            if not self._woken and seconds > 0:
                self._lock.wait(seconds)
            self._woken = False

    def append_journal(self, instance_id: str, entries: JournalEntries,
                       at: _dt.datetime) -> None:
        self._writable()
        with self._lock:
            journal = self._journal.setdefault(instance_id, [])
            for kind, detail in entries:
                seq = journal[-1].seq + 1 if journal else 1  # (trims keep the newest)
                journal.append(JournalEntry(instance_id, seq, at, kind,
                                           unpack_detail(pack_detail(detail))))

    def journal(self, instance_id: str) -> Journal:
        with self._lock:
            return list(self._journal.get(instance_id, ()))

    def _writable(self) -> None:
        if self.readonly:
            raise ReadOnlyStoreError("this MemoryStore was opened read-only: nothing was written")

    def _row(self, instance_id: str) -> InstanceRecord:
        try:
            return self._rows[instance_id]
        except KeyError:
            raise InstanceNotFoundError(f"no instance {instance_id!r}") from None


def _matches(row: InstanceRecord, workflow: str | None, status: str | None,
             waiting: str | None) -> bool:
    return ((workflow is None or row.workflow == workflow)
            and (status is None or row.status == status)
            and (waiting is None or waiting in row.waiting_for))
