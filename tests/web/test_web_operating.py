"""Schedules and queues in the console, the HTTP API and the report, over every store.

The store's page of a queue's entries (`Store.queue_entries`) and the readers
built on it (`Queues.waiting`, `Queues.entries`, `Schedules.instances`) are
checked on memory, SQLite and PostgreSQL; the API through a real server on
loopback, every refused request changing nothing (instances and schedules).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sched_app import Job, Report

from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import QueueNotFoundError, ScheduleError
from genflow.queues import Queue
from genflow.schedules import instance_id_for, schedule_of
from genflow.stores import MemoryStore, SQLiteStore

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
API = "/api/v1"


def engine_on(store) -> tuple[Engine, FakeClock]:
    clock = FakeClock(T0)
    return Engine(store, [Report, Job], clock=clock), clock


def queued(engine: Engine, queue: str, n: int, *, priority=lambda i: 0, hold=True) -> list[str]:
    return [engine.start(Job(tenant=f"t{i % 3}", n=i, hold=hold), id=f"job-{i:03d}",
                         queue=queue, priority=priority(i)) for i in range(n)]


# -- the store's page of a queue, and the readers over it ------------------------------------


def test_queue_entries_in_admission_order_paged_by_keyset(store) -> None:
    engine, _ = engine_on(store)
    engine.queues.define(Queue("jobs", concurrency=2))
    engine.queues.define(Queue("other"))
    ids = queued(engine, "jobs", 7, priority=lambda i: -1 if i == 5 else i % 2)
    engine.start(Job(), id="elsewhere", queue="other")
    # admission order: priority (lower first), then arrival
    order = ["job-005", "job-000", "job-002", "job-004", "job-006", "job-001", "job-003"]
    page = store.queue_entries("jobs", waiting=True, limit=3)
    assert [e.instance_id for e in page] == order[:3]
    rest = store.queue_entries("jobs", waiting=True, after=(page[-1].priority, page[-1].seq))
    assert [e.instance_id for e in page + rest] == order
    assert store.queue_entries("jobs", waiting=False) == []
    assert store.queue_entries("nope", waiting=True) == []
    engine.queues.admit()
    held = store.queue_entries("jobs", waiting=False)
    assert [e.instance_id for e in held] == order[:2]
    assert all(e.admitted_at is not None and e.queue == "jobs" for e in held)
    assert [e.instance_id for e in store.queue_entries("jobs", waiting=True)] == order[2:]
    assert sorted(ids) == sorted(order)

    # positions, paged
    places, after = engine.queues.waiting("jobs", limit=2)
    assert [(e.instance_id, p) for e, p in places] == [("job-002", 1), ("job-004", 2)]
    places, after2 = engine.queues.waiting("jobs", after=after, limit=2)
    assert [(e.instance_id, p) for e, p in places] == [("job-006", 3), ("job-001", 4)]
    places, last = engine.queues.waiting("jobs", after=after2, limit=2)
    assert [(e.instance_id, p) for e, p in places] == [("job-003", 5)] and last is None
    assert engine.queues.place("job-003").position == 5

    # every instance the queue holds: the admitted, then the waiting
    seen, cursor = [], None
    while True:
        entries, cursor = engine.queues.entries("jobs", after=cursor, limit=3)
        seen += [e.instance_id for e in entries]
        if cursor is None:
            break
    assert seen == order
    with pytest.raises(QueueNotFoundError):
        engine.queues.waiting("nope")
    for bad in ("x", "w1", "wa:b", "a1:2:3", "w99999999999999999999:1"):
        with pytest.raises(ScheduleError, match="cursor"):
            engine.queues.entries("jobs", after=bad)
    with pytest.raises(ScheduleError, match="waiting ones"):
        engine.queues.waiting("jobs", after="a0:1")


@given(priorities=st.lists(st.integers(-2, 2), min_size=0, max_size=25),
       admit=st.integers(0, 6), page=st.integers(1, 8))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_pages_of_a_queue_cover_it_once_in_order(tmp_path_factory, priorities, admit,
                                                 page) -> None:
    """Whatever the priorities, the admitted and the page size: the pages of
    `entries` are the admitted then the waiting, each in (priority, arrival)
    order, every instance once; `waiting`'s positions count 1, 2, 3..."""
    for store in (MemoryStore(), SQLiteStore(tmp_path_factory.mktemp("q") / "s.db")):
        with store:
            engine, _ = engine_on(store)
            engine.queues.define(Queue("q", concurrency=admit or None))
            ids = queued(engine, "q", len(priorities), priority=lambda i: priorities[i])
            if admit:
                engine.queues.admit()
            order = sorted(range(len(ids)), key=lambda i: (priorities[i], i))
            admitted = [f"job-{i:03d}" for i in order[:admit]]
            waiting = [f"job-{i:03d}" for i in order[admit:]]
            seen, cursor = [], None
            for _ in range(len(ids) + 2):
                entries, cursor = engine.queues.entries("q", after=cursor, limit=page)
                seen += [e.instance_id for e in entries]
                if cursor is None:
                    break
            assert seen == admitted + waiting
            places, cursor = [], None
            for _ in range(len(ids) + 2):
                got, cursor = engine.queues.waiting("q", after=cursor, limit=page)
                places += [(e.instance_id, p) for e, p in got]
                if cursor is None:
                    break
            assert places == [(i, n + 1) for n, i in enumerate(waiting)]


def test_the_instances_a_schedule_started_are_one_range_read(store) -> None:
    engine, clock = engine_on(store)
    for sid in ("night", "nightly", "a@b", "a"):
        engine.schedules.add(sid, Report(), every=dt.timedelta(hours=1), overlap="allow")
    started = {}
    for sid in ("night", "nightly", "a@b", "a"):
        started[sid] = []
        for hour in range(3):
            clock.now = T0 + dt.timedelta(hours=hour, minutes=sid.count("@"))
            started[sid].append(engine.schedules.trigger(sid))
    engine.start(Report(), id="night@not-a-tick")  # the prefix, not the shape
    engine.start(Report(), id="nigh")
    for sid, ids in started.items():
        assert engine.schedules.instances(sid) == [engine.store.get(i) for i in ids]
        assert all(schedule_of(i)[0] == sid for i in ids)
    first = engine.schedules.instances("night", limit=2)
    assert [r.id for r in first] == started["night"][:2]
    assert [r.id for r in engine.schedules.instances("night", after=first[-1].id)] == \
        started["night"][2:]
    engine.schedules.delete("night")  # its instances stay, and so does the filter
    assert [r.id for r in engine.schedules.instances("night")] == started["night"]
    assert engine.schedules.instances("night", status="failed") == []
    assert engine.schedules.instances("nobody") == []
    assert schedule_of("night@not-a-tick") is None
    assert schedule_of(instance_id_for("x", T0)) == ("x", T0)


def test_filters_read_a_prefix_of_the_schedule() -> None:
    from genflow.web.listing import Filters

    assert Filters(schedule="s").prefix() == "s@"
    assert Filters(schedule="s", q="s@2030").prefix() == "s@2030"
    assert Filters(schedule="s", q="s").prefix() == "s@"
    assert Filters(schedule="s", q="t").prefix() is None and Filters(schedule="s", q="t").empty()
    assert not Filters(queue="q").counted() and Filters().counted()
    assert Filters.from_query({"schedule": "s", "queue": "q"}).query() == {
        "schedule": "s", "queue": "q"}


# -- the HTTP API through a real server --------------------------------------------------------


def _schedule_rows(store) -> list[tuple]:
    return [(r.id, r.spec, r.paused, r.next_tick, r.due_at, r.last_instance, r.fired,
             r.version) for r in store.list_schedules()]


def test_schedules_and_queues_api(make_store) -> None:
    from web_helpers import call, rows, serving

    engine, clock = engine_on(make_store())
    engine.queues.define(Queue("jobs", concurrency=1, per_key=1, key="tenant"))
    engine.queues.define(Queue("limited", rate=3, per=60))
    engine.schedules.add("nightly", Report(wait=True), cron="0 2 * * *",
                         timezone="Europe/Paris", overlap="skip")
    engine.schedules.add("often", Report(), every=dt.timedelta(minutes=15),
                         catchup="all", queue="limited", paused=True)
    ids = queued(engine, "jobs", 5)
    engine.work(until_idle=True)  # job-000 admitted, run: it waits for `done`
    with serving(engine) as base:
        status, body, _ = call("GET", f"{base}{API}/schedules")
        assert status == 200
        assert [(s["id"], s["state"], s["paused"]) for s in body["items"]] == [
            ("nightly", "active", False), ("often", "paused", True)]
        nightly = body["items"][0]
        assert nightly["spec"] == "cron '0 2 * * *' (Europe/Paris)"
        assert nightly["timezone"] == "Europe/Paris" and nightly["overlap"] == "skip"
        assert nightly["next_fire_times"][:2] == ["2030-01-01T01:00:00+00:00",
                                                  "2030-01-02T01:00:00+00:00"]
        assert len(nightly["next_fire_times"]) == 5
        assert body["items"][1]["next_fire_times"] == []  # paused
        assert body["items"][1]["queue"] == "limited" and body["items"][1]["every"] == 900

        status, body, _ = call("GET", f"{base}{API}/schedules/nightly?next=2")
        assert status == 200 and len(body["next_fire_times"]) == 2

        status, body, _ = call("POST", f"{base}{API}/schedules/nightly/pause")
        assert status == 200 and body["paused"] and body["state"] == "paused"
        assert engine.schedules.get("nightly").paused
        status, body, _ = call("POST", f"{base}{API}/schedules/nightly/resume")
        assert status == 200 and not body["paused"] and body["due_at"]
        status, body, _ = call("POST", f"{base}{API}/schedules/nightly/trigger")
        assert status == 200 and body["started"] == "nightly@2030-01-01T00:00:00Z"
        assert body["schedule"]["last_instance"] == body["started"]
        assert engine.get(body["started"]).workflow == "sched-report"
        clock.now += dt.timedelta(minutes=1)
        status, body, _ = call("POST", f"{base}{API}/schedules/nightly/trigger")
        assert status == 200 and body["started"] is None  # overlap skip: still running

        # the instance list by schedule, and by queue
        status, body, _ = call("GET", f"{base}{API}/instances?schedule=nightly")
        assert [i["id"] for i in body["items"]] == ["nightly@2030-01-01T00:00:00Z"]
        status, body, _ = call("GET", f"{base}{API}/instances?schedule=night")
        assert body["items"] == []
        seen, after = [], None
        while True:
            query = {"queue": "jobs", "limit": "2", **({"after": after} if after else {})}
            status, body, _ = call("GET", f"{base}{API}/instances?"
                                   f"{urllib.parse.urlencode(query)}")
            assert status == 200
            seen += [i["id"] for i in body["items"]]
            after = body["next"]
            if after is None:
                break
        assert seen == ids  # job-000 admitted first, the rest waiting in order
        status, body, _ = call("GET", f"{base}{API}/instances?queue=jobs&status=waiting")
        assert [i["id"] for i in body["items"]] == ["job-000"]  # admitted, waits for `done`

        status, body, _ = call("GET", f"{base}{API}/queues")
        assert status == 200
        assert [(q["name"], q["running"], q["waiting"], q["limits"]) for q in body["items"]] \
            == [("jobs", 1, 4, "at most 1 running, 1 per key"),
                ("limited", 0, 0, "3 admitted per 60 s")]
        status, body, _ = call("GET", f"{base}{API}/queues/jobs?limit=3")
        assert status == 200 and body["concurrency"] == 1 and body["per_key"] == 1
        assert [(w["id"], w["position"], w["key"]) for w in body["waiting_instances"]] == [
            ("job-001", 1, "t1"), ("job-002", 2, "t2"), ("job-003", 3, "t0")]
        status, body, _ = call("GET", f"{base}{API}/queues/jobs?limit=3&after={body['next']}")
        assert [(w["id"], w["position"]) for w in body["waiting_instances"]] == [
            ("job-004", 4)] and body["next"] is None

        # refused: typed 4xx, nothing changed
        refusals = [
            ("GET", "/schedules/nope", 404, "ScheduleNotFoundError"),
            ("POST", "/schedules/nope/pause", 404, "ScheduleNotFoundError"),
            ("POST", "/schedules/nope/trigger", 404, "ScheduleNotFoundError"),
            ("POST", "/schedules/nightly/explode", 404, "NotFoundError"),
            ("GET", "/schedules?next=1000", 422, "RequestError"),
            ("GET", "/schedules/nightly?next=x", 422, "RequestError"),
            ("GET", "/queues/nope", 404, "QueueNotFoundError"),
            ("GET", "/queues/jobs?after=zz", 422, "ScheduleError"),
            ("GET", "/queues/jobs?after=a0:1", 422, "ScheduleError"),
            ("GET", "/queues/jobs?limit=0", 422, "RequestError"),
            ("GET", "/instances?queue=nope", 404, "QueueNotFoundError"),
            ("GET", "/instances?queue=jobs&after=order-3", 422, "ScheduleError"),
            ("GET", "/schedules/nightly/pause", 405, "MethodNotAllowed"),
        ]
        for method, path, want, kind in refusals:
            before, scheduled = rows(engine.store), _schedule_rows(engine.store)
            status, answer, _ = call(method, f"{base}{API}{path}")
            assert (status, answer["error"]["type"]) == (want, kind), (path, answer)
            assert answer["error"]["message"]
            assert rows(engine.store) == before and _schedule_rows(engine.store) == scheduled
        # no token: refused before anything is done
        scheduled = _schedule_rows(engine.store)
        status, answer, _ = call("POST", f"{base}{API}/schedules/nightly/pause", token=None)
        assert status == 401 and _schedule_rows(engine.store) == scheduled


def test_a_schedule_is_updated_in_place_over_http(make_store) -> None:
    """`PATCH /api/v1/schedules/{id}` is `Schedules.update`: what the body gives
    changes, the rest stays, so do the id, the counts and the last run; a token
    or the console's session with its CSRF header may do it, nothing else."""
    from web_helpers import TOKEN, call, serving

    engine, clock = engine_on(make_store())
    engine.queues.define(Queue("jobs"))
    engine.schedules.add("rep", Report(count=1), every=dt.timedelta(hours=1))
    clock.now = T0 + dt.timedelta(hours=1, minutes=1)
    assert engine.schedules.run_due() == 1
    before = engine.store.get_schedule("rep")
    with serving(engine) as base:
        url = f"{base}{API}/schedules/rep"
        status, body, _ = call("PATCH", url, {
            "cron": "30 * * * *", "timezone": "Europe/Paris", "jitter": 0, "overlap": "allow",
            "catchup_window": 300, "queue": "jobs", "priority": 2, "data": {"count": 2},
            "end": "2031-01-01T00:00:00+00:00"})
        assert status == 200, body
        assert (body["spec"], body["every"], body["overlap"], body["catchup_window"],
                body["queue"], body["priority"], body["data"]) == (
            "cron '30 * * * *' (Europe/Paris)", None, "allow", 300.0, "jobs", 2,
            {"day": "", "count": 2, "wait": False})
        assert body["end"] == "2031-01-01T00:00:00+00:00"
        assert body["next_tick"] == "2030-01-01T01:30:00+00:00"  # from now, the new spec
        assert (body["fired"], body["last_instance"]) == (1, before.last_instance)
        assert call("GET", url)[1] == body  # what it answered is what is stored
        after = engine.store.get_schedule("rep")
        assert (after.fired, after.last_tick, after.version) == (
            before.fired, before.last_tick, before.version + 1)
        # what is not given stays; giving `every` drops `cron`; null clears
        status, body, _ = call("PATCH", url, {"every": 900, "paused": True, "queue": None,
                                              "end": None})
        assert status == 200 and body["state"] == "paused" and body["due_at"] is None
        assert (body["spec"], body["cron"], body["queue"], body["end"], body["data"]["count"],
                body["overlap"]) == ("every 0:15:00", None, None, None, 2, "allow")
        unchanged = engine.store.get_schedule("rep")
        status, again, _ = call("PATCH", url, {})  # nothing given: nothing written
        assert status == 200 and again == body
        assert engine.store.get_schedule("rep") == unchanged

        # refused, each in the words of the Python API, the stored row unchanged
        refusals = [
            ({"timezone": "Europe/Pariss"}, 422, "ScheduleError", "unknown time zone"),
            ({"cron": "not a cron"}, 422, "ScheduleError", "bad cron expression"),
            ({"cron": "0 0 31 2 *"}, 422, "ScheduleError", "bad cron expression"),
            ({"every": 0}, 422, "ScheduleError", "every= must be positive"),
            ({"jitter": 8e13}, 422, "ScheduleError", "at most 36525 days"),
            ({"overlap": "sometimes"}, 422, "ScheduleError", "overlap is one of"),
            ({"queue": "nope"}, 404, "QueueNotFoundError", "nope"),
            ({"factory": "nope"}, 422, "ScheduleError", "no factory 'nope'"),
            ({"paused": "yes"}, 422, "RequestError", "'paused' is true or false"),
            ({"priority": 1.5}, 422, "RequestError", "'priority' is a whole number"),
            ({"priority": 3}, 422, "ScheduleError", "priority=3 orders a queue's admission"),
            ({"start": "tomorrow"}, 422, "RequestError", "'start' is an ISO 8601 time"),
            ({"start": "2031-01-01T00:00:00"}, 422, "ScheduleError", "aware datetime"),
            ({"start": "2031-01-01T00:00:00Z", "end": "2030-06-01T00:00:00Z"}, 422,
             "ScheduleError", "is before start"),
            ({"data": {"count": "many"}}, 422, "RequestError", "does not fit workflow"),
            ({"data": {"nope": 1}}, 422, "RequestError", "has no field(s) ['nope']"),
            ({"data": None}, 422, "RequestError", "'data' is an object"),
            ({"workflow": "sched-job"}, 422, "RequestError", "not 'workflow'"),
            (b"{not json", 400, "MalformedJSONError", "not valid JSON"),
            (b"[1]", 422, "RequestError", "must be a JSON object"),
        ]
        for change, want, kind, words in refusals:
            raw = change if isinstance(change, bytes) else None
            status, answer, _ = call("PATCH", url, None if raw else change, raw=raw)
            assert (status, answer["error"]["type"]) == (want, kind), (change, answer)
            assert words in answer["error"]["message"], (change, answer)
            assert engine.store.get_schedule("rep") == unchanged, change
        status, answer, _ = call("PATCH", f"{base}{API}/schedules/nobody", {"every": 60})
        assert (status, answer["error"]["type"]) == (404, "ScheduleNotFoundError")

        # who may: a token, or the console's session with its CSRF header
        status, answer, _ = call("PATCH", url, {"paused": False}, token=None)
        assert status == 401 and engine.store.get_schedule("rep") == unchanged
        status, _, headers = call("POST", f"{base}/login", raw=f"token={TOKEN}".encode(),
                                  token=None, follow=False, headers={
                                      "Content-Type": "application/x-www-form-urlencoded"})
        cookie = {"Cookie": headers["set-cookie"].split(";", 1)[0]}
        status, answer, _ = call("PATCH", url, {"paused": False}, token=None, headers=cookie)
        assert (status, answer["error"]["type"]) == (401, "AccessDeniedError")
        assert engine.store.get_schedule("rep") == unchanged
        status, page, _ = call("GET", f"{base}/schedules", token=None, headers=cookie)
        csrf = page.split('"csrf":"', 1)[1].split('"', 1)[0]
        status, body, _ = call("PATCH", url, {"paused": False}, token=None,
                               headers={**cookie, "X-Genflow-CSRF": csrf})
        assert status == 200 and body["state"] == "active"
    clock.now = T0 + dt.timedelta(hours=1, minutes=16)
    assert engine.schedules.run_due() == 1  # it fires under its new spec
    assert engine.schedules.get("rep").fired == 2


def _bad(name: str) -> st.SearchStrategy:
    """Values of body key `name` that `PATCH /api/v1/schedules/{id}` must refuse,
    whatever else the body holds: of another JSON type, or of its type but wrong."""
    from genflow.web.app import _UPDATE_TYPES

    kinds = _UPDATE_TYPES[name][0]
    json_values = st.one_of(
        st.none(), st.booleans(), st.integers(-2**62, 2**62),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                             st.integers(), max_size=2))
    other_type = json_values.filter(
        lambda v: not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds))
    texts = st.text(max_size=12)
    wrong = {
        "data": st.sampled_from([{"count": "x"}, {"nope": 1}, {"wait": 3}, {"day": None}]),
        "cron": texts.filter(lambda t: len(t.split()) not in (5, 6, 7) and "@" not in t),
        "every": st.one_of(st.floats(max_value=0, allow_nan=False), st.just(1e300),
                           st.integers(2**40, 2**62)),
        "timezone": texts.filter(lambda t: not t.isalpha()).map(lambda t: f"Mars/{t}x"),
        "factory": texts.map(lambda t: f"no-{t}"),
        "jitter": st.one_of(st.floats(max_value=-1e-3, allow_nan=False),
                            st.floats(min_value=4e9, allow_infinity=False)),
        "catchup": texts.filter(lambda t: t not in ("skip", "all", "latest")),
        "catchup_window": st.floats(max_value=-1e-3, allow_nan=False),
        "overlap": texts.filter(lambda t: t not in ("skip", "allow", "cancel")),
        "queue": texts.map(lambda t: f"no-{t}"),
        "priority": st.integers(2**63, 2**64 - 1).map(str),  # (a text: refused as one)
        "start": st.one_of(texts.filter(lambda t: not t[:1].isdigit()),
                           st.just("2031-01-01T00:00:00")),
        "end": st.one_of(texts.filter(lambda t: not t[:1].isdigit()),
                         st.just("2030-01-01T00:00:00")),
        "paused": st.sampled_from(["true", 1, 0]),
        "deadline": st.one_of(st.floats(max_value=0, allow_nan=False), st.just(1e300)),
    }.get(name)
    return other_type if wrong is None else st.one_of(other_type, wrong)


_FIELDS = ("data", "cron", "every", "timezone", "factory", "jitter", "catchup",
           "catchup_window", "overlap", "queue", "priority", "start", "end", "paused",
           "deadline")


def test_a_refused_update_leaves_the_stored_schedule_byte_identical(make_store) -> None:
    """Any body with one bad value (of any key, beside good ones): a 4xx with the
    error's words, and the stored row, spec bytes included, as it was."""
    from web_helpers import serving

    from genflow.schedules import _UPDATABLE
    from genflow.web.app import _UPDATE_TYPES

    assert set(_UPDATE_TYPES) == {*_UPDATABLE, "data"}  # the API takes what update takes
    engine, clock = engine_on(make_store())
    engine.queues.define(Queue("jobs"))
    engine.schedules.add("rep", Report(count=1), cron="0 2 * * *", jitter=30, queue="jobs")
    clock.now = T0 + dt.timedelta(days=1)
    engine.schedules.run_due()
    with serving(engine) as base:
        _every_refusal(engine, "PATCH", f"{base}{API}/schedules/rep", {})


def test_a_schedule_is_added_and_deleted_over_http(make_store) -> None:
    """`POST /api/v1/schedules` is `Schedules.add` (201 and the schedule, in the JSON
    types an update takes) and `DELETE /api/v1/schedules/{id}` is `Schedules.delete`
    (the instances it started stay); each refusal a typed 4xx, every schedule row and
    instance as it was."""
    from web_helpers import call, rows, serving

    engine, clock = engine_on(make_store())
    engine.queues.define(Queue("jobs"))
    with serving(engine) as base:
        url = f"{base}{API}/schedules"
        status, body, headers = call("POST", url, {
            "id": "nightly", "workflow": "sched-report", "data": {"count": 3},
            "cron": "0 2 * * *", "timezone": "Europe/Paris", "overlap": "allow",
            "queue": "jobs", "priority": 1, "catchup_window": 600})
        assert status == 201, body
        assert headers["location"] == f"{API}/schedules/nightly"
        assert (body["id"], body["workflow"], body["spec"], body["overlap"], body["queue"],
                body["priority"], body["catchup_window"], body["data"], body["fired"]) == (
            "nightly", "sched-report", "cron '0 2 * * *' (Europe/Paris)", "allow", "jobs", 1,
            600.0, {"day": "", "count": 3, "wait": False}, 0)
        assert body["next_tick"] == "2030-01-01T01:00:00+00:00"
        assert call("GET", f"{url}/nightly")[1] == body  # what it answered is what is stored
        info = engine.schedules.get("nightly")  # the Python API reads what HTTP wrote
        assert (info.schedule.cron, info.schedule.timezone, info.schedule.priority) == (
            "0 2 * * *", "Europe/Paris", 1)
        status, body, headers = call("POST", url, {"id": "often/2", "workflow": "sched-report",
                                                   "every": 900, "paused": True})
        assert status == 201 and body["state"] == "paused" and body["spec"] == "every 0:15:00"
        assert headers["location"] == f"{API}/schedules/often%2F2"
        assert call("GET", f"{base}{headers['location']}")[1] == body
        assert body["data"] == {"day": "", "count": 0, "wait": False}  # no data: the defaults

        # refused: a typed 4xx, no schedule and no instance written or changed
        refusals = [
            ({"id": "nightly", "workflow": "sched-report", "every": 60}, 409,
             "DuplicateScheduleError", "nightly"),
            ({"workflow": "sched-report", "every": 60}, 422, "RequestError", "'id'"),
            ({"id": "x", "every": 60}, 422, "RequestError", "'workflow'"),
            ({"id": 5, "workflow": "sched-report", "every": 60}, 422, "RequestError", "'id'"),
            ({"id": "", "workflow": "sched-report", "every": 60}, 422, "ScheduleError",
             "schedule id is a text"),
            ({"id": "x", "workflow": "nope", "every": 60}, 404, "UnknownWorkflowError", "nope"),
            ({"id": "x", "workflow": "sched-report"}, 422, "ScheduleError", "one of them"),
            ({"id": "x", "workflow": "sched-report", "every": 60, "cron": "* * * * *"}, 422,
             "ScheduleError", "one of them"),
            ({"id": "x", "workflow": "sched-report", "cron": "0 0 31 2 *"}, 422,
             "ScheduleError", "bad cron expression"),
            ({"id": "x", "workflow": "sched-report", "every": 60, "queue": "nope"}, 404,
             "QueueNotFoundError", "nope"),
            ({"id": "x", "workflow": "sched-report", "every": 60, "priority": 2}, 422,
             "ScheduleError", "priority=2 orders a queue's admission"),
            ({"id": "x", "workflow": "sched-report", "every": 60, "data": {"count": "many"}},
             422, "RequestError", "does not fit workflow"),
            ({"id": "x", "workflow": "sched-report", "every": "60"}, 422, "RequestError",
             "'every' is a number of seconds"),
            ({"id": "x", "workflow": "sched-report", "every": 60, "run": True}, 422,
             "RequestError", "not 'run'"),
            (b"{not json", 400, "MalformedJSONError", "not valid JSON"),
        ]
        for request, want, kind, words in refusals:
            before, scheduled = rows(engine.store), _schedule_rows(engine.store)
            raw = request if isinstance(request, bytes) else None
            status, answer, _ = call("POST", url, None if raw else request, raw=raw)
            assert (status, answer["error"]["type"]) == (want, kind), (request, answer)
            assert words in answer["error"]["message"], (request, answer)
            assert rows(engine.store) == before and _schedule_rows(engine.store) == scheduled

        clock.now = T0 + dt.timedelta(hours=1, minutes=1)  # 02:01 in Paris
        assert engine.schedules.run_due() == 1
        started = engine.schedules.get("nightly").last_instance
        assert engine.get(started).data.count == 3
        scheduled = _schedule_rows(engine.store)
        status, answer, _ = call("DELETE", f"{url}/nightly", token=None)
        assert status == 401 and _schedule_rows(engine.store) == scheduled
        status, body, _ = call("DELETE", f"{url}/nightly")
        assert (status, body) == (200, {"deleted": "nightly"})
        assert [r.id for r in engine.store.list_schedules()] == ["often/2"]
        assert engine.get(started).data.count == 3  # what it started stays
        for method in ("GET", "DELETE"):
            status, answer, _ = call(method, f"{url}/nightly")
            assert (status, answer["error"]["type"]) == (404, "ScheduleNotFoundError")
        status, body, _ = call("POST", url, {"id": "nightly", "workflow": "sched-report",
                                             "every": 60})
        assert status == 201 and body["fired"] == 0  # the id is free again


def test_a_refused_add_writes_nothing(make_store) -> None:
    """Any add with one bad value (of any key, beside good ones): a 4xx with the
    error's words, no schedule written, the one there byte-identical."""
    from web_helpers import serving

    engine, _ = engine_on(make_store())
    engine.queues.define(Queue("jobs"))
    engine.schedules.add("rep", Report(count=1), cron="0 2 * * *", queue="jobs")
    with serving(engine) as base:
        _every_refusal(engine, "POST", f"{base}{API}/schedules", {
            "id": st.sampled_from(["new", "rep/2", "é"]), "workflow": st.just("sched-report"),
            "every": st.integers(1, 10**6)})


def _every_refusal(engine: Engine, method: str, url: str,
                   required: dict[str, st.SearchStrategy]) -> None:
    """Bodies of `method` with one bad value (of any key, beside good ones and the
    `required` keys): each a 4xx with the error's words, and every stored schedule
    row, spec bytes included, as it was."""
    from web_helpers import call

    good = st.fixed_dictionaries(required, optional={
        "jitter": st.integers(0, 60), "paused": st.booleans(), "priority": st.integers(-3, 3),
        "overlap": st.sampled_from(["skip", "allow"]), "data": st.just({"count": 5})})

    @given(bad=st.sampled_from(_FIELDS).flatmap(lambda k: st.tuples(st.just(k), _bad(k))),
           others=good)
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def refused(bad, others) -> None:
        body = {**others, bad[0]: bad[1]}
        if bad[0] == "cron":
            body.pop("every", None)  # (a cron beside `every` is refused for that alone)
        before = engine.store.list_schedules()
        status, answer, _ = call(method, url, body)
        assert status in (400, 404, 422), (body, answer)
        assert answer["error"]["type"] and answer["error"]["message"]
        assert engine.store.list_schedules() == before, body

    refused()


def test_each_runs_deadline_is_added_read_and_updated_over_http(make_store) -> None:
    from web_helpers import call, serving

    engine, _ = engine_on(make_store())
    with serving(engine) as base:
        url = f"{base}{API}/schedules"
        status, body, _ = call("POST", url, {"id": "s", "workflow": "sched-report",
                                             "every": 3600, "deadline": 1800})
        assert status == 201 and body["deadline"] == 1800.0, body
        assert engine.schedules.get("s").schedule.deadline == dt.timedelta(minutes=30)
        status, body, _ = call("PATCH", f"{url}/s", {"deadline": 7200.5})
        assert status == 200 and body["deadline"] == 7200.5, body
        status, body, _ = call("PATCH", f"{url}/s", {"deadline": 0})
        assert status == 422 and body["error"]["type"] == "ScheduleError", body
        assert "deadline is a duration above 0" in body["error"]["message"]
        status, body, _ = call("PATCH", f"{url}/s", {"deadline": "1h"})
        assert status == 422 and "'deadline' is a number of seconds or null" in \
            body["error"]["message"], body
        assert call("GET", f"{url}/s")[1]["deadline"] == 7200.5  # both refused: unchanged
        status, body, _ = call("PATCH", f"{url}/s", {"deadline": None})
        assert status == 200 and body["deadline"] is None, body
        started = call("POST", f"{url}/s/trigger")[1]
        assert engine.get(started["started"]).state.deadline is None, started


def test_the_schedules_and_queues_pages_and_their_actions(make_store) -> None:
    from web_helpers import TOKEN, call, serving

    engine, _ = engine_on(make_store())
    engine.queues.define(Queue("jobs", concurrency=1))
    engine.schedules.add("nightly", Report(wait=True), cron="0 2 * * *")
    queued(engine, "jobs", 14)
    engine.queues.admit()
    with serving(engine) as base:
        status, _, headers = call("POST", f"{base}/login", raw=f"token={TOKEN}".encode(),
                                  token=None, follow=False, headers={
                                      "Content-Type": "application/x-www-form-urlencoded"})
        cookie = {"Cookie": headers["set-cookie"].split(";", 1)[0]}
        status, page, _ = call("GET", f"{base}/schedules", token=None, headers=cookie)
        assert status == 200 and 'data-schedule="nightly" data-state="active"' in page
        assert "cron &#x27;0 2 * * *&#x27; (UTC)" in page and "2030-01-01 02:00:00 UTC" in page
        assert 'href="/instances?schedule=nightly"' in page
        assert 'data-action="pause"' in page and 'data-action="trigger"' in page
        assert '<a href="/schedules">Schedules</a>' in page
        csrf = page.split('"csrf":"', 1)[1].split('"', 1)[0]
        action = f"{base}/console/schedules/nightly/trigger"
        status, answer, _ = call("POST", action, {}, token=None, headers=cookie)
        assert (status, answer["error"]["type"]) == (401, "AccessDeniedError")
        assert engine.schedules.get("nightly").fired == 0
        status, answer, _ = call("POST", action, {}, token=None,
                                 headers={**cookie, "X-Genflow-CSRF": csrf})
        assert status == 200 and answer["started"] == "nightly@2030-01-01T00:00:00Z"
        assert [(e.kind, e.detail["action"], e.detail["by"], e.detail["schedule"])
                for e in engine.store.journal(answer["started"])] == [
            ("operator", "trigger", "operator", "nightly")]
        status, answer, _ = call("POST", f"{base}/console/schedules/nightly/pause", {},
                                 token=None, headers={**cookie, "X-Genflow-CSRF": csrf})
        assert status == 200 and answer["schedule"]["paused"]
        status, page, _ = call("GET", f"{base}/schedules", token=None, headers=cookie)
        assert 'data-state="paused"' in page and 'data-action="resume"' in page
        assert '<a href="/instances/nightly%402030-01-01T00%3A00%3A00Z" class="gf-last">' in page

        status, page, _ = call("GET", f"{base}/queues", token=None, headers=cookie)
        assert status == 200 and 'data-queue="jobs" data-running="1" data-waiting="13"' in page
        assert page.count('data-position="') == 10 and "all 13 waiting" in page
        status, page, _ = call("GET", f"{base}/queues/jobs?limit=5", token=None, headers=cookie)
        assert [f'data-position="{n}"' in page for n in (1, 5, 6)] == [True, True, False]
        nxt = page.split('id="gf-next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        status, page, _ = call("GET", f"{base}{nxt}", token=None, headers=cookie)
        assert 'data-position="6"' in page and 'data-id="job-006"' in page

        status, page, _ = call("GET", f"{base}/instances?queue=jobs&limit=3", token=None,
                               headers=cookie)
        assert status == 200 and '<option value="jobs" selected>' in page
        assert '"next":"/instances?after=w0%3A3&limit=3&queue=jobs"' in page.replace(
            "\\u0026", "&")
        status, page, _ = call("GET", f"{base}/queues/nope", token=None,
                               headers={**cookie, "Accept": "text/html"})
        assert status == 404 and "QueueNotFoundError" in page


def test_the_report_shows_schedules_and_queues(tmp_path) -> None:
    from genflow.render.report import write_report

    engine, _ = engine_on(MemoryStore())
    engine.queues.define(Queue("jobs", concurrency=1))
    engine.schedules.add("nightly", Report(wait=True), cron="0 2 * * *")
    started = engine.schedules.trigger("nightly")
    queued(engine, "jobs", 3)
    engine.queues.admit()
    page = write_report(engine, tmp_path, svg=False).read_text()
    assert '<section id="gf-report-schedules"><h2>Schedules</h2>' in page
    assert 'data-schedule="nightly" data-state="active"' in page
    assert f'href="#i={urllib.parse.quote(started, safe="")}"' in page  # in the report: linked
    assert 'data-queue="jobs" data-running="1" data-waiting="2"' in page
    assert 'data-id="job-001" data-position="1"' in page
    assert 'data-id="job-002" data-position="2"' in page
    assert "data-action=" not in page  # the report is static: no actions
    from genflow.render.report import report_data
    from genflow.render.views import Diagrams

    data = report_data(engine, Diagrams(svg=False))
    marks = {r["id"]: (r["schedule"], r["queue"]) for r in data["rows"]}
    assert marks == {started: ("nightly", None), "job-000": (None, "jobs"),
                     "job-001": (None, "jobs"), "job-002": (None, "jobs")}
    assert (data["schedules"], data["queues"]) == (["nightly"], ["jobs"])
    empty = write_report(Engine(MemoryStore(), [Report]), tmp_path / "empty", svg=False)
    assert "gf-report-schedules" not in empty.read_text()


def test_the_instance_page_says_where_it_waits_in_its_queue() -> None:
    pytest.importorskip("starlette", reason="pip install 'genflow[web]'")
    from genflow.web.access import LocalAccess
    from genflow.web.app import WebConfig
    from genflow.web.views import view_of

    engine, _ = engine_on(MemoryStore())
    engine.queues.define(Queue("jobs", concurrency=1))
    first, second = queued(engine, "jobs", 2)
    engine.queues.admit()
    config = WebConfig(engine, LocalAccess(), b"s" * 32, max_body=1000, title="t", poll_ms=1,
                       svg=False, send_timeout=1, callback_url="")
    view = view_of(config, second)
    assert view["queue"] == "waits in queue 'jobs' for admission: position 1"
    assert "\n  waits in queue 'jobs' for admission: position 1\n" in view["text"]
    assert view_of(config, first)["queue"] == "admitted by queue 'jobs'"


def test_an_unreadable_schedule_is_shown_and_refused_not_a_500(store) -> None:
    from web_helpers import call, serving

    from genflow.render.operating import schedules_data

    engine, _ = engine_on(store)
    engine.schedules.add("fine", Report(), every=60)
    engine.schedules.add("broken", Report(), every=60)
    record = store.get_schedule("broken")
    store.save_schedule(record.replace(spec=b"\xc1 not msgpack"), expected_version=record.version)
    views = {v["id"]: v for v in schedules_data(engine)}
    assert views["fine"]["state"] == "active"
    assert views["broken"]["state"] == "unreadable" and "unreadable" in views["broken"]["error"]
    with serving(engine) as base:
        status, body, _ = call("GET", f"{base}{API}/schedules")
        assert status == 200 and [s["state"] for s in body["items"]] == ["unreadable", "active"]
        status, body, _ = call("GET", f"{base}{API}/schedules/broken")
        assert status == 200 and body["state"] == "unreadable"
        before = store.get_schedule("broken")
        for action in ("pause", "resume", "trigger"):
            status, body, _ = call("POST", f"{base}{API}/schedules/broken/{action}")
            assert (status, body["error"]["type"]) == (422, "ScheduleError"), body
            assert "delete it" in body["error"]["message"]
        status, body, _ = call("PATCH", f"{base}{API}/schedules/broken", {"every": 120})
        assert (status, body["error"]["type"]) == (422, "ScheduleError"), body
        assert "so no update" in body["error"]["message"]
        assert store.get_schedule("broken") == before
        status, page, _ = call("GET", f"{base}/schedules")
        assert status == 200 and 'data-schedule="broken" data-state="unreadable"' in page
        status, body, _ = call("DELETE", f"{base}{API}/schedules/broken")  # as advised
        assert (status, body) == (200, {"deleted": "broken"})
        assert [r.id for r in store.list_schedules()] == ["fine"]


@given(kinds=st.lists(st.booleans(), max_size=30), page=st.integers(1, 7),
       scan=st.integers(1, 12), admit=st.integers(0, 5))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_queue_filter_pages_cover_the_matches_once(kinds, page, scan, admit) -> None:
    """Two workflows on one queue, the list filtered by one of them, any page size
    and any bound on the entries read per page: the pages, followed by their
    `next`, give every match once, in the queue's order (short pages allowed)."""
    from genflow.web import listing

    engine, _ = engine_on(MemoryStore())
    engine.queues.define(Queue("q", concurrency=admit or None))
    ids = []
    for n, is_job in enumerate(kinds):
        data = Job(n=n) if is_job else Report()
        ids.append(engine.start(data, id=f"i{n:03d}", queue="q"))
    if admit:
        engine.queues.admit()
    order = [e.instance_id for e in engine.queues.entries("q", limit=100)[0]]
    want = [i for i in order if engine.store.get(i).workflow == "sched-job"]
    old, listing._QUEUE_SCAN = listing._QUEUE_SCAN, scan
    try:
        seen, after = [], None
        for _ in range(len(ids) + 2):
            rows, after = listing.list_rows(engine, listing.Filters(
                queue="q", workflow="sched-job", limit=page, after=after))
            assert len(rows) <= page
            seen += [r["id"] for r in rows]
            if after is None:
                break
        assert seen == want
    finally:
        listing._QUEUE_SCAN = old


def test_a_nul_in_an_id_a_name_or_a_filter_is_not_found_not_a_5xx(make_store) -> None:
    """PostgreSQL refuses a NUL in a text (a `StoreError`, once a 500): each route
    answers as for an id, a name or a filter no row has, and nothing changes."""
    from web_helpers import call, rows, serving

    engine, _ = engine_on(make_store())
    engine.queues.define(Queue("jobs"))
    engine.schedules.add("nightly", Report(), every=3600, queue="jobs")
    queued(engine, "jobs", 2)
    nul = "a%00b"
    asked = [
        ("GET", f"schedules/{nul}", 404, "ScheduleNotFoundError"),
        ("PATCH", f"schedules/{nul}", 404, "ScheduleNotFoundError"),
        ("DELETE", f"schedules/{nul}", 404, "ScheduleNotFoundError"),
        ("POST", f"schedules/{nul}/pause", 404, "ScheduleNotFoundError"),
        ("POST", f"schedules/{nul}/trigger", 404, "ScheduleNotFoundError"),
        ("GET", f"queues/{nul}", 404, "QueueNotFoundError"),
        ("GET", f"instances/{nul}", 422, "InvalidIdError"),
        ("GET", f"instances/{nul}/journal", 422, "InvalidIdError"),
        ("POST", f"workflows/sched-job/instances/{nul}/events/done", 422, "InvalidIdError"),
        ("GET", f"instances?after={nul}", 422, "ArgumentError"),
        ("GET", f"instances?queue={nul}", 404, "QueueNotFoundError"),
    ]
    with serving(engine) as base:
        for method, path, want, kind in asked:
            before, scheduled = rows(engine.store), _schedule_rows(engine.store)
            status, answer, _ = call(method, f"{base}{API}/{path}",
                                     {"paused": True} if method == "PATCH" else None)
            assert (status, answer["error"]["type"]) == (want, kind), (path, answer)
            assert rows(engine.store) == before and _schedule_rows(engine.store) == scheduled
        for query in ("workflow", "waiting", "q", "schedule"):  # a filter no row matches
            status, answer, _ = call("GET", f"{base}{API}/instances?{query}={nul}")
            assert (status, answer) == (200, {"items": [], "next": None}), query
        status, page, _ = call("GET", f"{base}/instances?workflow={nul}",
                               headers={"Accept": "text/html"})
        assert status == 200 and "job-000" not in page
