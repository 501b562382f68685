"""Fan-out/fan-in: Azure's sample over 25 files (examples/fan_out.py), its copies at once.

Each copy is an `async def` step whose upload awaits `asyncio.sleep(LATENCY)`,
standing for the I/O. Under the async API the 25 copies run at once
(`parallel_steps`, default 100); with `parallel_steps=1` they run one after
another, as the sync API runs steps. Both are timed in the same run, as wall
time of one `start_async` to the end of the instance, and given as a ratio.

With no latency at all, the figure is what running at once costs: each step
at once works on its own copy of the data, merged when it ends.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from examples.fan_out import STORAGE, Backup
from genflow.engine import Engine
from genflow.stores import MemoryStore, SQLiteStore, Store

from .common import Figure, figure

LATENCY = 0.05
FILES = 25


def wall_ms(store: Store, parallel_steps: int) -> float:
    """Milliseconds from `start_async` to the finished backup of 25 files."""
    engine = Engine(store, [Backup], parallel_steps=parallel_steps)
    STORAGE.reset()
    start = time.perf_counter()
    iid = asyncio.run(engine.start_async(Backup()))
    elapsed = (time.perf_counter() - start) * 1000
    backup = engine.get(iid).data
    assert backup.total == sum(1000 + n for n in range(FILES)) and len(STORAGE.stored) == FILES
    return elapsed


def compare(store: Store, rounds: int, latency: float) -> tuple[list[float], list[float]]:
    """Wall times at once and one at a time, alternating, `rounds` each."""
    STORAGE.latency = latency
    try:
        wall_ms(store, 100)  # warm up
        at_once, one_by_one = [], []
        for _ in range(rounds):
            at_once.append(wall_ms(store, 100))
            one_by_one.append(wall_ms(store, 1))
        return at_once, one_by_one
    finally:
        STORAGE.latency = 0.0


def run(quick: bool = False) -> list[Figure]:
    rounds = 2 if quick else 7
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, store in (("in memory", MemoryStore()),
                            ("SQLite WAL", SQLiteStore(Path(tmp) / "fan.db"))):
            at_once, one_by_one = compare(store, rounds, LATENCY)
            ratio = statistics.median(one_by_one) / statistics.median(at_once)
            figures.append(figure("fan-out 25 x 50 ms", f"at once, {case}", at_once, "ms",
                                  note=f"{ratio:.1f}x faster than one at a time, same run"))
            figures.append(figure("fan-out 25 x 50 ms", f"one at a time, {case}", one_by_one,
                                  "ms", note=f"{FILES} x {LATENCY * 1000:.0f} ms of I/O"))
            fast, slow = compare(store, rounds * 3, 0.0)
            cost = statistics.median(fast) / statistics.median(slow)
            figures.append(figure("fan-out 25 x 0 ms", f"at once, {case}", fast, "ms",
                                  note=f"no I/O: {cost:.2f}x one at a time (copies, merges)"))
            store.close()
    return figures
