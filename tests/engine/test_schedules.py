"""Schedules on every store: each tick starts exactly one instance, whatever the
workers, their clocks and the downtime; the policies; bad input refused."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sched_app import Report

from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import (
    DuplicateScheduleError,
    InstanceNotFoundError,
    QueueNotFoundError,
    ScheduleError,
    ScheduleNotFoundError,
    UnknownWorkflowError,
)
from genflow.schedules import Schedule, instance_id_for
from genflow.stores import MemoryStore, SQLiteStore

UTC = dt.UTC
T0 = dt.datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


def engine_on(store, start=T0) -> tuple[Engine, FakeClock]:
    clock = FakeClock(start)
    return Engine(store, clock=clock), clock


def ids(engine: Engine) -> list[str]:
    return sorted(r.id for r in engine.list(workflow="sched-report"))


# -- ticks --------------------------------------------------------------------------------


def test_a_cron_tick_starts_one_instance_named_by_its_tick(store):
    engine, clock = engine_on(store, dt.datetime(2030, 3, 30, 23, 0, tzinfo=UTC))
    # 02:30 Paris does not exist on 31 March 2030 (DST): croniter fires at 03:00
    engine.schedules.add("night", Report(), cron="30 2 * * *", timezone="Europe/Paris",
                         factory="sched-day")
    info = engine.schedules.get("night")
    assert info.next_fire_times(2) == [dt.datetime(2030, 3, 31, 1, 0, tzinfo=UTC),
                                       dt.datetime(2030, 4, 1, 0, 30, tzinfo=UTC)]
    clock.now = dt.datetime(2030, 3, 31, 0, 59, tzinfo=UTC)
    assert engine.schedules.run_due() == 0
    clock.now = dt.datetime(2030, 3, 31, 1, 0, 5, tzinfo=UTC)
    assert engine.schedules.run_due() == 1
    assert engine.schedules.run_due() == 0
    engine.work(until_idle=True)
    [only] = ids(engine)
    assert only == "night@2030-03-31T01:00:00Z" == instance_id_for(
        "night", dt.datetime(2030, 3, 31, 1, tzinfo=UTC))
    wf = engine.get(only).data
    assert (wf.day, wf.count) == ("2030-03-31", 1)  # the factory saw the local date
    info = engine.schedules.get("night")
    assert (info.fired, info.last_instance, info.next_tick) == (
        1, only, dt.datetime(2030, 4, 1, 0, 30, tzinfo=UTC))


def test_two_engines_on_one_store_start_each_tick_once(make_store):
    a, clock_a = engine_on(make_store())
    b, clock_b = engine_on(make_store())
    a.schedules.add("every", Report(), every=MIN, catchup="all", overlap="allow")
    started = 0
    for minute in range(1, 31):
        clock_a.now = clock_b.now = T0 + minute * MIN
        first, second = (a, b) if minute % 2 else (b, a)
        started += first.schedules.run_due() + second.schedules.run_due()
    assert started == 30
    assert ids(a) == sorted(instance_id_for("every", T0 + m * MIN) for m in range(1, 31))


def test_a_clock_jump_backwards_fires_no_tick_twice(store):
    engine, clock = engine_on(store)
    engine.schedules.add("every", Report(), every=MIN, catchup="all", overlap="allow")
    clock.now = T0 + 5 * MIN
    assert engine.schedules.run_due() == 5
    clock.now = T0 + 2 * MIN  # NTP steps the clock back three minutes
    assert engine.schedules.run_due() == 0
    clock.now = T0 + 5 * MIN + dt.timedelta(seconds=30)
    assert engine.schedules.run_due() == 0
    clock.now = T0 + 6 * MIN
    assert engine.schedules.run_due() == 1
    assert len(ids(engine)) == 6


def test_jitter_is_the_same_on_every_worker_and_within_bounds(make_store):
    a, clock = engine_on(make_store())
    b, _ = engine_on(make_store())
    a.schedules.add("j", Report(), every=HOUR, jitter=dt.timedelta(minutes=10))
    times_a = a.schedules.get("j").next_fire_times(20)
    times_b = b.schedules.get("j").next_fire_times(20)
    assert times_a == times_b
    ticks = [T0 + n * HOUR for n in range(1, 21)]
    delays = [fire - tick for fire, tick in zip(times_a, ticks, strict=True)]
    assert all(dt.timedelta(0) <= d < dt.timedelta(minutes=10) for d in delays)
    assert len(set(delays)) > 15  # spread, not one delay for all
    clock.now = times_a[0] - dt.timedelta(microseconds=1)
    assert a.schedules.run_due() == 0
    clock.now = times_a[0]
    assert a.schedules.run_due() == 1


# -- catch-up and overlap -----------------------------------------------------------------


@pytest.mark.parametrize(("catchup", "window", "started"), [
    ("skip", None, []),  # ten hours down: every missed tick dropped
    ("skip", dt.timedelta(hours=3), [8, 9, 10]),  # ...and the window stretched: the newest
    ("all", None, list(range(1, 11))),
    ("all", dt.timedelta(hours=3, minutes=30), [7, 8, 9, 10]),
    ("latest", None, [10]),
    ("latest", dt.timedelta(minutes=20), []),
])
def test_catch_up_after_downtime(store, catchup, window, started):
    engine, clock = engine_on(store)
    engine.schedules.add("h", Report(), every=HOUR, catchup=catchup, catchup_window=window,
                         overlap="allow")
    clock.now = T0 + 10 * HOUR + dt.timedelta(minutes=30)
    engine.work(until_idle=True)
    expected = [instance_id_for("h", T0 + n * HOUR) for n in started]
    if catchup == "skip" and started:
        expected = expected[-1:]  # skip starts the newest in its window only
    assert ids(engine) == sorted(expected)
    assert engine.schedules.get("h").next_tick == T0 + 11 * HOUR
    clock.now = T0 + 11 * HOUR
    engine.schedules.run_due()
    assert instance_id_for("h", T0 + 11 * HOUR) in ids(engine)  # on time again


def test_overlap_skip_allow_and_cancel(store):
    engine, clock = engine_on(store)
    for policy in ("skip", "allow", "cancel"):
        engine.schedules.add(policy, Report(wait=True), every=HOUR, overlap=policy)
    clock.now = T0 + HOUR
    engine.work(until_idle=True)
    first = {p: instance_id_for(p, T0 + HOUR) for p in ("skip", "allow", "cancel")}
    assert all(engine.get(i).status.value == "waiting" for i in first.values())
    clock.now = T0 + 2 * HOUR
    engine.work(until_idle=True)
    second = {p: instance_id_for(p, T0 + 2 * HOUR) for p in first}
    # skip: the tick is skipped, the first run goes on
    assert engine.schedules.get("skip").skipped == 1
    with pytest.raises(InstanceNotFoundError):
        engine.get(second["skip"])
    # allow: both run
    assert engine.get(second["allow"]).status.value == "waiting"
    assert engine.get(first["allow"]).status.value == "waiting"
    # cancel: the first is cancelled, then the tick starts its own
    assert engine.get(first["cancel"]).status.value == "cancelled"
    assert engine.get(second["cancel"]).status.value == "waiting"
    # once the first run is over, skip fires again
    engine.send(first["skip"], "done")
    clock.now = T0 + 3 * HOUR
    engine.work(until_idle=True)
    assert engine.get(instance_id_for("skip", T0 + 3 * HOUR)).status.value == "waiting"


# -- the API ------------------------------------------------------------------------------


def test_pause_resume_trigger_backfill_delete(store):
    engine, clock = engine_on(store)
    engine.schedules.add("h", Report(), every=HOUR, overlap="allow")
    engine.schedules.pause("h")
    assert engine.schedules.get("h").next_fire_times() == []
    clock.now = T0 + 5 * HOUR + MIN
    assert engine.schedules.run_due() == 0  # paused: nothing fires, nothing is caught up
    engine.schedules.resume("h")
    assert engine.schedules.get("h").next_tick == T0 + 6 * HOUR
    started = engine.schedules.trigger("h")  # now, out of turn
    assert started == instance_id_for("h", clock.now)
    assert engine.schedules.get("h").next_tick == T0 + 6 * HOUR
    backfilled = engine.schedules.backfill("h", T0 - 3 * HOUR, T0)
    assert backfilled == [instance_id_for("h", T0 - n * HOUR) for n in (3, 2, 1)]
    assert engine.schedules.backfill("h", T0 - 3 * HOUR, T0) == []  # once per tick
    assert [s.id for s in engine.schedules.list()] == ["h"]
    engine.schedules.delete("h")
    assert engine.schedules.list() == []
    with pytest.raises(ScheduleNotFoundError):
        engine.schedules.delete("h")
    assert len(ids(engine)) == 4  # the instances stay


def test_trigger_honours_overlap_skip(store):
    engine, _ = engine_on(store)
    engine.schedules.add("s", Report(wait=True), every=HOUR)
    first = engine.schedules.trigger("s")
    engine.work(until_idle=True)
    assert engine.get(first).status.value == "waiting"
    assert engine.schedules.trigger("s") is None
    assert engine.schedules.get("s").skipped == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cron": "61 * * * *"}, "bad cron expression '61 * * * *'"),
    ({"cron": "every day"}, "bad cron expression"),
    ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({}, "give cron='...' or every=timedelta(...)"),
    ({"cron": "* * * * *", "every": 60}, "one of them"),
    ({"every": 0}, "every= must be positive"),
    ({"every": 60, "jitter": -1}, "durations of 0 or more"),
    ({"every": 60, "catchup": "some"}, "catchup is one of 'skip', 'all', 'latest'"),
    ({"every": 60, "overlap": "queue"}, "overlap is one of 'skip', 'allow', 'cancel'"),
    ({"every": 60, "factory": "nope"}, "no factory 'nope' is registered"),
    ({"every": 60, "start": dt.datetime(2030, 1, 1)}, "start is an aware datetime"),
])
def test_bad_schedules_are_refused_with_the_reason_and_nothing_written(store, kwargs, message):
    engine, _ = engine_on(store)
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*").replace("...", r"\.\.\.")):
        engine.schedules.add("bad", Report(), **kwargs)
    assert engine.schedules.list() == []


def test_data_that_does_not_fit_the_workflow_is_refused(store):
    engine, _ = engine_on(store)
    with pytest.raises(ScheduleError, match=r"the start data does not fit workflow "
                                            r"'sched-report'.*count"):
        engine.schedules.add("bad", Report(count="many"), every=60)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="is an instance of the workflow"):
        engine.schedules.add("bad", "sched-report", every=60)
    assert engine.schedules.list() == []


def test_unknown_workflow_queue_and_duplicate_are_refused(store):
    engine, _ = engine_on(store)
    other = Engine(store, workflows=[])  # runs no workflow at all
    with pytest.raises(UnknownWorkflowError, match="does not run workflow 'sched-report'"):
        other.schedules.add("x", Report(), every=60)
    with pytest.raises(QueueNotFoundError):
        engine.schedules.add("x", Report(), every=60, queue="nowhere")
    engine.schedules.add("x", Report(), every=60)
    with pytest.raises(DuplicateScheduleError):
        engine.schedules.add("x", Report(), cron="* * * * *")
    assert [s.schedule.every for s in engine.schedules.list()] == [dt.timedelta(seconds=60)]


def test_a_factory_that_fails_leaves_the_tick_for_later(store, monkeypatch):
    engine, clock = engine_on(store)
    engine.schedules.add("f", Report(), every=HOUR, factory="sched-day", catchup="all")
    from genflow import schedules

    def broken(data, tick):
        raise RuntimeError("the reporting database is down")

    monkeypatch.setitem(schedules._FACTORIES, "sched-day", broken)
    clock.now = T0 + HOUR
    assert engine.schedules.run_due() == 0
    info = engine.schedules.get("f")
    assert "the reporting database is down" in info.error
    assert info.next_tick == T0 + HOUR  # not lost
    assert info.due_at == T0 + HOUR + schedules.ERROR_BACKOFF  # not retried in a hot loop
    monkeypatch.undo()
    clock.now = T0 + HOUR + schedules.ERROR_BACKOFF
    assert engine.schedules.run_due() == 1
    assert engine.schedules.get("f").error == ""
    assert ids(engine) == [instance_id_for("f", T0 + HOUR)]


def test_ticks_start_on_a_queue(store):
    from genflow.queues import Queue

    engine, clock = engine_on(store)
    engine.queues.define(Queue("reports", concurrency=1))
    engine.schedules.add("q", Report(wait=True), every=HOUR, queue="reports", overlap="allow",
                         catchup="all")
    clock.now = T0 + 2 * HOUR
    engine.work(until_idle=True)
    one, two = ids(engine)
    assert engine.get(one).status.value == "waiting"
    assert engine.queues.place(two).position == 1  # waits for the first to end
    engine.send(one, "done")
    engine.work(until_idle=True)
    assert engine.get(two).status.value == "waiting"


def test_a_priority_without_a_queue_is_refused_as_start_refuses_it(store):
    """A priority orders a queue's admission: on a schedule whose ticks start on no
    queue it would mean nothing, so `add` and `update` refuse it, nothing written."""
    from genflow.queues import Queue

    engine, _ = engine_on(store)
    engine.queues.define(Queue("reports"))
    with pytest.raises(ScheduleError, match=r"schedule 'p': priority=2 orders a queue's "
                                            r"admission.*give the queue too \(queue=\.\.\.\)"):
        engine.schedules.add("p", Report(), every=HOUR, priority=2)
    assert store.list_schedules() == []
    engine.schedules.add("p", Report(), every=HOUR, priority=0)  # (the default: no order)
    engine.schedules.add("q", Report(), every=HOUR, queue="reports", priority=2)
    before = store.list_schedules()
    with pytest.raises(ScheduleError, match="priority=2 orders a queue's admission"):
        engine.schedules.update("q", queue=None, priority=2)
    with pytest.raises(ScheduleError, match="priority=1 orders a queue's admission"):
        engine.schedules.update("p", priority=1)
    assert store.list_schedules() == before
    info = engine.schedules.update("q", queue=None)  # (as `cron` drops `every`)
    assert (info.schedule.queue, info.schedule.priority) == (None, 0)


def test_schedule_spec_round_trips():
    spec = Schedule(id="s", workflow="w", data={"a": [1, {"b": None}]}, cron="*/5 * * * *",
                    timezone="Asia/Tokyo", jitter=dt.timedelta(seconds=1.5),
                    catchup_window=dt.timedelta(hours=2), start=T0, end=T0 + HOUR)
    assert Schedule.unpack(spec.pack()) == spec


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.integers(-120, 400)), min_size=1,
                      max_size=25),
       every=st.sampled_from([30, 60, 97]),
       jitter=st.sampled_from([0, 20]),
       kind=st.sampled_from(["memory", "sqlite"]))
def test_each_tick_once_whatever_the_workers_and_their_clocks(tmp_path_factory, steps, every,
                                                             jitter, kind):
    """Three workers, each with a clock of its own that jumps forwards and back,
    fire in a random order: every tick due by the latest clock started exactly once."""
    if kind == "memory":
        shared = MemoryStore()
        stores = [shared] * 3
    else:
        path = tmp_path_factory.mktemp("ticks") / "s.db"
        stores = [SQLiteStore(path) for _ in range(3)]
    clocks = [FakeClock(T0) for _ in range(3)]
    engines = [Engine(s, clock=c) for s, c in zip(stores, clocks, strict=True)]
    engines[0].schedules.add("p", Report(), every=every, jitter=jitter, catchup="all",
                             overlap="allow")
    schedule = engines[0].schedules.get("p").schedule
    created: list[str] = []
    latest = T0
    for worker, seconds in steps:
        clocks[worker].advance(seconds=seconds)
        latest = max(latest, clocks[worker].now)
        turn = engines[worker].schedules
        firings = turn.engine.store.fire_schedules(
            clocks[worker].now, _decider(turn), workflows=turn.engine.runs())
        created += [i for f in firings for i in f.created]
    assert len(created) == len(set(created))  # no tick twice
    expected = []
    tick = schedule.next_after(T0)
    while tick is not None and schedule.fires_at(tick) <= latest:
        expected.append(instance_id_for("p", tick))
        tick = schedule.next_after(tick)
    assert sorted(created) == sorted(expected)  # none missed
    assert sorted(r.id for r in stores[0].list()) == sorted(expected)
    for s in {id(s): s for s in stores}.values():
        s.close()


def _decider(schedules):
    from genflow.schedules import _Turn

    return _Turn(schedules.engine, schedules.engine.clock()).decide


def test_a_schedule_that_cannot_fire_is_set_aside_and_the_worker_goes_on(store, monkeypatch):
    from genflow import schedules

    engine, clock = engine_on(store)
    engine.schedules.add("broken", Report(), every=HOUR)
    engine.schedules.add("fine", Report(), every=HOUR)

    def explode(self, record, schedule, last_status):
        if schedule.id == "broken":
            raise ValueError("a bug in a policy")
        return real(self, record, schedule, last_status)

    real = schedules._Turn._ticks
    monkeypatch.setattr(schedules._Turn, "_ticks", explode)
    clock.now = T0 + HOUR
    engine.work(until_idle=True)
    assert ids(engine) == [instance_id_for("fine", T0 + HOUR)]
    info = engine.schedules.get("broken")
    assert "a bug in a policy" in info.error
    assert info.due_at == T0 + HOUR + schedules.ERROR_BACKOFF


def test_pause_wins_over_a_concurrent_tick(store, monkeypatch):
    engine, clock = engine_on(store)
    engine.schedules.add("h", Report(), every=HOUR)
    clock.now = T0 + HOUR
    real = store.save_schedule
    calls = []

    def fire_first(record, *, expected_version):  # a worker fires a tick in between
        if not calls:
            calls.append(1)
            engine.schedules.run_due()
        return real(record, expected_version=expected_version)

    monkeypatch.setattr(store, "save_schedule", fire_first)
    assert engine.schedules.pause("h").paused
    assert engine.schedules.get("h").paused and engine.schedules.get("h").fired == 1


# -- updating in place ----------------------------------------------------------------------


def test_update_changes_the_spec_in_place_keeping_id_counts_and_last_run(store):
    engine, clock = engine_on(store)
    engine.schedules.add("rep", Report(count=1), every=HOUR)
    clock.now = T0 + HOUR + MIN
    assert engine.schedules.run_due() == 1
    before = engine.schedules.get("rep")
    assert (before.fired, before.last_instance) == (1, "rep@2030-01-01T01:00:00Z")
    info = engine.schedules.update("rep", Report(count=2), cron="30 * * * *",
                                   timezone="Europe/Paris", jitter=0, overlap="allow",
                                   catchup_window=MIN * 5, paused=False)
    again = engine.schedules.get("rep")
    assert info == again and again.version == before.version + 1
    assert (again.fired, again.skipped, again.last_tick, again.last_instance) == (
        before.fired, before.skipped, before.last_tick, before.last_instance)
    spec = again.schedule
    assert (spec.cron, spec.every, spec.timezone, spec.overlap.value, spec.catchup_window,
            spec.data["count"]) == ("30 * * * *", None, "Europe/Paris", "allow", MIN * 5, 2)
    assert again.next_tick == again.due_at == T0 + HOUR + 30 * MIN  # from now, new spec
    # what is not given stays; paused drops the due time, as pause does
    paused = engine.schedules.update("rep", paused=True)
    assert paused.paused and paused.due_at is None and paused.schedule == spec
    resumed = engine.schedules.update("rep", every=15 * MIN, paused=False)
    assert resumed.schedule.cron is None and resumed.schedule.data["count"] == 2
    assert resumed.due_at == T0 + HOUR + 15 * MIN
    clock.now = T0 + HOUR + 16 * MIN
    assert engine.schedules.run_due() == 1
    assert engine.schedules.get("rep").fired == 2


@pytest.mark.parametrize(("changes", "error", "words"), [
    ({"cron": "not a cron"}, ScheduleError, "bad cron expression"),
    ({"timezone": "Mars/Olympus"}, ScheduleError, "unknown time zone"),
    ({"every": dt.timedelta(0)}, ScheduleError, "must be positive"),
    ({"jitter": -1}, ScheduleError, "0 or more"),
    ({"overlap": "sometimes"}, ScheduleError, "overlap"),
    ({"queue": "no-such-queue"}, QueueNotFoundError, "no-such-queue"),
    ({"paused": "yes"}, ScheduleError, "paused is True or False"),
    ({"workflow": "other"}, ScheduleError, "update takes"),
    ({"data": {"day": "x"}}, UnknownWorkflowError,
     "{'day': 'x'} is of type dict, not a workflow: give an instance of a workflow class"),
    ({"cron": "0 0 31 2 *"}, ScheduleError, "bad cron expression"),  # never comes
    ({"jitter": dt.timedelta(days=36526)}, ScheduleError, "at most 36525 days"),
    ({"every": 8e13}, ScheduleError, "at most 36525 days"),
    ({"catchup_window": 1e300}, ScheduleError, "at most 36525 days"),
])
def test_update_refuses_what_add_refuses_and_leaves_the_row(store, changes, error, words):
    engine, _ = engine_on(store)
    engine.schedules.add("rep", Report(), every=HOUR)
    before = engine.schedules.get("rep")
    with pytest.raises(error, match=words):
        engine.schedules.update("rep", **changes)
    assert engine.schedules.get("rep") == before
    with pytest.raises(ScheduleNotFoundError):
        engine.schedules.update("nobody", every=HOUR)


def test_ticks_end_where_datetimes_do():
    """A tick past the year 9999 is no tick (the schedule has ended), not an
    OverflowError at every read of it."""
    from genflow.schedules import MAX_DURATION, Schedule

    start = dt.datetime(9900, 1, 1, tzinfo=dt.UTC)
    schedule = Schedule(id="far", workflow="w", data={}, every=MAX_DURATION, start=start,
                        jitter=MAX_DURATION)
    assert schedule.next_after(start) is None and schedule.upcoming(start, 100) == [start]
    assert schedule.fires_at(start) > start
    last = dt.datetime.max.replace(tzinfo=dt.UTC)
    assert Schedule(id="x", workflow="w", data={}, jitter=MAX_DURATION).fires_at(last) == last


# -- each run's deadline ------------------------------------------------------------------


def test_a_runs_deadline_cancels_it_so_overlap_skip_fires_again(store):
    """`deadline=`: each instance a tick starts is cancelled that long after its
    start, as `Engine.start(deadline=...)` cancels it; a hung run then holds back
    one tick (`overlap="skip"`), not every later one."""
    engine, clock = engine_on(store)
    engine.schedules.add("guarded", Report(wait=True), every=HOUR, overlap="skip",
                         deadline=dt.timedelta(minutes=30))
    engine.schedules.add("unguarded", Report(wait=True), every=HOUR, overlap="skip")
    clock.now = T0 + HOUR + 5 * dt.timedelta(seconds=1)  # a worker 5 s late
    engine.work(until_idle=True)
    first = instance_id_for("guarded", T0 + HOUR)
    assert engine.get(first).status.value == "waiting"
    assert engine.get(first).state.deadline == clock.now + dt.timedelta(minutes=30)
    assert engine.get(instance_id_for("unguarded", T0 + HOUR)).state.deadline is None
    clock.now = T0 + HOUR + 29 * MIN
    engine.work(until_idle=True)
    assert engine.get(first).status.value == "waiting"
    clock.now = T0 + HOUR + 31 * MIN
    engine.work(until_idle=True)
    assert engine.get(first).status.value == "cancelled"
    clock.now = T0 + 2 * HOUR
    engine.work(until_idle=True)
    assert engine.get(instance_id_for("guarded", T0 + 2 * HOUR)).status.value == "waiting"
    assert engine.schedules.get("guarded").skipped == 0
    with pytest.raises(InstanceNotFoundError):  # the hung run holds it back
        engine.get(instance_id_for("unguarded", T0 + 2 * HOUR))
    assert engine.schedules.get("unguarded").skipped == 1


def test_a_deadline_applies_to_triggered_and_backfilled_runs_and_is_updated(store):
    engine, clock = engine_on(store)
    engine.schedules.add("s", Report(wait=True), every=HOUR, overlap="allow", deadline=600)
    assert engine.schedules.get("s").schedule.deadline == dt.timedelta(minutes=10)
    triggered = engine.schedules.trigger("s")
    assert triggered is not None
    assert engine.get(triggered).state.deadline == T0 + dt.timedelta(minutes=10)
    clock.now = T0 + 3 * HOUR
    [filled, *_] = engine.schedules.backfill("s", T0, T0 + 2 * HOUR)
    assert engine.get(filled).state.deadline == clock.now + dt.timedelta(minutes=10)
    engine.schedules.update("s", deadline=dt.timedelta(hours=2))
    assert engine.schedules.get("s").schedule.deadline == dt.timedelta(hours=2)
    later = engine.schedules.trigger("s")
    assert later is not None
    assert engine.get(later).state.deadline == clock.now + dt.timedelta(hours=2)
    engine.schedules.update("s", deadline=None)  # None: no deadline from now on
    assert engine.schedules.get("s").schedule.deadline is None


@pytest.mark.parametrize(("deadline", "words"), [
    (0, "deadline is a duration above 0"),
    (-60, "deadline is a duration above 0"),
    (dt.timedelta(0), "deadline is a duration above 0"),
    ("1h", "deadline is a timedelta or a number of seconds, not '1h'"),
    (True, "deadline is a timedelta or a number of seconds, not True"),
    (float("nan"), "deadline is a timedelta or a number of seconds"),
    (dt.timedelta(days=36526), "deadline is at most 36525 days"),
])
def test_a_bad_deadline_is_refused_by_add_and_update_with_nothing_changed(store, deadline,
                                                                          words):
    engine, _ = engine_on(store)
    with pytest.raises(ScheduleError, match=words):
        engine.schedules.add("bad", Report(), every=60, deadline=deadline)
    assert engine.schedules.list() == []
    engine.schedules.add("rep", Report(), every=HOUR, deadline=60)
    before = engine.store.get_schedule("rep")
    with pytest.raises(ScheduleError, match=words):
        engine.schedules.update("rep", deadline=deadline)
    assert engine.store.get_schedule("rep") == before


def test_a_schedule_stored_before_deadlines_reads_as_having_none():
    """A spec packed by a genflow without `deadline` (no such key) reads back."""
    import msgpack

    spec = Schedule(id="s", workflow="w", data={}, every=HOUR)
    plain = msgpack.unpackb(spec.pack())
    del plain["deadline"]
    assert Schedule.unpack(msgpack.packb(plain)) == spec
    dated = attrs.evolve(spec, deadline=dt.timedelta(minutes=5))
    assert Schedule.unpack(dated.pack()) == dated
