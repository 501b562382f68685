"""Reads by a schedule id, a queue name, an instance id or a list filter that no
store could keep (a NUL, a lone surrogate, an empty or overlong text) on every
store: the answer "not found" would be, never a `StoreError` (PostgreSQL
refuses a NUL in a text; SQLite a lone surrogate), and the stored rows as they
were."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sched_app import Job, Report

from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import (
    ArgumentError,
    GenflowError,
    InstanceNotFoundError,
    InvalidIdError,
    QueueNotFoundError,
    ScheduleNotFoundError,
    StoreError,
)
from genflow.queues import Queue

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
#: texts no store keeps: PostgreSQL refuses the NUL, SQLite the lone surrogate
UNKEEPABLE = ["a\x00b", "\x00", "\ud800", "x\udfffy"]
SCHEDULE, QUEUE, INSTANCE = "the-schedule", "the-queue", "the-instance"


def engine_on(store) -> Engine:
    engine = Engine(store, [Report, Job], clock=FakeClock(T0))
    engine.queues.define(Queue(QUEUE))
    engine.schedules.add(SCHEDULE, Report(), every=3600, queue=QUEUE)
    engine.start(Job(hold=True), id=INSTANCE, queue=QUEUE)
    return engine


def stored(engine: Engine) -> tuple[Any, ...]:
    """Every row a read must leave as it was."""
    store = engine.store
    return (store.list(), store.list_schedules(), store.list_queues(),
            store.queue_entries(QUEUE, waiting=True), store.queue_entries(QUEUE, waiting=False))


#: what a read by an instance id may raise: no such instance, or an id none could have
_BY_ID = (InstanceNotFoundError, InvalidIdError)
_Errors = tuple[type[GenflowError], ...]


def reads(engine: Engine, text: str) -> list[tuple[str, Callable[[], Any], _Errors]]:
    """(what, the read, the GenflowErrors it may raise) for each read by `text`."""
    schedules, queues = engine.schedules, engine.queues
    return [
        ("schedules.get", lambda: schedules.get(text), (ScheduleNotFoundError,)),
        ("schedules.pause", lambda: schedules.pause(text), (ScheduleNotFoundError,)),
        ("schedules.resume", lambda: schedules.resume(text), (ScheduleNotFoundError,)),
        ("schedules.update", lambda: schedules.update(text, paused=True),
         (ScheduleNotFoundError,)),
        ("schedules.trigger", lambda: schedules.trigger(text), (ScheduleNotFoundError,)),
        ("schedules.backfill", lambda: schedules.backfill(text, T0, T0),
         (ScheduleNotFoundError,)),
        ("schedules.delete", lambda: schedules.delete(text), (ScheduleNotFoundError,)),
        ("schedules.instances", lambda: schedules.instances(text), ()),
        ("queues.get", lambda: queues.get(text), (QueueNotFoundError,)),
        ("queues.counts", lambda: queues.counts(text), (QueueNotFoundError,)),
        ("queues.waiting", lambda: queues.waiting(text), (QueueNotFoundError,)),
        ("queues.entries", lambda: queues.entries(text), (QueueNotFoundError,)),
        ("queues.place", lambda: queues.place(text), _BY_ID),
        ("get", lambda: engine.get(text), _BY_ID),
        ("list(workflow=)", lambda: engine.list(workflow=text), ()),
        ("list(waiting=)", lambda: engine.list(waiting=text), ()),
        ("list(after=)", lambda: engine.list(after=text), (ArgumentError,)),
        ("list(parent=)", lambda: engine.list(parent=text), _BY_ID),
    ]


@pytest.mark.parametrize("text", UNKEEPABLE)
def test_a_text_no_store_could_keep_names_nothing(store, text):
    engine = engine_on(store)
    before = stored(engine)
    for _, read, _ in reads(engine, text)[:7]:
        with pytest.raises(ScheduleNotFoundError, match="a schedule's id is a text"):
            read()
    assert engine.schedules.instances(text) == []  # (the schedule need not exist: none)
    for read in (engine.queues.get, engine.queues.counts, engine.queues.entries):
        with pytest.raises(QueueNotFoundError, match="a queue's name is a non-empty text"):
            read(text)
    for read in (engine.get, engine.queues.place, lambda t: engine.list(parent=t)):
        with pytest.raises(InvalidIdError):
            read(text)
    assert engine.list(workflow=text) == engine.list(waiting=text) == []
    assert engine.list(workflow=text, status="resuming", limit=3) == []
    with pytest.raises(ArgumentError, match="after is the id the previous page ended with"):
        engine.list(after=text)
    assert stored(engine) == before


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.one_of(st.sampled_from([*UNKEEPABLE, "", "x" * 300]),
                      st.text(st.characters(codec=None, exclude_categories=()), max_size=8)))
def test_a_read_by_any_text_raises_only_its_documented_error(store, text):
    """Whatever the text, each read answers or raises its own `GenflowError` (the
    one "not found" raises, or the refusal of a bad argument), never a
    `StoreError`, and changes nothing stored."""
    assume(text not in (SCHEDULE, QUEUE, INSTANCE))
    engine = _shared(store)
    before = stored(engine)
    for what, read, errors in reads(engine, text):
        try:
            read()
        except StoreError as exc:
            raise AssertionError(f"{what}({text!r}): {exc!r}") from exc
        except GenflowError as exc:
            assert isinstance(exc, errors), f"{what}({text!r}): {exc!r}"
    assert stored(engine) == before


_ENGINES: dict[int, Engine] = {}


def _shared(store) -> Engine:
    """One engine per store across hypothesis's examples (the fixture's store is
    the same for all of them: the rows are set up once)."""
    if id(store) not in _ENGINES:
        _ENGINES.clear()
        _ENGINES[id(store)] = engine_on(store)
    return _ENGINES[id(store)]
