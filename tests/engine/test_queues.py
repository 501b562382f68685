"""Queues on every store: the limits are never exceeded, nothing starves, the
place of a waiting instance is visible."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sched_app import Job

from genflow.clock import FakeClock
from genflow.describe import describe
from genflow.engine import Engine
from genflow.errors import DuplicateInstanceError, QueueNotFoundError, ScheduleError
from genflow.queues import Queue
from genflow.stores import MemoryStore, SQLiteStore
from genflow.stores.scheduling import ENDED

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def engine_on(store) -> tuple[Engine, FakeClock]:
    clock = FakeClock(T0)
    return Engine(store, clock=clock), clock


def statuses(engine: Engine, ids: list[str]) -> list[str]:
    return [engine.get(i).status.value for i in ids]


def test_concurrency_and_per_key_limits(store):
    engine, _ = engine_on(store)
    engine.queues.define(Queue("jobs", concurrency=3, per_key=1, key="tenant"))
    ids = [engine.start(Job(tenant=t, n=n, hold=True), queue="jobs")
           for n, t in enumerate("aaabbc d")]
    assert statuses(engine, ids) == ["resuming"] * 8  # nothing moved before admission
    engine.work(until_idle=True)
    # a, b and c admitted (one per tenant, three at most); the rest wait
    assert statuses(engine, ids) == ["waiting", "resuming", "resuming", "waiting", "resuming",
                                     "waiting", "resuming", "resuming"]
    assert engine.queues.counts("jobs") == (5, 3)
    engine.send(ids[0], "done")  # a's first ends: a's second may go
    engine.work(until_idle=True)
    assert statuses(engine, ids)[:3] == ["finished", "waiting", "resuming"]
    assert engine.queues.counts("jobs") == (4, 3)
    for _ in range(8):  # finish whatever runs, until everything has
        for i in ids:
            if engine.get(i).status.value == "waiting":
                engine.send(i, "done")
        engine.work(until_idle=True)
    assert statuses(engine, ids) == ["finished"] * 8
    assert engine.queues.counts("jobs") == (0, 0)


def test_an_instance_waiting_for_an_event_holds_its_slot(store):
    engine, _ = engine_on(store)
    engine.queues.define(Queue("one", concurrency=1))
    first = engine.start(Job(hold=True), queue="one")
    second = engine.start(Job(), queue="one")
    engine.work(until_idle=True)
    assert statuses(engine, [first, second]) == ["waiting", "resuming"]
    assert engine.queues.place(second).position == 1
    engine.send(first, "done")
    engine.work(until_idle=True)
    assert statuses(engine, [first, second]) == ["finished", "finished"]


def test_rate_limit_across_engines(make_store):
    a, clock = engine_on(make_store())
    b = Engine(make_store(), clock=clock)
    a.queues.define(Queue("api", rate=3, per=dt.timedelta(minutes=1)))
    ids = [a.start(Job(n=n), queue="api") for n in range(8)]
    assert len(a.queues.admit().admitted) == 3
    assert b.queues.admit().admitted == ()  # the other engine sees the same window
    admission = b.queues.admit()
    assert admission.next_at == T0 + dt.timedelta(minutes=1)
    clock.advance(seconds=59)
    assert b.queues.admit().admitted == ()
    clock.advance(seconds=1)
    assert len(b.queues.admit().admitted) == 3
    a.work(until_idle=True)  # runs the six admitted; the seventh waits for the window
    assert sum(s == "finished" for s in statuses(a, ids)) == 6
    clock.advance(seconds=60)
    a.work(until_idle=True)
    assert statuses(a, ids) == ["finished"] * 8


def test_priorities_then_first_come_first_served(store):
    engine, _ = engine_on(store)
    engine.queues.define(Queue("p", concurrency=1))
    blocker = engine.start(Job(hold=True), queue="p")
    engine.work(until_idle=True)
    late = engine.start(Job(n=1), queue="p", priority=5)
    normal = [engine.start(Job(n=n), queue="p") for n in (2, 3)]
    urgent = engine.start(Job(n=4), queue="p", priority=-1)
    places = {i: engine.queues.place(i).position for i in [late, *normal, urgent]}
    assert places == {urgent: 1, normal[0]: 2, normal[1]: 3, late: 4}
    order = []
    engine.send(blocker, "done")
    for _ in range(4):
        admitted = engine.queues.admit().admitted
        order += admitted
        engine.run_due()
    assert order == [urgent, *normal, late]


def test_show_says_which_queue_and_the_position(store):
    engine, _ = engine_on(store)
    engine.queues.define(Queue("q", concurrency=1, per_key=1, key="tenant"))
    engine.start(Job(hold=True), queue="q")
    waiting = engine.start(Job(tenant="acme"), queue="q", priority=2)
    engine.work(until_idle=True)
    instance = engine.get(waiting)
    text = describe(instance.state, instance.data, queue=engine.queues.place(waiting).text())
    assert "waits in queue 'q' for admission: position 1, key 'acme', priority 2" in text


def test_a_cancelled_or_deleted_instance_gives_its_place_up(store):
    engine, _ = engine_on(store)
    engine.queues.define(Queue("q", concurrency=1))
    running = engine.start(Job(hold=True), queue="q")
    engine.work(until_idle=True)
    cancelled = engine.start(Job(n=1), queue="q")
    after = engine.start(Job(n=2), queue="q")
    engine.cancel(cancelled)
    store.delete(running)  # its slot is free: the row is gone
    engine.work(until_idle=True)
    assert statuses(engine, [cancelled, after]) == ["cancelled", "finished"]
    assert engine.queues.place(cancelled) is None


def test_bad_queues_and_starts_are_refused(store):
    engine, _ = engine_on(store)
    for queue, message in [
        (Queue("q", concurrency=0), "concurrency is a whole number of 1 or more"),
        (Queue("q", rate=5), "rate=N with per=PERIOD"),
        (Queue("q", rate=5, per=0), "per= is a positive period"),
        (Queue("q", per_key=1), "per_key needs key="),
        (Queue(""), "non-empty name"),
    ]:
        with pytest.raises(ScheduleError, match=message):
            engine.queues.define(queue)
    assert engine.queues.list() == []
    with pytest.raises(QueueNotFoundError, match="no queue 'nope'"):
        engine.start(Job(), queue="nope")
    engine.queues.define(Queue("q"))
    engine.start(Job(), queue="q", id="one")
    with pytest.raises(DuplicateInstanceError):
        engine.start(Job(), queue="q", id="one")
    assert engine.queues.counts("q") == (1, 0)
    with pytest.raises(ScheduleError, match="a priority is a whole number"):
        engine.start(Job(), queue="q", priority="high")  # type: ignore[arg-type]
    other = Engine(store)  # knows the keyed queue from the store only: cannot key it
    engine.queues.define(Queue("k", per_key=1, key="tenant"))
    with pytest.raises(ScheduleError, match="this process must define it"):
        other.start(Job(), queue="k")


def test_a_key_function(store):
    engine, _ = engine_on(store)
    engine.queues.define(Queue("f", per_key=1, key=lambda job: job.n % 2))
    ids = [engine.start(Job(n=n, hold=True), queue="f") for n in range(4)]
    engine.queues.admit()
    assert [engine.queues.place(i).position == 0 for i in ids] == [True, True, False, False]


# -- properties ---------------------------------------------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("start"), st.integers(0, 3), st.integers(-1, 1)),  # key, priority
    st.tuples(st.just("end"), st.integers(0, 50), st.sampled_from(["done", "cancel"])),
    st.tuples(st.just("admit"), st.integers(0, 1), st.just(0)),  # which engine
    st.tuples(st.just("tick"), st.integers(1, 40), st.just(0)),  # seconds
), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, concurrency=st.sampled_from([None, 1, 3]), per_key=st.sampled_from([None, 1, 2]),
       rate=st.sampled_from([None, 2, 5]), kind=st.sampled_from(["memory", "sqlite"]))
def test_random_admissions_never_exceed_the_limits(tmp_path_factory, ops, concurrency, per_key,
                                                   rate, kind):
    """Random starts, ends, cancels, clock moves and admissions by two engines:
    after every admission the limits hold, and an admission leaves no instance
    waiting that the limits would let in (nothing starves)."""
    if kind == "memory":
        stores = [MemoryStore()] * 2
    else:
        path = tmp_path_factory.mktemp("q") / "q.db"
        stores = [SQLiteStore(path), SQLiteStore(path)]
    clock = FakeClock(T0)
    engines = [Engine(s, clock=clock) for s in stores]
    queue = Queue("prop", concurrency=concurrency, per_key=per_key, key="tenant",
                  rate=rate, per=None if rate is None else 60)
    for engine in engines:
        engine.queues.define(queue)
    started: list[str] = []
    admitted_at: dict[str, dt.datetime] = {}
    for op, a, b in ops:
        engine = engines[a % 2]
        if op == "start":
            started.append(engine.start(Job(tenant=f"t{a}", hold=True), queue="prop",
                                        priority=b))
        elif op == "end" and started:
            target = started[a % len(started)]
            status = engine.get(target).status.value
            if status == "waiting":
                engine.send(target, "done")
            elif status not in ENDED and b == "cancel":
                engine.cancel(target)
        elif op == "tick":
            clock.advance(seconds=a)
        elif op == "admit":
            for i in engine.queues.admit().admitted:
                assert i not in admitted_at, "admitted twice"
                admitted_at[i] = clock.now
            engine.run_due()
            _check_limits(engines[0], queue, started, admitted_at, clock.now)
    for s in {id(s): s for s in stores}.values():
        s.close()


def _check_limits(engine: Engine, queue: Queue, started: list[str],
                  admitted_at: dict[str, dt.datetime], now: dt.datetime) -> None:
    live = [i for i in admitted_at if engine.get(i).status.value not in ENDED]
    by_key: dict[str, int] = {}
    for i in live:
        tenant = engine.get(i).data.tenant
        by_key[tenant] = by_key.get(tenant, 0) + 1
    if queue.concurrency is not None:
        assert len(live) <= queue.concurrency
    if queue.per_key is not None:
        assert all(n <= queue.per_key for n in by_key.values()), by_key
    recent = [t for t in admitted_at.values() if t > now - dt.timedelta(seconds=60)]
    if queue.rate is not None:
        assert len(recent) <= queue.rate
    # work conserving: an instance still waiting is held back by some limit
    waiting = [i for i in started if i not in admitted_at
               and engine.get(i).status.value not in ENDED]
    for i in waiting:
        tenant = engine.get(i).data.tenant
        held = ((queue.concurrency is not None and len(live) >= queue.concurrency)
                or (queue.per_key is not None and by_key.get(tenant, 0) >= queue.per_key)
                or (queue.rate is not None and len(recent) >= queue.rate))
        assert held, f"{i} ({tenant}) waits though no limit holds it back"


@pytest.mark.parametrize("name", ["no-\x00", "", "\ud800", "x" * 201])
def test_a_queue_name_no_store_could_keep_names_no_queue(store, name):
    """Such a name is looked up nowhere (PostgreSQL refuses a NUL in a text: its
    error would reach the caller as a StoreError, an HTTP 5xx): no queue has it."""
    from sched_app import Report

    engine, _ = engine_on(store)
    engine.queues.define(Queue("jobs"))
    engine.schedules.add("rep", Report(), every=3600, queue="jobs")
    before = engine.store.get_schedule("rep")
    with pytest.raises(QueueNotFoundError, match="a queue's name is a non-empty text"):
        engine.queues.get(name)
    with pytest.raises(QueueNotFoundError):
        engine.start(Job(), id="j", queue=name)
    with pytest.raises(QueueNotFoundError):
        engine.schedules.update("rep", queue=name)
    assert engine.store.get_schedule("rep") == before
    assert engine.store.list() == []


def test_a_key_no_store_could_keep_is_refused_with_nothing_started(store):
    engine, _ = engine_on(store)
    engine.queues.define(Queue("keyed", per_key=1, key="tenant"))
    with pytest.raises(ScheduleError, match=r"queue 'keyed': the key 'a\\x00b' is no key a "
                                            r"store can keep"):
        engine.start(Job(tenant="a\x00b"), id="j", queue="keyed")
    assert engine.store.list() == []
    engine.start(Job(tenant="a-b"), id="k", queue="keyed")  # a key a store keeps: queued
    assert [r.id for r in engine.store.list()] == ["k"]
