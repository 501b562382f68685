"""Temporal's canonical samples (temporalio/samples-python and the Go/TS
samples), written in genflow as a user who knows Temporal writes them from
genflow's README and docs, and run through the Engine on SQLite.

Each test's docstring gives the workflow's line count (code lines, with its
steps, no blank lines or comments) against the peer's, roughly."""

from __future__ import annotations

import attrs
import pytest

import genflow
from genflow import (
    Child,
    ChildFailed,
    Engine,
    Failure,
    FakeClock,
    For,
    Go,
    On,
    Raise,
    Retry,
    Sleep,
    Step,
    Try,
    Wait,
    open_store,
)
from genflow.codec import dumps
from genflow.saga import Saga


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(open_store(f"sqlite:///{tmp_path / 'temporal.db'}"), clock=FakeClock())


# -- saga: a trip booked, and undone newest first when a booking fails ------------------

BOOKED: list[str] = []


class Unavailable(Exception):
    pass


@genflow.workflow("sample-trip")
@attrs.define
class BookTrip:
    traveller: str
    flight_full: bool = False
    saga: Saga = attrs.field(factory=Saga)

    def definition(self):
        yield Try("book",
            self.saga.step("car", lambda: self.book("car"), compensate=lambda: self.undo("car")),
            self.saga.step("hotel", lambda: self.book("hotel"),
                           compensate=lambda: self.undo("hotel")),
            self.saga.step("flight", lambda: self.book("flight"),
                           compensate=lambda: self.undo("flight"),
                           retry=Retry(attempts=3, never=Unavailable)),
        ).Catch("cancel the trip", self.saga.compensate(), Raise())

    def book(self, what: str) -> None:
        if what == "flight" and self.flight_full:
            raise Unavailable("the flight is full")
        BOOKED.append(f"book {what} for {self.traveller}")

    def undo(self, what: str) -> None:
        BOOKED.append(f"cancel {what} for {self.traveller}")


def test_saga_books_a_trip_and_compensates_newest_first(engine):
    """Temporal's booking saga (Go/TS `saga` sample, ~45 lines with its activities);
    genflow's: 21 lines."""
    BOOKED.clear()
    engine.start(BookTrip("ada"), id="trip-ok")
    engine.start(BookTrip("bob", flight_full=True), id="trip-full")
    assert engine.get("trip-ok").status.value == "finished"
    assert engine.get("trip-ok").data.saga.done == ["car", "hotel", "flight"]
    full = engine.get("trip-full")
    assert full.status.value == "failed"
    assert "Unavailable: the flight is full" in (full.error or "")
    assert BOOKED[3:] == ["book car for bob", "book hotel for bob",
                          "cancel hotel for bob", "cancel car for bob"]


# -- continue-as-new: an entity loop that never ends, its blob flat ----------------------

@genflow.workflow("sample-looping")
@attrs.define
class Looping:
    iteration: int = 0
    total: int = 0

    def definition(self):
        yield For("forever", True,
            Wait("next?", On("add", self.add)),
            Step("count", self.count),
        )

    def add(self, n: int) -> None:
        self.total += n

    def count(self) -> None:
        self.iteration += 1


def test_an_unbounded_loop_needs_no_continue_as_new(engine):
    """Temporal's `hello_continue_as_new.py` (~25 lines) restarts the workflow
    to cut its history; genflow keeps no history, so the loop just loops
    (14 lines), and what is stored does not grow with the iterations."""
    iid = engine.start(Looping(), id="looping")
    sizes = {}
    for i in range(1, 501):
        engine.send(iid, "add", i)
        if i in (100, 500):
            inst = engine.get(iid)
            sizes[i] = len(dumps(inst.data, inst.state))
    inst = engine.get(iid)
    assert (inst.data.iteration, inst.data.total) == (500, 500 * 501 // 2)
    # the same size but for the data's two ints, which msgpack writes wider:
    # `iteration` 100 -> 500 (one byte to three), `total` 5050 -> 125250 (three to five)
    assert sizes[500] - sizes[100] == 4


# -- retry policies: backoff, and errors no retry can mend -------------------------------

ATTEMPTS: list[tuple[int, int]] = []


class InvalidName(genflow.NonRetryable):
    """Temporal's ApplicationError(non_retryable=True): never retried, by any policy."""


@genflow.workflow("sample-retry")
@attrs.define
class ComposeGreeting:
    name: str
    greeting: str = ""

    def definition(self):
        yield Step("compose", self.compose, timeout=2,
                   retry=Retry(attempts=10, backoff=1, factor=2, max_backoff=5))

    def compose(self) -> None:
        step = genflow.current_step()
        ATTEMPTS.append((step.attempt, int((step.now - START).total_seconds())))
        if self.name == "":
            raise InvalidName("no name, no greeting")
        if step.attempt < 4:
            raise ConnectionError("try again")
        self.greeting = f"Hello, {self.name}!"


START = FakeClock()()


def test_a_retry_policy_backs_off_and_a_non_retryable_error_fails_at_once(tmp_path):
    """Temporal's `hello_activity_retry.py` (~30 lines) and a non-retryable
    ApplicationError: genflow's 16 lines (`Retry(never=...)` says the same per
    policy)."""
    clock = FakeClock()
    engine = Engine(open_store(f"sqlite:///{tmp_path / 'retry.db'}"), clock=clock)
    ATTEMPTS.clear()
    engine.start(ComposeGreeting("World"), id="ok")
    engine.work(until_done=True)
    assert engine.get("ok").data.greeting == "Hello, World!"
    assert ATTEMPTS == [(1, 0), (2, 1), (3, 3), (4, 7)]
    ATTEMPTS.clear()
    engine.start(ComposeGreeting(""), id="refused")
    assert ATTEMPTS == [(1, 7)]
    assert engine.get("refused").status.value == "failed"
    assert "InvalidName: no name, no greeting" in (engine.get("refused").error or "")


# -- a child's failure handled by its parent ---------------------------------------------

@genflow.workflow("sample-child-charge")
@attrs.define
class Charge:
    amount: int
    charged: int = 0

    def definition(self):
        yield Step("charge", self.charge, retry=Retry(attempts=2, backoff=0))

    def charge(self) -> None:
        if self.amount > 100:
            raise ValueError(f"{self.amount} is over the limit")
        self.charged = self.amount


@genflow.workflow("sample-parent-order")
@attrs.define
class Order:
    amount: int
    charged: int = 0
    failure: Failure | None = None
    outcome: str = ""

    def definition(self):
        yield Try("pay",
            Child("charge", Charge(self.amount), into="charged", result="charged"),
            Step("confirm", lambda: setattr(self, "outcome", "confirmed")),
        ).Catch("payment failed", Step("notify", self.notify), errors=ChildFailed,
                into="failure")

    def notify(self) -> None:
        self.outcome = f"sorry: {self.failure.message if self.failure else ''}"


def test_a_childs_failure_is_caught_by_its_parent(engine):
    """Temporal: `await workflow.execute_child_workflow(...)` in a try/except
    ChildWorkflowError (~25 lines with the child); genflow's 26 lines with the child."""
    engine.start(Order(40), id="small")
    engine.start(Order(400), id="big")
    engine.work(until_idle=True)
    small, big = engine.get("small").data, engine.get("big").data
    assert (small.charged, small.outcome) == (40, "confirmed")
    assert engine.get("big").status.value == "finished"
    assert big.failure is not None and big.failure.type == "ChildFailed"
    assert "ValueError: 400 is over the limit" in big.outcome
    assert engine.get("big/charge/1").status.value == "failed"


# -- cancelling a child from its parent --------------------------------------------------

@genflow.workflow("sample-child-slow")
@attrs.define
class Crawl:
    pages: int = 0

    def definition(self):
        yield For("crawl", True, Sleep("a minute", 60), Step("page", self.page))

    def page(self) -> None:
        self.pages += 1


@genflow.workflow("sample-parent-cancels")
@attrs.define
class Search:
    found: str = ""

    def definition(self):
        # the child runs in a daemon thread: when the main thread ends, the daemon
        # is cancelled, and its Child wait's teardown cancels the child
        yield Go("crawler", Child("crawl", Crawl(), id="crawler-of-search"), daemon=True)
        yield Wait("found?", On("found", self.on_found))

    def on_found(self, what: str) -> None:
        self.found = what


def test_a_parent_cancels_its_child(engine):
    """Temporal's child cancellation (`handle.cancel()` on a child handle, ~30
    lines): in genflow the child's wait is in a daemon thread that ends with
    the parent's main thread (9 lines, the child 8 more)."""
    engine.start(Search(), id="search")
    engine.work(until_idle=True)
    for _ in range(2):
        engine.clock.advance(60)  # type: ignore[attr-defined]
        engine.work(until_idle=True)
    assert engine.get("crawler-of-search").data.pages == 2
    engine.send("search", "found", "genflow")
    engine.work(until_idle=True)
    assert engine.get("search").status.value == "finished"
    assert engine.get("crawler-of-search").status.value == "cancelled"


# -- a query: reading a running workflow's state -----------------------------------------

@genflow.workflow("sample-query")
@attrs.define
class GreetingLoop:
    greeting: str = "Hello"
    count: int = 0

    def definition(self):
        yield Step("greet", lambda: setattr(self, "count", self.count + 1))
        yield Wait("new greeting?", On("greeting", self.on_greeting))
        yield Step("greet again", lambda: setattr(self, "count", self.count + 1))

    def on_greeting(self, greeting: str) -> None:
        self.greeting = greeting


def test_a_running_workflows_state_is_read_without_moving_it(engine):
    """Temporal's `hello_query.py` (~25 lines, a @workflow.query method): in genflow
    the data is the state, read with `Engine.get` (no query handler to write; 11
    lines)."""
    engine.start(GreetingLoop(), id="q")
    before = engine.get("q")
    assert (before.data.greeting, before.data.count, before.waiting_for) == \
        ("Hello", 1, ("greeting",))
    assert engine.get("q").version == before.version  # reading wrote nothing
    engine.send("q", "greeting", "Bye")
    assert (engine.get("q").data.greeting, engine.get("q").data.count) == ("Bye", 2)


# -- a long activity's heartbeat ---------------------------------------------------------

@genflow.workflow("sample-heartbeat")
@attrs.define
class Download:
    chunks: int = 0

    def definition(self):
        yield Step("download", self.download, timeout=600)

    def download(self) -> None:
        for chunk in range(3):
            genflow.heartbeat(f"chunk {chunk}", chunk=chunk)
            self.chunks += 1


def test_a_long_step_heartbeats_into_the_journal(tmp_path):
    """Temporal's `activity.heartbeat(...)` with a heartbeat timeout (~25 lines):
    genflow's step calls `genflow.heartbeat` (10 lines); the lease is what a
    heartbeat timeout is (a worker that stops renewing it loses the instance)."""
    engine = Engine(open_store(f"sqlite:///{tmp_path / 'hb.db'}"), clock=FakeClock(),
                    journal=True)
    engine.start(Download(), id="dl")
    assert engine.get("dl").data.chunks == 3
    notes = [e for e in engine.store.journal("dl") if e.kind == "heartbeat"]
    assert [n.detail["note"] for n in notes] == ["chunk 0", "chunk 1", "chunk 2"]


@genflow.workflow("sample-parent-cancels-by-id")
@attrs.define
class Supervisor:
    child_outcome: str = ""

    def definition(self):
        yield Go("child", Try("run child", Child("crawl", Crawl(), id="crawl-of-supervisor"))
                 .Catch("child ended", Step("note", self.note), errors=ChildFailed), id="child")
        yield Wait("stop?", On("stop"))
        yield Step("cancel child", lambda: genflow.current_step().cancel("crawl-of-supervisor"))

    def note(self) -> None:
        failure = genflow.current_step().failure
        self.child_outcome = failure.message if failure else ""


def test_a_parent_cancels_its_child_by_id_and_hears_of_it(engine):
    """Temporal's `child_handle.cancel()` then `await child_handle` raising
    (~30 lines): genflow's step cancels the child by its id through the outbox,
    and the parent's wait for it fails with ChildFailed, caught (12 lines)."""
    engine.start(Supervisor(), id="sup")
    engine.work(until_idle=True)
    engine.send("sup", "stop")
    engine.work(until_idle=True)
    assert engine.get("crawl-of-supervisor").status.value == "cancelled"
    sup = engine.get("sup")
    assert sup.status.value == "finished"
    assert "cancelled" in sup.data.child_outcome
