"""Azure Durable Functions' canonical samples (the Python samples of the
"Durable Functions application patterns" pages), written in genflow as a user
who knows Durable Functions writes them from genflow's README and docs, and
run through the Engine on SQLite (the HTTP sample through genflow.web).

Each test's docstring gives the orchestration's line count (code lines, with
its activities, no blank lines or comments) against the peer's, roughly."""

from __future__ import annotations

import asyncio
import datetime as dt

import attrs
import pytest

import genflow
from genflow import (
    Break,
    Engine,
    FakeClock,
    For,
    If,
    On,
    Sleep,
    Step,
    Timeout,
    Wait,
    WaitGroup,
    open_store,
)


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(open_store(f"sqlite:///{tmp_path / 'azure.db'}"), clock=FakeClock())


# -- function chaining: E1_HelloSequence -------------------------------------------------

@genflow.workflow("sample-hello-sequence")
@attrs.define
class HelloSequence:
    outputs: list[str] = attrs.field(factory=list)

    def definition(self):
        for city in ("Tokyo", "Seattle", "London"):
            yield Step(f"say hello to {city}", lambda city=city: self.say_hello(city))

    def say_hello(self, city: str) -> None:
        self.outputs.append(f"Hello {city}!")


def test_function_chaining(engine):
    """E1_HelloSequence: three `yield context.call_activity("E1_SayHello", ...)`
    (~12 lines with the activity); genflow's 9 lines."""
    iid = engine.start(HelloSequence())
    assert engine.result(iid, timeout=5).outputs == ["Hello Tokyo!", "Hello Seattle!",
                                                     "Hello London!"]


# -- fan-out/fan-in: E2_BackupSiteContent ------------------------------------------------

FILES = {"a.txt": 10, "b.txt": 200, "c.txt": 3000}


@genflow.workflow("sample-backup")
@attrs.define
class BackupSiteContent:
    root: str
    files: list[str] = attrs.field(factory=list)
    sizes: dict[str, int] = attrs.field(factory=dict)
    total: int = 0
    wg: WaitGroup = attrs.field(factory=WaitGroup)

    def definition(self):
        yield Step("get file list", lambda: self.files.extend(sorted(FILES)))
        for i, name in enumerate(self.files):  # the list is data: the shape follows it
            yield self.wg.go(f"copy {name}", Step(f"copy file {i}", lambda n=name: self.copy(n)),
                             id=f"copy-{i}")
        yield self.wg.wait("all copied")
        yield Step("sum", lambda: setattr(self, "total", sum(self.sizes.values())))

    async def copy(self, name: str) -> None:
        await asyncio.sleep(0)  # the upload
        self.sizes[name] = FILES[name]


def test_fan_out_fan_in(engine):
    """E2_BackupSiteContent: `context.task_all([call_activity(...) for f in files])`,
    then a sum (~25 lines with its two activities); genflow's 18 lines, the copies
    run at once under the async API."""
    iid = asyncio.run(engine.start_async(BackupSiteContent("/site")))
    done = engine.get(iid)
    assert done.status.value == "finished"
    assert done.data.total == 3210 and sorted(done.data.sizes) == sorted(FILES)


# -- the monitor: E3_Monitor -------------------------------------------------------------

WEATHER: list[str] = []


@genflow.workflow("sample-weather-monitor")
@attrs.define
class WeatherMonitor:
    location: str
    expiry: dt.datetime | None = None
    clear: bool = False
    checks: int = 0
    alerted: str = ""

    def definition(self):
        yield Step("set expiry", self.set_expiry)
        yield For("poll", not self.clear,
            Step("get weather", self.check),
            If(self.clear, "clear", Step("send alert", self.alert), Break()),
            Wait("next check", Timeout("expired", Break(), at=self.expiry),
                 Timeout("in 30 minutes", dt.timedelta(minutes=30))),
        )

    def set_expiry(self) -> None:
        self.expiry = genflow.current_step().now + dt.timedelta(hours=6)

    def check(self) -> None:
        self.checks += 1
        self.clear = WEATHER.pop(0) == "clear" if WEATHER else False

    def alert(self) -> None:
        self.alerted = f"{self.location} is clear"


def test_the_monitor_polls_until_a_condition_or_expiry(engine):
    """E3_Monitor: a `while context.current_utc_datetime < expiry` loop of an
    activity and `context.create_timer(next_check)` (~30 lines with its two
    activities); genflow's 23 lines."""
    WEATHER[:] = ["cloudy", "cloudy", "clear"]
    clear = engine.start(WeatherMonitor("Redmond"))
    for _ in range(2):
        engine.clock.advance(dt.timedelta(minutes=30))  # type: ignore[attr-defined]
        engine.run_due()
    done = engine.get(clear)
    assert (done.status.value, done.data.checks, done.data.alerted) == \
        ("finished", 3, "Redmond is clear")
    WEATHER.clear()  # never clear: the monitor gives up at its expiry
    rainy = engine.start(WeatherMonitor("Seattle"))
    for _ in range(12):
        engine.clock.advance(dt.timedelta(minutes=30))  # type: ignore[attr-defined]
        engine.run_due()
    done = engine.get(rainy)
    assert (done.status.value, done.data.checks, done.data.alerted) == ("finished", 12, "")


# -- an external event with a timeout: the approval --------------------------------------

@genflow.workflow("sample-approval")
@attrs.define
class ApprovalWorkflow:
    outcome: str = ""

    def definition(self):
        yield Step("request approval", lambda: None)
        yield Wait("approval",
                   On("Approval", self.on_approval),
                   Timeout("timeout", dt.timedelta(hours=72),
                           Step("escalate", lambda: setattr(self, "outcome", "escalated"))))

    def on_approval(self, approved: bool) -> None:
        self.outcome = "approved" if approved else "rejected"


def test_an_external_event_raced_against_a_timer(engine):
    """`context.wait_for_external_event("Approval")` raced with `create_timer` in
    `task_any`, the timer cancelled if the event wins (~15 lines); genflow's 12."""
    approved = engine.start(ApprovalWorkflow())
    engine.send(approved, "Approval", True)
    late = engine.start(ApprovalWorkflow())
    engine.clock.advance(dt.timedelta(hours=72))  # type: ignore[attr-defined]
    engine.run_due()
    assert engine.get(approved).data.outcome == "approved"
    assert engine.get(late).data.outcome == "escalated"
    assert engine.get(approved).state.threads == []  # the timer went with the wait


# -- the eternal orchestration: a periodic cleanup ---------------------------------------

@genflow.workflow("sample-periodic-cleanup")
@attrs.define
class PeriodicCleanup:
    runs: int = 0

    def definition(self):
        yield For("forever", True,
            Step("do cleanup", self.cleanup),
            Sleep("an hour", dt.timedelta(hours=1)),
        )

    def cleanup(self) -> None:
        self.runs += 1


def test_an_eternal_orchestration_is_a_loop(engine):
    """Azure's eternal orchestration: an activity, `create_timer(+1h)`, then
    `context.continue_as_new(None)` (~10 lines); genflow's loop needs no
    continue-as-new (11 lines): it keeps no history to cut."""
    iid = engine.start(PeriodicCleanup())
    for _ in range(24):
        engine.clock.advance(dt.timedelta(hours=1))  # type: ignore[attr-defined]
        engine.run_due()
    inst = engine.get(iid)
    assert (inst.status.value, inst.data.runs) == ("waiting", 25)


# -- HTTP start, status poll and raise event ---------------------------------------------

def test_http_start_status_poll_and_raise_event(engine):
    """Azure's HTTP starter (`client.start_new`, `create_check_status_response`)
    and its status and raiseEvent webhooks: genflow.web's JSON API does it
    with no function of the user's (the workflow above, 12 lines; Azure's
    starter function ~10 lines more)."""
    testclient = pytest.importorskip("starlette.testclient")
    from genflow.web import create_app

    token = "a-token-of-16-chars"
    client = testclient.TestClient(create_app(engine, token=token))
    auth = {"Authorization": f"Bearer {token}"}
    started = client.post("/api/v1/instances", headers=auth,
                          json={"workflow": "sample-approval", "id": "ap-1", "data": {}})
    assert started.status_code == 201
    status_url = started.headers["Location"]  # Azure's statusQueryGetUri
    assert status_url == "/api/v1/instances/ap-1"
    status = client.get(status_url, headers=auth).json()
    assert (status["status"], status["waiting_for"]) == ("waiting", ["Approval", "timeout"])
    raised = client.post("/api/v1/instances/ap-1/events/Approval", headers=auth, json=True)
    assert raised.status_code == 200
    status = client.get(status_url, headers=auth).json()
    assert (status["status"], status["data"]["outcome"]) == ("finished", "approved")
    # the same start again: 409, or the instance that exists with if_exists
    again = client.post("/api/v1/instances", headers=auth,
                        json={"workflow": "sample-approval", "id": "ap-1", "data": {}})
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "DuplicateInstanceError"
