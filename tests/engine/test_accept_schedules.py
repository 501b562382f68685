"""Acceptance: schedules, queues and retention as a new user drives them. A
cron across the autumn's DST change fires a fixed-hour tick once; every bad
argument is a `ScheduleError` (never a TypeError, OverflowError or
ValueError) and leaves the store as it was."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sched_app import Report

from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import ScheduleError
from genflow.queues import Queue
from genflow.retention import Retention
from genflow.schedules import Schedule, factory
from genflow.stores import SQLiteStore

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
NAIVE = dt.datetime(2030, 1, 1)


def local_ticks(cron: str, start: dt.datetime, n: int) -> list[str]:
    schedule = Schedule("s", "w", {}, cron=cron, timezone="Europe/Paris")
    out, tick = [], start
    for _ in range(n):
        tick = schedule.next_after(tick)
        out.append(tick.astimezone(PARIS).strftime("%d %H:%M%z"))
    return out


def test_a_fixed_hour_fires_once_on_the_night_the_clocks_go_back():
    # 27 October 2030: Paris goes from 03:00+02:00 back to 02:00+01:00
    start = dt.datetime(2030, 10, 25, 12, tzinfo=UTC)
    assert local_ticks("30 2 * * *", start, 4) == [
        "26 02:30+0200", "27 02:30+0200", "28 02:30+0100", "29 02:30+0100"]
    schedule = Schedule("s", "w", {}, cron="30 2 * * *", timezone="Europe/Paris")
    after_both = dt.datetime(2030, 10, 27, 1, 45, tzinfo=UTC)  # 02:45+01:00
    assert schedule.latest_at_or_before(after_both) == dt.datetime(2030, 10, 27, 0, 30,
                                                                   tzinfo=UTC)


def test_a_wildcard_or_stepped_hour_keeps_its_cadence_through_the_repeated_hour():
    start = dt.datetime(2030, 10, 26, 23, 0, tzinfo=UTC)  # 01:00+02:00
    assert local_ticks("30 * * * *", start, 3) == ["27 01:30+0200", "27 02:30+0200",
                                                   "27 02:30+0100"]
    assert local_ticks("*/30 * * * *", start, 4) == ["27 01:30+0200", "27 02:00+0200",
                                                     "27 02:30+0200", "27 02:00+0100"]


def test_the_autumn_night_starts_one_instance(tmp_path):
    clock = FakeClock(dt.datetime(2030, 10, 26, 12, tzinfo=UTC))
    engine = Engine(SQLiteStore(tmp_path / "s.db"), clock=clock)
    engine.schedules.add("night", Report(), cron="30 2 * * *", timezone="Europe/Paris",
                         catchup="all")
    for _ in range(24 * 4):
        clock.advance(dt.timedelta(minutes=15))
        engine.work(until_idle=True)
    assert [r.id for r in engine.schedules.instances("night")] == ["night@2030-10-27T00:30:00Z"]


def _rows(path) -> list:
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        tables = [t for (t,) in connection.execute(
            "select name from sqlite_master where type='table' order by name")]
        return [(t, sorted(map(repr, connection.execute(f"select * from {t}"))))
                for t in tables]
    finally:
        connection.close()


BAD = {
    "backfill naive": lambda e: e.schedules.backfill("ok", NAIVE, NAIVE),
    "backfill reversed": lambda e: e.schedules.backfill(
        "ok", dt.datetime(2030, 2, 2, tzinfo=UTC), dt.datetime(2030, 2, 1, tzinfo=UTC)),
    "schedule id surrogate": lambda e: e.schedules.add("a\ud800", Report(), every=60),
    "schedule priority huge": lambda e: e.schedules.add("p", Report(), every=60,
                                                        priority=2**70),
    "schedule priority bool": lambda e: e.schedules.add("p", Report(), every=60,
                                                        priority=True),
    "schedule end before start": lambda e: e.schedules.add(
        "p", Report(), every=60, start=dt.datetime(2031, 1, 1, tzinfo=UTC),
        end=dt.datetime(2030, 1, 1, tzinfo=UTC)),
    "every nan": lambda e: e.schedules.add("p", Report(), every=float("nan")),
    "every infinite": lambda e: e.schedules.add("p", Report(), every=float("inf")),
    "jitter huge": lambda e: e.schedules.add("p", Report(), every=60, jitter=1e300),
    "queue concurrency bool": lambda e: e.queues.define(Queue("b", concurrency=True)),
    "queue concurrency huge": lambda e: e.queues.define(Queue("b", concurrency=2**70)),
    "queue per text": lambda e: e.queues.define(Queue("b", rate=1, per="1m")),
    "queue per nan": lambda e: e.queues.define(Queue("b", rate=1, per=float("nan"))),
    "queue per infinite": lambda e: e.queues.define(Queue("b", rate=1, per=float("inf"))),
    "queue name NUL": lambda e: e.queues.define(Queue("a\x00")),
    "queue name surrogate": lambda e: e.queues.define(Queue("a\ud800")),
    "queue key int": lambda e: e.queues.define(Queue("b", per_key=1, key=5)),
    "queue page limit 0": lambda e: e.queues.waiting("q", limit=0),
    "queue page limit negative": lambda e: e.queues.entries("q", limit=-1),
    "start priority huge": lambda e: e.start(Report(), queue="q", priority=2**70),
    "retention length bool": lambda e: Retention(journal_length=True),
    "purge negative age": lambda e: e.retention.purge(dt.timedelta(days=-1)),
    "purge age as int": lambda e: e.retention.purge(7),
    "purge naive now": lambda e: e.retention.purge(dt.timedelta(1), now=NAIVE),
    "retention run naive now": lambda e: e.retention.run(now=NAIVE),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_schedule_error_and_writes_nothing(tmp_path, case):
    path = tmp_path / "s.db"
    engine = Engine(SQLiteStore(path), clock=FakeClock(dt.datetime(2030, 3, 1, tzinfo=UTC)))
    engine.schedules.add("ok", Report(), every=dt.timedelta(hours=1))
    engine.queues.define(Queue("q", concurrency=2))
    engine.start(Report(), id="done")
    engine.work(until_idle=True)
    engine.retention.add(Retention(finished=dt.timedelta(days=1)))
    before = _rows(path)
    with pytest.raises(ScheduleError):
        BAD[case](engine)
    assert _rows(path) == before


def test_purge_takes_one_status_as_text(tmp_path):
    clock = FakeClock(dt.datetime(2030, 3, 1, tzinfo=UTC))
    engine = Engine(SQLiteStore(tmp_path / "s.db"), clock=clock)
    engine.start(Report(), id="done")
    engine.work(until_idle=True)
    later = dt.datetime.now(UTC) + dt.timedelta(days=2)
    report = engine.retention.purge(dt.timedelta(days=1), statuses="finished", now=later,
                                    dry_run=True)
    assert report.instances == 1


_FACTORY_DOWN = {"down": False}


@factory("accept-flaky")
def _flaky(data: Report, tick: dt.datetime) -> Report:
    if _FACTORY_DOWN["down"]:
        raise ConnectionError("db down")
    return data


def test_a_failing_factory_is_named_once_and_the_tick_fires_when_it_mends(tmp_path):
    clock = FakeClock(dt.datetime(2030, 1, 1, tzinfo=UTC))
    engine = Engine(SQLiteStore(tmp_path / "s.db"), clock=clock)
    engine.schedules.add("s", Report(), every=dt.timedelta(minutes=10), factory="accept-flaky")
    _FACTORY_DOWN["down"] = True
    try:
        clock.advance(dt.timedelta(minutes=10))
        engine.work(until_idle=True)
        assert engine.schedules.get("s").error == "ConnectionError: db down"
    finally:
        _FACTORY_DOWN["down"] = False
    clock.advance(dt.timedelta(minutes=1))
    engine.work(until_idle=True)
    assert engine.schedules.get("s").error == ""
    assert [r.id for r in engine.schedules.instances("s")] == ["s@2030-01-01T00:10:00Z"]
