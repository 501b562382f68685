"""A deadline the data sets later: `Timeout(..., at=self.deadline)` before a step set it.

The definition cannot read the clock, so a deadline across several waits is
computed by a step (`current_step().now + ...`) and kept in the data. Until that
step has run the field is None, and the definition must still build: the Engine
validates every branch when it starts an instance, and the diagrams draw a
fresh instance. A wait that *begins* with the time still unset is a mistake in
the definition, refused with a `DefinitionError` that says what to do.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

import genflow
from genflow import On, Step, Timeout, Wait, WorkflowStatus, current_step
from genflow.engine import Engine
from genflow.errors import DefinitionError, StatementError
from genflow.render import build_graph
from genflow.statements import Sleep
from genflow.stores import MemoryStore
from genflow.testing import MODES, FakeClock, Instance


@genflow.workflow("deadline-later")
@attrs.define
class Later:
    deadline: dt.datetime | None = None
    codes: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("start the clock", self.start_clock)
        yield Wait("code?", On("code", self.on_code), Timeout("expired", at=self.deadline))
        yield Sleep("cool down", until=self.deadline)

    def start_clock(self) -> None:
        self.deadline = current_step().now + dt.timedelta(seconds=180)

    def on_code(self, code: str) -> None:
        self.codes.append(code)


def test_a_definition_whose_deadline_is_not_set_yet_validates_and_draws():
    genflow.validate(Later())
    graph = build_graph(Later())
    assert graph.named("expired") is not None


@pytest.mark.parametrize("mode", MODES)
def test_the_deadline_set_by_a_step_is_the_timers_due_time(mode):
    run = Instance(Later(), mode=mode)
    run.resume()
    [_, timer] = run.state.threads[0].events
    assert timer.due == run.wf.deadline == run.clock() + dt.timedelta(seconds=180)


def test_the_engine_starts_it():
    clock = FakeClock()
    engine = Engine(MemoryStore(), [Later], clock=clock)
    instance_id = engine.start(Later())
    engine.send(instance_id, "code", "1234")
    clock.advance(seconds=180)
    engine.work(until_done=True)
    assert engine.get(instance_id).status is WorkflowStatus.FINISHED


def test_a_wait_that_begins_with_the_time_unset_is_refused_clearly():
    @genflow.workflow("deadline-never-set")
    @attrs.define
    class Never:
        deadline: dt.datetime | None = None

        def definition(self):
            yield Wait("code?", On("code"), Timeout("expired", at=self.deadline))

    run = Instance(Never())
    with pytest.raises(DefinitionError, match=r"Timeout 'expired'.*not set.*before the Wait"):
        run.resume()


def test_giving_no_time_at_all_is_still_refused_at_once():
    with pytest.raises(StatementError, match="either"):
        Timeout("t")
    with pytest.raises(StatementError, match="either"):
        Timeout("t", 5, at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(StatementError, match="`seconds` or `until`"):
        Sleep("s")
