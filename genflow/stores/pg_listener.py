"""Waking idle PostgreSQL workers: LISTEN on a connection of its own.

`notify_wake` anywhere sends `NOTIFY` on the schema's channel; a worker's
`wait_wake` listens on a dedicated connection (a pooled one would be handed to
other calls between waits, and its notifications lost), so it starts at once
when work becomes due in any process. Everything here is a hint: when the
server is unreachable the listener just sleeps, and polling `claim_due` stays
correct without it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["Listener", "channel"]


def channel(schema: str) -> str:
    """The NOTIFY channel of a schema (an identifier of at most 63 bytes)."""
    name = f"genflow_wake_{schema}"
    if len(name.encode()) <= 63:
        return name
    return "genflow_wake_" + hashlib.blake2b(schema.encode(), digest_size=16).hexdigest()


class Listener:
    """LISTEN on `channel` over connections from `connect`, one at a time."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], channel: str) -> None:
        self._connect = connect
        self.channel = channel
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()  # the process that owns `_conn`
        self._lock = threading.Lock()
        self._woken = False  # a `wake()` of this very process
        self.closed = False

    @property
    def listening(self) -> bool:
        return self._conn is not None and self._pid == os.getpid()

    def wake(self) -> None:
        """End this process's own `wait` (another process's ends by NOTIFY)."""
        self._woken = True

    def start(self) -> None:
        """Listen from now on (a worker's first claim), so a wake-up sent before
        its first sleep is not missed. Best effort: `wait` tries again."""
        if self._lock.acquire(blocking=False):
            try:
                self._listen()
            except psycopg.Error:
                self._drop()
            finally:
                self._lock.release()

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning as soon as a notification (or this
        process's own `wake`) arrives."""
        deadline = time.monotonic() + seconds
        if not self._lock.acquire(timeout=max(0.0, seconds)):
            return  # another thread of this process listens; it was our whole wait
        try:
            while True:
                if self._woken:
                    self._woken = False
                    return
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return
                try:
                    conn = self._listen()
                    # short slices, so a wake from this very process is seen quickly
                    if any(True for _ in conn.notifies(timeout=min(left, 0.05), stop_after=1)):
                        for _ in conn.notifies(timeout=0):  # drain what piled up
                            pass
                        return
                except psycopg.Error:  # the server went away: sleep, listen again later
                    self._drop()
                    time.sleep(max(0.0, min(deadline - time.monotonic(), 0.5)))
        finally:
            self._lock.release()

    def _listen(self) -> psycopg.Connection[Any]:
        if self._pid != os.getpid():  # inherited through fork: the parent's, not ours
            self._conn, self._pid = None, os.getpid()
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._connect()
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()

    def close(self) -> None:
        self.closed = True
        with self._lock:
            self._drop()
