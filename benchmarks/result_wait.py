"""`Engine.result`: how long after an instance finishes its waiting caller sees it.

`result` reads the store at growing intervals (5 ms, half as long again each
time, at most 0.1 s), so the lag between the commit that finishes an instance and the return of
`result` grows with how long the caller has already waited, and is bounded by
the last interval. Measured on SQLite: a caller waits on an instance that
another thread finishes (with `send`) after `delay` seconds; the lag is from
that `send`'s return to `result`'s. The reads it made are counted too: what a
wait costs the store.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import attrs

import genflow
from genflow import Engine, On, Wait
from genflow.stores import SQLiteStore

from .common import Figure, figure


@genflow.workflow("bench-result")
@attrs.define
class Approval:
    approved: bool = False

    def definition(self):
        yield Wait("approval", On("approve", self.approve))

    def approve(self) -> None:
        self.approved = True


class _Counting(SQLiteStore):
    """The store, counting the reads `result` makes."""

    reads = 0

    def get(self, instance_id: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().get(instance_id)


def lag(engine: Engine, store: _Counting, delay: float) -> tuple[float, int]:
    """Seconds from the finishing send's return to `result`'s; reads made."""
    iid = engine.start(Approval())
    done: list[float] = []

    def finish() -> None:
        time.sleep(delay)
        engine.send(iid, "approve")
        done.append(time.perf_counter())

    thread = threading.Thread(target=finish)
    reads = store.reads
    thread.start()
    assert engine.result(iid, timeout=60) == Approval(approved=True)
    returned = time.perf_counter()
    thread.join()
    return returned - done[0], store.reads - reads


def run(quick: bool = False) -> list[Figure]:
    figures = []
    rounds = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        store = _Counting(Path(tmp) / "result.db")
        engine = Engine(store)
        for delay in (0.02, 0.2, 2.0):
            lags, reads = [], []
            for _ in range(rounds):
                seconds, count = lag(engine, store, delay)
                lags.append(seconds * 1e3)
                reads.append(count)
            figures.append(figure("result wait", f"finished after {delay:g} s: lag", lags,
                                  unit="ms", note=f"{max(reads)} reads of the store at most"))
        store.close()
    return figures
