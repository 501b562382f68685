"""A start's deadline over the HTTP API (`Engine.start(deadline=...)`): the generic
start's body key, the typed start's query, signal-with-start, the instance JSON
and the OpenAPI document; refusals change nothing. Over every store kind."""

from __future__ import annotations

import datetime as dt

import pytest
from web_app import Fails, Hooks, Order, Pair
from web_helpers import SECRET, call, rows, serving

from genflow import FakeClock
from genflow.engine import Engine

API = "/api/v1"


@pytest.fixture(autouse=True)
def _callback_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENFLOW_WEB_SECRET", SECRET.decode())


def test_a_start_with_a_deadline_is_cancelled_by_a_worker_when_it_passes(make_store) -> None:
    clock = FakeClock()
    engine = Engine(make_store(), [Order, Fails, Pair, Hooks], clock=clock)
    now = clock()
    with serving(engine) as base:
        status, body, _ = call("POST", f"{base}{API}/instances",
                               {"workflow": "web-order", "id": "d-1", "deadline": 3600})
        assert status == 201 and body["deadline"] == (now + dt.timedelta(hours=1)).isoformat()
        assert body["wake_at"] == body["deadline"]  # it waits for events: woken for the deadline
        at = "2030-01-01T03:00:00+01:00"
        status, body, _ = call("POST", f"{base}{API}/workflows/web-order/instances?id=d-2&"
                               f"deadline={at.replace('+', '%2B')}", {})
        assert status == 201 and body["deadline"] == "2030-01-01T02:00:00+00:00"
        status, body, _ = call("POST", f"{base}{API}/workflows/web-order/instances?id=d-3&"
                               "deadline=90", {})
        assert status == 201 and body["deadline"] == (now + dt.timedelta(seconds=90)).isoformat()
        status, body, _ = call("POST", f"{base}{API}/instances", {
            "workflow": "web-order", "id": "d-4", "deadline": 60,
            "send": {"event": "add", "payload": {"name": "funghi"}}})
        assert status == 200 and body["instance"]["deadline"] == \
            (now + dt.timedelta(seconds=60)).isoformat()
        # an instance that exists keeps its own deadline
        status, body, _ = call("POST", f"{base}{API}/instances", {
            "workflow": "web-order", "id": "d-1", "if_exists": "return", "deadline": 10})
        assert status == 200 and body["deadline"] == (now + dt.timedelta(hours=1)).isoformat()
        clock.advance(dt.timedelta(hours=1))
        engine.run_due()
        status, body, _ = call("GET", f"{base}{API}/instances/d-1")
        assert body["status"] == "cancelled" and body["wake_at"] is None
        status, body, _ = call("GET", f"{base}{API}/instances/d-2")
        assert body["status"] == "waiting"
        spec = call("GET", f"{base}{API}/openapi.json")[1]
        start = spec["paths"]["/api/v1/instances"]["post"]["requestBody"]
        assert "deadline" in start["content"]["application/json"]["schema"]["properties"]
        typed = spec["paths"]["/api/v1/workflows/web-order/instances"]["post"]
        assert "deadline" in [p["name"] for p in typed["parameters"]]
        assert "deadline" in spec["components"]["schemas"]["Instance"]["properties"]


@pytest.mark.parametrize(("where", "deadline", "says"), [
    ("body", 0, "not above 0"), ("body", -1, "not above 0"), ("body", "tomorrow", "ISO 8601"),
    ("body", "2030-06-01T00:00:00", "no time zone"), ("body", True, "must be a"),
    ("body", [60], "must be a"), ("body", "2029-01-01T00:00:00+00:00", "not later than now"),
    ("body", 1e300, "at most"), ("query", "0", "not above 0"), ("query", "nan", "not nan"),
    ("query", "soon", "ISO 8601"), ("query", "2030-06-01T00:00:00", "no time zone"),
])
def test_a_deadline_that_cannot_work_is_refused_with_nothing_written(make_store, where, deadline,
                                                                      says) -> None:
    engine = Engine(make_store(), [Order, Fails, Pair, Hooks], clock=FakeClock())
    engine.start(Order(), id="there")
    before = rows(engine.store)
    with serving(engine) as base:
        if where == "body":
            status, body, _ = call("POST", f"{base}{API}/instances",
                                   {"workflow": "web-order", "id": "x", "deadline": deadline})
        else:
            status, body, _ = call("POST", f"{base}{API}/workflows/web-order/instances?id=x&"
                                   f"deadline={deadline}", {})
    assert status == 422, body
    assert says in body["error"]["message"], body
    assert rows(engine.store) == before
