"""W4 "batch": 10,000 instances of (3 steps, wait one event, 1 step), all started,
one event each, driven to Finished with the SQLite store.

Instances per second, in one process and with the batch driver's processes, and
in one process with the progress lines on (written to a file, as to a CI log:
what they cost, counting the work due before the last phase included).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import attrs

import genflow
from genflow import On, Step, Wait
from genflow.batch import run_batch
from genflow.stores import SQLiteStore

from .common import Figure, figure


@genflow.workflow("bench-w4")
@attrs.define
class Small:
    n: int = 0

    def definition(self):
        yield Step("one", self.bump)
        yield Step("two", self.bump)
        yield Step("three", self.bump)
        yield Wait("go?", On("go", self.on_go))
        yield Step("four", self.bump)

    def bump(self) -> None:
        self.n += 1

    def on_go(self) -> None:
        self.n += 10


def _one_run(instances: int, processes: int, progress: bool = False) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'w4.db'}"
        starts = [(f"i{k}", Small()) for k in range(instances)]
        events = [(f"i{k}", "go", None) for k in range(instances)]
        with open(Path(tmp) / "progress.log", "w") as log, contextlib.redirect_stderr(log):
            result = run_batch(url, starts=starts, events=events, processes=processes,
                           progress=progress)
        store = SQLiteStore(Path(tmp) / "w4.db")
        finished = store.count(status="finished")
        store.close()
        assert finished == instances, (finished, instances)
        assert result.failed == 0
        return instances / result.seconds


def run(quick: bool = False) -> list[Figure]:
    instances = 1000 if quick else 10_000
    figures = []
    counts = [1, 2] if (os.cpu_count() or 1) >= 2 else [1]
    for processes in counts:
        samples = [_one_run(instances, processes) for _ in range(1 if quick else 3)]
        figures.append(figure("W4 batch", f"{instances:,} instances, {processes} process(es)",
                              samples, unit="inst/s", note="start + 1 event + finish, SQLite"))
    samples = [_one_run(instances, 1, progress=True) for _ in range(1 if quick else 3)]
    figures.append(figure("W4 batch", f"{instances:,} instances, 1 process, progress lines on",
                          samples, unit="inst/s", note="the same, written to a log file"))
    return figures
