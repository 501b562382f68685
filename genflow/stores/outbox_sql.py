"""The SQL stores' outbox and children links (SQLite and PostgreSQL alike).

Two tables (migration 3 of each store; the outbox's `trace`, migration 6):
`outbox`, the effects checkpoints asked for, waiting for the relay
(`genflow.outbox`, `Engine`), and `children`, which instance started which
as its child. Written once over
`SQLStore`'s primitives with `?` placeholders; the tables' prefix is the
store's (`_prefix`: PostgreSQL's schema). Every write here joins the
caller's `transaction()` when there is one: a checkpoint's effects commit
with its save, and a delivery's deletion with its target's save.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Collection, Sequence
from typing import Any

from genflow.stores.base import InstanceRecord, OutboxEntry, utcnow
from genflow.stores.sched_sql import SchedulingSQL

__all__ = ["OUTBOX_PG", "OUTBOX_SQLITE", "OUTBOX_TRACE_PG", "OUTBOX_TRACE_SQLITE", "OutboxSQL"]

_ENTRY = ("seq, origin, target, kind, event, payload, thread, pc, due_at, attempts, error, "
          "lease_owner, lease_until, created_at, trace")

#: migration 3 of the SQLite store
OUTBOX_SQLITE: Sequence[str] = (
    """CREATE TABLE outbox (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        origin      TEXT NOT NULL,
        target      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        event       TEXT NOT NULL DEFAULT '',
        payload     BLOB NOT NULL,
        thread      TEXT,
        pc          INTEGER,
        due_at      INTEGER,
        attempts    INTEGER NOT NULL DEFAULT 0,
        error       TEXT NOT NULL DEFAULT '',
        lease_owner TEXT,
        lease_until INTEGER,
        created_at  INTEGER NOT NULL
    )""",
    "CREATE INDEX outbox_due ON outbox (due_at, seq) WHERE due_at IS NOT NULL",
    "CREATE INDEX outbox_origin ON outbox (origin)",
    "CREATE INDEX outbox_target ON outbox (target)",
    """CREATE TABLE children (
        child  TEXT PRIMARY KEY,
        parent TEXT NOT NULL,
        idx    INTEGER NOT NULL,
        seq    INTEGER NOT NULL
    )""",
    "CREATE INDEX children_parent ON children (parent, seq)",
)

#: migration 3 of the PostgreSQL store (`{s}`: the schema)
OUTBOX_PG: Sequence[str] = (
    """
    CREATE TABLE {s}.outbox (
        seq         bigserial PRIMARY KEY,
        origin      text NOT NULL,
        target      text NOT NULL,
        kind        text NOT NULL,
        event       text NOT NULL DEFAULT '',
        payload     bytea NOT NULL,
        thread      text,
        pc          bigint,
        due_at      timestamptz,
        attempts    integer NOT NULL DEFAULT 0,
        error       text NOT NULL DEFAULT '',
        lease_owner text,
        lease_until timestamptz,
        created_at  timestamptz NOT NULL
    )
    """,
    "CREATE INDEX outbox_due ON {s}.outbox (due_at, seq) WHERE due_at IS NOT NULL",
    "CREATE INDEX outbox_origin ON {s}.outbox (origin)",
    "CREATE INDEX outbox_target ON {s}.outbox (target)",
    """
    CREATE TABLE {s}.children (
        child  text PRIMARY KEY,
        parent text NOT NULL,
        idx    integer NOT NULL,
        seq    bigserial
    )
    """,
    "CREATE INDEX children_parent ON {s}.children (parent, seq)",
)


#: migration 6 of the SQLite store: the trace context a row carries to its delivery
OUTBOX_TRACE_SQLITE: Sequence[str] = ("ALTER TABLE outbox ADD COLUMN trace TEXT",)
#: migration 6 of the PostgreSQL store
OUTBOX_TRACE_PG: Sequence[str] = ("ALTER TABLE {s}.outbox ADD COLUMN trace text",)


class OutboxSQL(SchedulingSQL):
    """Mixed into `SQLiteStore` and `PostgresStore` (before `SchedulingSQL`)."""

    def _o(self, text: str) -> str:
        for table in ("outbox", "children"):
            text = text.replace(f"<{table}>", self._prefix + table)
        return self._q(text)

    def _entry(self, row: Sequence[Any]) -> OutboxEntry:
        t = self._time_in
        (seq, origin, target, kind, event, payload, thread, pc, due_at, attempts, error,
         lease_owner, lease_until, created_at, trace) = row
        return OutboxEntry(origin, target, kind, event, bytes(payload), thread, pc, t(due_at),
                           attempts, error, seq, lease_owner, t(lease_until), t(created_at),
                           trace)

    # -- writes that join a checkpoint's transaction --

    def create_if_absent(self, record: InstanceRecord,
                         parent: tuple[str, int] | None = None) -> bool:
        return bool(self._run(self._create_child, record, parent))

    def _create_child(self, record: InstanceRecord, parent: tuple[str, int] | None) -> bool:
        with self.transaction():
            if not self._create_quietly(record, None, utcnow()):
                return False
            if parent is not None:
                self._exec(self._o(
                    "INSERT INTO <children> (child, parent, idx, seq) VALUES (?, ?, ?, "
                    "(SELECT coalesce(max(seq), 0) + 1 FROM <children>))"),
                    (record.id, parent[0], parent[1]))
            return True

    def put_outbox(self, entries: list[OutboxEntry]) -> list[int]:
        return list(self._run(self._put_entries, entries))

    def _put_entries(self, entries: list[OutboxEntry]) -> list[int]:
        out = self._time_out
        now = out(utcnow())
        seqs = []
        with self.transaction():
            for e in entries:
                row = self._one(self._o(
                    "INSERT INTO <outbox> (origin, target, kind, event, payload, thread, pc, "
                    "due_at, attempts, error, created_at, trace) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING seq"),
                    (e.origin, e.target, e.kind, e.event, e.payload, e.thread, e.pc,
                     out(e.due_at), e.attempts, e.error, now, e.trace))
                seqs.append(int(row[0]))
        return seqs

    def done_outbox(self, seq: int) -> None:
        self._run(self._exec, self._o("DELETE FROM <outbox> WHERE seq = ?"), (seq,))

    def retry_outbox(self, seq: int, due_at: _dt.datetime | None, attempts: int,
                     error: str) -> None:
        self._run(self._exec, self._o(
            "UPDATE <outbox> SET due_at = ?, attempts = ?, error = ?, lease_owner = NULL, "
            "lease_until = NULL WHERE seq = ?"), (self._time_out(due_at), attempts, error, seq))

    # -- the relay's reads --

    def claim_outbox(self, owner: str, now: _dt.datetime, until: _dt.datetime, limit: int,
                     seqs: Collection[int] | None = None) -> list[OutboxEntry]:
        out = self._time_out
        only: list[Any] = []
        where = ""
        if seqs is not None:
            only = sorted(seqs)
            if not only:
                return []
            where = f" AND {self._in('seq', only)}"
        rows = self._run(self._all, self._o(
            "UPDATE <outbox> SET lease_owner = ?, lease_until = ? WHERE seq IN ("
            "SELECT seq FROM <outbox> WHERE due_at IS NOT NULL AND due_at <= ? AND "
            f"(lease_owner IS NULL OR lease_until IS NULL OR lease_until <= ?){where} "
            f"ORDER BY due_at, seq LIMIT ?{self._lock_rows}) RETURNING {_ENTRY}"),
            (owner, out(until), out(now), out(now), *only, limit))
        return sorted((self._entry(row) for row in rows), key=lambda e: e.seq)

    def list_outbox(self, *, origin: str | None = None, target: str | None = None,
                    limit: int = 100) -> list[OutboxEntry]:
        clauses, params = [], []
        if origin is not None:
            clauses.append("origin = ?")
            params.append(origin)
        if target is not None:
            clauses.append("target = ?")
            params.append(target)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._run(self._all, self._o(
            f"SELECT {_ENTRY} FROM <outbox>{where} ORDER BY seq LIMIT ?"), (*params, limit))
        return [self._entry(row) for row in rows]

    def next_outbox_due(self) -> _dt.datetime | None:
        row = self._run(self._one, self._o("SELECT min(due_at) FROM <outbox>"))
        return None if row is None else self._time_in(row[0])

    def children(self, parent_id: str) -> list[tuple[str, int]]:
        rows = self._run(self._all, self._o(
            "SELECT child, idx FROM <children> WHERE parent = ? ORDER BY seq"), (parent_id,))
        return [(child, int(index)) for child, index in rows]

    def _delete_links(self, instance_id: str) -> None:
        """`delete`'s part: the instance's link, and the entries it can never receive."""
        self._exec(self._o("DELETE FROM <children> WHERE child = ?"), (instance_id,))
        self._exec(self._o("DELETE FROM <outbox> WHERE target = ?"), (instance_id,))
