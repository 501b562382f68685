"""Group commit: concurrent writers of one process share a commit.

A durable write costs its commit (SQLite: the WAL's locks and write;
PostgreSQL: a round trip and the server's flush). A web service whose
threads (or asyncio tasks, through the async API's threads) each `send` one
event pays one commit per call. `GroupCommit` lets those calls share: the
first writer to find the store free is the *leader*; the writes that arrive
while it commits queue up, and the next leader writes them all in one
transaction with one commit. Each caller returns only when the transaction
holding its own write has committed (or raises what its write raised): what a
returned call guarantees does not change.

One writer alone never waits and never builds a group: it writes at once, as
without group commit. A write that fails inside a group (a duplicate id, a
fault) rolls the group back, and then each write of that group runs alone, so
one caller's failure never loses nor changes another's write.

A *write* is a function and its arguments; the store says how a write runs
alone (`alone`) and how a group runs in one transaction (`together`, which
returns each write's result, or raises to say the group failed as a whole).
The writes of a store's own `transaction()` bypass this: they join that
transaction.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["GroupCommit", "Write"]

Write = tuple[Callable[..., Any], tuple[Any, ...]]

_PENDING: Any = object()


class _Ticket:
    """One caller's write, and its outcome once a leader has run it."""

    __slots__ = ("args", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.result: Any = _PENDING
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """Writes of many threads, each returned after its own commit, sharing commits.

    `lock` is the store's write lock (held while a group is written, so the
    store's other writes keep their order with these); `alone(fn, args)` runs
    one write in a commit of its own (None: `fn(*args)` is one already, called
    with no function between); `together(writes)` runs several in one
    transaction and returns their results in order, or raises (then each is
    run alone). At most `limit` writes go into one group.
    """

    def __init__(self, lock: Any,
                 alone: Callable[[Callable[..., Any], tuple[Any, ...]], Any] | None,
                 together: Callable[[Sequence[Write]], list[Any]], *, limit: int = 256) -> None:
        self._lock = lock
        self._alone = alone
        self._together = together
        self.limit = limit
        self._pending: collections.deque[_Ticket] = collections.deque()
        #: how many commits and writes went through (for benchmarks and tests)
        self.commits = 0
        self.writes = 0

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` committed: alone when no one else writes, else in a group."""
        pending = self._pending
        lock = self._lock
        if not pending and lock.acquire(False):
            try:
                if not pending:  # the store is free: write at once
                    self.commits += 1
                    self.writes += 1
                    alone = self._alone
                    return fn(*args) if alone is None else alone(fn, args)
                ticket = _Ticket(fn, args)
                pending.append(ticket)
                while ticket.result is _PENDING and ticket.error is None:
                    self._lead()
            finally:
                lock.release()
            return ticket.outcome()
        ticket = _Ticket(fn, args)
        pending.append(ticket)  # (deque.append: atomic, no lock needed)
        with lock:  # the leader before us may have written ours meanwhile
            while ticket.result is _PENDING and ticket.error is None:
                self._lead()
        return ticket.outcome()

    def _lead(self) -> None:
        """Write what is queued (up to `limit`), in one commit if more than one."""
        pending = self._pending
        group: list[_Ticket] = []
        while pending and len(group) < self.limit:
            group.append(pending.popleft())
        if not group:
            return
        self.commits += 1
        self.writes += len(group)
        if len(group) > 1:
            try:
                results = self._together([(t.fn, t.args) for t in group])
            except Exception:  # the group as a whole failed: each write alone
                self.commits += len(group) - 1
            except BaseException as exc:  # (an interrupt: no caller is left waiting)
                for ticket in group:
                    ticket.error = exc
                raise
            else:
                for ticket, result in zip(group, results, strict=True):
                    ticket.result = result
                return
        alone = self._alone
        for ticket in group:
            try:
                ticket.result = ticket.fn(*ticket.args) if alone is None \
                    else alone(ticket.fn, ticket.args)
            except BaseException as exc:
                ticket.error = exc

