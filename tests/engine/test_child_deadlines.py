"""Deadlines for the instances a workflow starts: `Child(..., deadline=...)`,
`Children(..., deadline=...)` and `current_step().start(..., deadline=...)`.

A child past its deadline is cancelled as `Engine.start(deadline=...)` cancels
an instance, and the parent's wait fails with `ChildFailed` (Temporal's child
workflow execution timeout); on every store, and through a crash at every write.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
from faults import ROUND_WRITES, dies_at_call

from genflow import (
    Child,
    ChildFailed,
    Children,
    Engine,
    Failure,
    FakeClock,
    On,
    Step,
    Try,
    Wait,
    current_step,
    workflow,
)
from genflow.errors import DefinitionError, StatementError
from genflow.stores import MemoryStore

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


@workflow("late-quote")
@attrs.define
class Quote:
    supplier: str
    price: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        if self.supplier.startswith("slow"):  # a supplier that never answers
            yield Wait("answer", On("answer"))
        yield Step("ask", self.ask)

    def ask(self) -> None:
        self.price = len(self.supplier)


@workflow("late-buy")
@attrs.define
class Buy:
    suppliers: list[str]
    deadline: float | None = 60.0
    prices: list[int] = attrs.field(factory=list)
    failure: Failure | None = None

    def definition(self):  # type: ignore[no-untyped-def]
        kids = [Quote(s) for s in self.suppliers]
        yield Try("buy", Children("quotes", kids, into="prices", result="price",
                                  deadline=self.deadline),
                  ).Catch("late", Step("note", lambda: None), into="failure", errors=ChildFailed)


@workflow("late-one")
@attrs.define
class BuyOne:
    supplier: str
    until: dt.datetime | None = None
    price: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Child("quote", Quote(self.supplier), into="price", result="price",
                    deadline=self.until)


@workflow("late-starter")
@attrs.define
class Starter:
    delay: float | None = None
    deadline: float = 60.0
    started: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("start", self.start)

    def start(self) -> None:
        ctx = current_step()
        at = None if self.delay is None else ctx.now + dt.timedelta(seconds=self.delay)
        self.started = ctx.start(Quote("slow-s"), at=at, deadline=self.deadline)


def test_a_child_past_its_deadline_is_cancelled_and_the_parent_catches_it(store):
    clock = FakeClock(T0)
    engine = Engine(store, clock=clock)
    pid = engine.start(Buy(["ab", "slow-x"]), id="p")
    kids = sorted(r.id for r in engine.list(parent=pid))
    assert [engine.get(k).state.deadline for k in kids] == [T0 + MINUTE] * 2  # one moment
    engine.work(until_idle=True)
    assert engine.get(pid).status.value == "waiting"  # the slow one still runs
    clock.now = T0 + MINUTE - dt.timedelta(seconds=30)
    engine.work(until_idle=True)
    assert engine.get(pid).status.value == "waiting"
    clock.now = T0 + MINUTE + dt.timedelta(seconds=1)
    engine.work(until_idle=True)
    assert [engine.get(k).status.value for k in kids] == ["finished", "cancelled"]
    parent = engine.get(pid)
    assert parent.status.value == "finished"
    assert parent.data.failure is not None and parent.data.failure.type == "ChildFailed"
    assert parent.data.failure.message == (
        f"child '{kids[1]}' (late-quote) cancelled: it was cancelled (its deadline: "
        "2030-01-01T00:01:00+00:00)")


def test_children_within_their_deadline_finish_as_without_one(store):
    engine = Engine(store, clock=FakeClock(T0))
    pid = engine.start(Buy(["ab", "abc"], deadline=3600), id="p")
    engine.work(until_idle=True)
    parent = engine.get(pid)
    assert (parent.status.value, parent.data.prices, parent.data.failure) == (
        "finished", [2, 3], None)
    none = engine.start(Buy(["ab"], deadline=None), id="q")
    assert [engine.get(r.id).state.deadline for r in engine.list(parent=none)] == [None]


def test_a_childs_deadline_as_a_datetime_and_one_already_past(store):
    clock = FakeClock(T0)
    engine = Engine(store, clock=clock)
    pid = engine.start(BuyOne("slow-y", until=T0 + 2 * MINUTE), id="p")
    [kid] = engine.list(parent=pid)
    assert engine.get(kid.id).state.deadline == T0 + 2 * MINUTE
    clock.now = T0 + 3 * MINUTE
    engine.work(until_idle=True)
    assert engine.get(kid.id).status.value == "cancelled"
    assert engine.get(pid).status.value == "failed"  # uncaught: ChildFailed fails the parent
    # a deadline already past when the child would start: nothing is started, the
    # wait fails with the reason
    late = engine.start(BuyOne("ab", until=T0 + MINUTE), id="late")
    assert engine.list(parent=late) == []
    failed = engine.get(late)
    assert failed.status.value == "failed" and "is not later than now" in failed.error


@pytest.mark.parametrize(("deadline", "words"), [
    (0, "not above 0"),
    (-5.0, "not above 0"),
    (dt.timedelta(0), "not above 0"),
    (float("inf"), "deadline is an aware datetime, or a duration"),
    ("1h", "deadline is an aware datetime, or a duration from the start"),
    (True, "deadline is an aware datetime, or a duration"),
    (dt.datetime(2030, 1, 1), "has no time zone"),
    (dt.timedelta(days=40_000), "at most 36525 days"),
])
def test_a_bad_deadline_is_refused_by_the_statement(deadline, words):
    for make in (lambda: Child("c", Quote("a"), deadline=deadline),
                 lambda: Children("c", [Quote("a")], deadline=deadline)):
        with pytest.raises(StatementError, match=words):
            make()


def test_a_bad_child_deadline_fails_the_definition_with_nothing_started(store):
    engine = Engine(store, clock=FakeClock(T0))
    with pytest.raises(DefinitionError, match="Children 'quotes': a deadline of -1 seconds "
                                              "is not above 0"):
        engine.start(Buy(["ab"], deadline=-1), id="p")
    assert store.list() == []


def test_a_step_starts_an_instance_with_a_deadline_from_its_start(store):
    clock = FakeClock(T0)
    engine = Engine(store, clock=clock)
    now = engine.start(Starter(), id="a")
    started = engine.get(now).data.started
    assert engine.get(started).state.deadline == T0 + MINUTE
    later = engine.start(Starter(delay=600, deadline=30), id="b")
    delayed = engine.get(later).data.started
    assert engine.get(delayed).state.deadline == T0 + dt.timedelta(seconds=630)  # from `at`
    clock.now = T0 + 2 * MINUTE
    engine.work(until_idle=True)
    assert engine.get(started).status.value == "cancelled"
    assert engine.get(delayed).status.value == "resuming"  # not started yet: due at 600 s
    clock.now = T0 + dt.timedelta(seconds=601)
    engine.work(until_idle=True)
    assert engine.get(delayed).status.value == "waiting"
    clock.now = T0 + dt.timedelta(seconds=640)
    engine.work(until_idle=True)
    assert engine.get(delayed).status.value == "cancelled"
    bad = engine.start(Starter(deadline=-1), id="c")
    failed = engine.get(bad)
    assert failed.status.value == "failed" and "not above 0" in failed.error
    assert {r.id for r in store.list()} == {"a", "b", "c", started, delayed}  # none from c


# -- a crash at every write ------------------------------------------------------------------


class Crash(BaseException):
    pass


def _run(crash_at: int | None) -> tuple[tuple, int]:
    store = MemoryStore()
    clock = FakeClock(T0)
    with dies_at_call(store, crash_at, ROUND_WRITES, Crash) as count:
        engine = Engine(store, clock=clock, lease_seconds=10)
        try:
            engine.start(Buy(["ab", "slow-z"]), id="p")
            engine.work(until_idle=True)
            clock.now = T0 + 2 * MINUTE
            engine.work(until_idle=True)
        except Crash:
            pass
    worker = Engine(store, clock=clock, lease_seconds=10)
    if not any(r.id == "p" for r in store.list()):
        worker.start(Buy(["ab", "slow-z"]), id="p")
    worker.work(until_idle=True)  # (at the time of the crash: within the deadline)
    for _ in range(4):
        clock.advance(seconds=100)
        worker.work(until_idle=True, idle_sleep=30)
    parent = worker.get("p")
    kids = sorted(r.id for r in worker.list(parent="p"))
    return ((parent.status.value, parent.data.prices, parent.data.failure.type
             if parent.data.failure else None, kids,
             [worker.get(k).status.value for k in kids], store.list_outbox()), count["n"])


def test_a_crash_at_every_write_ends_as_the_uninterrupted_run():
    """The child that passes its deadline is cancelled and its parent told, once,
    whichever write the process dies at (the deadline written with the child)."""
    expected, writes = _run(None)
    assert expected[0] == "finished" and expected[2] == "ChildFailed"
    assert expected[4] == ["finished", "cancelled"]
    for crash_at in range(1, writes + 1):
        got, _ = _run(crash_at)
        assert got == expected, crash_at
