"""Every route of the console's app refuses a query parameter or body key it does not
take (422, nothing changed), as the instance list always did.

The routes are walked from the app itself, so a route added later without its
`Takes` declaration fails here, rather than silently ignoring `?stauts=failed`.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.routing import Route
from starlette.testclient import TestClient
from web_app import Fails, Hooks, Order, Pair
from web_helpers import SECRET, TOKEN, rows

from genflow.engine import Engine
from genflow.stores import SQLiteStore
from genflow.web.app import create_app, takes_of
from genflow.web.openapi import openapi

AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNKNOWN = "zz_unknown"
#: a value that fits each path parameter (a real instance, event, workflow...)
PATH_VALUES = {"id": "o-1", "event": "add", "workflow": "web-order", "token": "abc.def",
               "name": "no-queue", "action": "pause"}
#: a value that fits each query parameter a route declares
QUERY_VALUES = {"workflow": "web-order", "status": "waiting", "waiting": "add",
                "failed": "false", "q": "o-", "schedule": "s", "queue": "q", "after": "",
                "limit": "5", "next": "2", "thread": "_main_", "keep": "true",
                "id": "new-1", "run": "false", "if_exists": "return"}


@pytest.fixture
def app_and_engine(tmp_path):
    engine = Engine(SQLiteStore(str(tmp_path / "s.db")), [Order, Fails, Pair, Hooks])
    engine.start(Order(), id="o-1")
    engine.start(Fails(), id="f-1")
    return create_app(engine, token=TOKEN, secret=SECRET), engine


def _routes(app: Any) -> list[Route]:
    routes = [r for r in app.routes if isinstance(r, Route)]
    assert len(routes) == len(app.routes), "a route that is not a Route (a Mount?): walk it too"
    return routes


def _path(route: Route) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: PATH_VALUES[m.group(1)], route.path)


def _methods(route: Route) -> list[str]:
    return sorted(set(route.methods or ()) - {"HEAD"})


def _state(engine: Engine) -> tuple[Any, ...]:
    journals = {r.id: len(engine.store.journal(r.id)) for r in engine.store.list()}
    return rows(engine.store), journals


def test_every_route_declares_what_it_takes(app_and_engine) -> None:
    app, _ = app_and_engine
    undeclared = [(r.path, _methods(r)) for r in _routes(app) if takes_of(r) is None]
    assert undeclared == []


def test_every_route_refuses_a_query_parameter_it_does_not_take(app_and_engine) -> None:
    app, engine = app_and_engine
    client = TestClient(app, follow_redirects=False)
    before = _state(engine)
    for route in _routes(app):
        takes = takes_of(route)
        assert takes is not None
        for method in _methods(route):
            answer = client.request(method, f"{_path(route)}?{UNKNOWN}=1", headers=AUTH)
            where = f"{method} {route.path}"
            assert answer.status_code == 422, (where, answer.status_code, answer.text)
            error = answer.json()["error"]
            assert error["type"] == "RequestError", where
            assert UNKNOWN in error["message"] and route.path in error["message"], where
            for name in takes.query:  # the message says what the route does take
                assert name in error["message"], (where, name)
    assert _state(engine) == before


def test_every_route_with_a_keyed_body_refuses_a_key_it_does_not_take(app_and_engine) -> None:
    app, engine = app_and_engine
    client = TestClient(app, follow_redirects=False)
    before = _state(engine)
    checked = []
    for route in _routes(app):
        takes = takes_of(route)
        assert takes is not None
        if takes.body is None:  # a payload: its handler's type checks it (tests/web/test_web)
            continue
        for method in set(_methods(route)) - {"GET"}:
            if takes.form:
                answer = client.request(method, _path(route), content=f"{UNKNOWN}=1",
                                        headers={**AUTH, "Content-Type":
                                                 "application/x-www-form-urlencoded"})
            else:  # (the key alone: refused before the required ones are looked for)
                answer = client.request(method, _path(route), json={UNKNOWN: 1}, headers=AUTH)
            where = f"{method} {route.path}"
            assert answer.status_code == 422, (where, answer.status_code, answer.text)
            assert answer.json()["error"]["type"] == "RequestError", where
            assert UNKNOWN in answer.json()["error"]["message"], where
            checked.append(route.path)
    assert _state(engine) == before
    # the walk reached the keyed bodies (a start, a move) and the bodiless actions
    assert {"/api/v1/instances", "/api/v1/instances/{id}/move", "/api/v1/instances/{id}/cancel",
            "/console/instances/{id}/send", "/login", "/logout"} <= set(checked)


def test_what_a_route_takes_is_not_refused(app_and_engine) -> None:
    """The declarations are not too narrow: each read route answers with every
    parameter it declares (the values fit; an undeclared one would be a 422)."""
    app, _ = app_and_engine
    client = TestClient(app, follow_redirects=False)
    for route in _routes(app):
        takes = takes_of(route)
        assert takes is not None
        if "GET" not in _methods(route) or not takes.query:
            continue
        for name in takes.query:
            answer = client.get(_path(route), params={name: QUERY_VALUES[name]}, headers=AUTH)
            assert answer.status_code != 422, (route.path, name, answer.text)


def test_a_refusal_of_a_page_is_a_page(app_and_engine) -> None:
    app, _ = app_and_engine
    client = TestClient(app)
    answer = client.get("/instances?stauts=failed", headers={**AUTH, "Accept": "text/html"})
    assert answer.status_code == 422 and "text/html" in answer.headers["content-type"]
    assert "stauts" in answer.text


def test_the_description_says_what_each_route_takes(app_and_engine) -> None:
    """The OpenAPI document's query parameters and closed bodies are the routes'
    declarations, and every operation lists the 422 an unknown one gets."""
    app, _ = app_and_engine
    document = openapi(app.state.config.catalog())
    routes = _routes(app)
    for path, operations in document["paths"].items():
        for method, spec in operations.items():
            (route,) = [r for r in routes if r.path_regex.match(path)
                        and method.upper() in (r.methods or ())][:1]
            takes = takes_of(route)
            assert takes is not None
            query = {p["name"] for p in spec.get("parameters", []) if p["in"] == "query"}
            assert query == set(takes.query), (method, path)
            assert "422" in spec["responses"], (method, path)
            schema = spec.get("requestBody", {}).get("content", {}).get(
                "application/json", {}).get("schema")
            if schema is None:
                assert takes.body == (), (method, path)
            elif schema.get("additionalProperties") is False:
                assert set(schema["properties"]) == set(takes.body or ()), (method, path)
            else:
                assert takes.body is None, (method, path)
