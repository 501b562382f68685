"""The SQL stores' schedules, queues and retention (SQLite and PostgreSQL alike).

Written once over `SQLStore`'s primitives with `?` placeholders; a store
gives its tables' prefix (`_prefix`: PostgreSQL's schema) and how it locks a
row it is about to change against other transactions (`_lock_rows`:
PostgreSQL's `FOR UPDATE ... SKIP LOCKED`; SQLite needs none, its
`BEGIN IMMEDIATE` already makes the transaction the only writer). Each
multi-statement change runs in `transaction()`, the whole of it retried on a
new connection when a transient fault breaks it before the commit.
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Collection, Sequence
from typing import Any

from genflow.errors import (
    ConcurrencyError,
    DuplicateInstanceError,
    DuplicateScheduleError,
    QueueNotFoundError,
    ScheduleNotFoundError,
)
from genflow.stores.base import InstanceRecord, utcnow
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
from genflow.stores.sql import COLUMNS, SQLStore

__all__ = ["ENDED_SQL", "ENDED_TERM", "SchedulingSQL"]

_SCHEDULE = ("id, workflow, spec, next_tick, due_at, paused, last_tick, last_instance, fired, "
             "skipped, error, version, created_at, updated_at")
_QUEUE = "name, concurrency, per_key, rate, period, updated_at"
_ENTRY = "instance_id, queue, key, priority, seq, enqueued_at, admitted_at"
ENDED_SQL = ", ".join(f"'{status}'" for status in ENDED)
#: "the instance has ended", as the partial index on ended instances states it
#: (a query names the same term to use the index; ORs, not `IN`: see SQLite's
#: migration 3)
ENDED_TERM = "(" + " OR ".join(f"status = '{status}'" for status in ENDED) + ")"


class SchedulingSQL(SQLStore):
    """Mixed into `SQLiteStore` and `PostgresStore` (before `SQLStore`)."""

    #: the tables' prefix ("" or a quoted schema and a dot)
    _prefix = ""
    #: appended to a SELECT that picks rows to change: lock them, skipping
    #: rows another transaction holds ("" where the transaction is the only writer)
    _lock_rows = ""
    _lock_schedules = ""

    def _q(self, text: str) -> str:
        """A statement of this module for this store: tables prefixed, placeholders its own."""
        return _dialect(text, self._prefix, self._placeholder)

    def _in(self, column: str, values: Sequence[Any]) -> str:
        return f"{column} IN ({','.join([self._placeholder] * len(values))})"

    def _schedule(self, row: Sequence[Any]) -> ScheduleRecord:
        t = self._time_in
        (id_, workflow, spec, next_tick, due_at, paused, last_tick, last_instance, fired,
         skipped, error, version, created_at, updated_at) = row
        return ScheduleRecord(id_, workflow, bytes(spec), t(next_tick), t(due_at), bool(paused),
                              t(last_tick), last_instance, fired, skipped, error, version,
                              t(created_at), t(updated_at))

    def _schedule_params(self, r: ScheduleRecord) -> tuple[Any, ...]:
        o = self._time_out
        return (r.spec, o(r.next_tick), o(r.due_at), int(r.paused), o(r.last_tick),
                r.last_instance, r.fired, r.skipped, r.error)

    # -- schedules --

    def create_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        now = utcnow()
        row = self._run(self._one, self._q(
            f"INSERT INTO <schedules> ({_SCHEDULE}) VALUES ({','.join('?' * 14)}) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"),
            (record.id, record.workflow, *self._schedule_params(record), 1,
             self._time_out(now), self._time_out(now)))
        if row is None:
            raise DuplicateScheduleError(
                f"schedule {record.id!r} already exists: to replace it, delete it first "
                f"(engine.schedules.delete({record.id!r}); the instances it started stay)")
        return record.replace(version=1, created_at=now, updated_at=now)

    def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        row = self._run(self._one, self._q(f"SELECT {_SCHEDULE} FROM <schedules> WHERE id = ?"),
                        (schedule_id,))
        if row is None:
            raise ScheduleNotFoundError(f"no schedule {schedule_id!r}")
        return self._schedule(row)

    def list_schedules(self) -> list[ScheduleRecord]:
        rows = self._run(self._all, self._q(f"SELECT {_SCHEDULE} FROM <schedules> ORDER BY id"))
        return [self._schedule(row) for row in rows]

    def save_schedule(self, record: ScheduleRecord, *,
                      expected_version: int) -> ScheduleRecord:
        now = utcnow()
        changed = self._run(self._exec, self._q(_SAVE_SCHEDULE),
                            (*self._schedule_params(record), self._time_out(now), record.id,
                             expected_version))
        if changed != 1:
            current = self.get_schedule(record.id)  # ScheduleNotFoundError if it is gone
            raise ConcurrencyError(f"schedule {record.id!r} is at version {current.version}, "
                                   f"not {expected_version}: reload it")
        return record.replace(version=expected_version + 1, updated_at=now)

    def delete_schedule(self, schedule_id: str) -> bool:
        return bool(self._run(self._exec, self._q("DELETE FROM <schedules> WHERE id = ?"),
                              (schedule_id,)))

    def next_schedule_due(self, workflows: Collection[str] | None = None) -> _dt.datetime | None:
        only, names = self._only(workflows)
        row = self._run(self._one, self._q(
            "SELECT min(due_at) FROM <schedules> WHERE due_at IS NOT NULL") + only, names)
        return None if row is None else self._time_in(row[0])

    def fire_schedules(self, now: _dt.datetime, decide: Decide, *, limit: int = 10,
                       workflows: Collection[str] | None = None,
                       schedule_id: str | None = None) -> list[Firing]:
        return list(self._run(self._fire, now, decide, limit, workflows, schedule_id))

    def _fire(self, now: _dt.datetime, decide: Decide, limit: int,
              workflows: Collection[str] | None, schedule_id: str | None) -> list[Firing]:
        select = (f"SELECT {_qualified(_SCHEDULE, 's')}, i.status FROM <schedules> s "
                  "LEFT JOIN <instances> i ON i.id = s.last_instance ")
        params: list[Any]
        if schedule_id is not None:
            sql, params = select + "WHERE s.id = ?", [schedule_id]
        else:
            only, names = self._only(workflows)
            sql = (select + "WHERE s.due_at IS NOT NULL AND s.due_at <= ?"
                   + only.replace("workflow", "s.workflow") + " ORDER BY s.due_at, s.id LIMIT ?")
            params = [self._time_out(now), *names, limit]
        done: list[Firing] = []
        with self.transaction():
            rows = self._all(self._q(sql) + self._lock_schedules, params)
            if schedule_id is not None and not rows:
                raise ScheduleNotFoundError(f"no schedule {schedule_id!r}")
            for row in rows:
                record = self._schedule(row[:14])
                firing = decide(record, row[14])
                if firing is None:
                    continue
                if firing.cancel is not None:
                    done.append(firing)
                    continue
                stamp = utcnow()
                created = [r.id for r, entry in firing.instances
                           if self._create_quietly(r, entry, stamp)]
                saved = firing.schedule
                self._exec(self._q(_SAVE_SCHEDULE),
                           (*self._schedule_params(saved), self._time_out(stamp), saved.id,
                            record.version))
                done.append(Firing(saved.replace(version=record.version + 1, updated_at=stamp),
                                   firing.instances, created=tuple(created)))
        return done

    def _create_quietly(self, record: InstanceRecord, entry: QueueEntry | None,
                        now: _dt.datetime) -> bool:
        """Insert an instance (and its queue entry) unless its id exists: whether it was new."""
        out = self._time_out
        row = self._one(self._q(
            f"INSERT INTO <instances> ({COLUMNS}) VALUES ({','.join('?' * 13)}) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"),
            (record.id, record.workflow, record.status, record.blob, 1, out(record.wake_at),
             self._waiting_out(tuple(record.waiting_for)), record.attempts, record.error,
             None, None, out(now), out(now)))
        if row is None:
            return False
        if entry is not None:
            self._insert_entry(entry, now)
        return True

    # -- queues --

    def put_queue(self, record: QueueRecord) -> None:
        self._run(self._exec, self._q(
            f"INSERT INTO <queues> ({_QUEUE}) VALUES (?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE "
            "SET concurrency = excluded.concurrency, per_key = excluded.per_key, "
            "rate = excluded.rate, period = excluded.period, updated_at = excluded.updated_at"),
            (record.name, record.concurrency, record.per_key, record.rate, record.period,
             self._time_out(utcnow())))

    def get_queue(self, name: str) -> QueueRecord:
        row = self._run(self._one, self._q(f"SELECT {_QUEUE} FROM <queues> WHERE name = ?"),
                        (name,))
        if row is None:
            raise QueueNotFoundError(f"no queue {name!r} is defined in this store: define it "
                                     "first (engine.queues.define(Queue(...)))")
        return self._queue(row)

    def list_queues(self) -> list[QueueRecord]:
        rows = self._run(self._all, self._q(f"SELECT {_QUEUE} FROM <queues> ORDER BY name"))
        return [self._queue(row) for row in rows]

    def _queue(self, row: Sequence[Any]) -> QueueRecord:
        name, concurrency, per_key, rate, period, updated_at = row
        return QueueRecord(name, concurrency, per_key, rate,
                           None if period is None else float(period), self._time_in(updated_at))

    def _insert_entry(self, entry: QueueEntry, now: _dt.datetime) -> None:
        self._exec(self._q("INSERT INTO <queue_entries> (instance_id, queue, key, priority, "
                           "enqueued_at) VALUES (?,?,?,?,?)"),
                   (entry.instance_id, entry.queue, entry.key, entry.priority,
                    self._time_out(now)))

    def enqueue(self, record: InstanceRecord, entry: QueueEntry) -> InstanceRecord:
        return self._run(self._enqueue, record, entry)

    def _enqueue(self, record: InstanceRecord, entry: QueueEntry) -> InstanceRecord:
        now = utcnow()
        with self.transaction():
            self.get_queue(entry.queue)
            if not self._create_quietly(record.replace(wake_at=None), entry, now):
                raise DuplicateInstanceError(f"instance {record.id!r} already exists")
        return record.replace(version=1, wake_at=None, lease_owner=None, lease_until=None,
                              waiting_for=tuple(record.waiting_for), created_at=now,
                              updated_at=now)

    def admit(self, now: _dt.datetime, queues: Collection[str] | None = None) -> Admission:
        names = [q.name for q in self.list_queues() if queues is None or q.name in queues]
        admitted: list[str] = []
        next_at: _dt.datetime | None = None
        for name in names:
            if self._run(self._one, self._q(
                    "SELECT 1 FROM <queue_entries> WHERE queue = ? AND admitted_at IS NULL "
                    "LIMIT 1"), (name,)) is None:
                continue  # nothing waits: no write transaction (spent entries go next time)
            ids, at = self._run(self._admit_one, name, now)
            admitted += ids
            if at is not None and (next_at is None or at < next_at):
                next_at = at
        return Admission(tuple(admitted), next_at)

    def _admit_one(self, name: str, now: _dt.datetime
                   ) -> tuple[list[str], _dt.datetime | None]:
        out = self._time_out
        with self.transaction():
            row = self._one(self._q(f"SELECT {_QUEUE} FROM <queues> WHERE name = ?")
                            + self._lock_rows, (name,))
            if row is None:  # another worker is admitting this queue (or it is gone)
                return [], None
            queue = self._queue(row)
            since = None if queue.period is None else now - _dt.timedelta(seconds=queue.period)
            running: dict[str, int] = {}
            recent: list[_dt.datetime] = []
            spent: list[str] = []
            for instance_id, key, admitted_at, status in self._all(self._q(
                    "SELECT q.instance_id, q.key, q.admitted_at, i.status FROM <queue_entries> q "
                    "LEFT JOIN <instances> i ON i.id = q.instance_id "
                    "WHERE q.queue = ? AND q.admitted_at IS NOT NULL"), (name,)):
                at = self._time_in(admitted_at)
                live = status is not None and status not in ENDED
                in_window = since is not None and at is not None and at > since
                if live:
                    running[key] = running.get(key, 0) + 1
                if in_window and at is not None:
                    recent.append(at)
                if not live and not in_window:
                    spent.append(instance_id)

            def fetch(full: Collection[str], after: tuple[int, int] | None,
                      n: int) -> list[tuple[QueueEntry, str | None]]:
                sql = ("SELECT q.instance_id, q.key, q.priority, q.seq, q.enqueued_at, i.status "
                       "FROM <queue_entries> q LEFT JOIN <instances> i ON i.id = q.instance_id "
                       "WHERE q.queue = ? AND q.admitted_at IS NULL")
                params: list[Any] = [name]
                if after is not None:
                    sql += " AND (q.priority > ? OR (q.priority = ? AND q.seq > ?))"
                    params += [after[0], after[0], after[1]]
                text = self._q(sql)
                keys = sorted(full)
                if keys:
                    text += " AND NOT " + self._in("q.key", keys)
                    params += keys
                text += self._q(" ORDER BY q.priority, q.seq LIMIT ?")
                params.append(n)
                return [(QueueEntry(i, name, k, p, s, self._time_in(e)), st)
                        for i, k, p, s, e, st in self._all(text, params)]

            admit, dropped, next_at = plan_admission(queue, now, running, recent, fetch)
            gone = spent + [e.instance_id for e in dropped]
            for chunk in _chunks(gone):
                self._exec(self._q("DELETE FROM <queue_entries> WHERE ")
                           + self._in("instance_id", chunk), chunk)
            ids = [e.instance_id for e in admit]
            for chunk in _chunks(ids):
                self._exec(self._q("UPDATE <queue_entries> SET admitted_at = ? WHERE ")
                           + self._in("instance_id", chunk), [out(now), *chunk])
                self._exec(self._q("UPDATE <instances> SET wake_at = ? WHERE wake_at IS NULL "
                                   "AND ") + self._in("id", chunk), [out(now), *chunk])
        return ids, next_at

    def queue_entry(self, instance_id: str) -> tuple[QueueEntry, int] | None:
        row = self._run(self._one, self._q(
            f"SELECT {_ENTRY} FROM <queue_entries> WHERE instance_id = ?"), (instance_id,))
        if row is None:
            return None
        i, queue, key, priority, seq, enqueued_at, admitted_at = row
        entry = QueueEntry(i, queue, key, priority, seq, self._time_in(enqueued_at),
                           self._time_in(admitted_at))
        if entry.admitted_at is not None:
            return entry, 0
        # two ranges of the index `queue_waiting` (an OR of them would read it all)
        ahead = self._run(self._one, self._q(
            "SELECT (SELECT count(*) FROM <queue_entries> WHERE queue = ? AND admitted_at IS NULL "
            "AND priority < ?) + (SELECT count(*) FROM <queue_entries> WHERE queue = ? "
            "AND admitted_at IS NULL AND priority = ? AND seq < ?)"),
            (queue, priority, queue, priority, seq))
        return entry, int(ahead[0]) + 1

    def queue_counts(self, name: str) -> tuple[int, int]:
        self.get_queue(name)
        waiting = self._run(self._one, self._q(
            "SELECT count(*) FROM <queue_entries> WHERE queue = ? AND admitted_at IS NULL"),
            (name,))
        running = self._run(self._one, self._q(
            "SELECT count(*) FROM <queue_entries> q JOIN <instances> i ON i.id = q.instance_id "
            f"WHERE q.queue = ? AND q.admitted_at IS NOT NULL AND i.status NOT IN ({ENDED_SQL})"),
            (name,))
        return int(waiting[0]), int(running[0])

    def queue_entries(self, queue: str, *, waiting: bool = True,
                      after: tuple[int, int] | None = None,
                      limit: int = 100) -> list[QueueEntry]:
        # the waiting: ranges of the index `queue_waiting` (queue, priority, seq); the
        # admitted: those of `queue_admitted`, as few as the admission reads each round.
        # After (p, s): the rest of priority p, then the priorities above it: two seeks
        # (a row value `(priority, seq) > (p, s)` seeks on the priority alone in SQLite)
        base = (f"SELECT {_ENTRY} FROM <queue_entries> WHERE queue = ? AND admitted_at IS "
                + ("NULL" if waiting else "NOT NULL"))
        limit = max(limit, 0)
        parts: list[tuple[str, list[Any]]]
        if after is None:
            parts = [(" ORDER BY priority, seq LIMIT ?", [queue])]
        else:
            parts = [(" AND priority = ? AND seq > ? ORDER BY seq LIMIT ?",
                      [queue, after[0], after[1]]),
                     (" AND priority > ? ORDER BY priority, seq LIMIT ?", [queue, after[0]])]
        t = self._time_in
        found: list[QueueEntry] = []
        for tail, params in parts:
            if len(found) >= limit:
                break
            rows = self._run(self._all, self._q(base + tail), [*params, limit - len(found)])
            found += [QueueEntry(i, q, k, p, s, t(e), t(a)) for i, q, k, p, s, e, a in rows]
        return found

    # -- retention --

    def _purgeable(self, before: _dt.datetime, statuses: Collection[str],
                   workflow: str | None, exclude: Collection[str], limit: int) -> list[str]:
        # one query per status, each read in the order of the index on
        # (status, ended_at, id), then merged: no sort of every ended row
        now = self._time_out(utcnow())
        found: list[tuple[Any, str]] = []
        for status in sorted(set(statuses) & set(ENDED)):
            sql = ("SELECT ended_at, id FROM <instances> WHERE ended_at IS NOT NULL "
                   "AND status = ? AND ended_at < ? "
                   "AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until <= ?)")
            params: list[Any] = [status, self._time_out(before), now]
            text = self._q(sql)
            if workflow is not None:
                text += self._q(" AND workflow = ?")
                params.append(workflow)
            if exclude:
                text += " AND NOT " + self._in("workflow", sorted(exclude))
                params += sorted(exclude)
            text += self._q(" ORDER BY ended_at, id LIMIT ?")
            params.append(limit)
            found += [(at, i) for at, i in self._run(self._all, text, params)]
        found.sort()
        return [i for _, i in found[:limit]]

    def trim_journal(self, *, before: _dt.datetime | None = None, keep: int | None = None,
                     workflow: str | None = None, limit: int = 10_000) -> int:
        only = "" if workflow is None else (
            " AND j.instance_id IN (SELECT id FROM <instances> WHERE workflow = ?)")
        extra = [] if workflow is None else [workflow]
        removed = 0
        if before is not None:
            removed += self._run(self._exec, self._q(
                "DELETE FROM <journal> WHERE (instance_id, seq) IN (SELECT j.instance_id, j.seq "
                "FROM <journal> j WHERE j.at < ? AND j.seq < (SELECT max(seq) FROM <journal> k "
                f"WHERE k.instance_id = j.instance_id){only} LIMIT ?)"),
                (self._time_out(before), *extra, limit))
        if keep is not None and removed < limit:
            removed += self._run(self._exec, self._q(
                "DELETE FROM <journal> WHERE (instance_id, seq) IN (SELECT j.instance_id, j.seq "
                "FROM <journal> j JOIN (SELECT instance_id, max(seq) AS top FROM <journal> "
                f"GROUP BY instance_id) m ON m.instance_id = j.instance_id "
                f"WHERE j.seq <= m.top - ?{only} LIMIT ?)"),
                (keep, *extra, limit - removed))
        return removed


_SAVE_SCHEDULE = (
    "UPDATE <schedules> SET spec = ?, next_tick = ?, due_at = ?, paused = ?, last_tick = ?, "
    "last_instance = ?, fired = ?, skipped = ?, error = ?, version = version + 1, "
    "updated_at = ? WHERE id = ? AND version = ?"
)


@functools.lru_cache(maxsize=256)
def _dialect(text: str, prefix: str, placeholder: str) -> str:
    for table in ("schedules", "queues", "queue_entries", "instances", "journal"):
        text = text.replace(f"<{table}>", prefix + table)
    return text.replace("?", placeholder)


def _qualified(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[n:n + size] for n in range(0, len(values), size)]
