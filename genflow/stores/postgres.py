"""`PostgresStore`: many workers on many machines share one PostgreSQL database.

Needs psycopg 3 and psycopg_pool (`pip install 'genflow[postgres]'`).
Everything lives in one schema (`genflow` unless told otherwise), which
genflow creates and migrates itself: the table `schema_migrations` records
each applied version, and a transaction-scoped advisory lock makes concurrent
first starts safe.

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
* **Waking idle workers**: `genflow.stores.pg_listener`.
* **A server that restarts.** A call whose connection broke is retried on a
  new one for `retry_seconds` (`genflow.stores.pg_pool` drops the dead ones),
  then raises `StoreUnavailableError`. A write whose connection broke may have
  committed before the answer was lost: a retried `create` or `save` that
  finds its own write (its `created_at` / `updated_at`) reports success, a
  retried journal append does not append twice, and a claim's lost rows stay
  leased until their lease expires, when they are claimed again.

Every method is one round trip in autocommit mode (a single statement is its
own transaction), on a connection from the pool. Times are `timestamptz`
(microseconds, UTC both ways).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import PoolTimeout

from genflow.errors import (
    ArgumentError,
    ConcurrencyError,
    DuplicateInstanceError,
    GenflowError,
    InstanceNotFoundError,
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
    pack_detail,
    refused_save,
    utcnow,
)
from genflow.stores.group import GroupCommit, Write
from genflow.stores.outbox_sql import OUTBOX_PG, OUTBOX_TRACE_PG, OutboxSQL
from genflow.stores.pg_listener import Listener, channel
from genflow.stores.pg_pool import Pool
from genflow.stores.sched_sql import ENDED_SQL
from genflow.stores.sql import COLUMNS, statements, unencodable

__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresStore", "split_dsn"]

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
    ("schedules, queues and retention (genflow.stores.sched_sql)", (
        """
        CREATE TABLE {s}.schedules (
            id            text PRIMARY KEY,
            workflow      text NOT NULL,
            spec          bytea NOT NULL,
            next_tick     timestamptz,
            due_at        timestamptz,
            paused        integer NOT NULL DEFAULT 0,
            last_tick     timestamptz,
            last_instance text,
            fired         bigint NOT NULL DEFAULT 0,
            skipped       bigint NOT NULL DEFAULT 0,
            error         text NOT NULL DEFAULT '',
            version       bigint NOT NULL,
            created_at    timestamptz NOT NULL,
            updated_at    timestamptz NOT NULL
        )
        """,
        "CREATE INDEX schedules_due ON {s}.schedules (due_at) WHERE due_at IS NOT NULL",
        """
        CREATE TABLE {s}.queues (
            name        text PRIMARY KEY,
            concurrency integer,
            per_key     integer,
            rate        integer,
            period      double precision,
            updated_at  timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE {s}.queue_entries (
            seq         bigserial PRIMARY KEY,
            instance_id text NOT NULL UNIQUE,
            queue       text NOT NULL,
            key         text NOT NULL,
            priority    integer NOT NULL,
            enqueued_at timestamptz NOT NULL,
            admitted_at timestamptz
        )
        """,
        "CREATE INDEX queue_waiting ON {s}.queue_entries (queue, priority, seq) "
        "WHERE admitted_at IS NULL",
        "CREATE INDEX queue_admitted ON {s}.queue_entries (queue) WHERE admitted_at IS NOT NULL",
        "CREATE INDEX instances_ended ON {s}.instances (status, updated_at, id) "
        "WHERE status IN ('finished', 'cancelled', 'failed')",
        "CREATE INDEX journal_at ON {s}.journal (at)",
    )),
    ("the outbox and children links (genflow.stores.outbox_sql)", OUTBOX_PG),
    # Ids are ordered and read by range (keyset pages, an id prefix, a schedule's
    # ``ID@`` ticks) and must sort as Python's str and SQLite do, by code point: a
    # database whose collation is linguistic (en_US, ICU) sorts "Ac" between "ab"
    # and "ad", so an id-prefix read that stops at the first id outside the prefix
    # would miss "ad". Changing a text column's collation rewrites no row; its
    # indexes are rebuilt.
    ("ids compared by code point whatever the database's collation", (
        'ALTER TABLE {s}.instances ALTER COLUMN id TYPE text COLLATE "C"',
        'ALTER TABLE {s}.schedules ALTER COLUMN id TYPE text COLLATE "C"',
        'ALTER TABLE {s}.queues ALTER COLUMN name TYPE text COLLATE "C"',
    )),
    # A save that changes no indexed column is a HOT update: the row's new
    # version goes on the same page and no index gets an entry. `updated_at`,
    # which every save writes, was in the index of ended instances, so every
    # save wrote an entry in each of the table's indexes. Ended instances are
    # found by when they ended (`ended_at`, kept by triggers on status changes).
    ("ended instances by when they ended: a step's save is a HOT update", (
        "ALTER TABLE {s}.instances ADD COLUMN ended_at timestamptz",
        f"UPDATE {{s}}.instances SET ended_at = updated_at WHERE status IN ({ENDED_SQL})",
        "DROP INDEX {s}.instances_ended",
        "CREATE INDEX instances_ended ON {s}.instances (status, ended_at, id) "
        "WHERE ended_at IS NOT NULL",
        "CREATE FUNCTION {s}.instances_ended_at() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN NEW.ended_at := CASE WHEN NEW.status IN ({ENDED_SQL}) THEN NEW.updated_at "
        "END; RETURN NEW; END $$",
        "CREATE TRIGGER instances_ended_on_insert BEFORE INSERT ON {s}.instances FOR EACH ROW "
        f"WHEN (NEW.status IN ({ENDED_SQL})) EXECUTE FUNCTION {{s}}.instances_ended_at()",
        "CREATE TRIGGER instances_ended_on_update BEFORE UPDATE OF status ON {s}.instances "
        "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) "
        "EXECUTE FUNCTION {s}.instances_ended_at()",
    )),
    ("an outbox row's trace context (genflow.relay)", OUTBOX_TRACE_PG),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_LEASE_FREE = "(lease_owner IS NULL OR lease_until IS NULL OR lease_until <= %(now)s)"
_REFUSED: Any = object()  # `_save_row`: no row matched
#: SQLSTATEs that say where the store should be is not there
_NOT_FOUND = {"3D000": "no such database", "3F000": "no such schema",
              "42P01": "no genflow tables"}


def _as_list(events: tuple[str, ...]) -> list[str]:
    return list(events)


def _aware(value: _dt.datetime | None) -> _dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"stores need aware datetimes, got {value!r}")
    return value


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


def _lock_key(schema: str) -> int:
    """The advisory lock that serialises migrations of one schema."""
    digest = hashlib.blake2b(f"genflow:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresStore(OutboxSQL):
    """Instances in a PostgreSQL schema, shared by any number of processes and machines.

    `dsn` is a libpq connection string or `postgresql://` URL; a URL may carry
    `?schema=NAME`. `schema` (default `genflow`) holds genflow's tables; it is
    created and migrated on open unless `migrate=False` (or `readonly`, which
    also makes the server refuse every write of the store's sessions).
    `pool_size` bounds the connections this store opens for its calls (one
    more listens for wake-ups). `prepare_threshold` is psycopg's (None: never
    prepare, for PgBouncer in transaction mode). `retry_seconds`: how long a
    call whose connection broke (a server restart) is retried.
    `drop_schema_on_close` is for tests.
    """

    _catch = (psycopg.Error, UnicodeEncodeError)
    _placeholder = "%s"
    _shard_clause = "mod(abs(hashtext(id)::bigint), %s) = %s"
    # the partial GIN index's predicate, then the test
    _waiting_clause = "cardinality(waiting_for) > 0 AND waiting_for @> ARRAY[%s]::text[]"
    _time_out = staticmethod(_aware)
    _waiting_out = staticmethod(_as_list)
    _lock_rows = " FOR UPDATE SKIP LOCKED"
    _lock_schedules = " FOR UPDATE OF s SKIP LOCKED"

    def __init__(self, dsn: str, *, schema: str | None = None, pool_size: int = 8,
                 migrate: bool = True, prepare_threshold: int | None = 5,
                 readonly: bool = False, retry_seconds: float = 10.0,
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
            raise ArgumentError(f"pool_size must be at least 1, not {pool_size!r}")
        try:
            params = psycopg.conninfo.conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ArgumentError(f"bad PostgreSQL connection string: {exc}") from None
        if "application_name" not in params:
            conninfo = psycopg.conninfo.make_conninfo(conninfo, application_name="genflow")
        self._label = f"{params.get('host', '')}/{params.get('dbname', '')}"
        self.readonly = readonly
        self.retry_seconds = retry_seconds
        self._conninfo = conninfo
        self._pool = Pool(conninfo, max_size=pool_size, prepare_threshold=prepare_threshold,
                          readonly=readonly, timeout=max(0.5, retry_seconds / 2),
                          reconnect_seconds=max(1.0, retry_seconds))
        self._listener = Listener(self._pool.connect, channel(self.schema))
        self._local = threading.local()  # the connection of a `transaction()`
        #: concurrent threads' writes share commits (genflow.stores.group)
        self._writes = GroupCommit(threading.Lock(), self._write_alone, self._write_together)
        self._dsn = dsn
        self._pool_size = pool_size
        self._prepare_threshold = prepare_threshold
        s = sql.Identifier(self.schema).as_string()
        self._prefix = f"{s}."  # schedules, queues: genflow.stores.sched_sql
        self._sql = statements(f"{s}.instances", f"{s}.journal", "%s") | self._statements(s)
        try:
            self._run(self._open_schema, migrate and not readonly)
        except StoreError as exc:
            self.drop_schema_on_close = False
            self.close()
            raise type(exc)(f"cannot open the store: {exc}") from exc.__cause__
        except BaseException:
            self.drop_schema_on_close = False
            self.close()
            raise

    # -- SQL of its own, composed once per store (the same text each call, so
    # -- psycopg prepares it)

    @staticmethod
    def _statements(s: str) -> dict[str, str]:
        claim = (
            f"WITH due AS (SELECT id, lease_owner AS was FROM {s}.instances WHERE wake_at <= "
            f"%(now)s AND {_LEASE_FREE}<only> ORDER BY wake_at, id LIMIT %(limit)s "
            "FOR UPDATE SKIP LOCKED) "
            f"UPDATE {s}.instances i SET lease_owner = %(owner)s, lease_until = %(until)s "
            f"FROM due WHERE i.id = due.id RETURNING {_qualified('i')}, due.was"
        )
        save = (
            f"UPDATE {s}.instances SET status = %(status)s, blob = %(blob)s, "
            "version = version + 1, wake_at = %(wake_at)s, waiting_for = %(waiting)s::text[], "
            "attempts = %(attempts)s, error = %(error)s, <release>updated_at = %(now)s "
            "WHERE id = %(id)s AND version = %(expected)s AND (%(owner)s::text IS NULL "
            "OR lease_owner IS NULL OR lease_owner = %(owner)s) RETURNING lease_owner, lease_until"
        )
        return {
            # a turn's saves (`saves_together`): `save` for each row of the arrays
            "save_many": (
                f"UPDATE {s}.instances i SET status = v.status, blob = v.blob, "
                "version = i.version + 1, wake_at = v.wake_at, waiting_for = v.waiting::text[], "
                "attempts = v.attempts, error = v.error, "
                "lease_owner = CASE WHEN v.release THEN NULL ELSE i.lease_owner END, "
                "lease_until = CASE WHEN v.release THEN NULL ELSE i.lease_until END, "
                "updated_at = v.now FROM unnest(%(ids)s::text[], %(statuses)s::text[], "
                "%(blobs)s::bytea[], %(wakes)s::timestamptz[], %(waiting)s::text[], "
                "%(attempts)s::integer[], %(errors)s::text[], %(expected)s::bigint[], "
                "%(release)s::boolean[], %(now)s::timestamptz[]) AS v(id, status, blob, "
                "wake_at, waiting, attempts, error, expected, release, now) "
                "WHERE i.id = v.id AND i.version = v.expected AND (i.lease_owner IS NULL "
                "OR i.lease_owner = %(owner)s) RETURNING i.id"
            ),
            "why_many": (f"SELECT id, version, lease_owner FROM {s}.instances "
                         "WHERE id = ANY(%s::text[])"),
            "save": save.replace("<release>", ""),
            # the lease holder's last save: the row's owner is NULL or the saver
            "save_release": save.replace("<release>",
                                         "lease_owner = NULL, lease_until = NULL, "),
            "delete": (
                f"WITH j AS (DELETE FROM {s}.journal WHERE instance_id = %(id)s), "
                f"q AS (DELETE FROM {s}.queue_entries WHERE instance_id = %(id)s), "
                f"c AS (DELETE FROM {s}.children WHERE child = %(id)s), "
                f"o AS (DELETE FROM {s}.outbox WHERE target = %(id)s) "
                f"DELETE FROM {s}.instances WHERE id = %(id)s"
            ),
            "claim": claim.replace("<only>", ""),
            "claim_only": claim.replace("<only>",
                                        " AND workflow = ANY(%(workflows)s::text[])"),
            "append": (
                f"INSERT INTO {s}.journal (instance_id, seq, at, kind, detail) "
                "SELECT %(id)s, coalesce((SELECT max(seq) FROM "
                f"{s}.journal WHERE instance_id = %(id)s), 0) + e.n, %(at)s, e.kind, e.detail "
                "FROM unnest(%(kinds)s::text[], %(details)s::bytea[]) "
                "WITH ORDINALITY AS e(kind, detail, n)"
            ),
            "journal_tail": (
                f"SELECT kind, detail FROM {s}.journal WHERE instance_id = %(id)s "
                "AND at = %(at)s ORDER BY seq DESC LIMIT %(n)s"
            ),
            "notify": "SELECT pg_notify(%s, '')",
        }

    # -- faults --

    def _translate(self, exc: BaseException) -> StoreError:
        where = f"PostgreSQL store {self._label!r} (schema {self.schema!r})"
        if isinstance(exc, UnicodeEncodeError):
            return unencodable(where, exc)
        if isinstance(exc, PoolTimeout):
            exc = self._why_no_connection(exc)
        sqlstate = getattr(exc, "sqlstate", None) or ""
        text = " ".join(str(exc).split())
        if sqlstate == "53100":
            return StoreFullError(f"{where}: the server's disk is full ({text}): free space "
                                  "on the database server; nothing was written")
        if sqlstate == "25006":
            if self.readonly:
                return ReadOnlyStoreError(f"{where} was opened read-only ({text}): open it "
                                          "read-write to change it; nothing was written")
            return ReadOnlyStoreError(f"{where} refuses writes ({text}): point the URL at "
                                      "the primary server, not a standby; nothing was written")
        if sqlstate == "42501":
            return ReadOnlyStoreError(f"{where}: this role may not do that ({text}): grant it "
                                      f"the privileges on schema {self.schema!r}")
        if sqlstate in _NOT_FOUND or ('database "' in text and "does not exist" in text):
            return StoreNotFoundError(f"{where}: {_NOT_FOUND.get(sqlstate, 'no such database')}"
                                      f" ({text}): check the URL's database and ?schema=")
        if sqlstate.startswith("28") or "authentication failed" in text \
                or ('role "' in text and "does not exist" in text):
            return StoreError(f"{where}: {text}: check the user and password in the URL")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailableError(
                f"{where} is unavailable ({text}): the server may be restarting or out of "
                "reach; try again later (workers retry by themselves)")
        return StoreError(f"{where} failed ({text})")

    def _why_no_connection(self, exc: PoolTimeout) -> BaseException:
        """The pool timed out: a connection of our own says why (the server's
        refusal, a missing database), or the pool was just busy."""
        try:
            psycopg.connect(self._conninfo, connect_timeout=2).close()
        except psycopg.Error as reason:
            return reason
        return psycopg.OperationalError(
            f"all {self._pool_size} connections of this store stayed busy ({exc})")

    def _recover(self) -> None:
        self._pool.check()

    # -- connections and grouped writes --

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's connection inside `transaction()`, else one from the pool."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            if getattr(self._local, "deferred", None) is not None and \
                    pinned.info.transaction_status == TransactionStatus.IDLE:
                pinned.execute("BEGIN")  # `saves_together`: a write beside its saves
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
        calls join the outer commit; an exception rolls the whole group back,
        and so does a lost connection (`StoreUnavailableError`: nothing of the
        group was written).
        """
        if getattr(self._local, "conn", None) is not None:
            yield  # nested: the outer one commits
            return
        try:
            with self._pool.connection() as conn:
                self._local.conn = conn
                try:
                    with conn.transaction():
                        yield
                finally:
                    self._local.conn = None
        except self._catch as exc:
            raise self._translate(exc) from exc

    def grouping(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def saves_together(self) -> Iterator[dict[str, Exception]]:
        """The saves of a worker round's turn put off to the end of the block
        and written there in one statement (`save_many`): a turn of plain
        saves is one round trip and one commit. A write made beside them (an
        outbox row, a journal entry) opens a transaction at that point, and
        the saves join it before its commit."""
        if getattr(self._local, "conn", None) is not None:
            yield {}  # inside `transaction()`: its commit, each save at once
            return
        refused: dict[str, Exception] = {}
        try:
            with self._pool.connection() as conn:
                self._local.conn = conn
                deferred: list[tuple[InstanceRecord, int, str, bool]] = []
                self._local.deferred = deferred
                try:
                    yield refused
                    self._local.deferred = None
                    if deferred:
                        self._save_deferred(conn, deferred, refused)
                    status = conn.info.transaction_status
                    if status == TransactionStatus.INERROR:
                        raise StoreError(f"{self!r}: a write of the turn failed, so no save "
                                         "of it was written")
                    if status == TransactionStatus.INTRANS:
                        if refused:
                            raise ConcurrencyError(
                                f"saves refused ({', '.join(map(repr, sorted(refused)))}) "
                                "rolled back the other writes of their turn: they run again")
                        conn.execute("COMMIT")
                except BaseException:
                    if conn.info.transaction_status in (TransactionStatus.INTRANS,
                                                        TransactionStatus.INERROR):
                        conn.execute("ROLLBACK")  # (a broken connection: the pool drops it)
                    raise
                finally:
                    self._local.conn = None
                    self._local.deferred = None
        except self._catch as exc:
            raise self._translate(exc) from exc

    def _save_deferred(self, conn: psycopg.Connection[Any],
                       deferred: list[tuple[InstanceRecord, int, str, bool]],
                       refused: dict[str, Exception]) -> None:
        """Write the saves a turn put off (one statement), naming in `refused`
        the ones whose row had moved on (or gone)."""
        ids = [record.id for record, _, _, _ in deferred]
        if len(set(ids)) != len(ids):  # (an instance saved twice in one turn: never)
            raise StoreError("saves_together: an instance was saved twice in one turn")
        owners = {owner for _, _, owner, _ in deferred}
        if len(owners) != 1:
            raise StoreError("saves_together: the saves of one turn are one owner's")
        params = {
            "ids": ids, "owner": owners.pop(),
            "statuses": [r.status for r, _, _, _ in deferred],
            "blobs": [r.blob for r, _, _, _ in deferred],
            "wakes": [_aware(r.wake_at) for r, _, _, _ in deferred],
            "waiting": [_array_literal(r.waiting_for) for r, _, _, _ in deferred],
            "attempts": [r.attempts for r, _, _, _ in deferred],
            "errors": [r.error for r, _, _, _ in deferred],
            "expected": [expected for _, expected, _, _ in deferred],
            "release": [release for _, _, _, release in deferred],
            "now": [r.updated_at for r, _, _, _ in deferred],
        }
        saved = {row[0] for row in conn.execute(self._sql["save_many"], params).fetchall()}
        if len(saved) == len(ids):
            return
        missing = [i for i in ids if i not in saved]
        rows = {row[0]: row[1:] for row in conn.execute(self._sql["why_many"], (missing,))}
        for record, expected, owner, _ in deferred:
            if record.id in saved:
                continue
            why = rows.get(record.id)
            if why is None:
                refused[record.id] = InstanceNotFoundError(f"no instance {record.id!r}")
            else:
                refused[record.id] = refused_save(record.id, why[0], why[1], expected, owner) \
                    or ConcurrencyError(f"instance {record.id!r} changed while it was saved: "
                                        "reload and retry")

    # -- group commit (genflow.stores.group) --

    def _commit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The write `fn(*args)` committed: inside `transaction()` it joins that
        one; else its commit is shared with the writes other threads of this
        process make meanwhile (one leader at a time writes a group on one
        connection: the others wait for its commit, not for connections)."""
        if getattr(self._local, "conn", None) is not None:
            return fn(*args)
        return self._writes.run(fn, *args)

    def _commit_lease(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Leases are written alone: a group holding the row locks of its saves
        while it waits for another process's group (an `acquire` waits for the
        row it asks for) could deadlock with it; a save's row is this process's
        own (its lease), which no group of another process writes."""
        return fn(*args)

    def _write_alone(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return fn(*args)  # autocommit: a statement is its own transaction

    def _write_together(self, writes: Sequence[Write]) -> list[Any]:
        with self._pool.connection() as conn:
            self._local.conn = conn
            try:
                with conn.transaction():
                    return [fn(*args) for fn, args in writes]
            finally:
                self._local.conn = None

    # -- the driver's primitives --

    def _one(self, query: str, params: Any = ()) -> Any:
        with self._conn() as conn:
            return conn.execute(query, params).fetchone()

    def _all(self, query: str, params: Any = ()) -> list[Any]:
        with self._conn() as conn:
            return conn.execute(query, params).fetchall()

    def _exec(self, query: str, params: Any = ()) -> int:
        with self._conn() as conn:
            return conn.execute(query, params).rowcount

    def _insert(self, query: str, params: Any, instance_id: str) -> None:
        try:
            with self._conn() as conn, self._statement(conn):
                conn.execute(query, params)
        except pg_errors.UniqueViolation:
            raise DuplicateInstanceError(f"instance {instance_id!r} already exists") from None

    # -- schema --

    def _open_schema(self, migrate: bool) -> None:
        """Check the schema's version; migrate it (`migrate`) when it is behind.
        The usual case, a schema that is up to date, writes nothing."""
        # a connection of its own: a refusal (no such database, a wrong
        # password) is the server's own words at once, not a pool's timeout
        conn = self._pool.connect()
        try:
            self._check_schema(conn, migrate)
        finally:
            conn.close()

    def _check_schema(self, conn: psycopg.Connection[Any], migrate: bool) -> None:
        current = self._version(conn)
        if current == SCHEMA_VERSION:
            return
        if not migrate:
            if current is None:
                raise StoreNotFoundError(
                    f"PostgreSQL store {self._label!r}: schema {self.schema!r} holds no "
                    "genflow store: check the URL's ?schema= (or open it once with "
                    "migrate=True, read-write, to create it)")
            raise StoreError(
                f"schema {self.schema!r} is at version {current}, genflow needs "
                f"{SCHEMA_VERSION}: open the store once with migrate=True")
        s = sql.Identifier(self.schema).as_string()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema),))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
                "version integer PRIMARY KEY, description text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = self._version(conn) or 0
            for number, (description, migration) in enumerate(_MIGRATIONS, 1):
                if number <= current:
                    continue
                for statement in migration:
                    conn.execute(statement.format(s=s))
                conn.execute(
                    f"INSERT INTO {s}.schema_migrations (version, description) "
                    "VALUES (%s, %s)", (number, description),
                )

    def _version(self, conn: psycopg.Connection[Any]) -> int | None:
        """The applied schema version (None: no migration table yet)."""
        quoted = sql.Identifier(self.schema).as_string()
        row = conn.execute("SELECT to_regclass(%s)", (f"{quoted}.schema_migrations",)).fetchone()
        if row is None or row[0] is None:
            return None
        got = conn.execute(f"SELECT max(version) FROM {quoted}.schema_migrations").fetchone()
        current = int(got[0]) if got and got[0] is not None else 0
        if current > SCHEMA_VERSION:
            raise GenflowError(
                f"schema {self.schema!r} has version {current}; this genflow knows up to "
                f"{SCHEMA_VERSION}: upgrade genflow"
            )
        return current

    def schema_version(self) -> int:
        """The version recorded in the schema's migration table."""
        def read() -> int:
            with self._conn() as conn:
                return self._version(conn) or 0
        return int(self._run(read))

    # -- instances --

    def save(self, record: InstanceRecord, *, expected_version: int,
             lease_owner: str | None = None,
             previous: InstanceRecord | None = None,
             release: bool = False) -> InstanceRecord:
        now = utcnow()
        deferred = getattr(self._local, "deferred", None)
        if deferred is not None and lease_owner is not None:  # `saves_together`: at its end
            release = bool(release)
            deferred.append((record.replace(updated_at=now), expected_version, lease_owner,
                             release))
            return record.replace(version=expected_version + 1, updated_at=now,
                                  lease_owner=None if release else record.lease_owner,
                                  lease_until=None if release else record.lease_until,
                                  waiting_for=tuple(record.waiting_for))
        statement = "save_release" if release and lease_owner is not None else "save"
        params = {
            "id": record.id, "status": record.status, "blob": record.blob,
            "wake_at": _aware(record.wake_at), "waiting": list(record.waiting_for),
            "attempts": record.attempts, "error": record.error, "now": now,
            "expected": expected_version, "owner": lease_owner,
        }
        row = self._run(self._commit, self._save_row, self._sql[statement], params)
        if row is _REFUSED:  # why, or an earlier attempt of this save committed
            return self._refused(record, expected_version, lease_owner, now)
        return record.replace(version=expected_version + 1, updated_at=now,
                              lease_owner=row[0], lease_until=row[1],
                              waiting_for=tuple(record.waiting_for))

    def _save_row(self, query: str, params: dict[str, Any]) -> Any:
        row = self._one(query, params)
        return _REFUSED if row is None else row

    def delete(self, instance_id: str) -> None:
        self._run(self._exec, self._sql["delete"], {"id": instance_id})

    # -- leases and due work --

    def claim_due(self, owner: str, now: _dt.datetime, until: _dt.datetime,
                  limit: int, workflows: Collection[str] | None = None) -> Records:
        params: dict[str, Any] = {"owner": owner, "now": _aware(now), "until": _aware(until),
                                  "limit": limit}
        query = self._sql["claim"]
        if workflows is not None:
            query = self._sql["claim_only"]
            params["workflows"] = sorted(workflows)
        if not self._listener.listening:
            # a store that claims work belongs to a worker: listen from its first claim
            self._listener.start()
        rows = self._run(self._all, query, params)
        return self._earliest_first([
            self._record(row[:-1]) if row[-1] is None
            else self._record(row[:-1]).replace(taken_from=row[-1]) for row in rows])

    # -- waking idle workers: LISTEN/NOTIFY --

    def notify_wake(self) -> None:
        """Wake idle workers everywhere (a NOTIFY on the schema's channel) and
        this process's own `wait_wake`. A hint: a failure to send it is ignored
        (workers still poll; the database's troubles show on the next real call)."""
        self._listener.wake()
        try:
            self._exec(self._sql["notify"], (self._listener.channel,))
        except (*self._catch, GenflowError):
            pass

    def wait_wake(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning as soon as a `notify_wake` anywhere
        reaches the schema's channel (or this process's own)."""
        self._listener.wait(seconds)

    # -- journal --

    def append_journal(self, instance_id: str, entries: JournalEntries,
                       at: _dt.datetime) -> None:
        if not entries:
            return
        params = {"id": instance_id, "at": _aware(at), "kinds": [kind for kind, _ in entries],
                  "details": [pack_detail(detail) for _, detail in entries]}
        tries = [0]

        def append() -> None:
            tries[0] += 1
            if tries[0] > 1 and self._appended(params):
                return  # the attempt whose connection broke had committed
            for attempt in range(5):
                try:
                    with self._conn() as conn, self._statement(conn):
                        conn.execute(self._sql["append"], params)
                    return
                except pg_errors.UniqueViolation:  # a concurrent append took the same seq
                    if attempt == 4:
                        raise
                    time.sleep(0.001 * (attempt + 1))

        self._run(append)

    def _appended(self, params: dict[str, Any]) -> bool:
        """Are these entries the last ones at `at` already?"""
        rows = self._all(self._sql["journal_tail"],
                         {"id": params["id"], "at": params["at"], "n": len(params["kinds"])})
        return [(kind, bytes(detail)) for kind, detail in reversed(rows)] == list(
            zip(params["kinds"], params["details"], strict=True))

    # -- lifecycle --

    def reopen(self) -> PostgresStore:
        """A new store on the same database and schema (new connections: after
        a fork, the parent's must not be used)."""
        return PostgresStore(self._dsn, schema=self.schema, migrate=False,
                             pool_size=self._pool_size,
                             prepare_threshold=self._prepare_threshold,
                             readonly=self.readonly, retry_seconds=self.retry_seconds)

    def close(self) -> None:
        if self._pool.closed:
            return
        self._listener.close()
        try:
            if self.drop_schema_on_close:
                self._run(self._exec, f"DROP SCHEMA IF EXISTS "
                          f"{sql.Identifier(self.schema).as_string()} CASCADE")
        finally:
            self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self._label!r}, schema={self.schema!r})"


def _array_literal(items: tuple[str, ...] | list[str]) -> str:
    """A text[] as PostgreSQL reads it from text (an array of arrays cannot be a
    parameter: each row's `waiting_for` goes as this, cast in the statement)."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in COLUMNS.split(","))
