"""Workflows for the PostgreSQL worker tests (imported by the tests and by the
worker processes, `genflow worker --app tests/support/pg_app.py` or `pg_worker.py`).

Every step appends its idempotency key to a log file outside the store (one
`write` on an `O_APPEND` file, atomic between processes), so a test can tell
whether a checkpointed step ever ran twice.
"""

from __future__ import annotations

import datetime as dt
import os
import time

import attrs

import genflow
from genflow import For, If, On, Step, Timeout, Wait

LINES = 3
GRACE = dt.timedelta(milliseconds=300)
COOL_DOWN = dt.timedelta(milliseconds=100)


def log_execution(path: str) -> str:
    key = genflow.current_step().idempotency_key
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (key + "\n").encode())
        finally:
            os.close(fd)
    return key


@genflow.workflow("pg-order")
@attrs.define
class PgOrder:
    """Even orders wait for a `pay` event; odd ones for a grace timer. Then a few
    steps, a cool-down timer, and a closing step."""

    n: int
    log_path: str = ""
    paid: int = 0
    expired: bool = False
    lines: int = 0
    closed: bool = False
    done: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("open", self.step)
        yield If(self.n % 2 == 0, "pays",
            Wait("payment",
                On("pay", self.on_pay),
                Timeout("gave up", dt.timedelta(hours=1), Step("give up", self.step)),
            ),
        ).Else("grace",
            Wait("grace period", Timeout("grace over", GRACE, Step("expire", self.expire))),
        )
        yield For("lines", self.lines < LINES, Step("line", self.line))
        yield Wait("cool down", Timeout("cooled", COOL_DOWN))
        yield Step("close", self.close)

    def on_pay(self, amount: int) -> None:
        self.paid = amount

    def step(self) -> None:
        self.done.append(log_execution(self.log_path))

    def expire(self) -> None:
        self.expired = True
        self.step()

    def line(self) -> None:
        self.lines += 1
        self.step()

    def close(self) -> None:
        self.closed = True
        self.step()


def expected(n: int) -> dict[str, object]:
    """The data an uninterrupted PgOrder(n) ends with (but its step keys)."""
    return {"n": n, "paid": n * 10 if n % 2 == 0 else 0, "expired": n % 2 == 1,
            "lines": LINES, "closed": True,
            "steps": 1 + (n % 2) + LINES + 1}  # open, (expire), lines, close


@genflow.workflow("pg-slow-steps")
@attrs.define
class SlowSteps:
    """Many short steps and a timer: a worker killed mid-run leaves one in flight."""

    steps: int = 20
    pause: float = 0.01
    log_path: str = ""
    n: int = 0
    done: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("first half", self.n < self.steps // 2, Step("work", self.work))
        yield Wait("breather", Timeout("no rush", 0.05))
        yield For("second half", self.n < self.steps, Step("more work", self.work))

    def work(self) -> None:
        key = log_execution(self.log_path)
        time.sleep(self.pause)
        self.done.append(key)
        self.n += 1


@genflow.workflow("pg-tally")
@attrs.define
class Tally:
    """Counts `add` events until `close`: concurrent senders must lose none."""

    seen: list[str] = attrs.field(factory=list)
    closed: bool = False

    def definition(self):
        yield For("open", not self.closed,
            Wait("next", On("add", self.on_add), On("close", self.on_close)),
        )

    def on_add(self, tag: str) -> int:
        self.seen.append(tag)
        return len(self.seen)

    def on_close(self) -> None:
        self.closed = True
