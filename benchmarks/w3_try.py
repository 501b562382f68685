"""W3 inside a Try: the same 100 durable steps, in `Try(...).Finally(...)`, beside
the plain W3, in one run, as a ratio.

What a Try costs a thread that never fails: on every replay of the definition
the Try's frame is one more level to follow on the way to the step, and its
Finally runs once at the end (one more step, counted). Runs of the two
workflows alternate on one store, so drift in the machine hits both alike.
Reported on SQLite (WAL, synchronous=NORMAL: the saves dominate) and in memory
(the replay's own cost, where the Try's share is largest); and, since wall-clock
times on a shared machine blur a difference of a few percent, in instructions
(callgrind, `benchmarks.instructions`) for the pure core with a `dumps` at every
durable checkpoint, what a store would save.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

import genflow
from genflow import For, Step, Try, dumps, new_state, resume
from genflow.engine import Engine
from genflow.stores import MemoryStore, SQLiteStore, Store

from .common import Figure, figure
from .instructions import instructions
from .w3_durable_steps import STEPS, HundredSteps


@genflow.workflow("bench-w3-try")
@attrs.define
class HundredStepsInTry:
    i: int = 0
    closed: bool = False

    def definition(self):
        yield Try("work",
            For("steps", self.i < STEPS, Step("step", self.step)),
        ).Finally("at the end", Step("close", self.close))

    def step(self) -> None:
        self.i += 1

    def close(self) -> None:
        self.closed = True


def _per_step_us(engine: Engine, data: Any, steps: int) -> float:
    start = time.perf_counter()
    iid = engine.start(data)
    elapsed = time.perf_counter() - start
    assert engine.get(iid).data.i == STEPS
    return elapsed / steps * 1e6


def compare(store: Store, rounds: int) -> tuple[list[float], list[float]]:
    """Microseconds per durable step, plain and in a Try, `rounds` alternating runs."""
    engine = Engine(store)
    engine.start(HundredSteps())  # warm up both
    engine.start(HundredStepsInTry())
    plain, wrapped = [], []
    for _ in range(rounds):
        plain.append(_per_step_us(engine, HundredSteps(), STEPS))
        wrapped.append(_per_step_us(engine, HundredStepsInTry(), STEPS + 1))
    return plain, wrapped


def _core(wf: Any) -> Any:
    state = new_state("w3", wf)

    def save(kind: Any) -> None:
        if kind.durable:
            dumps(wf, state)

    resume(wf, state, save)
    return wf


def run_plain_core() -> Any:
    """The plain W3 on the pure core, a `dumps` at every durable checkpoint."""
    return _core(HundredSteps())


def run_try_core() -> Any:
    """The W3 in a Try, likewise."""
    return _core(HundredStepsInTry())


def run(quick: bool = False) -> list[Figure]:
    rounds = 5 if quick else 20
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "w3try.db", synchronous="NORMAL")
        figures.extend(_figures("SQLite WAL synchronous=NORMAL", *compare(store, rounds)))
        store.close()
    figures.extend(_figures("in memory", *compare(MemoryStore(), rounds * 5)))
    if shutil.which("valgrind") is not None:
        runs = 2 if quick else 10
        plain, wrapped = (instructions(fn, runs, __name__) / 1000 / STEPS
                          for fn in ("run_plain_core", "run_try_core"))
        figures.append(Figure("W3 instructions", "plain, core + dumps", plain, plain, plain,
                              "k instr.", 1, note="callgrind, per step"))
        figures.append(Figure("W3 instructions", "in Try(...).Finally(...), core + dumps",
                              wrapped, wrapped, wrapped, "k instr.", 1,
                              note=f"callgrind, per step (the Finally's included); "
                                   f"{wrapped / plain:.2f}x the plain W3"))
    return figures


def _figures(case: str, plain: list[float], wrapped: list[float]) -> list[Figure]:
    ratio = statistics.median(wrapped) / statistics.median(plain)
    return [figure("W3 durable steps", f"plain, {case}", plain, note="per step"),
            figure("W3 durable steps", f"in Try(...).Finally(...), {case}", wrapped,
                   note=f"per step; {ratio:.2f}x the plain W3 in the same run")]
