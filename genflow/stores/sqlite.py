"""`SQLiteStore`: the embedded default, on the standard library's `sqlite3`.

One file, WAL journal mode, many processes: SQLite's write lock serialises
writers, and every multi-statement change runs in a `BEGIN IMMEDIATE`
transaction so it is atomic and a claim never hands one row to two workers.
Times are stored as integer microseconds since the epoch (UTC), so they
compare exactly and `wake_at` is an ordinary index.

`synchronous=NORMAL` (the default) survives a crash of the process, which is
what WAL promises: a commit is lost only if the *machine* loses power before
the next checkpoint. `synchronous=FULL` survives that too, at the cost of an
fsync per commit (see the W3 benchmark).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from itertools import compress
from operator import ne
from pathlib import Path
from typing import Any

from genflow.errors import (
    ConcurrencyError,
    DuplicateInstanceError,
    GenflowError,
    InstanceNotFoundError,
)
from genflow.stores.base import (
    InstanceRecord,
    Journal,
    JournalEntries,
    JournalEntry,
    Records,
    Store,
    pack_detail,
    refused_save,
    unpack_detail,
    utcnow,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 1

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_US = _dt.timedelta(microseconds=1)

# Each migration takes the schema from version i to i + 1: a list of statements.
_MIGRATIONS: Sequence[Sequence[str]] = (
    (
        """CREATE TABLE instances (
            id          TEXT PRIMARY KEY,
            workflow    TEXT NOT NULL,
            status      TEXT NOT NULL,
            blob        BLOB NOT NULL,
            version     INTEGER NOT NULL,
            wake_at     INTEGER,
            waiting_for TEXT NOT NULL DEFAULT '[]',
            attempts    INTEGER NOT NULL DEFAULT 0,
            error       TEXT NOT NULL DEFAULT '',
            lease_owner TEXT,
            lease_until INTEGER,
            created_at  INTEGER NOT NULL,
            updated_at  INTEGER NOT NULL
        )""",
        "CREATE INDEX instances_due ON instances (wake_at) WHERE wake_at IS NOT NULL",
        "CREATE INDEX instances_workflow_status ON instances (workflow, status)",
        "CREATE INDEX instances_status ON instances (status)",
        # which instances wait for an event: kept by triggers from `waiting_for`
        # (a JSON array), so a save stays one statement
        """CREATE TABLE waits (
            event       TEXT NOT NULL,
            instance_id TEXT NOT NULL,
            PRIMARY KEY (event, instance_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX waits_instance ON waits (instance_id)",
        """CREATE TRIGGER waits_on_insert AFTER INSERT ON instances BEGIN
            INSERT OR IGNORE INTO waits (event, instance_id)
                SELECT value, new.id FROM json_each(new.waiting_for);
        END""",
        """CREATE TRIGGER waits_on_update AFTER UPDATE OF waiting_for ON instances
        WHEN old.waiting_for IS NOT new.waiting_for BEGIN
            DELETE FROM waits WHERE instance_id = old.id;
            INSERT OR IGNORE INTO waits (event, instance_id)
                SELECT value, new.id FROM json_each(new.waiting_for);
        END""",
        """CREATE TRIGGER waits_on_delete AFTER DELETE ON instances BEGIN
            DELETE FROM waits WHERE instance_id = old.id;
        END""",
        """CREATE TABLE journal (
            instance_id TEXT NOT NULL,
            seq         INTEGER NOT NULL,
            at          INTEGER NOT NULL,
            kind        TEXT NOT NULL,
            detail      BLOB NOT NULL,
            PRIMARY KEY (instance_id, seq)
        ) WITHOUT ROWID""",
    ),
)

_COLUMNS = ("id, workflow, status, blob, version, wake_at, waiting_for, attempts, error, "
            "lease_owner, lease_until, created_at, updated_at")
# RETURNING (one statement where a transaction of two was needed) came in 3.35.
_MIN_SQLITE = (3, 35)


def _to_us(value: _dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"stores need aware datetimes, got {value!r}")
    return (value - _EPOCH) // _US


def _from_us(value: int | None) -> _dt.datetime | None:
    # timedelta's positional arguments: 0.36 us against 0.53 with `microseconds=`
    # (a record read has four of these)
    return None if value is None else _EPOCH + _dt.timedelta(0, 0, value)


# `waiting_for` as the JSON text its column holds, and back. A handful of
# event-name sets recur across instances, so both directions are cached
# (json.dumps ~1.3 us, json.loads ~1 us; a cache hit ~0.1 us).
@functools.lru_cache(maxsize=4096)
def _waiting_out(events: tuple[str, ...]) -> str:
    return json.dumps(events)


@functools.lru_cache(maxsize=4096)
def _waiting_in(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _same(value: Any) -> Any:
    return value


#: the columns a save writes when they changed (the blob and version always),
#: and how each value is written
_SAVED = ("status", "wake_at", "waiting_for", "attempts", "error")
_SAVED_OUT: tuple[Callable[[Any], Any], ...] = (_same, _to_us, _waiting_out, _same, _same)
_ALL_SAVED = tuple(range(len(_SAVED)))


@functools.cache
def _save_sql(changed: tuple[int, ...], held: bool, release: bool) -> str:
    """The UPDATE of a save that sets the `changed` columns (indexes in `_SAVED`),
    and drops the lease with `release` (the row's owner is then NULL or the saver).

    The compare-and-swap is its WHERE clause (and the waits index follows by
    trigger), so a save is one statement and a durable step costs one commit.
    `held`: the saver holds the lease, so the lease condition is an equality
    and the stored owner is known after the write, without `RETURNING` (which
    costs ~2.5 us a save: a result row to fetch, and the commit happens on
    that second step). Otherwise the row's owner is returned."""
    columns = "".join(f"{_SAVED[i]}=?, " for i in changed)
    if release:
        columns += "lease_owner=NULL, lease_until=NULL, "
    update = (f"UPDATE instances SET {columns}blob=?, version=?, updated_at=? "
              "WHERE id=? AND version=?")
    if held:
        return f"{update} AND lease_owner=?"
    return (f"{update} AND (? IS NULL OR lease_owner IS NULL OR lease_owner = ?) "
            "RETURNING lease_owner")


def _only(workflows: Collection[str] | None) -> tuple[str, list[str]]:
    """An `AND workflow IN (...)` clause and its parameters (empty for None)."""
    if workflows is None:
        return "", []
    names = sorted(workflows)
    return f" AND workflow IN ({','.join('?' * len(names))})" if names else " AND 0", names


def _record(row: tuple[Any, ...]) -> InstanceRecord:
    (id_, workflow, status, blob, version, wake_at, waiting, attempts, error,
     lease_owner, lease_until, created_at, updated_at) = row
    return InstanceRecord(
        id=id_, workflow=workflow, status=status, blob=bytes(blob), version=version,
        wake_at=_from_us(wake_at), waiting_for=_waiting_in(waiting),
        attempts=attempts, error=error, lease_owner=lease_owner,
        lease_until=_from_us(lease_until), created_at=_from_us(created_at),
        updated_at=_from_us(updated_at),
    )


class SQLiteStore(Store):
    """Instances in one SQLite file (WAL). Safe to share between threads and processes.

    `path` may be `":memory:"` for a private, non-durable database.
    `synchronous` is SQLite's `PRAGMA synchronous` (NORMAL or FULL).
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL",
                 busy_timeout: float = 30.0) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise GenflowError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise GenflowError(f"the SQLite store needs SQLite 3.35 or newer; this Python "
                               f"has {sqlite3.sqlite_version}")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._grouped = False  # inside `transaction()`: statements join its commit
        self._group_thread: int | None = None
        self._wake = threading.Condition()
        self._woken = False
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._saves = self._db.cursor()  # one cursor for every save: not one made per save
            self._set_up(time.monotonic() + busy_timeout)
        except sqlite3.DatabaseError as exc:
            raise GenflowError(f"cannot open SQLite store {self.path!r}: {exc}") from None

    def _set_up(self, deadline: float) -> None:
        """WAL mode and the schema. Switching a new file to WAL can fail at once
        with "database is locked" when another process opens it at the same
        moment (SQLite's busy timeout does not cover it), so that is retried."""
        pause = 0.005
        while True:
            try:
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode == "wal" or self.path == ":memory:":
                    break
                problem = f"the journal mode stayed {mode!r}"
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                problem = str(exc)
            if time.monotonic() + pause > deadline:
                raise GenflowError(f"cannot switch SQLite store {self.path!r} to WAL: {problem}")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        self._db.execute(f"PRAGMA synchronous={self.synchronous}")
        self._migrate()

    # -- schema --

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS genflow_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM genflow_schema").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise GenflowError(
                    f"{self.path!r} has schema version {current}; this genflow knows up to "
                    f"{SCHEMA_VERSION}: upgrade genflow"
                )
            for migration in _MIGRATIONS[current:]:
                for statement in migration:
                    db.execute(statement)
            db.execute("DELETE FROM genflow_schema")
            db.execute("INSERT INTO genflow_schema VALUES (?)", (SCHEMA_VERSION,))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for every write inside (this thread holds the store meanwhile)."""
        with self._lock:
            if self._grouped:  # nested: the outer one commits
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._grouped = True
            self._group_thread = threading.get_ident()
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._grouped = False
                self._group_thread = None

    def grouping(self) -> bool:
        return self._group_thread == threading.get_ident()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction (SQLite's write lock held throughout)."""
        with self._lock:
            db = self._db
            # inside `transaction()`, a savepoint keeps these statements all-or-nothing
            begin, commit, rollback = (
                ("SAVEPOINT w", "RELEASE w", "ROLLBACK TO w; RELEASE w") if self._grouped
                else ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
            )
            db.execute(begin)
            try:
                yield db
            except BaseException:
                for statement in rollback.split("; "):
                    db.execute(statement)
                raise
            db.execute(commit)

    # -- instances --

    def create(self, record: InstanceRecord, *, lease_owner: str | None = None,
               lease_until: _dt.datetime | None = None) -> InstanceRecord:
        now = utcnow()
        stored = record.replace(version=1, lease_owner=lease_owner,
                              lease_until=lease_until, created_at=now, updated_at=now)
        try:
            now_us = _to_us(now)
            with self._lock:  # one statement (and its trigger): atomic by itself
                self._db.execute(
                    f"INSERT INTO instances ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (stored.id, stored.workflow, stored.status, stored.blob, 1,
                     _to_us(stored.wake_at), _waiting_out(tuple(stored.waiting_for)),
                     stored.attempts, stored.error, lease_owner, _to_us(lease_until),
                     now_us, now_us),
                )
        except sqlite3.IntegrityError:
            raise DuplicateInstanceError(f"instance {record.id!r} already exists") from None
        return stored

    def get(self, instance_id: str) -> InstanceRecord:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM instances WHERE id = ?",
                                   (instance_id,)).fetchone()
        if row is None:
            raise InstanceNotFoundError(f"no instance {instance_id!r}")
        return _record(row)

    def save(self, record: InstanceRecord, *, expected_version: int,
             lease_owner: str | None = None,
             previous: InstanceRecord | None = None,
             release: bool = False) -> InstanceRecord:
        now = utcnow()
        release = release and lease_owner is not None
        waiting = tuple(record.waiting_for)
        values = (record.status, record.wake_at, waiting, record.attempts, record.error)
        # Naming an indexed column in SET rewrites its index entries even when
        # the value is the same, so with `previous` only what changed is set:
        # a step's save then writes the blob and the version (W3: ~30 us less).
        changed = _ALL_SAVED if previous is None else tuple(compress(_ALL_SAVED, map(
            ne, values, (previous.status, previous.wake_at, tuple(previous.waiting_for),
                         previous.attempts, previous.error))))
        params = [_SAVED_OUT[i](values[i]) for i in changed]
        params += (record.blob, expected_version + 1, _to_us(now), record.id, expected_version)
        # The engine saves what it leased: then the lease condition is
        # `lease_owner = ?`, and if that fails (the row changed, or its lease
        # was dropped) the general statement below decides, and says why.
        held = (lease_owner is not None and previous is not None
                and previous.lease_owner == lease_owner)
        with self._lock:
            if held and self._saves.execute(_save_sql(changed, True, release),
                                            (*params, lease_owner)).rowcount == 1:
                holder = lease_owner
            else:
                row = self._db.execute(_save_sql(changed, False, release),
                                       (*params, lease_owner, lease_owner)).fetchone()
                if row is None:
                    current = self.get(record.id)  # raises InstanceNotFoundError
                    raise refused_save(record.id, current.version, current.lease_owner,
                                       expected_version, lease_owner) or ConcurrencyError(
                        f"instance {record.id!r} changed while it was saved: reload and retry")
                holder = row[0]
        if release:
            return record.replace(version=expected_version + 1, updated_at=now,
                                  lease_owner=None, lease_until=None, waiting_for=waiting)
        return record.replace(version=expected_version + 1, updated_at=now,
                              lease_owner=holder, waiting_for=waiting)

    def delete(self, instance_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM journal WHERE instance_id = ?", (instance_id,))
            db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))

    def _where(self, workflow: str | None, status: str | None, waiting: str | None,
               after: str | None = None,
               shard: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if shard is not None:  # rowids are stable while the file lives
            clauses.append("rowid % ? = ?")
            params.extend((shard[1], shard[0]))
        if workflow is not None:
            clauses.append("workflow = ?")
            params.append(workflow)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if waiting is not None:
            clauses.append("id IN (SELECT instance_id FROM waits WHERE event = ?)")
            params.append(waiting)
        if after is not None:
            clauses.append("id > ?")
            params.append(after)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list(self, *, workflow: str | None = None, status: str | None = None,
             limit: int | None = None, after: str | None = None,
             waiting: str | None = None, shard: tuple[int, int] | None = None) -> Records:
        where, params = self._where(workflow, status, waiting, after, shard)
        sql = f"SELECT {_COLUMNS} FROM instances{where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_record(row) for row in rows]

    def count(self, *, workflow: str | None = None, status: str | None = None,
              waiting: str | None = None) -> int:
        where, params = self._where(workflow, status, waiting)
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM instances{where}",
                                        params).fetchone()[0])

    # -- leases and due work --

    def acquire(self, instance_id: str, owner: str, now: _dt.datetime,
                until: _dt.datetime) -> InstanceRecord | None:
        with self._lock:
            row = self._db.execute(
                "UPDATE instances SET lease_owner = ?, lease_until = ? WHERE id = ? AND "
                "(lease_owner IS NULL OR lease_owner = ? OR lease_until IS NULL "
                f"OR lease_until <= ?) RETURNING {_COLUMNS}",
                (owner, _to_us(until), instance_id, owner, _to_us(now)),
            ).fetchone()
        if row is None:
            self.get(instance_id)  # InstanceNotFoundError if that is why
            return None
        return _record(row)

    def claim_due(self, owner: str, now: _dt.datetime, until: _dt.datetime,
                  limit: int, workflows: Collection[str] | None = None) -> Records:
        now_us = _to_us(now)
        only, names = _only(workflows)
        with self._lock:  # one statement: two claimers never share a row
            rows = self._db.execute(
                "UPDATE instances SET lease_owner = ?, lease_until = ? WHERE id IN ("
                "SELECT id FROM instances WHERE wake_at IS NOT NULL AND wake_at <= ? "
                f"AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until <= ?){only} "
                f"ORDER BY wake_at, id LIMIT ?) RETURNING {_COLUMNS}",
                (owner, _to_us(until), now_us, now_us, *names, limit),
            ).fetchall()
        # RETURNING gives no order: earliest first, as promised
        return sorted((_record(row) for row in rows), key=lambda r: (r.wake_at, r.id))

    def release(self, instance_id: str, owner: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE instances SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (instance_id, owner),
            )

    def next_wake(self, workflows: Collection[str] | None = None) -> _dt.datetime | None:
        only, names = _only(workflows)
        with self._lock:
            row = self._db.execute("SELECT min(wake_at) FROM instances "
                                   f"WHERE wake_at IS NOT NULL{only}", names).fetchone()
        return _from_us(row[0])

    def notify_wake(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    def wait_wake(self, seconds: float) -> None:
        """Sleep up to `seconds`; wake early on a notification in this process or
        on any commit by another process (SQLite's `data_version` moves)."""
        deadline = time.monotonic() + seconds
        with self._lock:
            seen = self._db.execute("PRAGMA data_version").fetchone()[0]
        while True:
            with self._wake:
                left = deadline - time.monotonic()
                if self._woken or left <= 0:
                    self._woken = False
                    return
                self._wake.wait(min(left, 0.05))
            with self._lock:
                if self._db.execute("PRAGMA data_version").fetchone()[0] != seen:
                    return

    # -- journal --

    def append_journal(self, instance_id: str, entries: JournalEntries,
                       at: _dt.datetime) -> None:
        with self._write() as db:
            last = db.execute("SELECT max(seq) FROM journal WHERE instance_id = ?",
                              (instance_id,)).fetchone()[0] or 0
            db.executemany(
                "INSERT INTO journal (instance_id, seq, at, kind, detail) VALUES (?,?,?,?,?)",
                [(instance_id, last + n, _to_us(at), kind, pack_detail(detail))
                 for n, (kind, detail) in enumerate(entries, 1)],
            )

    def journal(self, instance_id: str) -> Journal:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, at, kind, detail FROM journal WHERE instance_id = ? ORDER BY seq",
                (instance_id,),
            ).fetchall()
        return [JournalEntry(instance_id, seq, _from_us(at), kind,  # type: ignore[arg-type]
                             unpack_detail(detail)) for seq, at, kind, detail in rows]

    def reopen(self) -> SQLiteStore:
        if self.path == ":memory:":
            raise GenflowError("a private ':memory:' SQLite database cannot be opened again")
        return SQLiteStore(self.path, synchronous=self.synchronous,
                           busy_timeout=self.busy_timeout)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


def sqlite_path(url: str) -> Path | str:
    """The file of an `sqlite:///relative/or//absolute` URL (`:memory:` allowed)."""
    rest = url[len("sqlite://"):]
    if not rest.startswith("/"):
        raise GenflowError(f"SQLite URLs look like sqlite:///path/to/file.db, not {url!r}")
    rest = rest[1:]
    if rest == ":memory:":
        return rest
    if not rest:
        raise GenflowError(f"the SQLite URL {url!r} names no file")
    return Path(rest)
