"""Fault injection for the store tests: driver connections that fail on cue.

`FaultySQLite` stands in for an `SQLiteStore`'s connection (and its save
cursor); `FaultyPool` for a `PostgresStore`'s pool, handing out connections
that fail alike. A fault either replaces a statement (it did not run: what a
locked database or a full disk does) or follows it (`after=True`: it ran and
committed, then the answer was lost, as when a server dies at that moment).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: SQLite's primary result codes, by the name the tests use
SQLITE_CODES = {"busy": 5, "locked": 6, "readonly": 8, "ioerr": 10, "corrupt": 11,
                "full": 13, "cantopen": 14}
SQLITE_TEXT = {"busy": "database is locked", "locked": "database table is locked",
               "readonly": "attempt to write a readonly database", "ioerr": "disk I/O error",
               "corrupt": "database disk image is malformed",
               "full": "database or disk is full", "cantopen": "unable to open database file"}


def sqlite_error(kind: str) -> sqlite3.Error:
    error = sqlite3.OperationalError(SQLITE_TEXT[kind])
    error.sqlite_errorcode = SQLITE_CODES[kind]  # type: ignore[attr-defined]
    return error


class Faults:
    """When to fail: the next `times` statements that `match` picks."""

    def __init__(self, make: Callable[[], BaseException], *, times: int = 1,
                 match: Callable[[str], bool] = lambda sql: True, after: bool = False):
        self.make = make
        self.times = times
        self.match = match
        self.after = after
        self.raised = 0

    def due(self, sql: str) -> bool:
        if self.raised < self.times and self.match(sql):
            self.raised += 1
            return True
        return False


class _Faulty:
    def __init__(self, real: Any, faults: Faults):
        self._real = real
        self._faults = faults

    def execute(self, sql: str, params: Any = ()) -> Any:
        if self._faults.due(sql):
            if self._faults.after:
                self._real.execute(sql, params)
            raise self._faults.make()
        return self._real.execute(sql, params)

    def executemany(self, sql: str, params: Any) -> Any:
        if self._faults.due(sql):
            if self._faults.after:
                self._real.executemany(sql, params)
            raise self._faults.make()
        return self._real.executemany(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def faulty_sqlite(store: Any, faults: Faults) -> Iterator[Faults]:
    """Every statement of `store` (an SQLiteStore) passes `faults` meanwhile."""
    db, saves = store._db, store._saves
    store._db, store._saves = _Faulty(db, faults), _Faulty(saves, faults)
    try:
        yield faults
    finally:
        store._db, store._saves = db, saves


class _FaultyPool:
    def __init__(self, real: Any, faults: Faults):
        self._real = real
        self._faults = faults

    @contextmanager
    def connection(self) -> Iterator[Any]:
        with self._real.connection() as conn:
            yield _Faulty(conn, self._faults)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def faulty_postgres(store: Any, faults: Faults) -> Iterator[Faults]:
    """Every statement of `store` (a PostgresStore) passes `faults` meanwhile."""
    pool = store._pool
    store._pool = _FaultyPool(pool, faults)
    try:
        yield faults
    finally:
        store._pool = pool


def faulty(store: Any, faults: Faults) -> Any:
    if type(store).__name__ == "SQLiteStore":
        return faulty_sqlite(store, faults)
    return faulty_postgres(store, faults)


#: the store writes of a worker's round: its saves (and children's starts), outbox rows, leases
ROUND_WRITES = ("create", "save", "create_if_absent", "put_outbox", "done_outbox",
                "retry_outbox", "release")


def round_writes(kind: str) -> tuple[str, ...]:
    """`ROUND_WRITES` of a store of `kind`; on PostgreSQL also the statement a
    turn's put-off saves are written in, at the end of its block."""
    return ROUND_WRITES + (("_save_deferred",) if kind == "postgres" else ())


@contextmanager
def dies_at_call(store: Any, at: int | None, methods: tuple[str, ...],
                 crash: type[BaseException]) -> Iterator[dict[str, int]]:
    """Count every call of the store's `methods`; the `at`-th raises `crash()`
    instead of running (the process dies there: nothing after it runs; None:
    none does). Yields the count (`["n"]`); the methods are put back on exit."""
    count = {"n": 0}
    real = {name: getattr(store, name) for name in methods}

    def wrap(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            count["n"] += 1
            if count["n"] == at:
                raise crash
            return real[name](*args, **kw)
        return call
    for name in methods:
        setattr(store, name, wrap(name))
    try:
        yield count
    finally:
        for name in methods:
            setattr(store, name, real[name])
