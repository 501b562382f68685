"""The HTTP API fuzzed against its own OpenAPI description (schemathesis).

The description is generated the way the server generates it, from the test
workflows' code. Every operation gets generated requests (valid and not);
each answer must be a 2xx or a 4xx (never a 5xx), carry the error's type and
message when refused, and a refused request must leave every stored row as it
was.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install 'genflow[webtest]'")

from hypothesis import HealthCheck, settings  # noqa: E402
from web_app import Fails, Hooks, Order, Pair  # noqa: E402
from web_helpers import TOKEN, rows, serving  # noqa: E402

from genflow.engine import Engine  # noqa: E402
from genflow.stores import SQLiteStore  # noqa: E402
from genflow.web.catalog import catalog  # noqa: E402
from genflow.web.openapi import openapi  # noqa: E402

WORKFLOWS = [Order, Fails, Pair, Hooks]
SCHEMA = schemathesis.openapi.from_dict(
    openapi(catalog(dict([
        ("web-order", Order), ("web-fails", Fails), ("web-pair", Pair), ("web-hooks", Hooks)])))
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    store = SQLiteStore(tmp_path_factory.mktemp("fuzz") / "store.db")
    engine = Engine(store, WORKFLOWS)
    for n in range(3):  # instances for the generated ids to meet now and then
        engine.start(Order(), id=f"o{n}")
    engine.start(Fails(), id="f0")
    engine.start(Pair(), id="p0")
    from genflow.queues import Queue

    engine.queues.define(Queue("q0", concurrency=1))  # a schedule and a queue to read
    engine.schedules.add("s0", Order(), every=3600, queue="q0")
    engine.start(Order(), id="o-queued", queue="q0")
    with serving(engine) as base:
        yield base, engine
    store.close()


@SCHEMA.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_against_its_description(case, live) -> None:
    base, engine = live
    before = rows(engine.store)
    response = case.call(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["type"] and error["message"], response.text
        assert rows(engine.store) == before, (case.method, case.formatted_path, response.text)
