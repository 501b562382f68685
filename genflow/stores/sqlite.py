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

Opening writes nothing unless the file is new or its schema old (a worker
starts on a full disk); `readonly=True` opens the file with `mode=ro`, never
creates one, and refuses a file that holds no genflow store. A failed
statement is rolled back by SQLite, so the store retries the transient ones
(locked past the busy timeout, a disk I/O error) for `retry_seconds` before
it raises `StoreUnavailableError`; a full disk is `StoreFullError` at once.
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
from urllib.parse import quote

from genflow.errors import (
    ArgumentError,
    DuplicateInstanceError,
    GenflowError,
    ReadOnlyStoreError,
    StoreError,
    StoreFullError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from genflow.stores.base import (
    InstanceRecord,
    JournalEntries,
    Records,
    new_record,
    pack_detail,
    utcnow,
)
from genflow.stores.group import GroupCommit, Write
from genflow.stores.outbox_sql import OUTBOX_SQLITE, OUTBOX_TRACE_SQLITE, OutboxSQL
from genflow.stores.sched_sql import ENDED_TERM
from genflow.stores.sql import COLUMNS, statements, unencodable

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]


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
    # schedules, queues and retention (genflow.stores.sched_sql)
    (
        """CREATE TABLE schedules (
            id            TEXT PRIMARY KEY,
            workflow      TEXT NOT NULL,
            spec          BLOB NOT NULL,
            next_tick     INTEGER,
            due_at        INTEGER,
            paused        INTEGER NOT NULL DEFAULT 0,
            last_tick     INTEGER,
            last_instance TEXT,
            fired         INTEGER NOT NULL DEFAULT 0,
            skipped       INTEGER NOT NULL DEFAULT 0,
            error         TEXT NOT NULL DEFAULT '',
            version       INTEGER NOT NULL,
            created_at    INTEGER NOT NULL,
            updated_at    INTEGER NOT NULL
        )""",
        "CREATE INDEX schedules_due ON schedules (due_at) WHERE due_at IS NOT NULL",
        """CREATE TABLE queues (
            name        TEXT PRIMARY KEY,
            concurrency INTEGER,
            per_key     INTEGER,
            rate        INTEGER,
            period      REAL,
            updated_at  INTEGER NOT NULL
        )""",
        """CREATE TABLE queue_entries (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            instance_id TEXT NOT NULL UNIQUE,
            queue       TEXT NOT NULL,
            key         TEXT NOT NULL,
            priority    INTEGER NOT NULL,
            enqueued_at INTEGER NOT NULL,
            admitted_at INTEGER
        )""",
        "CREATE INDEX queue_waiting ON queue_entries (queue, priority, seq) "
        "WHERE admitted_at IS NULL",
        "CREATE INDEX queue_admitted ON queue_entries (queue) WHERE admitted_at IS NOT NULL",
        # retention: ended instances by age, journal entries by age
        "CREATE INDEX instances_ended ON instances (status, updated_at, id) "
        "WHERE status IN ('finished', 'cancelled', 'failed')",
        "CREATE INDEX journal_at ON journal (at)",
    ),
    # the outbox and children links (genflow.stores.outbox_sql)
    OUTBOX_SQLITE,
    # the store's speed at scale (docs/stores.md, "Speed of the store"):
    # due work in (wake_at, id) order, so a claim reads only the rows it
    # takes, ties included; ended instances' predicate with ORs, which SQLite
    # tests per row, not `IN (...)`, for which it built a table at every
    # UPDATE of `updated_at` (every save: three times a step's commit)
    (
        "DROP INDEX instances_due",
        "CREATE INDEX instances_due ON instances (wake_at, id) WHERE wake_at IS NOT NULL",
        "DROP INDEX instances_ended",
        "CREATE INDEX instances_ended ON instances (status, updated_at, id) WHERE "
        + ENDED_TERM,
    ),
    # a step's save (blob, version, updated_at) changes no indexed column: ended
    # instances are found by when they ended (`ended_at`, kept by triggers when
    # the status changes), not by `updated_at`, which every save writes and which
    # put every save through the index of ended instances
    (
        "ALTER TABLE instances ADD COLUMN ended_at INTEGER",
        f"UPDATE instances SET ended_at = updated_at WHERE {ENDED_TERM}",
        "DROP INDEX instances_ended",
        "CREATE INDEX instances_ended ON instances (status, ended_at, id) "
        "WHERE ended_at IS NOT NULL",
        f"""CREATE TRIGGER instances_ended_on_insert AFTER INSERT ON instances
        WHEN {ENDED_TERM.replace('status', 'new.status')} BEGIN
            UPDATE instances SET ended_at = new.updated_at WHERE id = new.id;
        END""",
        f"""CREATE TRIGGER instances_ended_on_update AFTER UPDATE OF status ON instances
        WHEN old.status IS NOT new.status BEGIN
            UPDATE instances SET ended_at = CASE WHEN {ENDED_TERM.replace('status', 'new.status')}
                THEN new.updated_at END WHERE id = new.id;
        END""",
    ),
    # an outbox row's trace context (genflow.relay: a send's delivery joins the
    # trace of the step that asked for it)
    OUTBOX_TRACE_SQLITE,
)

SCHEMA_VERSION = len(_MIGRATIONS)

# RETURNING (one statement where a transaction of two was needed) came in 3.35.
_MIN_SQLITE = (3, 35)

# SQLite's primary result codes (an extended code's low byte)
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = (
    3, 5, 6, 8, 10, 11, 13, 14, 26)
_CONSTRAINT_PRIMARYKEY = 1555


def _to_us(value: _dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"stores need aware datetimes, got {value!r}")
    return (value - _EPOCH) // _US


def _from_us(value: int | None) -> _dt.datetime | None:
    # timedelta's positional arguments: cheaper than `microseconds=` (a record
    # read has four of these)
    return None if value is None else _EPOCH + _dt.timedelta(0, 0, value)


# `waiting_for` as the JSON text its column holds, and back. A handful of
# event-name sets recur across instances, so both directions are cached.
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
_REFUSED: Any = object()  # `_save_row`: no row matched


@functools.cache
def _save_sql(changed: tuple[int, ...], held: bool, release: bool) -> str:
    """The UPDATE of a save that sets the `changed` columns (indexes in `_SAVED`),
    and drops the lease with `release` (the row's owner is then NULL or the saver).

    The compare-and-swap is its WHERE clause (and the waits index follows by
    trigger), so a save is one statement and a durable step costs one commit.
    `held`: the saver knows the row's lease (it is as the saver last saw it),
    so the lease condition is that lease, and the stored lease is known after
    the write, without `RETURNING`: SQLite collects RETURNING's
    rows in a table of their own before the first is fetched, which costs as
    much as the UPDATE itself. Otherwise the row's lease is returned."""
    columns = "".join(f"{_SAVED[i]}=?, " for i in changed)
    if release:
        columns += "lease_owner=NULL, lease_until=NULL, "
    update = (f"UPDATE instances SET {columns}blob=?, version=?, updated_at=? "
              "WHERE id=? AND version=?")
    if held:
        return f"{update} AND lease_owner IS ? AND lease_until IS ?"
    return (f"{update} AND (? IS NULL OR lease_owner IS NULL OR lease_owner = ?) "
            "RETURNING lease_owner, lease_until")


#: a step's save: the blob, version and updated_at, under the lease the saver saw
_STEP_SQL = _save_sql((), True, False)


class SQLiteStore(OutboxSQL):
    """Instances in one SQLite file (WAL). Safe to share between threads and processes.

    `path` may be `":memory:"` for a private, non-durable database.
    `synchronous` is SQLite's `PRAGMA synchronous` (NORMAL or FULL).
    `busy_timeout` is how long a statement waits for another process's write
    lock; `retry_seconds`, how long a transient fault is retried after that.
    `readonly` opens an existing store for reading only (writes raise
    `ReadOnlyStoreError`).
    """

    _catch = (sqlite3.Error, UnicodeEncodeError)
    _sql = statements("instances", "journal")
    _shard_clause = "rowid % ? = ?"  # rowids are stable while the file lives
    _waiting_clause = "id IN (SELECT instance_id FROM waits WHERE event = ?)"
    # `+workflow`: not a term SQLite may answer from the (workflow, status)
    # index, so a claim and `next_wake` read the due index in order and stop
    # early, instead of reading every row of the worker's workflows and sorting
    _workflow_term = "+workflow"
    _time_out = staticmethod(_to_us)
    _time_in = staticmethod(_from_us)
    _waiting_out = staticmethod(_waiting_out)
    _waiting_in = staticmethod(_waiting_in)

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL",
                 busy_timeout: float = 30.0, readonly: bool = False,
                 retry_seconds: float = 10.0) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ArgumentError(f"synchronous is one of OFF, NORMAL, FULL or EXTRA (NORMAL or FULL "
                                f"for a store that keeps its writes), not {synchronous!r}")
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise GenflowError(f"the SQLite store needs SQLite 3.35 or newer; this Python "
                               f"has {sqlite3.sqlite_version}")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.readonly = readonly
        self.retry_seconds = retry_seconds
        self._lock = threading.RLock()
        self._grouped = False  # inside `transaction()`: statements join its commit
        self._group_thread: int | None = None
        #: concurrent threads' writes share commits (genflow.stores.group)
        #: (alone, a write runs in autocommit: a single statement is its own
        #: transaction, and a write of several opens its own with `_write()`)
        self._writes = GroupCommit(self._lock, None, self._write_together)
        self._wake = threading.Condition()
        self._woken = False
        try:
            if readonly and self.path != ":memory:":
                self._db = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True,
                                           timeout=busy_timeout, isolation_level=None,
                                           check_same_thread=False)
            else:
                self._db = sqlite3.connect(self.path, timeout=busy_timeout,
                                           isolation_level=None, check_same_thread=False)
            self._saves = self._db.cursor()  # one cursor for every save: not one made per save
            # the lease the last save assumed, and it in microseconds: an operation's
            # saves of one instance assume the same lease, and converting a
            # datetime costs as much as a clock reading (`_held_us`)
            self._held: tuple[_dt.datetime | None, int | None] = (None, None)
            self._run(self._set_up)
        except StoreError as exc:
            self._close_quietly()
            raise type(exc)(f"cannot open the store: {exc}") from exc.__cause__
        except sqlite3.Error as exc:  # raised by connect itself
            self._close_quietly()
            error = self._translate(exc)
            raise type(error)(f"cannot open the store: {error}") from exc
        except BaseException:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def _set_up(self) -> None:
        """WAL mode and the schema, writing only what is missing: a store that
        is set up already opens without a write (on a full disk, too)."""
        db = self._db
        if not self.readonly and self.path != ":memory:":
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                # can fail at once with "database is locked" when another
                # process opens a new file at the same moment: `_run` retries
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(f"SQLite store {self.path!r}: the journal mode stayed "
                                     f"{mode!r}, not WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        current = self._schema_version()
        if current == SCHEMA_VERSION:
            return
        self._refuse_newer(current)
        if self.readonly:
            if current is None:
                raise StoreNotFoundError(
                    f"SQLite store {self.path!r}: the file holds no genflow store (no "
                    "genflow_schema table): check the path")
            raise ReadOnlyStoreError(
                f"SQLite store {self.path!r} has schema version {current}, this genflow "
                f"needs {SCHEMA_VERSION}: open it once read-write (a worker) to migrate it")
        self._migrate()

    # -- schema --

    def _schema_version(self) -> int | None:
        """The schema's version (None: no genflow tables), read without a write lock."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                            "AND name = 'genflow_schema'").fetchone() is None:
            return None
        row = self._db.execute("SELECT version FROM genflow_schema").fetchone()
        return row[0] if row else 0

    def _refuse_newer(self, current: int | None) -> None:
        if current is not None and current > SCHEMA_VERSION:
            raise GenflowError(
                f"{self.path!r} has schema version {current}; this genflow knows up to "
                f"{SCHEMA_VERSION}: upgrade genflow"
            )

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS genflow_schema (version INTEGER NOT NULL)")
            current = self._schema_version() or 0  # another process may have migrated
            self._refuse_newer(current)
            if current == SCHEMA_VERSION:
                return
            for migration in _MIGRATIONS[current:]:
                for statement in migration:
                    db.execute(statement)
            db.execute("DELETE FROM genflow_schema")
            db.execute("INSERT INTO genflow_schema VALUES (?)", (SCHEMA_VERSION,))

    # -- faults --

    def _translate(self, exc: BaseException) -> StoreError:
        where = f"SQLite store {self.path!r}"
        if isinstance(exc, UnicodeEncodeError):
            return unencodable(where, exc)
        text = str(exc)
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == _FULL:
            return StoreFullError(f"{where} is full ({text}): free space on its disk (or "
                                  "raise its size limit); nothing was written")
        if primary in (_READONLY, _PERM):
            if self.readonly:
                return ReadOnlyStoreError(f"{where} was opened read-only ({text}): open it "
                                          "read-write to change it; nothing was written")
            return ReadOnlyStoreError(f"{where} refuses writes ({text}): make the file, its "
                                      "directory and its -wal and -shm files writable by this "
                                      "user; nothing was written")
        if primary in (_BUSY, _LOCKED):
            return StoreUnavailableError(
                f"{where} is busy ({text}): another process held its write lock for over "
                f"{self.busy_timeout:g}s; try again later (workers retry by themselves)")
        if primary == _IOERR:
            return StoreUnavailableError(f"{where} met a disk I/O error ({text}): check the "
                                         "disk; nothing was written")
        if primary == _CANTOPEN:
            if self.readonly and not os.path.exists(self.path):
                return StoreNotFoundError(f"{where}: no such file (a read-only command never "
                                          "creates one): check the path")
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                return StoreNotFoundError(f"{where}: the directory {folder!r} does not exist: "
                                          "check the path")
            return StoreNotFoundError(f"{where} cannot be opened ({text}): check the path and "
                                      "that this user may read the file and its directory")
        if primary == _NOTADB:
            return StoreNotFoundError(f"{where} is not an SQLite database ({text}): check the "
                                      "path")
        if primary == _CORRUPT:
            return StoreError(f"{where} is corrupt ({text}): restore it from a backup")
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
            return StoreError(f"{where} is closed: open it again")
        return StoreError(f"{where} failed: {text}")

    # -- the driver's primitives --

    def _one(self, sql: str, params: Any = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Any = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _exec(self, sql: str, params: Any = ()) -> int:
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def _insert(self, sql: str, params: Any, instance_id: str) -> None:
        try:
            with self._lock:  # one statement (and its trigger): atomic by itself
                self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            if getattr(exc, "sqlite_errorcode", None) != _CONSTRAINT_PRIMARYKEY:
                raise
            raise DuplicateInstanceError(f"instance {instance_id!r} already exists") from None

    # -- grouping writes --

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for every write inside (this thread holds the store meanwhile)."""
        with self._lock:
            if self._grouped:  # nested: the outer one commits
                yield
                return
            self._group_statement("BEGIN IMMEDIATE")
            self._grouped = True
            self._group_thread = threading.get_ident()
            try:
                yield
            except BaseException:
                self._rollback("ROLLBACK")
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback("ROLLBACK")
                    raise self._translate(exc) from exc
            finally:
                self._grouped = False
                self._group_thread = None

    def _group_statement(self, statement: str) -> None:
        try:
            self._db.execute(statement)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _rollback(self, statements: str) -> None:
        """Undo an unfinished write, unless SQLite has already (a full disk or an
        I/O error may roll the transaction back by itself)."""
        if self._db.in_transaction:
            for statement in statements.split("; "):
                self._db.execute(statement)

    def grouping(self) -> bool:
        group = self._group_thread  # (None, the commonest: no thread to ask for)
        return group is not None and group == threading.get_ident()

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
                db.execute(commit)
            except BaseException:
                self._rollback(rollback)
                raise

    # -- instances --

    def save(self, record: InstanceRecord, *, expected_version: int,
             lease_owner: str | None = None,
             previous: InstanceRecord | None = None,
             release: bool = False) -> InstanceRecord:
        now = utcnow()
        release = release and lease_owner is not None
        waiting = record.waiting_for
        if type(waiting) is not tuple:
            waiting = tuple(waiting)
        # Naming an indexed column in SET rewrites its index entries even when
        # the value is the same, so with `previous` only what changed is set:
        # a step's save then writes the blob and the version (tested first,
        # field by field: the commonest save).
        if previous is None:
            changed = _ALL_SAVED
        else:
            was = previous.waiting_for
            if type(was) is not tuple:
                was = tuple(was)
            if (record.status == previous.status and record.wake_at == previous.wake_at
                    and record.attempts == previous.attempts and record.error == previous.error
                    and waiting == was):
                changed = ()
            else:
                values = (record.status, record.wake_at, waiting, record.attempts, record.error)
                changed = tuple(compress(_ALL_SAVED, map(
                    ne, values, (previous.status, previous.wake_at, was, previous.attempts,
                                 previous.error))))
        # (`now` is this store's own aware reading: `_to_us`'s checks have nothing to refuse)
        params: Any = (record.blob, expected_version + 1, (now - _EPOCH) // _US, record.id,
                       expected_version)
        if changed:
            values = (record.status, record.wake_at, waiting, record.attempts, record.error)
            params = (*[_SAVED_OUT[i](values[i]) for i in changed], *params)
        # A save of the row as the saver last saw it (`previous`), with the
        # lease it had (its own, or none asked for) first assumes that lease is
        # unchanged: if that fails (the row changed, or its lease did) the
        # general statement decides, and `_refused` says why.
        held = None
        if previous is not None and (lease_owner is None or previous.lease_owner == lease_owner):
            held = (previous.lease_owner, previous.lease_until)
        try:
            if self._group_thread is None:  # a commit of its own, shared with other threads'
                lease = self._writes.run(self._save_held, changed, held, release, params,
                                         lease_owner)
            else:
                lease = self._save_row(changed, held, release, params, lease_owner)
        except self._catch as exc:
            lease = self._again(exc, self._save_row, changed, held, release, params,
                                lease_owner)
        if lease is _REFUSED:
            return self._refused(record, expected_version, lease_owner, now)
        # positionally: the record as stored (`replace` would cost a second call)
        return new_record(
            record.id, record.workflow, record.status, record.blob, expected_version + 1,
            record.wake_at, waiting, record.attempts, record.error,
            None if release else lease[0], None if release else lease[1],
            record.created_at, now)

    def _save_row(self, changed: tuple[int, ...],
                  held: tuple[str | None, _dt.datetime | None] | None, release: bool,
                  params: tuple[Any, ...], lease_owner: str | None) -> Any:
        """The save's statement: the row's lease (owner, until) after it, or
        `_REFUSED`. `held`: the lease the row is assumed to have (None: no guess)."""
        with self._lock:
            return self._save_held(changed, held, release, params, lease_owner)

    def _save_held(self, changed: tuple[int, ...],
                   held: tuple[str | None, _dt.datetime | None] | None, release: bool,
                   params: tuple[Any, ...], lease_owner: str | None) -> Any:
        """`_save_row`, the store's lock held (group commit's writes hold it)."""
        if held is not None:
            until = held[1]
            last = self._held
            if until is not last[0]:
                last = self._held = (until, _to_us(until))
            sql = _STEP_SQL if not changed and not release else _save_sql(changed, True, release)
            if self._saves.execute(sql, (*params, held[0], last[1])).rowcount == 1:
                return held
        row = self._db.execute(_save_sql(changed, False, release),
                               (*params, lease_owner, lease_owner)).fetchone()
        return _REFUSED if row is None else (row[0], _from_us(row[1]))

    # -- group commit (genflow.stores.group) --

    def _commit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The write `fn(*args)` (statements on this store's connection) committed:
        inside `transaction()` it joins that one; else its commit is shared with
        the writes other threads make meanwhile."""
        if self._group_thread is not None and self.grouping():
            return fn(*args)
        return self._writes.run(fn, *args)

    def _write_together(self, writes: Sequence[Write]) -> list[Any]:
        """Several threads' writes in one transaction: `_write()` inside takes
        a savepoint, as inside `transaction()`."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        self._grouped = True
        try:
            results = [fn(*args) for fn, args in writes]
            db.execute("COMMIT")
        except BaseException:
            self._rollback("ROLLBACK")
            raise
        finally:
            self._grouped = False
        return results

    def delete(self, instance_id: str) -> None:
        self._run(self._delete_rows, instance_id)

    def _delete_rows(self, instance_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM journal WHERE instance_id = ?", (instance_id,))
            db.execute("DELETE FROM queue_entries WHERE instance_id = ?", (instance_id,))
            self._delete_links(instance_id)
            db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))

    # -- leases and due work --

    def claim_due(self, owner: str, now: _dt.datetime, until: _dt.datetime,
                  limit: int, workflows: Collection[str] | None = None) -> Records:
        now_us = _to_us(now)
        only, names = self._only(workflows)

        def claim() -> Records:
            # One write transaction (two claimers never share a row): which rows, and
            # whose expired leases among them (RETURNING shows only the new owner).
            with self._write() as db:
                due = db.execute(
                    "SELECT id, lease_owner FROM instances INDEXED BY instances_due "
                    "WHERE wake_at IS NOT NULL AND "
                    "wake_at <= ? AND (lease_owner IS NULL OR lease_until IS NULL OR "
                    f"lease_until <= ?){only} ORDER BY wake_at, id LIMIT ?",
                    (now_us, now_us, *names, limit)).fetchall()
                if not due:
                    return []
                rows = db.execute(
                    "UPDATE instances SET lease_owner = ?, lease_until = ? WHERE id IN "
                    f"({','.join('?' * len(due))}) RETURNING {COLUMNS}",
                    (owner, _to_us(until), *(row[0] for row in due))).fetchall()
            was = {row[0]: row[1] for row in due if row[1] is not None}
            return [self._record(row) if row[0] not in was
                    else self._record(row).replace(taken_from=was[row[0]]) for row in rows]

        return self._earliest_first(self._run(claim))

    # -- waking idle workers --

    def notify_wake(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    def wait_wake(self, seconds: float) -> None:
        """Sleep up to `seconds`; wake early on a notification in this process or
        on any commit by another process (SQLite's `data_version` moves). If
        the file cannot be read meanwhile, just sleep: the trouble shows on
        the next real call."""
        deadline = time.monotonic() + seconds
        seen = self._data_version()
        while True:
            with self._wake:
                left = deadline - time.monotonic()
                if self._woken or left <= 0:
                    self._woken = False
                    return
                self._wake.wait(min(left, 0.05))
            if seen is not None and self._data_version() not in (seen, None):
                return

    def _data_version(self) -> int | None:
        try:
            with self._lock:
                return int(self._db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    # -- journal --

    def append_journal(self, instance_id: str, entries: JournalEntries,
                       at: _dt.datetime) -> None:
        if entries:
            self._run(self._append_rows, instance_id,
                      [(kind, pack_detail(detail)) for kind, detail in entries], _to_us(at))

    def _append_rows(self, instance_id: str, packed: list[tuple[str, bytes]],
                     at_us: int) -> None:
        with self._write() as db:
            last = db.execute("SELECT max(seq) FROM journal WHERE instance_id = ?",
                              (instance_id,)).fetchone()[0] or 0
            db.executemany(
                "INSERT INTO journal (instance_id, seq, at, kind, detail) VALUES (?,?,?,?,?)",
                [(instance_id, last + n, at_us, kind, detail)
                 for n, (kind, detail) in enumerate(packed, 1)],
            )

    # -- lifecycle --

    def reopen(self) -> SQLiteStore:
        if self.path == ":memory:":
            raise GenflowError("a private ':memory:' SQLite database cannot be opened again")
        return SQLiteStore(self.path, synchronous=self.synchronous,
                           busy_timeout=self.busy_timeout, readonly=self.readonly,
                           retry_seconds=self.retry_seconds)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


def sqlite_path(url: str) -> Path | str:
    """The file of an `sqlite:///relative/or//absolute` URL (`:memory:` allowed)."""
    rest = url[len("sqlite://"):]
    if not rest.startswith("/"):
        raise StoreNotFoundError(
            f"SQLite URLs look like sqlite:///path/to/file.db (three slashes: "
            f"sqlite:////abs/path.db for an absolute path), not {url!r}")
    rest = rest[1:]
    if rest == ":memory:":
        return rest
    if not rest:
        raise StoreNotFoundError(f"the SQLite URL {url!r} names no file: "
                                 "use sqlite:///path/to/file.db")
    return Path(rest)
