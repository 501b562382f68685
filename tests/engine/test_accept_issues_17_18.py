"""Acceptance of issues 17 (schedules, queues, retention) and 18 (logs, traces,
console, HTTP API) as their users drive them, on every store: what a user
gets wrong is a `ScheduleError` that says what to do, with nothing written;
queue limits hold across worker processes on one SQLite file."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sched_app import Job, Report

from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import ScheduleError
from genflow.queues import Queue
from genflow.stores import SQLiteStore

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
WORKER = Path(__file__).resolve().parents[1] / "support" / "sched_worker.py"


def engine_on(store) -> tuple[Engine, FakeClock]:
    clock = FakeClock(T0)
    return Engine(store, clock=clock), clock


def stored(engine: Engine) -> tuple:
    """What a refused call must leave as it was: instances, schedules, queue entries."""
    store = engine.store
    instances = sorted((r.id, r.status, r.version) for r in store.list(limit=1000))
    schedules = sorted((s.id, s.version, s.paused) for s in store.list_schedules())
    queues = sorted((q.name, engine.queues.counts(q.name)) for q in store.list_queues())
    return instances, schedules, queues


@pytest.mark.parametrize("paused", ["yes", 1, None, "false"])
def test_a_schedule_added_with_paused_not_a_bool_is_refused(store, paused):
    engine, _ = engine_on(store)
    engine.schedules.add("kept", Report(), every=60)
    before = stored(engine)
    with pytest.raises(ScheduleError, match=r"schedule 'n': paused is True or False, not "):
        engine.schedules.add("n", Report(), every=60, paused=paused)
    assert stored(engine) == before
    assert engine.schedules.add("n", Report(), every=60, paused=True).paused is True


def test_a_key_that_cannot_be_computed_refuses_the_start_and_writes_nothing(store):
    engine, _ = engine_on(store)

    def tenant_of(job: Job) -> str:
        return {"t0": "acme"}[job.tenant]  # a lookup the user's data can miss

    engine.queues.define(Queue("by-fn", per_key=1, key=tenant_of))
    engine.queues.define(Queue("by-field", per_key=1, key="customer"))
    engine.start(Job(tenant="t0"), queue="by-fn", id="fine")
    before = stored(engine)
    with pytest.raises(ScheduleError, match=r"queue 'by-fn': its key function raised "
                                            r"KeyError: 't9' on the data Job"):
        engine.start(Job(tenant="t9"), queue="by-fn", id="no-key")
    with pytest.raises(ScheduleError, match="queue 'by-field': the data Job has no field "
                                            "'customer' to key it by"):
        engine.start(Job(), queue="by-field", id="no-field")
    assert stored(engine) == before
    # a schedule whose ticks go on that queue: refused when it is made, nothing written
    with pytest.raises(ScheduleError, match="its first tick could not start an instance: "
                                            "ScheduleError: queue 'by-fn'"):
        engine.schedules.add("hourly", Job(tenant="t9"), every=3600, queue="by-fn")
    assert stored(engine) == before
    engine.work(until_idle=True)
    assert engine.get("fine").status.value == "finished"


def test_queue_limits_hold_across_worker_processes_on_one_sqlite_file(tmp_path):
    path = tmp_path / "q.db"
    log = tmp_path / "steps.log"
    total, keys = 48, 6
    with SQLiteStore(path) as store:
        engine = Engine(store)
        engine.queues.define(Queue("tenants", concurrency=2, per_key=1, key="tenant"))
        for n in range(total):
            engine.start(Job(tenant=f"t{n % keys}", n=n, pause=0.01, log=str(log)),
                         queue="tenants", id=f"job{n:02d}")
    workers = [subprocess.Popen([sys.executable, str(WORKER), f"sqlite:///{path}", str(total)],
                                stdout=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for proc in workers:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
    processed = [int(line.split()[1]) for proc in workers
                 for line in proc.communicate()[0].splitlines() if line.startswith("processed")]
    assert len(processed) == 3
    events = []
    for line in log.read_text().splitlines():
        kind, _n, tenant, at = line.split()
        events.append((float(at), 1 if kind == "start" else -1, tenant))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    running, per_key, peak, peak_key = 0, dict.fromkeys(map("t{}".format, range(keys)), 0), 0, 0
    for _, delta, tenant in events:
        running += delta
        per_key[tenant] += delta
        peak, peak_key = max(peak, running), max(peak_key, per_key[tenant])
    assert sum(1 for e in events if e[1] == 1) >= total  # every job ran (a step at least once)
    assert peak <= 2 and peak_key <= 1, (peak, peak_key)
    with SQLiteStore(path) as store:
        assert store.count(status="finished") == total
        assert Engine(store).queues.counts("tenants") == (0, 0)


@pytest.mark.parametrize(("overlap", "started", "skipped"), [("skip", 1, 4), ("allow", 5, 0)])
def test_run_all_after_downtime_goes_through_the_overlap_policy(store, overlap, started, skipped):
    engine, clock = engine_on(store)
    engine.schedules.add("hourly", Report(), every=dt.timedelta(hours=1), catchup="all",
                         overlap=overlap)
    clock.advance(dt.timedelta(hours=5, minutes=30))  # no worker ran: five ticks missed
    engine.work(until_idle=True)
    ids = [r.id for r in engine.schedules.instances("hourly")]
    assert ids == [f"hourly@2030-01-01T{h:02d}:00:00Z" for h in range(1, 1 + started)]
    info = engine.schedules.get("hourly")
    assert (info.fired, info.skipped) == (started, skipped)
    assert info.next_tick == T0 + dt.timedelta(hours=6)


@pytest.mark.parametrize("every", [0.5, 1.0, dt.timedelta(microseconds=1)])
def test_until_idle_returns_beside_a_schedule_of_a_second_or_less(store, every):
    """A schedule never runs out of ticks: `work(until_idle=True)` fires the ticks due
    now and returns (it waited for the next tick, for ever, under a FakeClock that
    its sleep moves on, or a real one)."""
    engine, clock = engine_on(store)
    engine.schedules.add("often", Report(), every=every)
    clock.advance(dt.timedelta(seconds=1))
    assert engine.work(until_idle=True) >= 2  # the tick due now, and its instance run
    fired = engine.schedules.get("often").fired
    assert fired == 1
    assert clock() == T0 + dt.timedelta(seconds=1)  # it did not sleep on to later ticks
    assert engine.work(until_idle=True) == 0  # nothing due now: idle at once
    if isinstance(every, dt.timedelta):
        return  # (on the system's clock a tick every microsecond is always due)
    real = Engine(engine.store)  # the system clock: the tick due now, then idle
    real.schedules.add("real", Report(), every=every)
    time.sleep(every + 0.05)
    assert real.work(until_idle=True) >= 2  # returned: it did not wait for tick after tick
    assert real.schedules.get("real").fired in (1, 2)  # (a slow store: one more came due)


def test_a_cron_with_a_year_fires_its_last_tick_then_ends(store):
    """croniter's seventh field is the year: after its last tick the schedule ends,
    as one past its `end` does (it raised croniter's CroniterBadDateError from
    `next_fire_times`, and the worker never fired the last tick, recording that
    error on the schedule again every minute)."""
    clock = FakeClock(dt.datetime(2030, 12, 31, 23, 0, tzinfo=dt.UTC))
    engine = Engine(store, clock=clock)
    info = engine.schedules.add("new-year", Report(), cron="0 0 1 1 * 0 2031")
    assert info.next_fire_times(3) == [dt.datetime(2031, 1, 1, tzinfo=dt.UTC)]
    clock.advance(dt.timedelta(hours=1))  # midnight: the last tick is due
    engine.work(until_idle=True)
    info = engine.schedules.get("new-year")
    assert (info.fired, info.error, info.next_tick) == (1, "", None)
    assert [r.id for r in engine.schedules.instances("new-year")] == [
        "new-year@2031-01-01T00:00:00Z"]
    assert engine.get("new-year@2031-01-01T00:00:00Z").status.value == "finished"
    assert info.next_fire_times(2) == []
    assert engine.schedules.trigger("new-year") is not None  # by hand it still fires


@pytest.mark.parametrize("catchup", ["skip", "all", "latest"])
def test_a_jitter_longer_than_the_interval_still_fires_every_tick_in_order(catchup):
    """Jitter is capped, tick by tick, at the time to the next tick (as Temporal caps
    it). Uncapped, an hour's jitter on a minute's interval fired 3 ticks of 360
    in six hours under `skip`, and none was counted as skipped."""
    from genflow.stores import MemoryStore

    clock = FakeClock(T0)
    engine = Engine(MemoryStore(), clock=clock)
    info = engine.schedules.add("jittery", Report(), every=60, jitter=dt.timedelta(hours=1),
                                overlap="allow", catchup=catchup)
    times = info.next_fire_times(50)
    assert times == sorted(times) and len(set(times)) == 50
    for n, moment in enumerate(times):  # each in [its tick, the next tick)
        assert T0 + dt.timedelta(minutes=n + 1) <= moment < T0 + dt.timedelta(minutes=n + 2)
    for _ in range(2 * 60 * 2):  # two hours, a worker round every 30 s
        clock.advance(seconds=30)
        engine.work(until_idle=True)
    info = engine.schedules.get("jittery")
    assert (info.fired, info.skipped) == (119, 0)
    assert len(engine.schedules.instances("jittery", limit=500)) == 119
    # a jitter within the interval is as it was: spread over all of it
    daily = engine.schedules.add("daily", Report(), cron="0 2 * * *",
                                 jitter=dt.timedelta(minutes=5)).next_fire_times(20)
    assert all(dt.timedelta(0) <= t - t.replace(minute=0, second=0, microsecond=0)
               < dt.timedelta(minutes=5) for t in daily)
    assert max(t.minute for t in daily) >= 3


@pytest.mark.parametrize(("given", "words"), [
    ({"every": 10**30}, "every is at most 36525 days (100 years), not 10"),
    ({"every": 60, "jitter": 1e300}, "jitter is at most 36525 days (100 years), not 1e+300"),
    ({"every": 60, "catchup_window": 1e20}, "catchup_window is at most 36525 days"),
    ({"every": float("nan")}, "every is a timedelta or a number of seconds, not nan"),
])
def test_a_number_of_seconds_too_long_says_the_limit(store, given, words):
    engine, _ = engine_on(store)
    before = stored(engine)
    with pytest.raises(ScheduleError, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("+", r"\+")):
        engine.schedules.add("long", Report(), **given)  # (it said "is a number of seconds")
    assert stored(engine) == before
