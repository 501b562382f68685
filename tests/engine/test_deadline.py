"""`Engine.start(deadline=...)`: a workflow timeout, kept in the State, that a
worker enforces by cancelling the instance as `Engine.cancel` does; on every
store, across restarts, at every write of its cancel, and as a property."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

import attrs
import pytest
from faults import dies_at_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genflow import (
    Cancelled,
    Child,
    Engine,
    FakeClock,
    On,
    Retry,
    Step,
    Try,
    Wait,
    WorkflowFinishedError,
    current_step,
    workflow,
)
from genflow.clock import MAX_DEADLINE
from genflow.codec import dumps, load_state, loads
from genflow.errors import ArgumentError, CorruptStateError, DuplicateInstanceError
from genflow.queues import Queue
from genflow.state import Mailbox, Parent
from genflow.stores import MemoryStore

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)


@workflow("dl-order")
@attrs.define
class Order:
    """Waits for payment; cancelled, it releases what it held and says why."""

    item: str = "book"
    log: list[str] = attrs.field(factory=list)
    cleanup: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("hold", lambda: self.log.append("held"))
        yield Try("sell",
                  Wait("payment?", On("paid", lambda: self.log.append("paid"))),
                  Step("ship", lambda: self.log.append("shipped")),
                  ).Catch("cancelled", Step("release", self.release), errors=Cancelled,
                  ).Finally("end", Step("close", lambda: self.log.append("closed")))

    def release(self) -> None:
        self.log.append("released")
        self.cleanup = current_step().failure.message  # type: ignore[union-attr]


FLAKY: dict[str, int] = {}


@workflow("dl-flaky")
@attrs.define
class Flaky:
    key: str = ""
    log: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        yield Try("calling",
                  Step("call", self.call, retry=Retry(attempts=None, backoff=600, factor=1)),
                  ).Finally("end", Step("close", lambda: self.log.append("closed")))

    def call(self) -> None:
        FLAKY[self.key] = FLAKY.get(self.key, 0) + 1
        raise ConnectionError("the service is down")


@workflow("dl-kid")
@attrs.define
class Kid:
    done: bool = False

    def definition(self):  # type: ignore[no-untyped-def]
        yield Wait("hold", On("go"))
        yield Step("done", lambda: setattr(self, "done", True))


@workflow("dl-parent")
@attrs.define
class Parent_:
    done: bool = False

    def definition(self):  # type: ignore[no-untyped-def]
        yield Child("kid", Kid(), id="kid-of-p", into="done", result="done")


def _engine(store, clock=None) -> Engine:  # type: ignore[no-untyped-def]
    return Engine(store, clock=clock or FakeClock(), lease_seconds=10)


def _journal(store, iid: str) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def,type-arg]
    return [(e.kind, e.detail) for e in store.journal(iid)]


# -- the deadline passes ------------------------------------------------------------------


def test_a_deadline_cancels_an_instance_that_waits_for_an_event(store):
    clock = FakeClock()
    engine = _engine(store, clock)
    iid = engine.start(Order(), deadline=dt.timedelta(hours=2))
    started = clock()
    due = started + dt.timedelta(hours=2)
    assert engine.get(iid).state.deadline == due
    assert engine.get(iid).wake_at == due  # it waits for an event only, yet a worker wakes it
    assert engine.run_due() == 0
    clock.advance(dt.timedelta(hours=2))
    assert engine.run_due() == 1
    got = engine.get(iid)
    assert got.status.value == "cancelled" and got.wake_at is None
    assert got.data.log == ["held", "released", "closed"]
    assert got.data.cleanup == f"the instance was cancelled: its deadline {due.isoformat()} passed"
    assert ("cancel", {"by": engine.owner, "deadline": due.isoformat()}) in _journal(store, iid)
    with pytest.raises(WorkflowFinishedError, match="was cancelled"):
        engine.result(iid, timeout=0)


def test_the_deadline_cancels_as_cancel_does(store):
    """The same instance cancelled by hand at that moment ends the same: data,
    status, the threads, what the row says (the journal says who and why)."""
    clock = FakeClock()
    engine = _engine(store, clock)
    by_deadline = engine.start(Order(), id="a", deadline=30 * 60)
    by_hand = engine.start(Order(), id="b")
    clock.advance(dt.timedelta(minutes=30))
    engine.run_due()
    engine.cancel(by_hand)
    a, b = engine.get(by_deadline), engine.get(by_hand)
    assert (a.status, a.data.log, a.state.threads, a.error, a.waiting_for) == \
        (b.status, b.data.log, b.state.threads, b.error, b.waiting_for)
    assert b.data.cleanup == "the instance was cancelled"


def test_a_worker_of_another_engine_cancels_it_after_a_restart(make_store):
    clock = FakeClock()
    iid = _engine(make_store(), clock).start(Order(), deadline=dt.timedelta(minutes=5))
    clock.advance(dt.timedelta(minutes=6))
    worker = _engine(make_store(), clock)  # another process, on the same database
    assert worker.work(until_idle=True) >= 1
    assert worker.get(iid).status.value == "cancelled"
    assert worker.get(iid).data.log == ["held", "released", "closed"]


def test_until_done_sleeps_until_the_deadline(store):
    """A worker with nothing but the deadline to wait for sleeps until it."""
    clock = FakeClock()
    engine = _engine(store, clock)
    iid = engine.start(Order(), deadline=dt.timedelta(days=3))
    start = clock()
    engine.work(until_done=True, idle_sleep=3600)
    assert engine.get(iid).status.value == "cancelled"
    assert start + dt.timedelta(days=3) <= clock() < start + dt.timedelta(days=3, hours=1)


def test_work_async_cancels_at_the_deadline(store):
    clock = FakeClock()
    engine = _engine(store, clock)

    async def scenario() -> str:
        iid = await engine.start_async(Order(), deadline=60)
        clock.advance(dt.timedelta(seconds=60))
        await engine.work_async(until_idle=True)
        return iid

    iid = asyncio.run(scenario())
    assert engine.get(iid).status.value == "cancelled"
    assert engine.get(iid).data.log == ["held", "released", "closed"]


def test_a_deadline_cuts_a_step_retrying_with_backoff(store):
    """The step's next attempt is ten minutes off; the deadline, three: the
    worker wakes at the deadline and cancels it, and no attempt runs after."""
    clock = FakeClock()
    engine = _engine(store, clock)
    key = f"retry-{id(store)}"
    iid = engine.start(Flaky(key=key), deadline=dt.timedelta(minutes=3))
    assert FLAKY[key] == 1
    got = engine.get(iid)
    assert got.status.value == "waiting" and got.wake_at == got.state.deadline
    engine.work(until_done=True, idle_sleep=3600)
    got = engine.get(iid)
    assert (got.status.value, got.data.log, FLAKY[key]) == ("cancelled", ["closed"], 1)


def test_an_instance_that_finished_first_ignores_its_deadline(store):
    clock = FakeClock()
    engine = _engine(store, clock)
    iid = engine.start(Order(), deadline=dt.timedelta(minutes=10))
    clock.advance(dt.timedelta(minutes=9))
    engine.send(iid, "paid")
    assert engine.get(iid).status.value == "finished" and engine.get(iid).wake_at is None
    before = store.get(iid)
    clock.advance(dt.timedelta(hours=1))
    assert engine.work(until_idle=True) == 0
    assert store.get(iid) == before
    assert engine.get(iid).data.log == ["held", "paid", "shipped", "closed"]


def test_a_failed_instance_is_left_to_its_operator_then_cancelled_if_retried_late(store):
    clock = FakeClock()
    engine = Engine(store, clock=clock, lease_seconds=10)
    key = f"failed-{id(store)}"

    @workflow("dl-fails-once")
    @attrs.define
    class FailsOnce:
        log: list[str] = attrs.field(factory=list)

        def definition(self):  # type: ignore[no-untyped-def]
            yield Step("call", self.call)

        def call(self) -> None:
            FLAKY[key] = FLAKY.get(key, 0) + 1
            raise ValueError("refused")

    iid = engine.start(FailsOnce(), deadline=dt.timedelta(minutes=1))
    assert engine.get(iid).status.value == "failed" and engine.get(iid).wake_at is None
    clock.advance(dt.timedelta(minutes=2))
    assert engine.run_due() == 0  # failed: not the deadline's
    engine.retry(iid)
    engine.run_due()  # the retry runs past the deadline: the worker cancels it instead
    got = engine.get(iid)
    assert got.status.value == "cancelled" and FLAKY[key] == 1


def test_a_deadline_cancels_the_children_as_cancel_does(store):
    clock = FakeClock()
    engine = _engine(store, clock)
    pid = engine.start(Parent_(), id="p", deadline=dt.timedelta(minutes=5))
    engine.work(until_idle=True)
    assert engine.get("kid-of-p").status.value == "waiting"
    assert engine.get("kid-of-p").state.deadline is None  # the parent's own: not inherited
    clock.advance(dt.timedelta(minutes=5))
    engine.work(until_idle=True)
    assert engine.get(pid).status.value == "cancelled"
    assert engine.get("kid-of-p").status.value == "cancelled"
    assert store.list_outbox() == []


def test_a_cancelled_instance_owes_nothing_to_its_deadline(store):
    clock = FakeClock()
    engine = _engine(store, clock)
    iid = engine.start(Order(), deadline=60)
    engine.cancel(iid)
    before = store.get(iid)
    clock.advance(dt.timedelta(minutes=2))
    assert engine.run_due() == 0 and store.get(iid) == before
    assert [kind for kind, _ in _journal(store, iid)].count("cancel") == 1


# -- the argument --------------------------------------------------------------------------


NOW = dt.datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("deadline", "says"), [
    (dt.datetime(2030, 6, 1), "has no time zone"),
    (NOW, "not later than now"),
    (NOW - MINUTE, "not later than now"),
    (NOW + MAX_DEADLINE + MINUTE, "days away"),
    (0, "not above 0"), (-5, "not above 0"), (0.0, "not above 0"), (1e-9, "not above 0"),
    (math.nan, "not nan"), (math.inf, "not inf"), (1e300, "not above 0 and at most"),
    (dt.timedelta(0), "not above 0"), (-MINUTE, "not above 0"),
    (MAX_DEADLINE + MINUTE, "at most"),
    ("2h", "not str '2h'"), (True, "not bool"), ([60], "not list"),
    (dt.date(2030, 6, 1), "not date"),
])
def test_a_deadline_that_cannot_work_is_refused_with_nothing_written(store, deadline, says):
    engine = _engine(store, FakeClock(start=NOW))
    with pytest.raises(ArgumentError, match=says):
        engine.start(Order(), id="x", deadline=deadline)
    with pytest.raises(ArgumentError, match=says):
        engine.send("x", "paid", start=Order(), deadline=deadline)
    assert store.list() == [] and store.journal("x") == []


def test_a_deadline_in_another_zone_is_kept_in_utc(store):
    engine = _engine(store, FakeClock(start=NOW))
    zone = dt.timezone(dt.timedelta(hours=2))
    iid = engine.start(Order(), deadline=dt.datetime(2030, 1, 1, 3, 0, tzinfo=zone))
    assert engine.get(iid).state.deadline == NOW + dt.timedelta(hours=1)
    assert engine.get(iid).state.deadline.tzinfo is UTC  # type: ignore[union-attr]


def test_a_deadline_on_send_without_start_is_refused(store):
    engine = _engine(store)
    iid = engine.start(Order())
    before = store.get(iid)
    with pytest.raises(ArgumentError, match="start="):
        engine.send(iid, "paid", deadline=60)
    assert store.get(iid) == before


def test_if_exists_return_and_signal_with_start_leave_the_deadline_as_it_was(store):
    clock = FakeClock()
    engine = _engine(store, clock)
    engine.start(Order(), id="o", deadline=dt.timedelta(minutes=10))
    first = engine.get("o").state.deadline
    assert engine.start(Order(), id="o", if_exists="return", deadline=dt.timedelta(days=1)) == "o"
    assert engine.get("o").state.deadline == first
    with pytest.raises(DuplicateInstanceError):
        engine.start(Order(), id="o", deadline=60)
    engine.send("o", "paid", start=Order(), deadline=dt.timedelta(days=1))
    assert engine.get("o").state.deadline == first
    engine.send("s", "paid", start=Order(), deadline=dt.timedelta(minutes=1))  # a new one
    assert engine.get("s").state.deadline == clock() + MINUTE
    assert engine.get("s").status.value == "finished"


def test_a_queued_instance_counts_its_deadline_from_its_start(store):
    clock = FakeClock()
    engine = _engine(store, clock)
    engine.queues.define(Queue("slow", concurrency=1))
    iid = engine.start(Order(), queue="slow", deadline=dt.timedelta(minutes=1))
    assert engine.get(iid).state.deadline == clock() + MINUTE
    clock.advance(dt.timedelta(minutes=2))
    engine.work(until_idle=True)
    assert engine.get(iid).status.value == "cancelled" and engine.get(iid).data.log == []


# -- the blob ------------------------------------------------------------------------------


def test_a_state_without_a_deadline_has_no_element_for_it():
    """The State's array is as long as before (the golden blobs below: byte for byte)."""
    from genflow.state import new_state
    data = Order()
    plain = new_state("i", data)
    assert load_state(dumps(data, plain)).deadline is None
    assert len(_raw(dumps(data, plain))) == 5
    plain.trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    assert len(_raw(dumps(data, plain))) == 7


def _raw(blob: bytes) -> list:  # type: ignore[type-arg]
    import msgpack
    return msgpack.unpackb(blob, raw=False)[4]


@pytest.mark.parametrize("parent", [None, Parent("p", "kid")])
@pytest.mark.parametrize("trace", [None, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"])
@pytest.mark.parametrize("mailbox", [None, Mailbox(sent=2)])
def test_a_deadline_round_trips_beside_every_other_trailing_field(parent, trace, mailbox):
    from genflow.state import new_state
    state = new_state("i", Order())
    state.parent, state.trace, state.mailbox = parent, trace, mailbox
    state.deadline = NOW
    blob = dumps(Order(), state)
    assert len(_raw(blob)) == 9
    _, back = loads(blob)
    assert (back.parent, back.trace, back.mailbox, back.deadline) == (parent, trace, mailbox, NOW)
    assert dumps(Order(), back) == blob


def test_a_corrupt_deadline_is_refused_on_load():
    import msgpack

    from genflow.state import new_state
    blob = dumps(Order(), attrs.evolve(new_state("i", Order()), deadline=NOW))
    envelope = msgpack.unpackb(blob, raw=False)
    for bad, says in (("tomorrow", "not a date"), ("2030-01-01T00:00:00", "no time zone"),
                      (5, "not str")):
        envelope[4][8] = bad
        with pytest.raises(CorruptStateError, match=f"the deadline.*{says}"):
            loads(msgpack.packb(envelope, use_bin_type=True))


# -- crashes at every write of the deadline's cancel ---------------------------------------


class Crash(BaseException):
    pass


_WRITES = ("create", "save", "create_if_absent", "put_outbox", "done_outbox", "retry_outbox",
           "release", "append_journal")


def _crashed_run(crash_at: int | None) -> tuple:  # type: ignore[type-arg]
    """Start a parent with a child and a deadline, let a worker pass it; the
    process dies at write `crash_at` of the whole run. A fresh worker then
    finishes what is left."""
    store = MemoryStore()
    clock = FakeClock()
    with dies_at_call(store, crash_at, _WRITES, Crash) as count:
        engine = _engine(store, clock)
        try:
            engine.start(Parent_(), id="p", deadline=dt.timedelta(minutes=5))
            engine.work(until_idle=True)
            clock.advance(dt.timedelta(minutes=5))
            engine.work(until_idle=True)
        except Crash:
            pass
    worker = _engine(store, clock)
    if not any(r.id == "p" for r in store.list()):
        worker.start(Parent_(), id="p", deadline=dt.timedelta(minutes=5))
    worker.work(until_idle=True)  # (the child, if the crash came before it was started)
    for _ in range(4):
        clock.advance(dt.timedelta(minutes=6))
        worker.work(until_idle=True, idle_sleep=30)
    cancels = [sorted(d) for kind, d in _journal(store, "p") if kind == "cancel"]
    assert cancels in ([], [["by", "deadline"]])  # (after the save: lost with a crash between)
    return ((worker.get("p").status.value, worker.get("kid-of-p").status.value,
             store.list_outbox(), len(store.list()), worker.get("p").data), count["n"])


def test_a_crash_at_every_write_of_a_deadline_cancel_ends_as_the_uninterrupted_run():
    expected, writes = _crashed_run(None)
    assert expected == ("cancelled", "cancelled", [], 2, Parent_())
    assert writes > 5
    for crash_at in range(1, writes + 1):
        got, _ = _crashed_run(crash_at)
        assert got == expected, crash_at


# -- a property: the deadline is a cancel at that moment -----------------------------------


_ACTIONS = st.lists(st.one_of(st.tuples(st.just("advance"), st.integers(1, 40)),
                              st.tuples(st.just("paid"), st.none())), max_size=8)


def _positions(instance) -> list[tuple]:  # type: ignore[no-untyped-def,type-arg]
    return [(t.id, t.stmt, t.status, t.pc, t.unwind, [e.event for e in t.events])
            for t in instance.state.threads]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minutes=st.integers(1, 120), actions=_ACTIONS)
def test_any_interleaving_ends_as_a_cancel_at_the_deadline(minutes, actions):
    """Clock advances and events in any order, a worker round after each: the
    instance with a deadline ends as the same instance without one, cancelled
    by `Engine.cancel` in the first round at or after that moment."""
    store = MemoryStore()
    clock = FakeClock()
    engine = _engine(store, clock)
    span = dt.timedelta(minutes=minutes)
    timed = engine.start(Order(), id="timed", deadline=span)
    plain = engine.start(Order(), id="plain")
    due = clock() + span
    outcomes: dict[str, list[str]] = {"timed": [], "plain": []}
    for kind, arg in actions:
        if kind == "advance":
            clock.advance(dt.timedelta(minutes=arg))
        else:
            for iid in (timed, plain):
                try:
                    engine.send(iid, "paid")
                    outcomes[iid].append("sent")
                except WorkflowFinishedError as exc:
                    outcomes[iid].append(type(exc).__name__)
        engine.run_due()
        if clock() >= due and engine.get(plain).status.value == "waiting":
            engine.cancel(plain)
    a, b = engine.get(timed), engine.get(plain)
    assert outcomes["timed"] == outcomes["plain"]
    assert (a.status, a.data.log, _positions(a), a.error) == \
        (b.status, b.data.log, _positions(b), b.error)
    assert ("released" in a.data.log) == (a.status.value == "cancelled")
    if clock() >= due:
        assert a.status.value in ("finished", "cancelled") and a.wake_at is None
    else:
        assert a.wake_at == (None if a.status.value == "finished" else due)


# -- blobs written before deadlines existed ------------------------------------------------


@workflow("dl-gold")
@attrs.define
class Gold:
    n: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("s", lambda: None)


#: blobs a genflow without deadlines wrote (a State plain; a child's; a traced one; one
#: with a parent, a trace and a mailbox), as hex
_BEFORE = [
    "95a767656e666c6f7703a7646c2d676f6c6481a16e0395a169a7646c2d676f6c64a8726573756d696e67009199a65f6d61696e5fa0a8726573756d696e67009090a090b9323033302d30312d30315430303a30303a30302b30303a3030",
    "95a767656e666c6f7703a7646c2d676f6c6481a16e0396a169a7646c2d676f6c64a8726573756d696e67009199a65f6d61696e5fa0a8726573756d696e67009090a090b9323033302d30312d30315430303a30303a30302b30303a303095a170a36b696402a65f6d61696e5f00",
    "95a767656e666c6f7703a7646c2d676f6c6481a16e0397a169a7646c2d676f6c64a8726573756d696e67009199a65f6d61696e5fa0a8726573756d696e67009090a090b9323033302d30312d30315430303a30303a30302b30303a3030c0d93730302d31313131313131313131313131313131313131313131313131313131313131312d323232323232323232323232323232322d3031",
    "95a767656e666c6f7703a7646c2d676f6c6481a16e0398a169a7646c2d676f6c64a8726573756d696e67009199a65f6d61696e5fa0a8726573756d696e67009090a090b9323033302d30312d30315430303a30303a30302b30303a303095a170a36b696400a65f6d61696e5f00a1749301919600a16581a16101a0b9323033302d30312d30315430303a30303a30302b30303a3030a090",
]


def _gold_states() -> list:  # type: ignore[type-arg]
    from genflow.state import Message, new_state
    states = []
    for parent, trace, mailbox in [
            (None, None, None), (Parent("p", "kid", 2), None, None),
            (None, "00-" + "1" * 32 + "-" + "2" * 16 + "-01", None),
            (Parent("p", "kid"), "t", Mailbox(1, [Message(0, "e", {"a": 1}, "", NOW)], []))]:
        state = new_state("i", Gold(3))
        state.parent, state.trace, state.mailbox = parent, trace, mailbox
        state.threads[0].since = NOW
        states.append(state)
    return states


def test_blobs_stored_before_load_and_are_written_byte_for_byte_as_before():
    for before, state in zip(_BEFORE, _gold_states(), strict=True):
        blob = bytes.fromhex(before)
        data, back = loads(blob)
        assert back.deadline is None and back == state
        assert dumps(data, back) == blob == dumps(Gold(3), state)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_instances_past_their_deadline_in_one_round_are_cancelled_together(store, api):
    """A round of several instances (their saves sharing commits): each is
    cancelled; one whose deadline is later is left waiting."""
    clock = FakeClock()
    engine = _engine(store, clock)
    ids = [engine.start(Order(), id=f"o{k}", deadline=60 + k) for k in range(3)]
    alive = engine.start(Order(), id="alive", deadline=dt.timedelta(hours=1))
    clock.advance(dt.timedelta(minutes=5))
    if api == "sync":
        assert engine.run_due() == 3
    else:
        assert asyncio.run(engine.run_due_async()) == 3
    for iid in ids:
        assert engine.get(iid).status.value == "cancelled", iid
        assert engine.get(iid).data.log == ["held", "released", "closed"]
    assert engine.get(alive).status.value == "waiting"


def test_the_console_view_and_show_say_when_it_expires(store):
    from genflow.describe import describe
    from genflow.render.views import instance_view

    clock = FakeClock()
    engine = _engine(store, clock)
    iid = engine.start(Order(), deadline=dt.timedelta(hours=2))
    got = engine.get(iid)
    view = instance_view(got, now=clock())
    assert view["deadline"] == (clock() + dt.timedelta(hours=2)).isoformat()
    text = describe(got.state, now=clock())
    assert "deadline 2030-01-01 02:00:00 UTC (in 2.0h): cancelled then unless it has finished" \
        in text
    clock.advance(dt.timedelta(hours=3))
    assert "(1.0h ago): passed, the next worker round cancels it" in \
        describe(engine.get(iid).state, now=clock())
    engine.run_due()
    assert describe(engine.get(iid).state, now=clock()).splitlines()[1] == \
        "  deadline 2030-01-01 02:00:00 UTC (1.0h ago)"
