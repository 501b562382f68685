"""Acceptance: the Engine's arguments a user mistypes are `ArgumentError`s (a
GenflowError and a ValueError), never an empty answer or a raw driver error."""

from __future__ import annotations

import pytest
from sched_app import Report

from genflow.engine import Engine
from genflow.errors import ArgumentError, GenflowError
from genflow.observe import configure_logging
from genflow.stores import SQLiteStore


@pytest.fixture
def engine(tmp_path):
    engine = Engine(SQLiteStore(tmp_path / "e.db"))
    engine.start(Report(), id="r1")
    return engine


@pytest.mark.parametrize(("call", "message"), [
    (lambda e: e.list(status="bogus"), "status is one of"),
    (lambda e: e.list(status="Finished"), "status is one of"),
    (lambda e: e.list(limit=-1), "limit is a count of 0 or more"),
    (lambda e: e.list(limit="10"), "limit is a count of 0 or more"),
    (lambda e: e.list(limit=True), "limit is a count of 0 or more"),
    (lambda e: e.run_due(limit=0), "limit is a count of 1 or more"),
    (lambda e: e.run_due(limit="5"), "limit is a count of 1 or more"),
])
def test_a_bad_argument_is_an_argument_error(engine, call, message):
    with pytest.raises(ArgumentError, match=message) as refused:
        call(engine)
    assert isinstance(refused.value, GenflowError) and isinstance(refused.value, ValueError)


def test_the_good_arguments_still_answer(engine):
    assert [r.id for r in engine.list(status="finished", limit=5)] == ["r1"]
    assert engine.list(status="failed") == []
    assert engine.list(limit=0) == []
    assert engine.run_due(limit=1) == 0


def test_settings_that_cannot_work_are_argument_errors():
    with pytest.raises(ArgumentError, match="unknown log level 'loud'"):
        configure_logging("loud")
