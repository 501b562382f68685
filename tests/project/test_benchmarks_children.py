"""The child-workflow benchmark still measures what it says (each run asserts
every parent finished with its children's results and the outbox is empty);
here it runs small, on SQLite."""

from __future__ import annotations

from benchmarks import children as bench
from genflow.stores import SQLiteStore


def test_the_workloads_do_what_they_measure(tmp_path) -> None:
    counter = iter(range(100))

    def make() -> SQLiteStore:
        return SQLiteStore(tmp_path / f"{next(counter)}.db")

    assert bench.per_parent(make, bench.Inline, 10) > 0
    assert bench.per_parent(make, bench.WithChild, 10) > 0
    assert bench.per_child(make, 12) > 0
