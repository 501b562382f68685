"""The static report at scale: 10,000 SQLite instances in one page.

Instances are pizza orders waiting with two threads (as in the deploy check).
Measured: the time `write_report` takes and the size of the page it writes.
Target: under 10 s, and one file a browser opens (one drawing per definition).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from examples.pizza import PizzaOrder
from genflow.engine import Engine
from genflow.render.report import write_report
from genflow.render.svg import dot_program
from genflow.stores import SQLiteStore

from .common import Figure, figure
from .deploy_check import fill


def run(quick: bool = False) -> list[Figure]:
    count = 1_000 if quick else 10_000
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "report.db")
        fill(store, count)
        engine = Engine(store, [PizzaOrder])
        seconds, sizes = [], []
        for run_ in range(1 if quick else 3):
            start = time.perf_counter()
            index = write_report(engine, Path(tmp) / f"report-{run_}", limit=None)
            seconds.append(time.perf_counter() - start)
            sizes.append(index.stat().st_size / 1e6)
        drawn = "dot" if dot_program() else "outline"
        figures.append(figure("report", f"{count:,} instances, one page ({drawn})", seconds,
                              unit="s", note="target < 10 s"))
        figures.append(figure("report", f"{count:,} instances: index.html size", sizes,
                              unit="MB", note="one drawing per definition"))
        store.close()
    return figures
