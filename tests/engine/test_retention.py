"""Retention on every store: ended instances deleted with everything that is
theirs, in bounded batches; policies per workflow; journal trims; the worker
applies them; `genflow purge`."""

from __future__ import annotations

import datetime as dt

import pytest
from sched_app import Job, Report

from genflow.engine import Engine
from genflow.errors import InstanceNotFoundError, ScheduleError
from genflow.queues import Queue
from genflow.retention import Retention
from genflow.stores.base import utcnow

HOUR = dt.timedelta(hours=1)


def later(hours: float = 2) -> dt.datetime:
    return utcnow() + dt.timedelta(hours=hours)


def setup_instances(engine: Engine) -> dict[str, list[str]]:
    """Finished, cancelled, failed, waiting and queued instances of two workflows."""
    engine.queues.define(Queue("q", concurrency=1))
    made: dict[str, list[str]] = {"finished": [], "cancelled": [], "waiting": [], "queued": []}
    for n in range(3):
        made["finished"].append(engine.start(Job(n=n), id=f"fin{n}"))
    made["finished"].append(engine.start(Report(), id="report"))
    for n in range(2):
        made["cancelled"].append(engine.start(Job(n=n, hold=True), id=f"can{n}"))
        engine.cancel(f"can{n}")
    made["waiting"].append(engine.start(Job(hold=True), id="wait"))
    made["queued"].append(engine.start(Job(), id="queued", queue="q"))
    return made


def test_purge_deletes_old_ended_instances_and_their_rows(store):
    engine = Engine(store, journal=True)
    made = setup_instances(engine)
    assert store.journal("fin0")
    assert engine.retention.purge(HOUR).instances == 0  # all are young
    dry = engine.retention.purge(HOUR, now=later(), dry_run=True, keep_ids=True)
    assert sorted(dry.ids) == sorted(made["finished"] + made["cancelled"])
    assert len(store.list()) == 8  # a dry run deletes nothing
    report = engine.retention.purge(HOUR, statuses=["cancelled"], now=later())
    assert report.instances == 2
    report = engine.retention.purge(HOUR, workflow="sched-job", now=later())
    assert report.instances == 3
    assert sorted(r.id for r in store.list()) == ["queued", "report", "wait"]
    for gone in ("fin0", "can1"):
        with pytest.raises(InstanceNotFoundError):
            store.get(gone)
        assert store.journal(gone) == []
    assert engine.queues.place("queued").position == 1  # the living keep everything


def test_a_purged_queued_instance_leaves_its_queue(store):
    engine = Engine(store)
    engine.queues.define(Queue("q", concurrency=1))
    engine.start(Job(), queue="q", id="a")
    engine.cancel("a")
    engine.retention.purge(dt.timedelta(0), now=later())
    assert engine.queues.place("a") is None
    assert engine.queues.counts("q") == (0, 0)


def test_purge_runs_in_bounded_batches(store):
    engine = Engine(store)
    for n in range(25):
        engine.start(Job(n=n), id=f"j{n:02d}")
    engine.retention.batch = 10
    report = engine.retention.purge(dt.timedelta(0), now=later(), max_batches=2,
                                    keep_ids=True)
    assert report.instances == 20
    assert list(report.ids) == [f"j{n:02d}" for n in range(20)]  # oldest first
    assert engine.retention.purge(dt.timedelta(0), now=later()).instances == 5


def test_a_leased_instance_is_left_alone(store):
    engine = Engine(store)
    engine.start(Job(), id="busy")
    now = utcnow()
    store.acquire("busy", "someone", now, now + HOUR)
    assert engine.retention.purge(dt.timedelta(0), now=later(0.5)).instances == 0
    assert store.get("busy")


def test_policies_per_workflow_and_a_default(store):
    engine = Engine(store, journal=True)
    setup_instances(engine)
    engine.retention.add(Retention(finished=HOUR, cancelled=HOUR))
    engine.retention.add(Retention(workflow="sched-report", finished=dt.timedelta(days=30)))
    with pytest.raises(ScheduleError, match="exists already"):
        engine.retention.add(Retention(workflow="sched-report"))
    report = engine.retention.run(now=later())
    assert report.instances == 5
    # the report is kept 30 days by its own policy, not by the default's hour
    assert sorted(r.id for r in store.list()) == ["queued", "report", "wait"]
    assert engine.retention.run(now=later(24 * 31)).instances == 1


def test_journal_trimmed_by_length_and_age(store):
    engine = Engine(store, journal=True)
    wait = engine.start(Job(hold=True), id="wait")
    before = len(store.journal(wait))
    assert before > 3
    assert store.trim_journal(keep=2) == before - 2
    assert [e.seq for e in store.journal(wait)] == [before - 1, before]
    assert store.trim_journal(before=utcnow() - HOUR) == 0
    assert store.trim_journal(before=later()) == 1  # the newest entry stays
    assert [e.seq for e in store.journal(wait)] == [before]
    engine.send(wait, "done")  # the journal's numbering goes on after a trim
    assert store.journal(wait)[1].seq == before + 1


def test_the_worker_applies_the_policies_at_most_every_so_often(store):
    engine = Engine(store)
    engine.retention.add(Retention(finished=dt.timedelta(0)))
    engine.retention.every = dt.timedelta(hours=1)
    engine.start(Job(), id="a")
    engine.work(until_idle=True)  # ran the policy: "a" ended just before
    engine.start(Job(), id="b")
    engine.work(until_idle=True)  # within the hour: not again
    ids = sorted(r.id for r in store.list())
    assert "b" in ids
    engine.retention._last = None  # an hour has passed
    engine.work(until_idle=True)
    assert sorted(r.id for r in store.list()) == []


def test_bad_policies_are_refused():
    with pytest.raises(ScheduleError, match=r"Retention\.finished is a timedelta"):
        Retention(finished=5)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="journal_length is a count"):
        Retention(journal_length=-1)


def test_only_ended_instances_are_purged(store):
    with pytest.raises(ScheduleError, match="only ended instances are purged"):
        Engine(store).retention.purge(HOUR, statuses=["waiting"])
