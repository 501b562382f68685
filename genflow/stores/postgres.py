"""`PostgresStore`: many workers on many machines share one PostgreSQL database.

Needs psycopg 3 (`pip install 'genflow[postgres]'`). Everything lives in one
schema (`genflow` unless told otherwise), which genflow creates and migrates
itself: the table `schema_migrations` records each applied version, and a
transaction-scoped advisory lock makes concurrent first starts safe.

How the store keeps its promises:

* **Compare-and-swap.** `save` is one `UPDATE ... WHERE id = $1 AND version = $2`
  (and the lease check): of two writers that read the same version, the row
  lock lets exactly one through.
* **Due work.** `claim_due` is one statement,
  `SELECT ... ORDER BY wake_at FOR UPDATE SKIP LOCKED LIMIT n` feeding an
  `UPDATE` that writes the lease: concurrent workers skip each other's rows
  instead of waiting on them, and never receive the same instance.
* **Leases** are two columns (`lease_owner`, `lease_until`) compared with the
  engine's clock, so a dead worker's instances are taken over once its leases
  expire.
* **Waking idle workers.** `notify_wake` sends `NOTIFY` on a channel named
  after the schema; `wait_wake` listens on a dedicated connection, so an idle
  worker starts at once when work becomes due anywhere.

Every method is one round trip in autocommit mode (a single statement is its
own transaction), on a connection taken from a small thread-safe pool.
Times are `timestamptz` (microseconds, UTC both ways).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.pq import TransactionStatus

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

__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresStore"]

DEFAULT_SCHEMA = "genflow"

# Each migration takes the schema from version i to i + 1: (description, statements).
# `{s}` is the schema, quoted. Never edit a migration that has shipped: add one.
_MIGRATIONS: Sequence[tuple[str, Sequence[str]]] = (
    ("instances, journal; indexes for due work, waits and status", (
        """
        CREATE TABLE {s}.instances (
            id          text PRIMARY KEY,
            workflow    text NOT NULL,
            status      text NOT NULL,
            blob        bytea NOT NULL,
            version     bigint NOT NULL,
            wake_at     timestamptz,
            waiting_for text[] NOT NULL DEFAULT '{{}}',
            attempts    integer NOT NULL DEFAULT 0,
            error       text NOT NULL DEFAULT '',
            lease_owner text,
            lease_until timestamptz,
            created_at  timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL
        )
        """,
        # due work (resumes, retries, timers), earliest first
        "CREATE INDEX instances_due ON {s}.instances (wake_at, id) WHERE wake_at IS NOT NULL",
        # instances waiting for an event (only those that wait get an entry)
        "CREATE INDEX instances_waiting ON {s}.instances USING gin (waiting_for) "
        "WHERE cardinality(waiting_for) > 0",
        "CREATE INDEX instances_workflow_status ON {s}.instances (workflow, status)",
        "CREATE INDEX instances_status ON {s}.instances (status)",
        """
        CREATE TABLE {s}.journal (
            instance_id text NOT NULL,
            seq         bigint NOT NULL,
            at          timestamptz NOT NULL,
            kind        text NOT NULL,
            detail      bytea NOT NULL,
            PRIMARY KEY (instance_id, seq)
        )
        """,
    )),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_COLUMNS = ("id, workflow, status, blob, version, wake_at, waiting_for, attempts, error, "
            "lease_owner, lease_until, created_at, updated_at")
_LEASE_FREE = "(lease_owner IS NULL OR lease_until IS NULL OR lease_until <= %(now)s)"


def _aware(value: _dt.datetime | None) -> _dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"stores need aware datetimes, got {value!r}")
    return value


def _record(row: tuple[Any, ...]) -> InstanceRecord:
    (id_, workflow, status, blob, version, wake_at, waiting, attempts, error,
     lease_owner, lease_until, created_at, updated_at) = row
    return InstanceRecord(
        id=id_, workflow=workflow, status=status, blob=bytes(blob), version=version,
        wake_at=wake_at, waiting_for=tuple(waiting), attempts=attempts, error=error,
        lease_owner=lease_owner, lease_until=lease_until, created_at=created_at,
        updated_at=updated_at,
    )


def split_dsn(dsn: str) -> tuple[str, str | None]:
    """Take genflow's own `schema=` query parameter out of a `postgresql://` URL;
    the rest goes to libpq as it is."""
    if "://" not in dsn:
        return dsn, None
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = [value for key, value in query if key == "schema"]
    if not schema:
        return dsn, None
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema[-1]


def _channel(schema: str) -> str:
    """The NOTIFY channel of a schema (an identifier of at most 63 bytes)."""
    name = f"genflow_wake_{schema}"
    if len(name.encode()) <= 63:
        return name
    return "genflow_wake_" + hashlib.blake2b(schema.encode(), digest_size=16).hexdigest()


def _lock_key(schema: str) -> int:
    """The advisory lock that serialises migrations of one schema."""
    digest = hashlib.blake2b(f"genflow:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Pool:
    """A small thread-safe pool of autocommit connections, opened on demand.

    A connection that broke, or was left inside a transaction, is closed rather
    than reused. After a fork, the child never touches the parent's connections.
    """

    def __init__(self, conninfo: str, max_size: int, prepare_threshold: int | None) -> None:
        self.conninfo = conninfo
        self.prepare_threshold = prepare_threshold
        self._idle: list[psycopg.Connection[Any]] = []
        # Re-entrant: a signal handler may call the store from inside a store call.
        self._lock = threading.RLock()
        self.max_size = max_size
        self._slots = threading.BoundedSemaphore(max_size)
        self._pid = os.getpid()
        self.closed = False

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.conninfo, autocommit=True,
                               prepare_threshold=self.prepare_threshold)
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def _forked(self) -> None:
        if os.getpid() != self._pid:  # the parent's connections are not ours to use
            self._idle = []
            self._slots = threading.BoundedSemaphore(self.max_size)
            self._pid = os.getpid()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self.closed:
            raise GenflowError("the PostgreSQL store is closed")
        self._forked()
        self._slots.acquire()
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self.connect()
            try:
                yield conn
            finally:
                if (conn.closed or conn.broken or self.closed
                        or conn.info.transaction_status != TransactionStatus.IDLE):
                    conn.close()
                else:
                    with self._lock:
                        self._idle.append(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        if os.getpid() == self._pid:
            for conn in idle:
                conn.close()


class PostgresStore(Store):
    """Instances in a PostgreSQL schema, shared by any number of processes and machines.

    `dsn` is a libpq connection string or `postgresql://` URL; a URL may carry
    `?schema=NAME`. `schema` (default `genflow`) holds genflow's tables; it is
    created and migrated on open unless `migrate=False`. `pool_size` bounds the
    connections this store opens for its calls (one more listens for wake-ups).
    `prepare_threshold` is psycopg's (None: never prepare, for PgBouncer in
    transaction mode). `drop_schema_on_close` is for tests.
    """

    def __init__(self, dsn: str, *, schema: str | None = None, pool_size: int = 8,
                 migrate: bool = True, prepare_threshold: int | None = 5,
                 drop_schema_on_close: bool = False) -> None:
        conninfo, url_schema = split_dsn(dsn)
        self.schema = schema or url_schema or DEFAULT_SCHEMA
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise GenflowError(
                f"schema name {self.schema!r}: use letters, digits and _ (at most 63, "
                "not starting with a digit)"
            )
        self.drop_schema_on_close = drop_schema_on_close
        if pool_size < 1:
            raise GenflowError("pool_size must be at least 1")
        try:
            params = psycopg.conninfo.conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise GenflowError(f"bad PostgreSQL connection string: {exc}") from None
        if "application_name" not in params:
            conninfo = psycopg.conninfo.make_conninfo(conninfo, application_name="genflow")
        self._label = f"{params.get('host', '')}/{params.get('dbname', '')}"
        self._pool = _Pool(conninfo, pool_size, prepare_threshold)
        self._channel = _channel(self.schema)
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_lock = threading.Lock()
        self._woken = False
        self._local = threading.local()  # the connection of a `transaction()`
        self._dsn = dsn
        self._pool_size = pool_size
        self._prepare_threshold = prepare_threshold
        self._sql = self._statements()
        try:
            if migrate:
                self._migrate()
            else:
                self._check_version()
        except psycopg.OperationalError as exc:
            self._pool.close()
            raise GenflowError(f"cannot open PostgreSQL store {self._label!r}: {exc}") from None
        except BaseException:
            self._pool.close()
            raise

    # -- SQL, composed once per store (the same text each call, so psycopg prepares it) --

    def _statements(self) -> dict[str, str]:
        s = sql.Identifier(self.schema).as_string()
        only = " AND workflow = ANY(%(workflows)s::text[])"
        claim = (
            f"WITH due AS (SELECT id FROM {s}.instances WHERE wake_at <= %(now)s "
            f"AND {_LEASE_FREE}<only> ORDER BY wake_at, id LIMIT %(limit)s "
            "FOR UPDATE SKIP LOCKED) "
            f"UPDATE {s}.instances i SET lease_owner = %(owner)s, lease_until = %(until)s "
            f"FROM due WHERE i.id = due.id RETURNING {_qualified('i')}"
        )
        wake = f"SELECT min(wake_at) FROM {s}.instances WHERE wake_at IS NOT NULL<only>"
        save = (
            f"UPDATE {s}.instances SET status = %(status)s, blob = %(blob)s, "
            "version = version + 1, wake_at = %(wake_at)s, waiting_for = %(waiting)s::text[], "
            "attempts = %(attempts)s, error = %(error)s, <release>updated_at = %(now)s "
            "WHERE id = %(id)s AND version = %(expected)s AND (%(owner)s::text IS NULL "
            "OR lease_owner IS NULL OR lease_owner = %(owner)s) RETURNING lease_owner, lease_until"
        )
        return {
            "create": (
                f"INSERT INTO {s}.instances ({_COLUMNS}) VALUES (%(id)s, %(workflow)s, "
                "%(status)s, %(blob)s, 1, %(wake_at)s, %(waiting)s::text[], %(attempts)s, "
                "%(error)s, %(owner)s, %(until)s, %(now)s, %(now)s)"
            ),
            "get": f"SELECT {_COLUMNS} FROM {s}.instances WHERE id = %s",
            "save": save.replace("<release>", ""),
            # the lease holder's last save: the row's owner is NULL or the saver
            "save_release": save.replace("<release>",
                                         "lease_owner = NULL, lease_until = NULL, "),
            "why": f"SELECT version, lease_owner FROM {s}.instances WHERE id = %s",
            "delete": (
                f"WITH j AS (DELETE FROM {s}.journal WHERE instance_id = %(id)s) "
                f"DELETE FROM {s}.instances WHERE id = %(id)s"
            ),
            "list": f"SELECT {_COLUMNS} FROM {s}.instances",
            "count": f"SELECT count(*) FROM {s}.instances",
            "acquire": (
                f"UPDATE {s}.instances SET lease_owner = %(owner)s, lease_until = %(until)s "
                "WHERE id = %(id)s AND (lease_owner IS NULL OR lease_owner = %(owner)s "
                "OR lease_until IS NULL OR lease_until <= %(now)s) "
                f"RETURNING {_COLUMNS}"
            ),
            "exists": f"SELECT 1 FROM {s}.instances WHERE id = %s",
            "claim": claim.replace("<only>", ""),
            "claim_only": claim.replace("<only>", only),
            "release": (
                f"UPDATE {s}.instances SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = %s AND lease_owner = %s"
            ),
            "next_wake": wake.replace("<only>", ""),
            "next_wake_only": wake.replace("<only>", only),
            "append": (
                f"INSERT INTO {s}.journal (instance_id, seq, at, kind, detail) "
                "SELECT %(id)s, coalesce((SELECT max(seq) FROM "
                f"{s}.journal WHERE instance_id = %(id)s), 0) + e.n, %(at)s, e.kind, e.detail "
                "FROM unnest(%(kinds)s::text[], %(details)s::bytea[]) "
                "WITH ORDINALITY AS e(kind, detail, n)"
            ),
            "journal": (
                f"SELECT seq, at, kind, detail FROM {s}.journal WHERE instance_id = %s "
                "ORDER BY seq"
            ),
            "notify": "SELECT pg_notify(%s, '')",
        }

    # -- connections and grouped writes --

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's connection inside `transaction()`, else one from the pool."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _statement(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """Inside `transaction()`, a savepoint around a statement that may fail
        (a duplicate id), so its failure leaves the rest of the group standing.
        Outside, the statement is its own transaction already."""
        if conn.info.transaction_status == TransactionStatus.INTRANS:
            with conn.transaction():
                yield
        else:
            yield

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for every write this thread makes inside (for batch jobs).

        The rows written stay locked until the commit: other workers' claims
        skip them, and a `send` to one of them waits for the commit. Nested
        calls join the outer commit; an exception rolls the whole group back.
        """
        if getattr(self._local, "conn", None) is not None:
            yield  # nested: the outer one commits
            return
        with self._pool.connection() as conn:
            self._local.conn = conn
            try:
                with conn.transaction():
                    yield
            finally:
                self._local.conn = None

    def grouping(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    # -- schema --

    def _migrate(self) -> None:
        s = sql.Identifier(self.schema).as_string()
        with self._conn() as conn:
            if self._version(conn) == SCHEMA_VERSION:
                return  # the usual case: nothing to do, no lock taken
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema),))
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
                    "version integer PRIMARY KEY, description text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
                current = self._version(conn) or 0
                self._refuse_newer(current)
                for number, (description, statements) in enumerate(_MIGRATIONS, 1):
                    if number <= current:
                        continue
                    for statement in statements:
                        conn.execute(statement.format(s=s))
                    conn.execute(
                        f"INSERT INTO {s}.schema_migrations (version, description) "
                        "VALUES (%s, %s)", (number, description),
                    )

    def _check_version(self) -> None:
        with self._conn() as conn:
            current = self._version(conn)
        if current is None or current < SCHEMA_VERSION:
            raise GenflowError(
                f"schema {self.schema!r} is at version {current or 0}, genflow needs "
                f"{SCHEMA_VERSION}: open the store once with migrate=True"
            )

    def _version(self, conn: psycopg.Connection[Any]) -> int | None:
        """The applied schema version (None: no migration table yet)."""
        quoted = sql.Identifier(self.schema).as_string()
        row = conn.execute("SELECT to_regclass(%s)", (f"{quoted}.schema_migrations",)).fetchone()
        if row is None or row[0] is None:
            return None
        got = conn.execute(f"SELECT max(version) FROM {quoted}.schema_migrations").fetchone()
        current = int(got[0]) if got and got[0] is not None else 0
        self._refuse_newer(current)
        return current

    def _refuse_newer(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise GenflowError(
                f"schema {self.schema!r} has version {current}; this genflow knows up to "
                f"{SCHEMA_VERSION}: upgrade genflow"
            )

    def schema_version(self) -> int:
        """The version recorded in the schema's migration table."""
        with self._conn() as conn:
            return self._version(conn) or 0

    # -- instances --

    def create(self, record: InstanceRecord, *, lease_owner: str | None = None,
               lease_until: _dt.datetime | None = None) -> InstanceRecord:
        now = utcnow()
        stored = record.replace(version=1, lease_owner=lease_owner,
                                lease_until=lease_until, created_at=now, updated_at=now,
                                waiting_for=tuple(record.waiting_for))
        params = {
            "id": record.id, "workflow": record.workflow, "status": record.status,
            "blob": record.blob, "wake_at": _aware(record.wake_at),
            "waiting": list(record.waiting_for), "attempts": record.attempts,
            "error": record.error, "owner": lease_owner, "until": _aware(lease_until),
            "now": now,
        }
        try:
            with self._conn() as conn, self._statement(conn):
                conn.execute(self._sql["create"], params)
        except pg_errors.UniqueViolation:
            raise DuplicateInstanceError(f"instance {record.id!r} already exists") from None
        return stored

    def get(self, instance_id: str) -> InstanceRecord:
        with self._conn() as conn:
            row = conn.execute(self._sql["get"], (instance_id,)).fetchone()
        if row is None:
            raise InstanceNotFoundError(f"no instance {instance_id!r}")
        return _record(row)

    def save(self, record: InstanceRecord, *, expected_version: int,
             lease_owner: str | None = None,
             previous: InstanceRecord | None = None,
             release: bool = False) -> InstanceRecord:
        now = utcnow()
        statement = "save_release" if release and lease_owner is not None else "save"
        params = {
            "id": record.id, "status": record.status, "blob": record.blob,
            "wake_at": _aware(record.wake_at), "waiting": list(record.waiting_for),
            "attempts": record.attempts, "error": record.error, "now": now,
            "expected": expected_version, "owner": lease_owner,
        }
        with self._conn() as conn:
            row = conn.execute(self._sql[statement], params).fetchone()
            if row is None:
                why = conn.execute(self._sql["why"], (record.id,)).fetchone()
        if row is not None:
            return record.replace(version=expected_version + 1, updated_at=now,
                                  lease_owner=row[0], lease_until=row[1],
                                  waiting_for=tuple(record.waiting_for))
        if why is None:
            raise InstanceNotFoundError(f"no instance {record.id!r}")
        version, holder = why
        raise refused_save(record.id, version, holder, expected_version, lease_owner) or \
            ConcurrencyError(f"instance {record.id!r} changed while it was saved: reload and retry")

    def delete(self, instance_id: str) -> None:
        with self._conn() as conn:
            conn.execute(self._sql["delete"], {"id": instance_id})

    def _where(self, workflow: str | None, status: str | None, waiting: str | None,
               after: str | None = None,
               shard: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if shard is not None:
            clauses.append("mod(abs(hashtext(id)::bigint), %s) = %s")
            params.extend((shard[1], shard[0]))
        if workflow is not None:
            clauses.append("workflow = %s")
            params.append(workflow)
        if status is not None:
            clauses.append("status = %s")
            params.append(status)
        if waiting is not None:  # the partial GIN index's predicate, then the test
            clauses.append("cardinality(waiting_for) > 0 AND waiting_for @> ARRAY[%s]::text[]")
            params.append(waiting)
        if after is not None:
            clauses.append("id > %s")
            params.append(after)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list(self, *, workflow: str | None = None, status: str | None = None,
             limit: int | None = None, after: str | None = None,
             waiting: str | None = None, shard: tuple[int, int] | None = None) -> Records:
        where, params = self._where(workflow, status, waiting, after, shard)
        query = self._sql["list"] + where + " ORDER BY id"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        with self._conn() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_record(row) for row in rows]

    def count(self, *, workflow: str | None = None, status: str | None = None,
              waiting: str | None = None) -> int:
        where, params = self._where(workflow, status, waiting)
        with self._conn() as conn:
            row = conn.execute(self._sql["count"] + where, params).fetchone()
        return int(row[0]) if row else 0

    # -- leases and due work --

    def acquire(self, instance_id: str, owner: str, now: _dt.datetime,
                until: _dt.datetime) -> InstanceRecord | None:
        params = {"id": instance_id, "owner": owner, "now": _aware(now), "until": _aware(until)}
        with self._conn() as conn:
            row = conn.execute(self._sql["acquire"], params).fetchone()
            if row is None:
                exists = conn.execute(self._sql["exists"], (instance_id,)).fetchone()
        if row is not None:
            return _record(row)
        if exists is None:
            raise InstanceNotFoundError(f"no instance {instance_id!r}")
        return None

    def claim_due(self, owner: str, now: _dt.datetime, until: _dt.datetime,
                  limit: int, workflows: Collection[str] | None = None) -> Records:
        params: dict[str, Any] = {"owner": owner, "now": _aware(now), "until": _aware(until),
                                  "limit": limit}
        query = self._sql["claim"]
        if workflows is not None:
            query = self._sql["claim_only"]
            params["workflows"] = sorted(workflows)
        if self._listener is None:
            self._start_listening()
        with self._conn() as conn:
            rows = conn.execute(query, params).fetchall()
        claimed = [_record(row) for row in rows]
        claimed.sort(key=lambda r: (r.wake_at, r.id))  # RETURNING keeps no order
        return claimed

    def release(self, instance_id: str, owner: str) -> None:
        with self._conn() as conn:
            conn.execute(self._sql["release"], (instance_id, owner))

    def next_wake(self, workflows: Collection[str] | None = None) -> _dt.datetime | None:
        with self._conn() as conn:
            if workflows is None:
                row = conn.execute(self._sql["next_wake"]).fetchone()
            else:
                row = conn.execute(self._sql["next_wake_only"],
                                   {"workflows": sorted(workflows)}).fetchone()
        return row[0] if row else None

    # -- waking idle workers: LISTEN/NOTIFY --

    def notify_wake(self) -> None:
        """Wake idle workers everywhere (a NOTIFY on the schema's channel) and
        this process's own `wait_wake`. A hint: a failure to send it is ignored."""
        self._woken = True
        try:
            with self._conn() as conn:
                conn.execute(self._sql["notify"], (self._channel,))
        except (psycopg.Error, GenflowError):
            pass  # workers still poll; the database's troubles show on the next real call

    def wait_wake(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning as soon as a `notify_wake` anywhere
        reaches the schema's channel (or this process's own)."""
        deadline = time.monotonic() + seconds
        if not self._listener_lock.acquire(timeout=max(0.0, seconds)):
            return  # another thread of this process listens; it was our whole wait
        try:
            while True:
                if self._woken:
                    self._woken = False
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    listener = self._listen()
                    # short slices, so a wake from this very process is seen quickly
                    got = any(True for _ in listener.notifies(timeout=min(left, 0.05),
                                                              stop_after=1))
                    if got:
                        for _ in listener.notifies(timeout=0):  # drain what piled up
                            pass
                        return
                except psycopg.Error:
                    self._drop_listener()
                    time.sleep(max(0.0, min(deadline - time.monotonic(), 0.5)))
        finally:
            self._listener_lock.release()

    def _start_listening(self) -> None:
        """A store that claims work belongs to a worker: listen from its first
        claim on, so a wake-up sent before its first sleep is not missed."""
        if self._listener_lock.acquire(blocking=False):
            try:
                self._listen()
            except psycopg.Error:
                self._drop_listener()  # wait_wake tries again
            finally:
                self._listener_lock.release()

    def _listen(self) -> psycopg.Connection[Any]:
        if self._pool.closed:
            raise GenflowError("the PostgreSQL store is closed")
        listener = self._listener
        if listener is not None and getattr(listener, "_genflow_pid", None) != os.getpid():
            listener = self._listener = None  # inherited through fork: not ours
        if listener is None or listener.closed:
            listener = self._pool.connect()
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            listener._genflow_pid = os.getpid()  # type: ignore[attr-defined]
            self._listener = listener
        return listener

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and getattr(listener, "_genflow_pid", None) == os.getpid():
            listener.close()

    # -- journal --

    def append_journal(self, instance_id: str, entries: JournalEntries,
                       at: _dt.datetime) -> None:
        if not entries:
            return
        params = {"id": instance_id, "at": _aware(at), "kinds": [kind for kind, _ in entries],
                  "details": [pack_detail(detail) for _, detail in entries]}
        for attempt in range(5):
            try:
                with self._conn() as conn, self._statement(conn):
                    conn.execute(self._sql["append"], params)
                return
            except pg_errors.UniqueViolation:  # a concurrent append took the same seq
                if attempt == 4:
                    raise
                time.sleep(0.001 * (attempt + 1))

    def journal(self, instance_id: str) -> Journal:
        with self._conn() as conn:
            rows = conn.execute(self._sql["journal"], (instance_id,)).fetchall()
        return [JournalEntry(instance_id, seq, at, kind, unpack_detail(bytes(detail)))
                for seq, at, kind, detail in rows]

    # -- lifecycle --

    def reopen(self) -> PostgresStore:
        """A new store on the same database and schema (new connections: after
        a fork, the parent's must not be used)."""
        return PostgresStore(self._dsn, schema=self.schema, migrate=False,
                             pool_size=self._pool_size,
                             prepare_threshold=self._prepare_threshold)

    def close(self) -> None:
        if self._pool.closed:
            return
        with self._listener_lock:
            self._drop_listener()
        if self.drop_schema_on_close:
            with self._conn() as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {sql.Identifier(self.schema).as_string()} "
                             "CASCADE")
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self._label!r}, schema={self.schema!r})"


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in _COLUMNS.split(","))
