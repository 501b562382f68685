"""What the SQL stores (SQLite, PostgreSQL) share: the instances' columns and
the statements that read them, a row made an `InstanceRecord`, the WHERE of
`list`/`count`, `create`, `acquire`, `release`, `next_wake`, `journal`, why a
save was refused, and the way a driver's exception becomes a typed
`StoreError` (retried first when it is transient).

A store defines its driver's four primitives (`_one`, `_all`, `_exec`,
`_insert`), which raise the driver's own exceptions, how values cross into its
columns (`_time_out`/`_time_in`, `_waiting_out`/`_waiting_in`), its dialect's
two clauses (a shard, an awaited event), and what is its own: `save` (the hot
path), `claim_due`, `delete`, `append_journal`, grouped writes, wake-ups and
migrations.
"""

from __future__ import annotations

import abc
import datetime as _dt
from collections.abc import Callable, Collection
from typing import Any

from genflow.errors import (
    ConcurrencyError,
    DuplicateInstanceError,
    InstanceNotFoundError,
    StoreError,
)
from genflow.stores.base import (
    InstanceRecord,
    Journal,
    JournalEntry,
    Records,
    Store,
    new_record,
    refused_save,
    unpack_detail,
    utcnow,
)
from genflow.stores.retry import retry

__all__ = ["COLUMNS", "SQLStore", "statements", "unencodable"]

COLUMNS = ("id, workflow, status, blob, version, wake_at, waiting_for, attempts, error, "
           "lease_owner, lease_until, created_at, updated_at")

# `?` is the placeholder here; a store whose driver wants another gets it by
# `statements(..., placeholder=)`. `{i}` and `{j}` are the two tables.
_STATEMENTS = {
    "create": f"INSERT INTO {{i}} ({COLUMNS}) VALUES ({','.join('?' * 13)})",
    "get": f"SELECT {COLUMNS} FROM {{i}} WHERE id = ?",
    "why": "SELECT version, lease_owner, lease_until, updated_at FROM {i} WHERE id = ?",
    "list": f"SELECT {COLUMNS} FROM {{i}}",
    "count": "SELECT count(*) FROM {i}",
    "acquire": (
        "UPDATE {i} SET lease_owner = ?, lease_until = ? WHERE id = ? AND (lease_owner IS NULL "
        f"OR lease_owner = ? OR lease_until IS NULL OR lease_until <= ?) RETURNING {COLUMNS}"
    ),
    "exists": "SELECT 1 FROM {i} WHERE id = ?",
    "release": ("UPDATE {i} SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?"),
    "next_wake": "SELECT min(wake_at) FROM {i} WHERE wake_at IS NOT NULL",
    "count_due": ("SELECT count(*) FROM {i} WHERE wake_at IS NOT NULL AND wake_at <= ? AND "
                  "(lease_owner IS NULL OR lease_until IS NULL OR lease_until <= ?)"),
    "journal": "SELECT seq, at, kind, detail FROM {j} WHERE instance_id = ? ORDER BY seq",
}


def statements(instances: str, journal: str, placeholder: str = "?") -> dict[str, str]:
    """The shared statements over the two tables, with the driver's placeholder."""
    return {name: text.format(i=instances, j=journal).replace("?", placeholder)
            for name, text in _STATEMENTS.items()}


def _same(value: Any) -> Any:
    return value


def unencodable(where: str, exc: UnicodeEncodeError) -> StoreError:
    """A text a database cannot hold (a lone surrogate is no UTF-8)."""
    return StoreError(f"{where}: a value is not valid Unicode text ({exc.reason}: "
                      f"{exc.object[exc.start:exc.end]!r}) and cannot be stored: use valid text")


class SQLStore(Store):
    """A store on an SQL database (see the module's docstring for what a subclass gives)."""

    #: the driver's exceptions, which never leave a store method untranslated
    _catch: tuple[type[BaseException], ...] = ()
    #: how long a transient fault is retried before it is raised
    retry_seconds: float = 10.0
    readonly: bool = False
    _sql: dict[str, str]
    _placeholder = "?"
    _shard_clause = ""  # keeps one of `count` parts: parameters (count, index)
    _waiting_clause = ""  # instances waiting for an event: parameter (event,)
    #: the workflow column as `_only` (the workflows a worker runs) tests it
    _workflow_term = "workflow"
    _time_out: Callable[[_dt.datetime | None], Any] = staticmethod(_same)
    _time_in: Callable[[Any], _dt.datetime | None] = staticmethod(_same)
    _waiting_out: Callable[[tuple[str, ...]], Any] = staticmethod(_same)
    _waiting_in: Callable[[Any], tuple[str, ...]] = staticmethod(tuple)

    # -- the driver's primitives (raise the driver's exceptions) --

    @abc.abstractmethod
    def _one(self, sql: str, params: Any = ()) -> Any:
        """The first row of a statement (None if there is none)."""

    @abc.abstractmethod
    def _all(self, sql: str, params: Any = ()) -> list[Any]:
        """Every row of a statement."""

    @abc.abstractmethod
    def _exec(self, sql: str, params: Any = ()) -> int:
        """Run a statement; how many rows it changed."""

    @abc.abstractmethod
    def _insert(self, sql: str, params: Any, instance_id: str) -> None:
        """Run an INSERT; `DuplicateInstanceError` if the id exists (inside
        `transaction()`, the rest of the group stands)."""

    @abc.abstractmethod
    def _translate(self, exc: BaseException) -> StoreError:
        """The typed error for a driver's exception, worded for this store."""

    def _recover(self) -> None:
        """Before a retry: drop what the fault broke (dead pooled connections)."""

    def _commit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The write `fn(*args)` committed. A store whose concurrent callers can
        share commits (`genflow.stores.group`) runs it so; by default, at once."""
        return fn(*args)

    def _commit_lease(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A lease's write (`acquire`, `release`) committed: as `_commit`, unless
        the store's groups could then wait on each other's row locks."""
        return self._commit(fn, *args)

    # -- running statements --

    def _run(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)`, its transient faults retried for `retry_seconds`
        (never inside `transaction()`), every driver exception made typed."""
        try:
            return call(*args)
        except self._catch as exc:
            return self._again(exc, call, *args)

    def _again(self, exc: BaseException, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)` raised `exc`: retry it while that is transient and safe,
        else raise the typed error (a hot path's own `except` calls this)."""
        if self.grouping():
            raise self._translate(exc) from exc
        return retry(lambda: call(*args), exc, self._translate, seconds=self.retry_seconds,
                     catch=self._catch, label=repr(self), before=self._recover)

    # -- rows --

    def _record(self, row: Any) -> InstanceRecord:
        time_in = self._time_in
        (id_, workflow, status, blob, version, wake_at, waiting, attempts, error,
         lease_owner, lease_until, created_at, updated_at) = row
        return new_record(
            id_, workflow, status, bytes(blob), version, time_in(wake_at),
            self._waiting_in(waiting), attempts, error, lease_owner, time_in(lease_until),
            time_in(created_at), time_in(updated_at),
        )

    def _where(self, workflow: str | None, status: str | None, waiting: str | None,
               after: str | None = None,
               shard: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
        p = self._placeholder
        clauses: list[str] = []
        params: list[Any] = []
        if shard is not None:
            clauses.append(self._shard_clause)
            params.extend((shard[1], shard[0]))
        if workflow is not None:
            clauses.append(f"workflow = {p}")
            params.append(workflow)
        if status is not None:
            clauses.append(f"status = {p}")
            params.append(status)
        if waiting is not None:
            clauses.append(self._waiting_clause)
            params.append(waiting)
        if after is not None:
            clauses.append(f"id > {p}")
            params.append(after)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _only(self, workflows: Collection[str] | None) -> tuple[str, list[str]]:
        """An `AND workflow IN (...)` clause and its parameters (empty for None)."""
        if workflows is None:
            return "", []
        names = sorted(workflows)
        if not names:
            return " AND 1 = 0", []
        return (f" AND {self._workflow_term} IN ({','.join([self._placeholder] * len(names))})",
                names)

    # -- instances --

    def create(self, record: InstanceRecord, *, lease_owner: str | None = None,
               lease_until: _dt.datetime | None = None) -> InstanceRecord:
        now = utcnow()
        out = self._time_out
        waiting = tuple(record.waiting_for)
        params = (record.id, record.workflow, record.status, record.blob, 1,
                  out(record.wake_at), self._waiting_out(waiting), record.attempts,
                  record.error, lease_owner, out(lease_until), out(now), out(now))
        try:
            self._run(self._commit, self._insert, self._sql["create"], params, record.id)
        except DuplicateInstanceError:
            # A retried insert whose first attempt committed (PostgreSQL: its
            # connection broke before the answer) finds its own row: that is a success.
            row = self._run(self._one, self._sql["get"], (record.id,))
            if row is None or self._time_in(row[11]) != now or bytes(row[3]) != record.blob:
                raise
        return record.replace(version=1, waiting_for=waiting, lease_owner=lease_owner,
                              lease_until=lease_until, created_at=now, updated_at=now)

    def get(self, instance_id: str) -> InstanceRecord:
        row = self._run(self._one, self._sql["get"], (instance_id,))
        if row is None:
            raise InstanceNotFoundError(f"no instance {instance_id!r}")
        return self._record(row)

    def _refused(self, record: InstanceRecord, expected_version: int,
                 lease_owner: str | None, now: _dt.datetime) -> InstanceRecord:
        """A save changed no row: why (raised), or the record as saved if this
        very save committed on an earlier attempt (its answer was lost)."""
        why = self._run(self._one, self._sql["why"], (record.id,))
        if why is None:
            raise InstanceNotFoundError(f"no instance {record.id!r}")
        version, holder, until, updated_at = why
        if version == expected_version + 1 and self._time_in(updated_at) == now:
            return record.replace(version=version, updated_at=now, lease_owner=holder,
                                  lease_until=self._time_in(until),
                                  waiting_for=tuple(record.waiting_for))
        raise refused_save(record.id, version, holder, expected_version, lease_owner) or \
            ConcurrencyError(f"instance {record.id!r} changed while it was saved: reload and retry")

    def list(self, *, workflow: str | None = None, status: str | None = None,
             limit: int | None = None, after: str | None = None,
             waiting: str | None = None, shard: tuple[int, int] | None = None) -> Records:
        where, params = self._where(workflow, status, waiting, after, shard)
        sql = f"{self._sql['list']}{where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {self._placeholder}"
            params.append(limit)
        return [self._record(row) for row in self._run(self._all, sql, params)]

    def count(self, *, workflow: str | None = None, status: str | None = None,
              waiting: str | None = None) -> int:
        where, params = self._where(workflow, status, waiting)
        row = self._run(self._one, self._sql["count"] + where, params)
        return int(row[0]) if row else 0

    # -- leases and due work --

    def acquire(self, instance_id: str, owner: str, now: _dt.datetime,
                until: _dt.datetime) -> InstanceRecord | None:
        # Safe to retry: taking one's own lease again only extends it.
        row = self._run(self._commit_lease, self._one, self._sql["acquire"],
                        (owner, self._time_out(until), instance_id, owner, self._time_out(now)))
        if row is not None:
            return self._record(row)
        if self._run(self._one, self._sql["exists"], (instance_id,)) is None:
            raise InstanceNotFoundError(f"no instance {instance_id!r}")
        return None

    def release(self, instance_id: str, owner: str) -> None:
        self._run(self._commit_lease, self._exec, self._sql["release"], (instance_id, owner))

    def next_wake(self, workflows: Collection[str] | None = None) -> _dt.datetime | None:
        only, names = self._only(workflows)
        row = self._run(self._one, self._sql["next_wake"] + only, names)
        return None if row is None else self._time_in(row[0])

    def count_due(self, now: _dt.datetime, workflows: Collection[str] | None = None) -> int:
        only, names = self._only(workflows)
        at = self._time_out(now)
        row = self._run(self._one, self._sql["count_due"] + only, [at, at, *names])
        return int(row[0]) if row else 0

    @staticmethod
    def _earliest_first(records: Records) -> Records:
        """Claimed records as `claim_due` promises them (RETURNING keeps no order)."""
        records.sort(key=lambda r: (r.wake_at, r.id))
        return records

    # -- journal --

    def journal(self, instance_id: str) -> Journal:
        rows = self._run(self._all, self._sql["journal"], (instance_id,))
        return [JournalEntry(instance_id, seq, self._time_in(at), kind,  # type: ignore[arg-type]
                             unpack_detail(bytes(detail))) for seq, at, kind, detail in rows]
