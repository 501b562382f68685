"""PostgreSQL: the per-step durable cost, and the throughput of 1, 2, 4 and 8
worker processes sharing one database, with `synchronous_commit` on and off
(set per session: the DSN's `options=-c synchronous_commit=...`), today's
engine beside the two before it in the same run; workflows of no step at 4
workers; and the figure per database core (instances/s divided by the cores
of the machine, which here runs the server and the workers both).

Needs a database: `GENFLOW_BENCH_POSTGRES_DSN` (or `GENFLOW_TEST_POSTGRES_DSN`).
Without one, or without psycopg, the workload is skipped with a note on stderr.
Each run works in a fresh schema, dropped afterwards. Measure a server with
its production settings: a test server with `fsync=off` reports nothing real.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
import uuid
from typing import Any

import attrs

import genflow
from genflow import For, Step
from genflow.engine import Engine

from .common import Figure, figure

STEPS = 100  # per instance, for the per-step cost
WORK_STEPS = 5  # per instance, for throughput
WORKERS = (1, 2, 4, 8)


@genflow.workflow("bench-pg-steps")
@attrs.define
class Steps:
    """`total` steps in a loop, each one a durable checkpoint."""

    total: int = STEPS
    i: int = 0

    def definition(self):
        yield For("steps", self.i < self.total, Step("step", self.step))

    def step(self) -> None:
        self.i += 1


def dsn() -> str | None:
    return os.environ.get("GENFLOW_BENCH_POSTGRES_DSN") or os.environ.get(
        "GENFLOW_TEST_POSTGRES_DSN")


def _store(url: str, schema: str, drop: bool = False, **session: str) -> Any:
    import psycopg

    from genflow.stores.postgres import PostgresStore, split_dsn

    conninfo, _ = split_dsn(url)
    if session:
        options = " ".join(f"-c {key}={value}" for key, value in session.items())
        conninfo = psycopg.conninfo.make_conninfo(conninfo, options=options)
    return PostgresStore(conninfo, schema=schema, drop_schema_on_close=drop)


def _per_step(url: str, synchronous_commit: str, instances: int) -> Figure:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = _store(url, schema, synchronous_commit=synchronous_commit)
    try:
        engine = Engine(store)
        engine.start(Steps())  # warm up: connections, prepared statements
        samples = []
        for _ in range(instances):
            start = time.perf_counter()
            iid = engine.start(Steps())
            samples.append((time.perf_counter() - start) / STEPS * 1e6)
            assert engine.get(iid).data.i == STEPS
        saves = store.get(iid).version
    finally:
        store.close()
    hot = _hot_share(url, schema)
    return figure("PostgreSQL durable steps", f"1 process, synchronous_commit={synchronous_commit}",
                  samples, note=f"per step; {saves} saves per {STEPS}-step instance; "
                                f"{hot:.0%} of updates HOT (no index entry written)")


def _hot_share(url: str, schema: str) -> float:
    """The share of the schema's instance updates that were HOT, then the schema
    dropped. The counts are the server's, sent by each backend when its
    connection closes (so after `store.close()`): waited for a while."""
    import psycopg

    from genflow.stores.postgres import split_dsn

    with psycopg.connect(split_dsn(url)[0], autocommit=True) as conn:
        deadline = time.monotonic() + 15
        upd = hot = 0
        while time.monotonic() < deadline:
            row = conn.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                               "WHERE schemaname = %s AND relname = 'instances'",
                               (schema,)).fetchone()
            upd, hot = row if row else (0, 0)
            if upd >= STEPS:
                break
            time.sleep(0.2)
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return hot / upd if upd else 0.0


#: the engines a throughput run compares: today's default; worker rounds whose
#: saves are one statement each (the round before, `Store.saves_together` left
#: as `transaction()`); a commit per save (`share_commits=False`, the default
#: before that)
VARIANTS = ("now", "a statement per save", "a commit per save")


def _work(url: str, schema: str, sync: str, go: Any, moved: Any, variant: str = "now") -> None:
    from genflow.stores.base import Store

    store = _store(url, schema, synchronous_commit=sync)
    if variant == "a statement per save":
        store.saves_together = lambda: Store.saves_together(store)  # type: ignore[method-assign]
    engine = Engine(store, share_commits=variant != "a commit per save")
    go.wait()
    done = engine.work(until_idle=True, batch=10)
    with moved.get_lock():
        moved.value += done
    store.close()


def _throughput(url: str, workers: int, instances: int, sync: str,
                variant: str = "now", steps: int = WORK_STEPS) -> float:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = _store(url, schema, drop=True)
    try:
        client = Engine(store)
        with store.transaction():  # setup, not measured: one commit
            for n in range(instances):
                client.start(Steps(total=steps), id=f"i{n:05}", run=False)
        ctx = multiprocessing.get_context("fork")
        go, moved = ctx.Event(), ctx.Value("q", 0)
        procs = [ctx.Process(target=_work, args=(url, schema, sync, go, moved, variant))
                 for _ in range(workers)]
        for proc in procs:
            proc.start()
        time.sleep(0.5)  # every worker has opened its store
        start = time.perf_counter()
        go.set()
        for proc in procs:
            proc.join()
        elapsed = time.perf_counter() - start
        assert all(proc.exitcode == 0 for proc in procs)
        finished = store.count(status="finished")
        assert finished == instances, (finished, instances)
    finally:
        store.close()
    return instances / elapsed


def run(quick: bool = False) -> list[Figure]:
    url = dsn()
    if not url:
        print("postgres: skipped (set GENFLOW_BENCH_POSTGRES_DSN)", file=sys.stderr)
        return []
    try:
        import psycopg  # noqa: F401
    except ImportError:
        print("postgres: skipped (pip install 'genflow[postgres]')", file=sys.stderr)
        return []
    figures = [_per_step(url, sync, 3 if quick else 10) for sync in ("on", "off")]
    instances = 200 if quick else 1000
    cores = os.cpu_count() or 1
    for sync in ("on", "off"):
        for workers in WORKERS:
            samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            for _ in range(1 if quick else 3):  # interleaved: all see the same machine
                for variant in VARIANTS:
                    samples[variant].append(_throughput(url, workers, instances, sync,
                                                        variant))
            now = statistics.median(samples["now"])
            before = ", ".join(f"{variant}: {statistics.median(samples[variant]):,.0f} inst/s "
                               f"({now / statistics.median(samples[variant]):.2f}x)"
                               for variant in VARIANTS[1:])
            figures.append(figure(
                "PostgreSQL workers",
                f"{instances:,} instances, {workers} worker(s), synchronous_commit={sync}",
                samples["now"], unit="inst/s",
                note=f"{WORK_STEPS} durable steps each (steps/s = {WORK_STEPS} x inst/s); "
                     f"{now / cores:,.0f} inst/s per core ({cores} cores, server and workers "
                     f"on one machine); {before}",
            ))
    for sync in ("on", "off"):  # workflows of no step (DBOS's published figure's kind)
        none: dict[str, list[float]] = {"now": [], "a commit per save": []}
        for _ in range(1 if quick else 3):
            for variant in none:
                none[variant].append(_throughput(url, 4, instances, sync, variant, steps=0))
        now = statistics.median(none["now"])
        alone = statistics.median(none["a commit per save"])
        figures.append(figure(
            "PostgreSQL workers", f"{instances:,} no-step instances, 4 workers, "
            f"synchronous_commit={sync}", none["now"], unit="inst/s",
            note=f"{now / cores:,.0f} inst/s per core ({cores} cores, server and workers on "
                 f"one machine); a commit per save: {alone:,.0f} inst/s ({now / alone:.2f}x)"))
    return figures
