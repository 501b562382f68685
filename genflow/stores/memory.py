"""`MemoryStore`: instances in a dict, for tests and single-process tools.

It keeps the same guarantees as the durable stores (compare-and-swap, leases,
due work) so code tested against it behaves the same on SQLite or PostgreSQL;
only durability is missing. `readonly=True` refuses every write with
`ReadOnlyStoreError`, as the durable stores opened read-only do.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import itertools
import threading
import zlib
from collections.abc import Collection, Iterator

from genflow.errors import DuplicateInstanceError, InstanceNotFoundError, ReadOnlyStoreError
from genflow.stores.base import (
    InstanceRecord,
    Journal,
    JournalEntries,
    JournalEntry,
    OutboxEntry,
    Records,
    Store,
    lease_free,
    pack_detail,
    refused_save,
    unpack_detail,
    utcnow,
)
from genflow.stores.sched_memory import SchedulingMemory
from genflow.stores.scheduling import ENDED

__all__ = ["MemoryStore"]


class MemoryStore(SchedulingMemory, Store):
    """Thread-safe in-memory store (one process)."""

    def __init__(self, *, readonly: bool = False) -> None:
        self.readonly = readonly
        self._rows: dict[str, InstanceRecord] = {}
        #: when each ended instance ended (retention's age; the SQL stores' `ended_at`)
        self._ended: dict[str, _dt.datetime] = {}
        self._journal: dict[str, Journal] = {}
        self._lock = threading.Condition()
        self._woken = False
        self._init_scheduling()  # schedules, queues: genflow.stores.sched_memory
        self._outbox: dict[int, OutboxEntry] = {}
        self._outbox_seq = itertools.count(1)
        self._links: dict[str, tuple[str, int]] = {}  # child -> (parent, index)
        self._group_thread: int | None = None

    # -- grouping writes: all or nothing, like the SQL stores' transactions --

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Every write inside is undone if the block raises (this thread holds
        the store meanwhile): a checkpoint's save and its outbox go together."""
        with self._lock:
            if self._group_thread == threading.get_ident():
                yield  # nested: the outer one decides
                return
            rows, outbox, links = dict(self._rows), dict(self._outbox), dict(self._links)
            entries, ended = dict(self._entries), dict(self._ended)
            journal = {key: len(value) for key, value in self._journal.items()}
            self._group_thread = threading.get_ident()
            try:
                yield
            except BaseException:
                self._rows, self._outbox, self._links, self._entries, self._ended = (
                    rows, outbox, links, entries, ended)
                for key in list(self._journal):
                    if key not in journal:
                        del self._journal[key]
                    else:
                        del self._journal[key][journal[key]:]
                raise
            finally:
                self._group_thread = None

    def grouping(self) -> bool:
        return self._group_thread == threading.get_ident()

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
            if stored.status in ENDED:
                self._ended[record.id] = now
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
            if stored.status not in ENDED:
                self._ended.pop(record.id, None)
            elif stored.status != current.status or record.id not in self._ended:
                assert stored.updated_at is not None
                self._ended[record.id] = stored.updated_at
        return stored

    def delete(self, instance_id: str) -> None:
        self._writable()
        with self._lock:
            self._rows.pop(instance_id, None)
            self._ended.pop(instance_id, None)
            self._journal.pop(instance_id, None)
            self._delete_queue_entry(instance_id)
            self._links.pop(instance_id, None)
            for seq in [s for s, e in self._outbox.items() if e.target == instance_id]:
                del self._outbox[seq]

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

    # -- the outbox and children --

    def create_if_absent(self, record: InstanceRecord,
                         parent: tuple[str, int] | None = None) -> bool:
        self._writable()
        with self._lock:
            if record.id in self._rows:
                return False
            self.create(record)
            if parent is not None:
                self._links[record.id] = parent
            return True

    def children(self, parent_id: str) -> builtins.list[tuple[str, int]]:
        with self._lock:
            return [(child, index) for child, (parent, index) in self._links.items()
                    if parent == parent_id]

    def put_outbox(self, entries: builtins.list[OutboxEntry]) -> builtins.list[int]:
        self._writable()
        now = utcnow()
        seqs = []
        with self._lock:
            for entry in entries:
                seq = next(self._outbox_seq)
                self._outbox[seq] = OutboxEntry(
                    entry.origin, entry.target, entry.kind, entry.event, entry.payload,
                    entry.thread, entry.pc, entry.due_at, entry.attempts, entry.error, seq,
                    None, None, now, entry.trace)
                seqs.append(seq)
        return seqs

    def claim_outbox(self, owner: str, now: _dt.datetime, until: _dt.datetime, limit: int,
                     seqs: Collection[int] | None = None) -> builtins.list[OutboxEntry]:
        self._writable()
        claimed = []
        with self._lock:
            for seq in sorted(self._outbox if seqs is None else
                              [s for s in seqs if s in self._outbox]):
                entry = self._outbox[seq]
                if entry.due_at is None or entry.due_at > now or (
                        entry.lease_owner is not None and entry.lease_until is not None
                        and entry.lease_until > now):
                    continue
                entry = self._outbox[seq] = _leased(entry, owner, until)
                claimed.append(entry)
                if len(claimed) >= limit:
                    break
        return claimed

    def done_outbox(self, seq: int) -> None:
        self._writable()
        with self._lock:
            self._outbox.pop(seq, None)

    def retry_outbox(self, seq: int, due_at: _dt.datetime | None, attempts: int,
                     error: str) -> None:
        self._writable()
        with self._lock:
            entry = self._outbox.get(seq)
            if entry is not None:
                self._outbox[seq] = OutboxEntry(
                    entry.origin, entry.target, entry.kind, entry.event, entry.payload,
                    entry.thread, entry.pc, due_at, attempts, error, seq, None, None,
                    entry.created_at, entry.trace)

    def list_outbox(self, *, origin: str | None = None, target: str | None = None,
                    limit: int = 100) -> builtins.list[OutboxEntry]:
        with self._lock:
            return [e for _, e in sorted(self._outbox.items())
                    if (origin is None or e.origin == origin)
                    and (target is None or e.target == target)][:limit]

    def next_outbox_due(self) -> _dt.datetime | None:
        with self._lock:
            return min((e.due_at for e in self._outbox.values() if e.due_at is not None),
                       default=None)

    def _writable(self) -> None:
        if self.readonly:
            raise ReadOnlyStoreError("this MemoryStore was opened read-only: nothing was written")

    def _row(self, instance_id: str) -> InstanceRecord:
        try:
            return self._rows[instance_id]
        except KeyError:
            raise InstanceNotFoundError(f"no instance {instance_id!r}") from None


def _leased(entry: OutboxEntry, owner: str, until: _dt.datetime) -> OutboxEntry:
    return OutboxEntry(entry.origin, entry.target, entry.kind, entry.event, entry.payload,
                       entry.thread, entry.pc, entry.due_at, entry.attempts, entry.error,
                       entry.seq, owner, until, entry.created_at, entry.trace)


def _matches(row: InstanceRecord, workflow: str | None, status: str | None,
             waiting: str | None) -> bool:
    return ((workflow is None or row.workflow == workflow)
            and (status is None or row.status == status)
            and (waiting is None or waiting in row.waiting_for))
