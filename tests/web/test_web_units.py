"""The web layer's parts that need no server: signing, sessions, schemas, the
timeline read from a journal, the list's filters."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from typing import Literal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genflow.render.views import timeline
from genflow.state import CallbackRequest
from genflow.stores.base import JournalEntry
from genflow.web.access import Sessions, TokenAccess
from genflow.web.errors import BadSignatureError, RequestError, WebError, status_for
from genflow.web.schema import SchemaBuilder
from genflow.web.signing import CallbackSigner

SIGNER = CallbackSigner(b"k" * 32)
text = st.text(min_size=1, max_size=30)
requests = st.builds(CallbackRequest, text, text, text, st.integers(0, 2 ** 40))


@given(requests)
def test_a_signed_request_comes_back_as_it_was(req: CallbackRequest) -> None:
    assert SIGNER.verify(SIGNER.token(req)) == req


@given(requests, st.data())
def test_any_change_to_a_token_is_refused(req: CallbackRequest, data: st.DataObject) -> None:
    token = SIGNER.token(req)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("AbZ09-_.x").filter(lambda c: c != token[index]))
    changed = token[:index] + replacement + token[index + 1:]
    with pytest.raises(BadSignatureError):
        SIGNER.verify(changed)


@given(requests)
def test_another_secret_does_not_verify(req: CallbackRequest) -> None:
    with pytest.raises(BadSignatureError):
        CallbackSigner(b"other secret, 16+ bytes").verify(SIGNER.token(req))


def test_short_secrets_and_tokens_are_refused() -> None:
    with pytest.raises(WebError, match="at least 16 bytes"):
        CallbackSigner(b"short")
    with pytest.raises(ValueError, match="16 characters"):
        TokenAccess("short")
    assert status_for(BadSignatureError("x")) == 403 and status_for(RequestError("x")) == 422
    assert status_for(RuntimeError("x")) == 500


def test_sessions_are_signed_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = Sessions(b"s" * 32, seconds=60)
    cookie = sessions.issue("ada")
    assert sessions.user(cookie) == "ada"
    assert sessions.user(cookie.replace("ada", "eve")) is None
    assert sessions.user(cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None
    assert Sessions(b"t" * 32).user(cookie) is None
    assert sessions.csrf(cookie) != sessions.csrf(sessions.issue("eve"))
    import time

    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert sessions.user(cookie) is None


class Colour(enum.Enum):
    RED = "red"


@attrs.define
class Node:
    name: str
    weight: decimal.Decimal
    when: dt.datetime
    colour: Colour = Colour.RED
    children: list[Node] = attrs.field(factory=list)
    tags: dict[str, int] = attrs.field(factory=dict)
    mode: Literal["a", "b"] = "a"
    parent: str | None = None


def test_schemas_follow_the_converter() -> None:
    builder = SchemaBuilder()
    assert builder.schema(Node) == {"$ref": "#/components/schemas/Node"}
    node = builder.components["Node"]
    assert node["required"] == ["name", "weight", "when"]
    props = node["properties"]
    assert props["children"] == {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["colour"] == {"$ref": "#/components/schemas/Colour"}
    assert builder.components["Colour"]["enum"] == ["red"]
    assert props["tags"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["mode"] == {"enum": ["a", "b"]}
    assert props["parent"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["weight"]["anyOf"][1] == {"type": "number"}


def test_pydantic_models_bring_their_own_schema() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Refund(pydantic.BaseModel):
        order: str
        amount: float

    builder = SchemaBuilder()
    assert builder.schema(Refund) == {"$ref": "#/components/schemas/Refund"}
    assert builder.components["Refund"]["required"] == ["order", "amount"]


T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _entry(seq: int, ms: int, kind: str, detail: dict) -> JournalEntry:
    return JournalEntry("i", seq, T0 + dt.timedelta(milliseconds=ms), kind, detail)


def test_the_timeline_reads_steps_attempts_and_errors_from_positions() -> None:
    entries = [
        _entry(1, 0, "start", {"data": {}}),
        _entry(2, 1, "after_resume", {"threads": [["_main_", "charge", "executing", 1]]}),
        _entry(3, 51, "failure", {"error": "StepError: step 'charge' in thread '_main_' "
                                           "failed: boom", "attempt": 1}),
        _entry(4, 100, "after_resume", {"threads": [["_main_", "charge", "executing", 1]]}),
        _entry(5, 130, "after_step", {"threads": [["_main_", "charge", "resuming", 2]]}),
        _entry(6, 140, "event", {"event": "paid", "thread": "_main_", "payload": {"n": 1}}),
        _entry(7, 150, "step", {"step": "ship", "thread": "_main_", "attempt": 3,
                                "start": "2030-01-01T00:00:00.150000+00:00",
                                "end": "2030-01-01T00:00:00.350000+00:00"}),
    ]
    rows = timeline(entries)
    steps = [(r["label"], r["attempt"], r["outcome"], r["duration"]) for r in rows
             if r["kind"] == "step"]
    assert steps == [("charge", 1, "failed", 0.05), ("charge", 2, "done", 0.03),
                     ("ship", 3, "done", 0.2)]
    assert "boom" in rows[1]["error"]
    assert [(r["kind"], r["label"], r.get("payload")) for r in rows
            if r["kind"] == "event"] == [("event", "paid", {"n": 1})]


def test_filters_refuse_what_does_not_fit() -> None:
    from genflow.web.listing import Filters

    assert Filters.from_query({"failed": "true", "limit": "10"}).store_status() == "failed"
    for query, words in (({"limit": "x"}, "whole number"), ({"limit": "501"}, "between"),
                         ({"status": "asleep"}, "one of"), ({"failed": "maybe"}, "true or")):
        with pytest.raises(RequestError, match=words):
            Filters.from_query(query)


def test_the_docs_list_every_route() -> None:
    from pathlib import Path

    from genflow.web.openapi import ROUTES

    page = (Path(__file__).resolve().parents[2] / "docs" / "console.md").read_text()
    for method, path, _, _ in ROUTES:
        assert f"`{method.upper()} {path}`" in page, (method, path)


def test_every_described_operation_is_routed() -> None:
    pytest.importorskip("starlette", reason="pip install 'genflow[web]'")
    from starlette.routing import Match
    from web_app import Fails, Hooks, Order, Pair

    from genflow.engine import Engine
    from genflow.stores import MemoryStore
    from genflow.web.app import create_app
    from genflow.web.catalog import catalog
    from genflow.web.openapi import openapi

    workflows = {"web-order": Order, "web-fails": Fails, "web-pair": Pair, "web-hooks": Hooks}
    app = create_app(Engine(MemoryStore(), list(workflows.values())), token="t" * 16)
    doc = openapi(catalog(workflows))
    assert len(doc["paths"]) > 15
    for path, operations in doc["paths"].items():
        concrete = path.replace("{id}", "o1").replace("{event}", "e").replace("{token}", "t")
        for method in operations:
            scope = {"type": "http", "path": concrete, "method": method.upper(),
                     "root_path": ""}
            assert any(route.matches(scope)[0] is Match.FULL for route in app.routes), (
                method, path)
