"""Schedules, queues and retention: schedule ticks per second, the cost of
admission per instance under a limit, and the purge rate, on SQLite and (when
`GENFLOW_BENCH_POSTGRES_DSN` or `GENFLOW_TEST_POSTGRES_DSN` names one)
PostgreSQL. Each run works in a fresh file or schema.

* ticks/s: `schedules` schedules all due at once, fired by one engine
  (`Schedules.run_due`, 50 schedules per transaction): each tick creates its
  instance and advances its schedule.
* admission: `instances` one-step instances started and run to the end by one
  worker (`Engine.work`), without a queue and on a queue with a limit of 50
  running; the difference per instance is what admission costs.
* purge: `purged` finished instances deleted by `Retention.purge` (batches of
  500, each one transaction).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import attrs

import genflow
from genflow import Step
from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.queues import Queue
from genflow.stores import SQLiteStore, Store
from genflow.stores.base import InstanceRecord, utcnow

from .common import Figure, figure

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@genflow.workflow("bench-sched-job")
@attrs.define
class Job:
    tenant: str = "t"
    done: bool = False

    def definition(self):
        yield Step("work", self.work)

    def work(self) -> None:
        self.done = True


def _dsn() -> str | None:
    return os.environ.get("GENFLOW_BENCH_POSTGRES_DSN") or os.environ.get(
        "GENFLOW_TEST_POSTGRES_DSN")


def _stores() -> list[tuple[str, Callable[[], Store]]]:
    folder = Path(tempfile.mkdtemp(prefix="genflow-bench-sched-"))

    def sqlite() -> Store:
        return SQLiteStore(folder / f"{uuid.uuid4().hex}.db")

    kinds: list[tuple[str, Callable[[], Store]]] = [("SQLite", sqlite)]
    dsn = _dsn()
    if dsn is None:
        print("schedules_queues: no PostgreSQL DSN, PostgreSQL cases skipped", file=sys.stderr)
        return kinds
    try:
        from genflow.stores.postgres import PostgresStore
    except ImportError:
        print("schedules_queues: no psycopg, PostgreSQL cases skipped", file=sys.stderr)
        return kinds

    def postgres() -> Store:
        return PostgresStore(dsn, schema=f"bench_{uuid.uuid4().hex[:10]}",
                             drop_schema_on_close=True)

    return [*kinds, ("PostgreSQL", postgres)]


def ticks_per_second(make: Callable[[], Store], schedules: int) -> float:
    """Schedules all due at once: how many ticks one engine fires per second."""
    store = make()
    try:
        clock = FakeClock(T0)
        engine = Engine(store, clock=clock)
        for n in range(schedules):
            engine.schedules.add(f"s{n}", Job(), every=dt.timedelta(minutes=1))
        clock.advance(seconds=60)
        started = time.perf_counter()
        fired = 0
        while True:
            got = engine.schedules.run_due(limit=50)
            if not got:
                break
            fired += got
        elapsed = time.perf_counter() - started
        assert fired == schedules == store.count(workflow="bench-sched-job")
        return fired / elapsed
    finally:
        store.close()


def run_instances(make: Callable[[], Store], instances: int, queued: bool) -> float:
    """Microseconds per instance to start and run `instances` one-step instances."""
    store = make()
    try:
        engine = Engine(store)
        if queued:
            engine.queues.define(Queue("bench", concurrency=50))
        started = time.perf_counter()
        for n in range(instances):
            if queued:
                engine.start(Job(tenant=f"t{n % 20}"), queue="bench")
            else:
                engine.start(Job(tenant=f"t{n % 20}"), run=False)
        engine.work(until_idle=True, idle_sleep=0.001)
        elapsed = time.perf_counter() - started
        assert store.count(status="finished") == instances
        return elapsed / instances * 1e6
    finally:
        store.close()


def purge_rate(make: Callable[[], Store], purged: int) -> float:
    """Finished instances deleted per second by `Retention.purge`."""
    store = make()
    try:
        engine = Engine(store)
        blob = _finished_blob(engine)
        for start in range(0, purged, 5000):
            with store.transaction():
                for n in range(start, min(purged, start + 5000)):
                    store.create(InstanceRecord(id=f"done{n:07d}", workflow="bench-sched-job",
                                                status="finished", blob=blob))
        started = time.perf_counter()
        report = engine.retention.purge(dt.timedelta(0), now=utcnow() + dt.timedelta(hours=1),
                                        max_batches=1 << 30)
        elapsed = time.perf_counter() - started
        assert report.instances == purged and store.count() == 0
        return purged / elapsed
    finally:
        store.close()


def _finished_blob(engine: Engine) -> bytes:
    engine.start(Job(), id="template")
    blob = engine.store.get("template").blob
    engine.store.delete("template")
    return blob


def run(quick: bool = False) -> list[Figure]:
    schedules = 100 if quick else 1000
    instances = 200 if quick else 2000
    purged = 5000 if quick else 100_000
    runs = 1 if quick else 3
    figures = []
    for name, make in _stores():
        figures.append(figure("schedules", f"ticks fired, {schedules:,} schedules due, {name}",
                              [ticks_per_second(make, schedules) for _ in range(runs)],
                              unit="ticks/s", note="instance + advance in one transaction"))
        plain = [run_instances(make, instances, False) for _ in range(runs)]
        queued = [run_instances(make, instances, True) for _ in range(runs)]
        figures.append(figure("queues", f"{instances:,} one-step instances, no queue, {name}",
                              plain, note="start + run, per instance"))
        figures.append(figure("queues", f"the same on a queue (limit 50), {name}", queued,
                              note="start + admission + run, per instance"))
        overhead = [q - p for p, q in zip(sorted(plain), sorted(queued), strict=True)]
        figures.append(figure("queues", f"admission overhead per instance, {name}", overhead,
                              note="queued minus plain (medians paired)"))
        figures.append(figure("retention", f"purge of {purged:,} finished instances, {name}",
                              [purge_rate(make, purged) for _ in range(1 if quick else 2)],
                              unit="inst/s", note="batches of 500, through Store.delete"))
    return figures
