"""Group commit: one-at-a-time callers (a web service's threads) sharing commits.

Each caller is a thread that does what a service does per request: `start` an
instance of W4's shape (three steps, then a wait), then `send` it its event
(one more step, finished). 2,000 instances in all, shared out between 1, 8
and 64 concurrent callers, on SQLite and (with `GENFLOW_BENCH_POSTGRES_DSN`)
PostgreSQL. Beside each figure, the same run with groups of one write (each
write its own commit, as before group commit) and how many writes shared a
commit on average. Every call returns after its own commit either way.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from genflow.engine import Engine
from genflow.stores import SQLiteStore

from .common import Figure, figure
from .postgres_workers import dsn
from .w4_batch import Small

CALLERS = (1, 8, 64)


def one_run(store: Any, callers: int, instances: int, *, grouped: bool = True) -> tuple[float,
                                                                                        float]:
    """Instances per second, and writes per commit, for `callers` threads
    starting and sending `instances` instances between them."""
    store._writes.limit = 256 if grouped else 1
    engine = Engine(store)
    ids = [f"g{uuid.uuid4().hex[:12]}-{n}" for n in range(instances)]
    failures: list[BaseException] = []
    go = threading.Barrier(callers + 1)

    def caller(mine: list[str]) -> None:
        go.wait()
        try:
            for iid in mine:
                engine.start(Small(), id=iid)
                engine.send(iid, "go")
        except BaseException as exc:  # (reported below: a benchmark must not hide one)
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(ids[k::callers],)) for k in range(callers)]
    for thread in threads:
        thread.start()
    commits, writes = store._writes.commits, store._writes.writes
    go.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise failures[0]
    shared = (store._writes.writes - writes) / max(1, store._writes.commits - commits)
    assert store.get(ids[-1]).status == "finished"
    return instances / elapsed, shared


def _figures(label: str, make: Any, instances: int, rounds: int) -> list[Figure]:
    figures = []
    for callers in CALLERS:
        grouped, alone, shared = [], [], []
        for _ in range(rounds):  # interleaved: the two settings see the same machine
            store = make()
            try:
                rate, per_commit = one_run(store, callers, instances)
                grouped.append(rate)
                shared.append(per_commit)
                alone.append(one_run(store, callers, instances, grouped=False)[0])
            finally:
                store.close()
        ratio = statistics.median(grouped) / statistics.median(alone)
        figures.append(figure(
            "group commit", f"{label}, {callers} caller(s)", grouped, unit="inst/s",
            note=f"start + send per instance; {statistics.median(shared):.1f} writes per "
                 f"commit; {statistics.median(alone):,.0f} inst/s with a commit per write "
                 f"({ratio:.2f}x)"))
    return figures


def run(quick: bool = False) -> list[Figure]:
    instances = 400 if quick else 2000
    rounds = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="genflow-gc-"))
    figures = _figures("SQLite", lambda: SQLiteStore(tmp / f"{uuid.uuid4().hex}.db"),
                       instances, rounds)
    url = dsn()
    if not url:
        print("group commit on PostgreSQL: skipped (set GENFLOW_BENCH_POSTGRES_DSN)",
              file=sys.stderr)
        return figures
    from genflow.stores.postgres import PostgresStore

    figures += _figures("PostgreSQL", lambda: PostgresStore(
        url, schema=f"bench_{uuid.uuid4().hex[:10]}", drop_schema_on_close=True,
        pool_size=16), instances, rounds)
    return figures
