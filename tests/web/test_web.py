"""The JSON HTTP API through a real server on loopback, over every store kind.

Refused requests are checked to change nothing: every stored row's saved
columns are compared before and after. Server-side bugs would answer 500:
every refusal here must be a 4xx with the error's type and message.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from web_app import Fails, Hooks, Order, Pair
from web_helpers import SECRET, TOKEN, call, free_port, rows, serving

from genflow.engine import Engine
from genflow.stores import SQLiteStore
from genflow.web.signing import CallbackSigner

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"


@pytest.fixture(autouse=True)
def _callback_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENFLOW_WEB_SECRET", SECRET.decode())


def _engine(make_store) -> Engine:
    return Engine(make_store(), [Order, Fails, Pair, Hooks])


def test_round_trip(make_store, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(make_store)
    with serving(engine) as base:
        monkeypatch.setenv("GENFLOW_WEB_URL", base)
        status, body, _ = call("POST", f"{base}{API}/workflows/web-order/instances?id=o-1", {})
        assert status == 201 and body["status"] == "waiting"
        assert body["waiting_for"] == ["add", "close"]
        status, body, _ = call("POST", f"{base}{API}/workflows/web-order/instances/o-1/events/add",
                               {"name": "margherita", "quantity": 2, "size": "large"})
        assert status == 200 and body["output"] == 1
        assert body["instance"]["data"]["items"] == [
            {"name": "margherita", "quantity": 2, "size": "large"}]
        status, body, _ = call("POST", f"{base}{API}/instances/o-1/events/close")
        assert status == 200 and body["instance"]["waiting_for"] == ["paid"]
        assert engine.get("o-1").state.threads[0].stmt == "payment"

        # the generic start, and a failed instance retried
        status, body, _ = call("POST", f"{base}{API}/instances",
                               {"workflow": "web-fails", "id": "f-1"})
        assert status == 201 and body["status"] == "failed" and "boom" in body["error"]
        status, body, _ = call("POST", f"{base}{API}/instances/f-1/retry")
        assert status == 200 and body["status"] == "resuming"
        assert [e.kind for e in engine.store.journal("f-1")] == ["retry"]

        # move, cancel
        status, body, _ = call("POST", f"{base}{API}/instances", {"workflow": "web-pair",
                                                                  "id": "p-1"})
        assert status == 201
        status, body, _ = call("POST", f"{base}{API}/instances/p-1/events/left%20ping",
                               "hi")
        assert status == 200 and body["instance"]["data"]["got"] == ["hi"]
        status, body, _ = call("POST", f"{base}{API}/instances/o-1/move",
                               {"statement": "cart"})
        assert status == 200 and body["waiting_for"] == ["add", "close"]
        status, body, _ = call("POST", f"{base}{API}/instances/p-1/cancel")
        assert status == 200 and body["status"] == "cancelled"
        status, body, _ = call("GET", f"{base}{API}/instances/o-1/journal")
        assert [e["kind"] for e in body["entries"]] == ["move"]
        assert body["entries"][0]["detail"]["to"] == "cart"


def test_list_filters_and_keyset_paging(make_store) -> None:
    engine = _engine(make_store)
    for n in range(7):
        engine.start(Order(), id=f"order-{n}")
    engine.start(Fails(), id="fails-1")
    engine.start(Pair(), id="pair-1")
    with serving(engine) as base:
        seen, after = [], None
        while True:
            query = {"workflow": "web-order", "limit": "3", **({"after": after} if after else {})}
            status, body, _ = call("GET", f"{base}{API}/instances?{urllib.parse.urlencode(query)}")
            assert status == 200 and len(body["items"]) <= 3
            seen += [item["id"] for item in body["items"]]
            after = body["next"]
            if after is None:
                break
        assert seen == [f"order-{n}" for n in range(7)]
        status, body, _ = call("GET", f"{base}{API}/instances?failed=true")
        assert [i["id"] for i in body["items"]] == ["fails-1"]
        status, body, _ = call("GET", f"{base}{API}/instances?waiting=left%20ping")
        assert [i["id"] for i in body["items"]] == ["pair-1"]
        status, body, _ = call("GET", f"{base}{API}/instances?q=order-&limit=4")
        assert [i["id"] for i in body["items"]] == [f"order-{n}" for n in range(4)]
        assert body["next"] == "order-3"
        status, body, _ = call("GET", f"{base}{API}/instances?q=order-5")
        assert [i["id"] for i in body["items"]] == ["order-5"] and body["next"] is None
        status, body, _ = call("GET", f"{base}{API}/instances?status=waiting&failed=true")
        assert body["items"] == []


def _refusals(base: str) -> list[tuple[str, str, object, bytes | None, str | None, int, str]]:
    """(method, url, JSON body, raw body, token, status, error type) of requests that
    must be refused."""
    i = f"{base}{API}/instances"
    typed = f"{base}{API}/workflows/web-order/instances"
    return [
        ("GET", i, None, None, None, 401, "AccessDeniedError"),
        ("POST", f"{i}/o-1/events/add", {"name": "x"}, None, "wrong-token-0123456789", 401,
         "AccessDeniedError"),
        ("GET", f"{i}/nobody", None, None, TOKEN, 404, "InstanceNotFoundError"),
        ("POST", f"{i}/o-1/events/nope", None, None, TOKEN, 409, "UnknownEventError"),
        ("POST", f"{i}/o-1/events/add", {"name": 5}, None, TOKEN, 422, "PayloadError"),
        ("POST", f"{i}/o-1/events/add", {"name": "x", "size": "huge"}, None, TOKEN, 422,
         "PayloadError"),
        ("POST", f"{i}/o-1/events/add", None, b"{not json", TOKEN, 400, "MalformedJSONError"),
        ("POST", f"{i}/o-1/events/add", None, b'{"name": NaN}', TOKEN, 400,
         "MalformedJSONError"),
        ("POST", f"{i}/o-1/events/add", None, b"[" * 200 + b"]" * 200, TOKEN, 400,
         "MalformedJSONError"),
        ("POST", f"{i}/o-1/events/add", {"name": "x", "quantity": 2 ** 70}, None, TOKEN, 400,
         "MalformedJSONError"),
        ("POST", f"{i}/o-1/retry", None, None, TOKEN, 409, "NothingToRetryError"),
        ("POST", f"{i}/o-1/move", {"statement": "no such"}, None, TOKEN, 409, "MoveError"),
        ("POST", f"{i}/o-1/move", {"thread": 3, "statement": "cart"}, None, TOKEN, 422,
         "RequestError"),
        ("POST", f"{i}/done-1/events/add", {"name": "x"}, None, TOKEN, 409,
         "WorkflowFinishedError"),
        ("POST", f"{i}/done-1/cancel", None, None, TOKEN, 409, "WorkflowFinishedError"),
        ("POST", i, {"workflow": "web-order", "id": "o-1"}, None, TOKEN, 409,
         "DuplicateInstanceError"),
        ("POST", i, {"workflow": "nope"}, None, TOKEN, 404, "UnknownWorkflowError"),
        ("POST", i, {"workflow": "web-order", "data": {"bogus": 1}}, None, TOKEN, 422,
         "RequestError"),
        ("POST", typed, {"items": "x"}, None, TOKEN, 422, "RequestError"),
        ("POST", f"{base}{API}/workflows/web-fails/instances/o-1/events/add", {"name": "x"},
         None, TOKEN, 404, "InstanceNotFoundError"),
        ("GET", f"{i}?limit=0", None, None, TOKEN, 422, "RequestError"),
        ("GET", f"{i}?status=sleeping", None, None, TOKEN, 422, "RequestError"),
        ("POST", f"{base}{API}/callbacks/abc.def", None, None, None, 403, "BadSignatureError"),
        ("GET", f"{base}{API}/nowhere", None, None, TOKEN, 404, "NotFoundError"),
        ("POST", f"{i}/o-1/events/approve?keep=maybe", None, None, TOKEN, 422, "RequestError"),
        ("POST", f"{i}/o-1/events/approve?keep=false", {"by": "ann"}, None, TOKEN, 409,
         "UnknownEventError"),
        ("POST", f"{i}/o-1/events/refund", None, None, TOKEN, 409, "UnknownEventError"),
        ("POST", i, {"workflow": "web-order", "id": "o-1", "if_exists": "ignore"}, None, TOKEN,
         422, "RequestError"),
        ("POST", i, {"workflow": "web-order", "send": {"event": "add"}}, None, TOKEN, 422,
         "RequestError"),
        ("POST", i, {"workflow": "web-order", "id": "new-1", "send": {"event": "nope"}}, None,
         TOKEN, 409, "UnknownEventError"),
        ("POST", i, {"workflow": "web-order", "id": "new-1", "send": {"event": "add",
                                                                       "bogus": 1}},
         None, TOKEN, 422, "RequestError"),
        ("POST", f"{typed}?id=o-1&if_exists=maybe", {}, None, TOKEN, 422, "RequestError"),
    ]


def test_refused_requests_change_nothing(make_store) -> None:
    engine = _engine(make_store)
    engine.start(Order(), id="o-1")
    engine.send("o-1", "add", {"name": "funghi"})
    done = engine.start(Order(), id="done-1")
    engine.cancel(done)
    with serving(engine, max_body=1 << 20) as base:
        for method, url, body, raw, token, want, kind in _refusals(base):
            before = rows(engine.store)
            status, answer, headers = call(method, url, body, raw=raw, token=token)
            assert (status, answer["error"]["type"]) == (want, kind), (method, url, answer)
            assert answer["error"]["message"] and "Traceback" not in answer["error"]["message"]
            assert rows(engine.store) == before, (method, url)
            if status == 401:
                assert headers.get("www-authenticate") == "Bearer"
        # a body over the limit is refused from its declared length, before it is read
        before = rows(engine.store)
        host = base.split("//", 1)[1]
        connection = http.client.HTTPConnection(host, timeout=30)
        connection.putrequest("POST", f"{API}/instances/o-1/events/add")
        connection.putheader("Authorization", f"Bearer {TOKEN}")
        connection.putheader("Content-Length", str(2 << 20))
        connection.endheaders(b'{"name": "' + b"x" * 1000)
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert (response.status, answer["error"]["type"]) == (413, "PayloadTooLargeError")
        connection.close()
        assert rows(engine.store) == before


def test_early_events_signal_with_start_and_starting_once(make_store) -> None:
    engine = _engine(make_store)
    with serving(engine) as base:
        status, body, _ = call("POST", f"{base}{API}/workflows/web-order/instances?id=m-1", {})
        assert status == 201
        # "paid" is awaited only after the cart closes: kept until then
        status, body, _ = call("POST", f"{base}{API}/instances/m-1/events/approve", {"by": "ann"})
        assert status == 200 and body["output"] is None
        assert body["kept"] == {"event": "approve", "seq": 0, "kept": 1}
        [kept] = body["instance"]["mailbox"]["kept"]
        assert (kept["event"], kept["payload"], kept["seq"]) == (
            "approve", {"by": "ann", "note": ""}, 0)  # checked, as the handler takes it
        for n in range(3):
            call("POST", f"{base}{API}/instances/m-1/events/add", {"name": f"pizza {n}"})
        status, body, _ = call("POST", f"{base}{API}/instances/m-1/events/close")
        # a big order waits for approval: the kept "approve" was taken at once
        assert body["instance"]["data"]["approved_by"] == "ann"
        assert body["instance"]["mailbox"] == {"kept": [], "undelivered": []}
        assert body["instance"]["waiting_for"] == ["paid"]
        # signal-with-start: m-2 does not exist, so it starts with the event delivered
        status, body, _ = call("POST", f"{base}{API}/instances", {
            "workflow": "web-order", "id": "m-2", "send": {"event": "add",
                                                          "payload": {"name": "funghi"}}})
        assert status == 200 and body["output"] == 1 and body["kept"] is None
        status, body, _ = call("POST", f"{base}{API}/instances", {
            "workflow": "web-order", "id": "m-2", "send": {"event": "add",
                                                          "payload": {"name": "diavola"}}})
        assert status == 200 and body["output"] == 2  # it existed: an ordinary send
        # starting once: a start that creates answers 201, one that finds the
        # instance there answers 200 with it as it is (nothing created)
        for url, data in ((f"{base}{API}/instances", {"workflow": "web-order", "id": "m-3",
                                                      "if_exists": "return"}),
                          (f"{base}{API}/workflows/web-order/instances?id=m-4&if_exists=return",
                           {})):
            status, body, _ = call("POST", url, data)
            assert status == 201 and body["id"] in ("m-3", "m-4") and body["data"]["items"] == []
        for url, data in ((f"{base}{API}/instances", {"workflow": "web-order", "id": "m-2",
                                                      "if_exists": "return"}),
                          (f"{base}{API}/workflows/web-order/instances?id=m-2&if_exists=return",
                           {})):
            status, body, _ = call("POST", url, data)
            assert status == 200 and body["id"] == "m-2" and len(body["data"]["items"]) == 2
        assert engine.store.count() == 4
        spec = call("GET", f"{base}{API}/openapi.json")[1]
        send_op = spec["paths"]["/api/v1/instances/{id}/events/{event}"]["post"]
        assert "keep" in [p["name"] for p in send_op["parameters"]]
        start_body = spec["paths"]["/api/v1/instances"]["post"]["requestBody"]
        assert {"if_exists", "send"} <= set(
            start_body["content"]["application/json"]["schema"]["properties"])


def test_callback_urls_answer_exactly_one_wait(make_store, monkeypatch) -> None:
    engine = _engine(make_store)
    with serving(engine) as base:
        monkeypatch.setenv("GENFLOW_WEB_URL", base)
        engine.start(Hooks(), id="h-1")

        def url() -> str:
            event = engine.get("h-1").state.threads[0].events[0]
            return event.req.setup_data["url"]

        first = url()
        assert first.startswith(f"{base}{API}/callbacks/")
        token = first.rsplit("/", 1)[1]
        signer = CallbackSigner(SECRET)
        req = signer.verify(token)
        assert (req.instance_id, req.thread_id, req.event) == ("h-1", "_main_", "tick")
        # forged: the same wait's fields with another counter, or another instance
        for forged in (attrs_evolve(req, pc=req.pc + 2), attrs_evolve(req, instance_id="h-2")):
            body = signer.token(forged).split(".")[0] + "." + token.split(".")[1]
            before = rows(engine.store)
            status, answer, _ = call("POST", f"{base}{API}/callbacks/{body}", "x", token=None)
            assert (status, answer["error"]["type"]) == (403, "BadSignatureError")
            assert rows(engine.store) == before
        status, answer, _ = call("POST", first, "one", token=None)
        assert status == 200 and answer["output"] == "ONE"
        second = url()
        assert second != first
        before = rows(engine.store)
        status, answer, _ = call("POST", first, "again", token=None)  # its wait is over
        assert (status, answer["error"]["type"]) == (410, "CallbackGoneError")
        assert rows(engine.store) == before
        status, answer, _ = call("POST", second, 7, token=None)  # not a str: the wait goes on
        assert (status, answer["error"]["type"]) == (422, "PayloadError")
        status, answer, _ = call("POST", second, "two", token=None)
        assert status == 200 and engine.get("h-1").data.ticks == ["one", "two"]


def attrs_evolve(req, **changes):
    import attrs

    return attrs.evolve(req, **changes)


def test_console_actions_need_the_csrf_header_and_are_journaled(make_store) -> None:
    engine = _engine(make_store)
    engine.start(Order(), id="o-1")
    with serving(engine) as base:
        status, _, headers = call("POST", f"{base}/login", raw=f"token={TOKEN}".encode(),
                                  token=None, follow=False, headers={
                                      "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303
        cookie = headers["set-cookie"].split(";", 1)[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
        action = f"{base}/console/instances/o-1/send"
        before = rows(engine.store)
        status, answer, _ = call("POST", action, {"event": "add", "payload": {"name": "x"}},
                                 token=None, headers={"Cookie": cookie})
        assert (status, answer["error"]["type"]) == (401, "AccessDeniedError")
        assert rows(engine.store) == before
        status, page, _ = call("GET", f"{base}/instances/o-1", token=None,
                               headers={"Cookie": cookie})
        csrf = page.split('"csrf":"', 1)[1].split('"', 1)[0]
        status, answer, _ = call("POST", action, {"event": "add", "payload": {"name": "x"}},
                                 token=None, headers={"Cookie": cookie, "X-Genflow-CSRF": csrf})
        assert status == 200 and answer["view"]["version"] > before["o-1"][1]
        entries = engine.store.journal("o-1")
        assert [(e.kind, e.detail["action"], e.detail["by"]) for e in entries] == [
            ("operator", "send", "operator")]
        status, answer, _ = call("POST", f"{base}/console/instances/o-1/cancel", {},
                                 token=None, headers={"Cookie": cookie, "X-Genflow-CSRF": csrf})
        assert status == 200 and answer["view"]["status"] == "cancelled"
        assert [e.kind for e in engine.store.journal("o-1")] == ["operator", "cancel",
                                                                  "operator"]


def test_behind_a_reverse_proxy_prefix(make_store) -> None:
    """A proxy serves the console under /ops/genflow and strips the prefix
    (nginx: `location /ops/genflow/ { proxy_pass http://127.0.0.1:8080/; }`):
    the server gets /instances, and every link it writes carries the prefix."""
    engine = _engine(make_store)
    engine.start(Order(), id="o-1")
    with serving(engine, root_path="/ops/genflow") as base:
        status, page, _ = call("GET", f"{base}/instances")
        assert status == 200 and 'href="/ops/genflow/static/gf.css"' in page
        assert 'data-base="/ops/genflow"' in page and 'href="/ops/genflow/workflows"' in page
        status, body, _ = call("GET", f"{base}{API}/openapi.json")
        assert body["servers"] == [{"url": "/ops/genflow"}]
        status, _, headers = call("GET", f"{base}/instances", token=None, follow=False,
                                  headers={"Accept": "text/html"})
        assert status == 303 and headers["location"].startswith("/ops/genflow/login?next=")
        status, page, _ = call("GET", f"{base}/login", token=None)
        assert 'action="/ops/genflow/login"' in page


def _genflow(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "genflow.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_genflow_serve_never_serves_without_access(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENFLOW_WEB")}
    store = f"sqlite:///{tmp_path / 'serve.db'}"
    common = ["--store", store, "--app", "tests/support/web_app.py", "serve"]
    done = _genflow(*common, "--port", str(free_port()), env=env)
    _, err = done.communicate(timeout=60)
    assert done.returncode == 2 and "needs an access token" in err and "Traceback" not in err
    done = _genflow(*common, "--insecure-local", "--host", "0.0.0.0", env=env)
    _, err = done.communicate(timeout=60)
    assert done.returncode == 2 and "loopback only" in err
    port = free_port()
    server = _genflow(*common, "--insecure-local", "--port", str(port), env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body, _ = call("GET", f"http://127.0.0.1:{port}{API}/instances",
                                       token=None)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        assert status == 200 and body == {"items": [], "next": None}
    finally:
        server.terminate()
        server.wait(30)
    token = tmp_path / "token"
    token.write_text("a-token-from-a-file-0123\n")
    server = _genflow(*common, "--token-file", str(token), "--port", str(port), env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, _ = call("GET", f"http://127.0.0.1:{port}{API}/instances", token=None)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        assert status == 401
        status, _, _ = call("GET", f"http://127.0.0.1:{port}{API}/instances",
                            token="a-token-from-a-file-0123")
        assert status == 200
        # the server process moves instances this process reads from the same file
        api = f"http://127.0.0.1:{port}{API}"
        status, _, _ = call("POST", f"{api}/instances", {"workflow": "web-order", "id": "x1"},
                            token="a-token-from-a-file-0123")
        assert status == 201
        status, body, _ = call("POST", f"{api}/instances/x1/events/add", {"name": "diavola"},
                               token="a-token-from-a-file-0123")
        assert status == 200 and body["output"] == 1
        with SQLiteStore(tmp_path / "serve.db") as store:
            assert Engine(store, [Order]).get("x1").data.items[0].name == "diavola"
    finally:
        server.terminate()
        server.wait(30)
