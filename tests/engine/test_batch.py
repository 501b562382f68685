"""The batch driver: many instances in one job, in one process or several."""

from __future__ import annotations

import io
import os
import re

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import genflow
from genflow import On, Step, Timeout, Wait
from genflow.batch import Progress, run_batch
from genflow.engine import Engine
from genflow.errors import GenflowError
from genflow.stores import SQLiteStore


@genflow.workflow("batch-small")
@attrs.define
class Small:
    n: int = 0
    via: str = ""

    def definition(self):
        yield Step("one", self.bump)
        yield Step("two", self.bump)
        yield Wait("go?", On("go", self.on_go), Timeout("gave up", 0, Step("late", self.late)))
        yield Step("three", self.bump)

    def bump(self) -> None:
        self.n += 1

    def on_go(self, by: str) -> None:
        self.via = by

    def late(self) -> None:
        self.via = "timer"


@pytest.mark.parametrize("processes", [1, 2])
def test_drive_starts_delivers_and_finishes(tmp_path, processes):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    starts = [(f"i{k:03}", Small()) for k in range(120)]
    # events for the even ones, one for an instance that does not exist, one malformed
    events = [(f"i{k:03}", "go", f"p{k}") for k in range(0, 120, 2)]
    events += [("missing", "go", "x"), ("i001", "go", {"not": "a string"})]
    result = run_batch(url, starts=starts, events=events, processes=processes, progress=False)
    assert (result.started, result.delivered, result.failed) == (120, 62, 2)
    assert result.moved == 60  # the odd ones' timers fired in the work phase
    assert result.per_second > 0
    with SQLiteStore(tmp_path / "b.db") as store:
        engine = Engine(store)
        assert store.count(status="finished") == 120
        for k in range(120):
            data = engine.get(f"i{k:03}").data
            assert data.n == 3
            assert data.via == (f"p{k}" if k % 2 == 0 else "timer")


def test_drive_refuses_bad_settings():
    with pytest.raises(ValueError, match="at least 1"):
        run_batch("memory:", processes=0)
    with pytest.raises(GenflowError, match="in-memory"):
        run_batch("memory:", processes=2)


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place():
    out, clock = Terminal(), FakeClock()
    bar = Progress(100, "start", unit="starts", out=out, clock=clock)
    assert bar.tty
    clock.now += 0.1
    bar.show(10)  # too soon after the start: not drawn
    assert out.getvalue() == ""
    clock.now += 1.9
    bar.show(40)
    clock.now += 2.0
    bar.show(80)
    clock.now += 1.0
    bar.show(100, final=True)
    frames = out.getvalue().split("\r")
    assert frames[0] == "" and len(frames) == 4
    assert frames[1] == ("start    [############..................] 40/100  20 starts/s  "
                         "elapsed 0:02  ETA 0:03")
    assert frames[2].rstrip() == ("start    [########################......] 80/100  "
                                  "20 starts/s  elapsed 0:04  ETA 0:01")
    assert frames[3] == ("start    [##############################] 100/100  20 starts/s  "
                         "elapsed 0:05").ljust(len(frames[2])) + "\n"


def test_elsewhere_each_update_is_a_plain_line(tmp_path):
    """Through a real pipe (not a terminal): lines, no carriage returns, one per
    `every` seconds and the last."""
    read, write = os.pipe()
    clock = FakeClock()
    with os.fdopen(write, "w") as out:
        bar = Progress(1_000, "events", unit="events", out=out, clock=clock, every=10)
        assert not bar.tty
        for done in range(0, 1_001, 50):  # 50 events a second, for 20 s
            clock.now += 1
            bar.show(done)
        bar.show(1_000, final=True)
    with os.fdopen(read) as received:
        text = received.read()
    assert "\r" not in text
    assert text.splitlines() == [
        "events   [#############.................] 450/1,000  45 events/s  elapsed 0:10  "
        "ETA 0:12",
        "events   [############################..] 950/1,000  48 events/s  elapsed 0:20  "
        "ETA 0:01",
        "events   [##############################] 1,000/1,000  48 events/s  elapsed 0:21",
    ]


def test_a_total_that_grows_or_is_unknown():
    clock = FakeClock()
    grows = Progress(5, "work", unit="runs", out=io.StringIO(), tty=False, clock=clock)
    clock.now += 3600 + 62
    assert grows.line(8, 3662.0) == ("work     [##############################] 8/8  0.0 runs/s  "
                                     "elapsed 1:01:02  ETA 0:00")
    unknown = Progress(None, "work", unit="runs", out=io.StringIO(), tty=False, clock=clock)
    assert unknown.line(12, 4.0) == "work     12  3.0 runs/s  elapsed 0:04"
    assert unknown.line(0, 0.0) == "work     0  0.0 runs/s  elapsed 0:00"
    assert Progress(10, "start", out=io.StringIO()).line(0, 1.0).endswith("ETA ?")


def test_a_quiet_bar_writes_nothing():
    quiet = Terminal()
    Progress(10, "start", enabled=False, out=quiet).show(10, final=True)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("processes", [1, 2])
def test_drive_shows_each_phase_with_its_own_total_and_rate(tmp_path, capsys, processes):
    """Written to a pipe (pytest's capture is no terminal): each phase's last line,
    the run-until-idle phase with a bar of the work that was due."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    starts = [(f"i{k:03}", Small()) for k in range(40)]
    events = [(f"i{k:03}", "go", "ops") for k in range(0, 40, 2)]
    result = run_batch(url, starts=starts, events=events, processes=processes, progress=True)
    assert result.moved == 20  # the odd ones' timers
    err = capsys.readouterr().err
    assert "\r" not in err
    finals = [line for line in err.splitlines() if "ETA" not in line]
    assert [line.split()[:3] for line in finals] == [
        ["start", "[##############################]", "40/40"],
        ["events", "[##############################]", "20/20"],
        ["work", "[##############################]", "20/20"],
    ]
    assert [line.split()[4] for line in finals] == ["starts/s", "events/s", "runs/s"]


def test_inside_a_transaction_an_instance_is_saved_once_per_operation(tmp_path):
    with SQLiteStore(tmp_path / "g.db") as store:
        engine = Engine(store)
        engine.start(Small(), id="each")  # outside: a save at every checkpoint
        with store.transaction():
            engine.start(Small(), id="grouped")
            assert store.grouping()
        assert not store.grouping()
        each, grouped = store.get("each"), store.get("grouped")
        assert grouped.version == 2 < each.version  # created, then saved once
        places = [[(t.stmt, t.status) for t in engine.get(i).state.threads]
                  for i in ("each", "grouped")]
        assert places[0] == places[1] == [("go?", genflow.ThreadStatus.WAITING_EVENT)]
        with store.transaction():
            engine.send("grouped", "go", "ops")
        assert store.get("grouped").version == 3
        assert engine.get("grouped").status.value == "finished"


@given(total=st.one_of(st.none(), st.integers(0, 10**7)), done=st.integers(0, 2 * 10**7),
       elapsed=st.floats(0, 10**6), final=st.booleans())
def test_any_progress_line_is_one_well_formed_line(total, done, elapsed, final):
    line = Progress(total, "work", unit="runs", out=io.StringIO(), tty=False).line(
        done, elapsed, final=final)
    assert "\n" not in line and "\r" not in line
    assert f"{done:,}" in line and " runs/s  elapsed " in line
    bar = re.search(r"\[([#.]*)\] ([\d,]+)/([\d,]+)", line)
    assert (bar is None) == (total is None)
    if bar is not None:
        shown_total = int(bar.group(3).replace(",", ""))
        assert len(bar.group(1)) == Progress.WIDTH and shown_total == max(total, done)
        assert bar.group(1).count("#") == (Progress.WIDTH * done // shown_total
                                           if shown_total else Progress.WIDTH)
    assert ("ETA" in line) == (not final and total is not None)
