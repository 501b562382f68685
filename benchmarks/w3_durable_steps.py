"""W3 "durable steps": 100 steps, each checkpointed to the SQLite store (WAL).

Reported per durable step, with synchronous=NORMAL and FULL.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import attrs

import genflow
from genflow import For, Step
from genflow.engine import Engine
from genflow.stores import SQLiteStore

from .common import Figure, figure

STEPS = 100


@genflow.workflow("bench-w3")
@attrs.define
class HundredSteps:
    i: int = 0

    def definition(self):
        yield For("steps", self.i < STEPS, Step("step", self.step))

    def step(self) -> None:
        self.i += 1


def durable_step_us(engine: Engine, instances: int) -> tuple[list[float], str]:
    """Microseconds per durable step for `instances` 100-step runs; and the last id."""
    engine.start(HundredSteps())  # warm up
    samples = []
    iid = ""
    for _ in range(instances):
        start = time.perf_counter()
        iid = engine.start(HundredSteps())
        samples.append((time.perf_counter() - start) / STEPS * 1e6)
        assert engine.get(iid).data.i == STEPS
    return samples, iid


def run(quick: bool = False) -> list[Figure]:
    figures = []
    for sync in ("NORMAL", "FULL"):
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "w3.db", synchronous=sync)
            samples, iid = durable_step_us(Engine(store), 5 if quick else 20)
            saves = store.get(iid).version
            store.close()
        figures.append(figure("W3 durable steps", f"SQLite WAL synchronous={sync}", samples,
                              note=f"per step; {saves} saves per 100-step instance"))
    return figures
