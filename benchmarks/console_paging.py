"""The console's instance list at 100,000 SQLite instances: keyset paging stays flat.

Measured through the list the console and the API serve (`genflow.web.listing`):
the first page, a page deep in the list (after 90,000 ids), a filtered page
(waiting for an event), an id-prefix search, and the count the list page
shows. Keyset paging reads one index range whatever the page, so page 1,800
costs what page 1 costs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from examples.pizza import PizzaOrder
from genflow.engine import Engine
from genflow.stores import SQLiteStore
from genflow.web.listing import Filters, list_rows

from .common import Figure, figure
from .deploy_check import fill


def _time(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def run(quick: bool = False) -> list[Figure]:
    count = 10_000 if quick else 100_000
    repeat = 5 if quick else 20
    deep = f"order-{count * 9 // 10:06}"
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "paging.db")
        fill(store, count)
        engine = Engine(store, [PizzaOrder])
        cases = {
            "first page (50)": Filters(),
            f"page after {count * 9 // 10:,} ids": Filters(after=deep),
            "waiting for payment, deep": Filters(waiting="payment", after=deep),
            "id prefix search": Filters(q=f"order-{count // 2:06}"[:-1]),
        }
        figures = []
        for case, filters in cases.items():
            rows, _ = list_rows(engine, filters)
            assert rows, case
            figures.append(figure("console list", f"{count:,} instances: {case}",
                                  _time(lambda f=filters: list_rows(engine, f), repeat),
                                  unit="ms", note="keyset paging"))
        figures.append(figure("console list", f"{count:,} instances: count (summary line)",
                              _time(lambda: store.count(), repeat), unit="ms"))
        store.close()
    return figures
