"""Transient store faults: capped exponential backoff, and the retry of a
statement that failed and did not commit.

A store retries inside itself only what is safe to run again: a statement that
failed did not commit (SQLite rolls a failed statement back; a PostgreSQL
statement whose connection broke may have committed, so the SQL stores check
before they report a refusal: see `genflow.stores.sql.SQLStore`). Inside
`Store.transaction()` nothing is retried: the group's earlier writes may be
gone with the failure, so the error goes to the caller, typed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from genflow.errors import StoreError, StoreUnavailableError
from genflow.observe import fields

__all__ = ["Backoff", "retry"]

log = logging.getLogger("genflow.store")

T = TypeVar("T")


@attrs.frozen
class Backoff:
    """Waits of `first * factor**(n-1)` seconds before attempt n+1, at most `cap`."""

    first: float = 0.01
    factor: float = 2.0
    cap: float = 1.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.first * self.factor ** max(0, attempt - 1))


#: a store's own retries: quick at first (a dropped pooled connection is
#: replaced at once), then up to a second apart while a server restarts
STORE_BACKOFF = Backoff()


def retry(call: Callable[[], T], first: BaseException,
          translate: Callable[[BaseException], StoreError], *, seconds: float,
          catch: tuple[type[BaseException], ...], label: str,
          before: Callable[[], Any] | None = None) -> T:
    """Run `call` again after it raised `first`, while the fault is transient
    (`translate` makes it a `StoreUnavailableError`) and `seconds` have not
    passed; then raise the typed error. `before` runs before each new attempt
    (a pool dropping its dead connections). Each retry is logged on
    `genflow.store` (warning: the attempt and the wait)."""
    deadline = time.monotonic() + seconds
    exc = first
    attempt = 0
    while True:
        error = translate(exc)
        attempt += 1
        wait = STORE_BACKOFF.delay(attempt)
        if not isinstance(error, StoreUnavailableError) or time.monotonic() + wait > deadline:
            raise error from exc
        log.warning("%s: %s (retry %d in %.2fs)", label, error, attempt, wait,
                    extra=fields(attempt=attempt, store=label, wait=wait))
        time.sleep(wait)
        try:
            if before is not None:
                before()
            return call()
        except catch as again:
            exc = again
