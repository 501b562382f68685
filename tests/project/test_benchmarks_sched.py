"""The schedule, queue and retention benchmarks still measure what they say
(each asserts its own result: every tick fired once, every instance finished,
every finished instance purged); here they run small, on SQLite."""

from __future__ import annotations

from benchmarks import schedules_queues as bench
from genflow.stores import SQLiteStore


def test_the_workloads_do_what_they_measure(tmp_path) -> None:
    counter = iter(range(100))

    def make() -> SQLiteStore:
        return SQLiteStore(tmp_path / f"{next(counter)}.db")

    assert bench.ticks_per_second(make, 30) > 0
    assert bench.run_instances(make, 40, queued=False) > 0
    assert bench.run_instances(make, 40, queued=True) > 0
    assert bench.purge_rate(make, 1200) > 0
