"""`Engine.work_async` against `work` on the same sync workload, in one run.

Each case starts `n` instances of three quick sync steps without running them
(`run=False`), then one loop runs them all (`until_idle`): instances per
second of each loop, and the ratio async/sync. `work` lets the saves of a
round share commits (`_together`); `work_async` moves a round's instances one
at a time through the async drivers, so the ratio is what a sync workload
pays for running under the async loop.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import attrs

import genflow
from genflow import Engine, Step
from genflow.stores import MemoryStore, SQLiteStore, Store

from .common import Figure, figure
from .instructions import instructions


@genflow.workflow("bench-work-async")
@attrs.define
class Three:
    n: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        for k in range(3):
            yield Step(f"step {k}", self.step)

    def step(self) -> None:
        self.n += 1


def rate(store: Store, n: int, use_async: bool) -> float:
    """Instances per second of one loop over `n` instances not yet run."""
    engine = Engine(store)
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
    _one(False)


def async_instance() -> None:
    """The same instance run by `work_async`."""
    _one(True)


def _one(use_async: bool) -> None:
    engine = Engine(MemoryStore())
    engine.start(Three(), run=False)
    done = asyncio.run(engine.work_async(until_idle=True)) if use_async else \
        engine.work(until_idle=True)
    assert done == 1


def run(quick: bool = False) -> list[Figure]:
    figures = []
    rounds, n = (2, 100) if quick else (5, 500)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("memory", "sqlite"):
            rates: dict[bool, list[float]] = {False: [], True: []}
            ratios = []
            for r in range(rounds):
                pair = {}
                for use_async in (False, True):
                    store: Store = MemoryStore() if kind == "memory" else \
                        SQLiteStore(Path(tmp) / f"{r}-{use_async}.db")
                    pair[use_async] = rate(store, n, use_async)
                    rates[use_async].append(pair[use_async])
                    store.close()
                ratios.append(pair[True] / pair[False])
            for use_async in (False, True):
                loop = "work_async" if use_async else "work"
                figures.append(figure("work_async", f"{kind}: {loop}, {n} instances",
                                      rates[use_async], unit="inst/s"))
            figures.append(figure("work_async", f"{kind}: work_async / work", ratios,
                                  unit="x", note="same run, same workload"))
    calls = 20 if quick else 100
    counts = {fn: instructions(fn, calls, module="benchmarks.work_async")
              for fn in ("sync_instance", "async_instance")}
    for fn, count in counts.items():
        figures.append(figure("work_async", f"instructions per instance ({fn})", [count],
                              unit="instr", note="an engine, a start and a loop each"))
    return figures
