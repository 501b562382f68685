"""Acceptance: the HTTP API refuses what it does not take, with a typed 4xx and
nothing written: a mistyped key in a start or move body, a mistyped query
parameter of the list, an id no store can keep. Configuration mistakes
(a short token) are `GenflowError`s too."""

from __future__ import annotations

import sqlite3

import attrs
import pytest
from web_helpers import call, serving  # (skips without the web extra)

import genflow
from genflow import Engine, On, Wait
from genflow.errors import ArgumentError, GenflowError
from genflow.stores import SQLiteStore
from genflow.web import create_app


@genflow.workflow("accept-api-cart")
@attrs.define
class Cart:
    owner: str = ""

    def definition(self):
        yield Wait("shopping?", On("checkout", self.checkout))

    def checkout(self) -> None:
        pass


def rows(path) -> list:
    connection = sqlite3.connect(path)
    try:
        tables = [t for (t,) in connection.execute(
            "select name from sqlite_master where type='table' order by name")]
        return [(t, sorted(map(repr, connection.execute(f"select * from {t}"))))
                for t in tables]
    finally:
        connection.close()


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "api.db"
    engine = Engine(SQLiteStore(path), workflows=[Cart])
    engine.start(Cart(owner="ann"), id="c1")
    with serving(engine) as base:
        yield base, path


REFUSED = [
    ("post", "/api/v1/instances", {"workflow": "accept-api-cart", "dat": {"owner": "x"}},
     422, "RequestError", "dat"),
    ("post", "/api/v1/instances", {"workflow": "accept-api-cart", "id": "n1",
                                   "send": {"event": "checkout", "paylod": {}}},
     422, "RequestError", "paylod"),
    ("post", "/api/v1/instances/c1/move", {"statement": "shopping?", "thraed": "_main_"},
     422, "RequestError", "thraed"),
    ("get", "/api/v1/instances?stauts=failed", None, 422, "RequestError", "stauts"),
    ("get", "/api/v1/instances/a%00b", None, 422, "InvalidIdError", "NUL"),
    ("get", "/api/v1/instances/" + "a" * 300, None, 422, "InvalidIdError", "255"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "kind", "word"), REFUSED)
def test_a_refused_request_is_typed_and_changes_nothing(served, method, path, body, status,
                                                        kind, word):
    base, db = served
    before = rows(db)
    got, answer, _ = call(method.upper(), base + path, body)
    assert got == status, answer
    error = answer["error"]
    assert error["type"] == kind
    assert word in error["message"]
    assert rows(db) == before


def test_the_known_list_parameters_still_filter(served):
    base, _ = served
    got, answer, _ = call("GET", base + "/api/v1/instances?status=waiting"
                          "&workflow=accept-api-cart&limit=5")
    assert got == 200
    assert [i["id"] for i in answer["items"]] == ["c1"]


def test_the_description_says_the_bodies_take_no_other_keys(served):
    base, _ = served
    _, doc, _ = call("GET", base + "/api/v1/openapi.json")
    start = doc["paths"]["/api/v1/instances"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    move = doc["paths"]["/api/v1/instances/{id}/move"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert start["additionalProperties"] is False
    assert start["properties"]["send"]["additionalProperties"] is False
    assert move["additionalProperties"] is False


def test_a_short_token_is_a_configuration_error(tmp_path):
    engine = Engine(SQLiteStore(tmp_path / "t.db"), workflows=[Cart])
    with pytest.raises(ArgumentError, match="16 characters") as refused:
        create_app(engine, token="short")
    assert isinstance(refused.value, GenflowError)
    assert isinstance(refused.value, ValueError)  # as before, for callers that caught it


def test_a_start_that_creates_answers_the_instance_url_in_location(tmp_path):
    """201 Created with the URL to poll (Azure's statusQueryGetUri): a `/` of the
    id percent-encoded, under the app's root path; 200 (it existed) has none."""
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    engine = Engine(SQLiteStore(tmp_path / "loc.db"), workflows=[Cart])
    token = "a-token-of-16-chars"
    auth = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_app(engine, token=token), root_path="/flows")
    created = client.post("/api/v1/instances", headers=auth,
                          json={"workflow": "accept-api-cart", "id": "a/1", "data": {}})
    assert created.status_code == 201
    assert created.headers["location"] == "/flows/api/v1/instances/a%2F1"
    typed = client.post("/api/v1/workflows/accept-api-cart/instances?id=b", headers=auth,
                        json={})
    assert typed.status_code == 201 and typed.headers["location"] == "/flows/api/v1/instances/b"
    again = client.post("/api/v1/instances", headers=auth,
                        json={"workflow": "accept-api-cart", "id": "b", "data": {},
                              "if_exists": "return"})
    assert again.status_code == 200 and "location" not in again.headers


def test_an_outside_system_starts_an_instance_on_a_queue(tmp_path):
    """DBOS's enqueue over HTTP: `"queue"` (and `"priority"`) in the start's body;
    the instance waits for admission, and its `queue` (as the queue's route) says
    where it stands. A
    queue nobody defined, a priority without a queue or not a whole number, and a
    signal-with-start on a queue are refused, nothing written."""
    from genflow.queues import Queue

    path = tmp_path / "queued.db"
    engine = Engine(SQLiteStore(path), workflows=[Cart])
    engine.queues.define(Queue("carts", concurrency=1))
    with serving(engine) as base:
        start = base + "/api/v1/instances"
        got, first, headers = call("POST", start, {"workflow": "accept-api-cart", "id": "q1",
                                                   "data": {"owner": "ann"}, "queue": "carts"})
        assert got == 201, first
        location = {k.lower(): v for k, v in headers.items()}["location"]
        assert location.endswith("/api/v1/instances/q1")
        got, _, _ = call("POST", start, {"workflow": "accept-api-cart", "id": "q2",
                                         "queue": "carts", "priority": -1})
        assert got == 201
        assert first["queue"] == {"name": "carts", "key": "", "priority": 0, "position": 1,
                                  "admitted": False, "text": "waits in queue 'carts' for "
                                                            "admission: position 1"}
        got, queue, _ = call("GET", base + "/api/v1/queues/carts")
        assert [(i["id"], i["position"], i["priority"]) for i in queue["waiting_instances"]] \
            == [("q2", 1, -1), ("q1", 2, 0)]
        before = rows(path)
        for body, status, kind, words in [
            ({"queue": "nope"}, 404, "QueueNotFoundError", "no queue 'nope'"),
            ({"priority": 3}, 422, "ArgumentError", "give the queue too"),
            ({"queue": "carts", "priority": "high"}, 422, "RequestError", "'priority'"),
            ({"queue": "carts", "priority": 1.5}, 422, "RequestError", "'priority'"),
            ({"queue": "carts", "send": {"event": "checkout"}}, 422, "RequestError",
             "takes no 'queue'"),
        ]:
            got, answer, _ = call("POST", start, {"workflow": "accept-api-cart", "id": "q3",
                                                  **body})
            assert (got, answer["error"]["type"]) == (status, kind), answer
            assert words in answer["error"]["message"]
            assert rows(path) == before
        _, doc, _ = call("GET", base + "/api/v1/openapi.json")
        schema = doc["paths"]["/api/v1/instances"]["post"]["requestBody"]["content"][
            "application/json"]["schema"]
        assert {"queue", "priority"} <= set(schema["properties"])
        engine.work(until_idle=True)  # one at a time: q2 first (its priority), and it holds on
        got, q1, _ = call("GET", base + "/api/v1/instances/q1")
        assert (got, q1["status"], q1["queue"]["position"]) == (200, "resuming", 1)
        got, q2, _ = call("GET", base + "/api/v1/instances/q2")
        assert (q2["status"], q2["queue"]["admitted"], q2["queue"]["position"]) == (
            "waiting", True, 0)
        assert call("GET", base + "/api/v1/instances/c9")[0] == 404
        engine.start(Cart(), id="plain")
        assert call("GET", base + "/api/v1/instances/plain")[1]["queue"] is None
