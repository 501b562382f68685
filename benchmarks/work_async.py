"""`Engine.work_async` against `work` on the same sync workload, in one run.

Each case starts `n` instances of three quick sync steps without running them
(`run=False`), then one loop runs them all (`until_idle`): instances per
second of each loop, and the ratio async/sync. Both loops run their rounds'
instances side by side, the saves they reach together sharing commits
(`Engine._turns`, driven by `_together` or `_together_async`), so the ratio
is what a sync workload pays for the async drivers and the event loop. The
third loop is `work_async` with `share_commits=False` (each save its own
commit, as `work_async` ran rounds before they shared commits): the ratio of
the first to it is what sharing gains under the async loop. On the memory
store, SQLite and, with `GENFLOW_BENCH_POSTGRES_DSN` (or
`GENFLOW_TEST_POSTGRES_DSN`), PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import attrs

import genflow
from genflow import Engine, Step
from genflow.stores import MemoryStore, SQLiteStore, Store

from .common import Figure, figure
from .instructions import instructions
from .postgres_workers import dsn


@genflow.workflow("bench-work-async")
@attrs.define
class Three:
    n: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        for k in range(3):
            yield Step(f"step {k}", self.step)

    def step(self) -> None:
        self.n += 1


#: the loops, each as (work_async?, share_commits)
LOOPS = {"work": (False, True), "work_async": (True, True),
         "work_async, one save a commit": (True, False)}


def rate(store: Store, n: int, use_async: bool, shared: bool = True) -> float:
    """Instances per second of one loop over `n` instances not yet run."""
    engine = Engine(store, share_commits=shared)
    for _ in range(n):
        engine.start(Three(), run=False)
    began = time.perf_counter()
    done = asyncio.run(engine.work_async(until_idle=True)) if use_async else \
        engine.work(until_idle=True)
    seconds = time.perf_counter() - began
    assert done == n, done
    return n / seconds


def sync_instance() -> None:
    """One instance run by `work` (memory store): the instruction counts' unit."""
    _run(False, 1)


def async_instance() -> None:
    """The same instance run by `work_async`."""
    _run(True, 1)


#: the instances of a round in the rounds' instruction counts
ROUND = 10


def sync_round() -> None:
    """A round of `ROUND` instances run by `work` (memory store)."""
    _run(False, ROUND)


def async_round() -> None:
    """The same round run by `work_async`."""
    _run(True, ROUND)


def _run(use_async: bool, n: int) -> None:
    engine = Engine(MemoryStore())
    for _ in range(n):
        engine.start(Three(), run=False)
    done = asyncio.run(engine.work_async(until_idle=True)) if use_async else \
        engine.work(until_idle=True)
    assert done == n


def _figures(kind: str, open_store: Callable[[], Store], rounds: int, n: int) -> list[Figure]:
    rates: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    ratios: list[float] = []
    gains: list[float] = []
    for _ in range(rounds):
        pair = {}
        for loop, (use_async, shared) in LOOPS.items():
            store = open_store()
            try:
                pair[loop] = rate(store, n, use_async, shared)
            finally:
                store.close()
            rates[loop].append(pair[loop])
        ratios.append(pair["work_async"] / pair["work"])
        gains.append(pair["work_async"] / pair["work_async, one save a commit"])
    figures = [figure("work_async", f"{kind}: {loop}, {n} instances", rates[loop],
                      unit="inst/s") for loop in LOOPS]
    figures.append(figure("work_async", f"{kind}: work_async / work", ratios, unit="x",
                          note="same run, same workload"))
    figures.append(figure("work_async", f"{kind}: work_async shared / one save a commit",
                          gains, unit="x", note="what sharing commits gains"))
    return figures


def run(quick: bool = False) -> list[Figure]:
    figures = []
    rounds, n = (2, 100) if quick else (5, 500)
    with tempfile.TemporaryDirectory() as tmp:
        figures += _figures("memory", MemoryStore, rounds, n)
        figures += _figures("sqlite", lambda: SQLiteStore(Path(tmp) / f"{uuid.uuid4().hex}.db"),
                            rounds, n)
    url = dsn()
    if url:
        from genflow.stores.postgres import PostgresStore

        figures += _figures("postgres", lambda: PostgresStore(
            url, schema=f"bench_{uuid.uuid4().hex[:10]}", drop_schema_on_close=True),
            rounds, n)
    else:
        print("work_async on PostgreSQL: skipped (set GENFLOW_BENCH_POSTGRES_DSN)",
              file=sys.stderr)
    calls = 20 if quick else 100
    counts = {fn: instructions(fn, calls, module="benchmarks.work_async")
              for fn in ("sync_instance", "async_instance")}
    for fn in ("sync_round", "async_round"):
        counts[fn] = instructions(fn, max(calls // ROUND, 2), module="benchmarks.work_async") \
            // ROUND
    for fn, count in counts.items():
        note = f"in a round of {ROUND}" if fn.endswith("round") else "alone"
        figures.append(figure("work_async", f"instructions per instance ({fn})", [count],
                              unit="instr", note=f"{note}; an engine, starts and a loop each"))
    return figures
