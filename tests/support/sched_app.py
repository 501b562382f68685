"""Workflows, a factory and a queue key of the schedule and queue tests (imported by
their worker processes too)."""

from __future__ import annotations

import datetime as _dt
import os
import time

import attrs

import genflow
from genflow import On, Step, Wait
from genflow.schedules import factory


@genflow.workflow("sched-report")
@attrs.define
class Report:
    """Started by a schedule: one step, then it waits for `done` (so a test
    decides when the previous run is over)."""

    day: str = ""
    count: int = 0
    wait: bool = False

    def definition(self):
        yield Step("count", self.step)
        if self.wait:
            yield Wait("done?", On("done", self.done))

    def step(self) -> None:
        self.count += 1

    def done(self) -> None:
        pass


@factory("sched-day")
def report_day(data: Report, tick: _dt.datetime) -> Report:
    """The tick's local date as the report's day."""
    data.day = tick.date().isoformat()
    return data


#: the crash tests' factory: writes a line to LOG before it returns, then sleeps
#: (inside the transaction that fires the tick) so a kill can land there
@factory("sched-slow")
def slow_factory(data: Report, tick: _dt.datetime) -> Report:
    log = os.environ.get("GENFLOW_SCHED_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"firing {tick.isoformat()}\n")
    time.sleep(float(os.environ.get("GENFLOW_SCHED_SLEEP", "0")))
    data.day = tick.isoformat()
    return data


@genflow.workflow("sched-job")
@attrs.define
class Job:
    """A queued job for one tenant: its step logs when it starts and ends (to
    LOG, when given), and it waits for `done` when `hold` is set."""

    tenant: str = "t0"
    n: int = 0
    pause: float = 0.0
    log: str = ""
    hold: bool = False

    def definition(self):
        yield Step("work", self.work)
        if self.hold:
            yield Wait("done?", On("done", self.done))

    def work(self) -> None:
        if self.log:
            _line(self.log, f"start {self.n} {self.tenant} {time.time():.6f}")
        if self.pause:
            time.sleep(self.pause)
        if self.log:
            _line(self.log, f"end {self.n} {self.tenant} {time.time():.6f}")

    def done(self) -> None:
        pass


def _line(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)
