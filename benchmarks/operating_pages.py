"""The console's schedules and queues views at 100,000 SQLite instances: keyset pages.

One queue holds 100,000 waiting instances (and 50 running ones); a schedule has
started 100,000 instances among 100,000 others. Measured through what the
console and the API serve: a page of the queue's waiting instances with their
positions (`Queues.waiting`: one range of the index admission reads, plus one
count of the entries ahead of the page for its first position), the instance
list filtered by queue (`Queues.entries`, then each row) and by schedule (a
range of ids), first and deep in the list. The deep waiting page costs more
than the first by the count of what is ahead of it; the range reads do not.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from genflow.codec import dumps
from genflow.engine import Engine
from genflow.queues import Queue
from genflow.schedules import instance_id_for
from genflow.state import new_state
from genflow.stores import InstanceRecord, SQLiteStore
from genflow.stores.scheduling import QueueEntry
from genflow.web.listing import Filters, list_rows

from .common import Figure, figure
from .schedules_queues import Job

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _time(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _fill(store: SQLiteStore, count: int) -> None:
    data = Job()
    blob = dumps(data, new_state("template", data))
    with store.transaction():
        for n in range(count):
            record = InstanceRecord(id=f"job-{n:06}", workflow="bench-sched-job", status="resuming",
                                    blob=blob)
            store.enqueue(record, QueueEntry(record.id, "bench", f"t{n % 20}", n % 3))
        for n in range(count):
            tick = T0 + dt.timedelta(minutes=n)
            store.create(InstanceRecord(id=instance_id_for("nightly", tick),
                                        workflow="bench-sched-job", status="finished", blob=blob))
            store.create(InstanceRecord(id=f"other-{n:06}", workflow="bench-sched-job",
                                        status="finished", blob=blob))


def run(quick: bool = False) -> list[Figure]:
    count = 10_000 if quick else 100_000
    repeat = 5 if quick else 20
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "pages.db")
        engine = Engine(store, [Job])
        engine.queues.define(Queue("bench", concurrency=50))
        _fill(store, count)
        engine.queues.admit()
        places, _ = engine.queues.waiting("bench", limit=count * 9 // 10)
        deep_waiting = places[-1][0]
        deep = f"w{deep_waiting.priority}:{deep_waiting.seq}"
        nightly = engine.schedules.instances("nightly", limit=count)
        deep_tick = nightly[count * 9 // 10].id
        cases = {
            "queue page: first 50 waiting, positions": lambda: engine.queues.waiting("bench"),
            f"queue page: 50 waiting after {count * 9 // 10:,}, positions":
                lambda: engine.queues.waiting("bench", after=deep),
            "instance list, queue filter: first page": lambda: list_rows(
                engine, Filters(queue="bench")),
            f"instance list, queue filter: after {count * 9 // 10:,}": lambda: list_rows(
                engine, Filters(queue="bench", after=deep)),
            "instance list, schedule filter: first page": lambda: list_rows(
                engine, Filters(schedule="nightly")),
            f"instance list, schedule filter: after {count * 9 // 10:,}": lambda: list_rows(
                engine, Filters(schedule="nightly", after=deep_tick)),
        }
        for case, read in cases.items():
            result = read()
            assert result[0], case
            figures.append(figure("operating pages", f"{count:,} queued/scheduled: {case}",
                                  _time(read, repeat), unit="ms", note="keyset"))
        store.close()
    return figures
