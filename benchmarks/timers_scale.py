"""100,000 instances waiting on timers, all due at the same instant: the time
until every one has fired (and run the step after it), by one worker process
(`Engine.work`, batches of 100: claimed from the due index in order, each
round's saves sharing commits). Also N = 10,000, to see the cost per timer
stay flat. SQLite, and PostgreSQL with `GENFLOW_BENCH_POSTGRES_DSN`.

The instances are set up first (not timed) on a `FakeClock`, which then jumps
past their timers: every one is due at once.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

import genflow
from genflow import Sleep, Step
from genflow.batch import run_batch
from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.stores import open_store

from .common import Figure
from .postgres_workers import dsn


@genflow.workflow("bench-timers")
@attrs.define
class Nap:
    woke: bool = False

    def definition(self):
        yield Sleep("nap", 60)
        yield Step("wake", self.wake)

    def wake(self) -> None:
        self.woke = True


def fire_all(url: str, n: int) -> float:
    """Seconds until all `n` instances' timers have fired, after setting them up."""
    clock = FakeClock()

    def make(store: Any) -> Engine:
        return Engine(store, clock=clock, share_commits=True)

    run_batch(url, starts=((f"t{k:07}", Nap()) for k in range(n)), engine=make,
              progress=False, commit_every=500)
    with open_store(url) as store:
        assert store.count(status="waiting") == n
        engine = make(store)
        clock.advance(seconds=61)
        start = time.perf_counter()
        engine.work(until_idle=True, batch=100, idle_sleep=0)
        elapsed = time.perf_counter() - start
        assert store.count(status="finished") == n
        if url.startswith("postgresql"):
            store.drop_schema_on_close = True  # type: ignore[attr-defined]
    return elapsed


def run(quick: bool = False) -> list[Figure]:
    sizes = [1000, 10_000] if quick else [10_000, 100_000]
    targets = [("SQLite", lambda: f"sqlite:///{Path(tempfile.mkdtemp()) / 'timers.db'}")]
    url = dsn()
    if url:
        sep = "&" if "?" in url else "?"
        targets.append(("PostgreSQL", lambda: f"{url}{sep}schema=bench_{uuid.uuid4().hex[:10]}"))
    else:
        print("timers on PostgreSQL: skipped (set GENFLOW_BENCH_POSTGRES_DSN)", file=sys.stderr)
    figures = []
    for label, make in targets:
        first = None
        for n in sizes:
            seconds = fire_all(make(), n)
            per = seconds / n * 1e6
            first = first or per
            figures.append(Figure(
                "timers due at once", f"{label}, {n:,} instances", seconds, seconds, seconds,
                "s", 1, note=f"until every timer fired; {n / seconds:,.0f} timers/s, "
                             f"{per:,.0f} µs each ({per / first:.2f}x the smallest N's)"))
    return figures
