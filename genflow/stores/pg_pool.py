"""The PostgreSQL store's connections: `psycopg_pool`'s pool, made safe across `fork`.

Every connection is in autocommit mode (a statement is its own transaction),
in UTC, read-only when the store is. `psycopg_pool` replaces a connection that
broke when it is handed back, reconnects in the background, and bounds how
many this process opens; `check()` drops the idle ones a server restart killed.

Why not `psycopg_pool` alone: it does not survive `fork`. Its workers are
threads, which a child does not inherit, and its idle connections are the
parent's sockets, which a child must never use (the two would interleave on
one socket) nor close (a close sends the server a Terminate message and ends
the parent's session). So the wrapper remembers the process that made the
pool: a child that uses it gets a new pool of its own, and the parent's is
left untouched (kept referenced, so not even its finaliser runs in the child).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from genflow.errors import StoreError

__all__ = ["Pool"]


class Pool:
    """At most `max_size` autocommit connections to `conninfo`, opened on demand.

    `timeout` is how long `connection()` waits for one (a server that is
    down: `psycopg_pool.PoolTimeout`); `reconnect_seconds`, how long the
    background keeps trying to replace a lost connection before it waits for
    the next caller to ask.
    """

    def __init__(self, conninfo: str, *, max_size: int, prepare_threshold: int | None,
                 readonly: bool, timeout: float, reconnect_seconds: float) -> None:
        self.conninfo = conninfo
        self.max_size = max_size
        self.prepare_threshold = prepare_threshold
        self.readonly = readonly
        self.timeout = timeout
        self.reconnect_seconds = reconnect_seconds
        self.closed = False
        self._inherited: list[ConnectionPool[Any]] = []  # a parent's pools, never touched
        self._pid = os.getpid()
        self._pool = self._new_pool()

    def _new_pool(self) -> ConnectionPool[Any]:
        pool: ConnectionPool[Any] = ConnectionPool(
            self.conninfo, min_size=0, max_size=self.max_size, open=False, name="genflow",
            kwargs={"autocommit": True, "prepare_threshold": self.prepare_threshold},
            configure=self._configure, timeout=self.timeout, num_workers=1,
            reconnect_timeout=self.reconnect_seconds,
        )
        pool.open(wait=False)
        return pool

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SET TIME ZONE 'UTC'")
        if self.readonly:  # the server refuses every write of this session
            conn.execute("SET default_transaction_read_only = on")

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool (a listener's), set up alike."""
        conn = psycopg.connect(self.conninfo, autocommit=True,
                               prepare_threshold=self.prepare_threshold)
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one call; back to the pool afterwards (a broken one
        is replaced, one left inside a transaction is rolled back)."""
        if self.closed:
            raise StoreError("the PostgreSQL store is closed: open it again")
        if os.getpid() != self._pid:
            self._forked()
        pool = self._pool
        conn = pool.getconn()
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def check(self) -> None:
        """Drop the idle connections that broke (after a fault, before a retry)."""
        if os.getpid() == self._pid and not self.closed:
            self._pool.check()

    def _forked(self) -> None:
        self._inherited.append(self._pool)
        self._pid = os.getpid()
        self._pool = self._new_pool()

    def close(self) -> None:
        self.closed = True
        if os.getpid() == self._pid:
            self._pool.close()
