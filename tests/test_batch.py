"""The batch driver: many instances in one job, in one process or several."""

from __future__ import annotations

import io

import attrs
import pytest

import genflow
from genflow import On, Step, Timeout, Wait
from genflow.batch import Progress, drive
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
    result = drive(url, starts=starts, events=events, processes=processes, progress=False)
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
        drive("memory:", processes=0)
    with pytest.raises(GenflowError, match="in-memory"):
        drive("memory:", processes=2)


def test_progress_bar_output():
    out = io.StringIO()
    bar = Progress(10, "start", out=out)
    bar.show(10, final=True)
    line = out.getvalue()
    assert line.startswith("\rstart") and "10/10" in line and line.endswith("\n")
    assert "#" * 30 in line
    quiet = io.StringIO()
    Progress(10, "start", enabled=False, out=quiet).show(10, final=True)
    assert quiet.getvalue() == ""


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
