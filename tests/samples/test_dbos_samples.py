"""DBOS's canonical samples (the DBOS Transact Python docs' examples), written
in genflow as a user who knows DBOS writes them from genflow's README and docs,
and run through the Engine on SQLite (and PostgreSQL where the sample is about
the store: queues, deduplication, starting once).

Each test's docstring gives the workflow's line count (code lines, with its
steps, no blank lines or comments) against the peer's, roughly."""

from __future__ import annotations

import datetime as dt
import threading

import attrs
import pytest

import genflow
from genflow import (
    Cancelled,
    DuplicateInstanceError,
    Engine,
    FakeClock,
    On,
    Sleep,
    Step,
    Timeout,
    Try,
    Wait,
    open_store,
)
from genflow.queues import Queue


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(open_store(f"sqlite:///{tmp_path / 'dbos.db'}"), clock=FakeClock())


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:  # the stores that share a database
    return str(request.param)


@pytest.fixture
def shared(make_store) -> Engine:
    return Engine(make_store(), clock=FakeClock())


# -- set_event / get_event: a running workflow publishes a value -------------------------

@genflow.workflow("sample-checkout-url")
@attrs.define
class Checkout:
    order: str
    payment_url: str = ""  # DBOS.set_event("payment_url", ...): a field the caller reads
    status: str = ""

    def definition(self):
        yield Step("create payment", self.create_payment)
        yield Wait("payment", On("payment status", self.on_status),
                   Timeout("abandoned", dt.timedelta(minutes=30),
                           Step("cancel", lambda: setattr(self, "status", "cancelled"))))

    def create_payment(self) -> None:
        self.payment_url = f"https://pay.example.com/{genflow.current_step().idempotency_key}"

    def on_status(self, status: str) -> None:
        self.status = status


def test_a_value_published_by_a_workflow_a_worker_runs_is_waited_for(make_store):
    """The same with the workflow on a worker elsewhere (DBOS's `get_event(id,
    key, timeout)` waits for it): `Engine.result(id, until=...)` waits until the
    data says it is published, while the instance runs on."""
    caller = Engine(make_store())
    worker = Engine(make_store())
    stop = threading.Event()
    thread = threading.Thread(target=worker.work, kwargs={"stop": stop.is_set,
                                                          "idle_sleep": 0.01})
    thread.start()
    try:
        order = caller.start(Checkout("o-2"), id="o-2", run=False)  # a worker runs it
        published = caller.result(order, until=lambda c: c.payment_url, timeout=20)
        assert published.payment_url.startswith("https://pay.example.com/o-2/")
        # it runs on (its step's save, RESUMING, may be what the caller read first)
        assert caller.get(order).status.value in ("resuming", "waiting")
    finally:
        stop.set()
        thread.join(10)


def test_a_workflow_publishes_a_value_its_caller_reads_while_it_runs(engine):
    """DBOS's widget store: `DBOS.set_event(PAYMENT_URL, url)` in the workflow,
    `DBOS.get_event(id, PAYMENT_URL)` in the request handler (~20 lines). In
    genflow a step writes a field and the caller reads it with `Engine.get`
    (15 lines); `get_event`'s wait is the start itself, which returns once the
    instance waits, the field set."""
    order = engine.start(Checkout("o-1"), id="o-1")
    url = engine.get(order).data.payment_url
    assert url.startswith("https://pay.example.com/")
    engine.send(order, "payment status", "paid")
    assert engine.get(order).data.status == "paid"
    assert engine.get(order).data.payment_url == url  # published once, kept


# -- send / recv: a mailbox per topic, with a timeout ------------------------------------

@genflow.workflow("sample-recv")
@attrs.define
class Notified:
    messages: list[str] = attrs.field(factory=list)
    timed_out: bool = False

    def definition(self):
        yield Sleep("warm up", 5)
        for i in range(2):  # DBOS.recv("notification", timeout_seconds=60), twice
            yield Wait(f"recv {i}", On("notification", self.on_message),
                       Timeout(f"nothing {i}", 60, Step(f"give up {i}", self.give_up)))

    def on_message(self, message: str) -> None:
        self.messages.append(message)

    def give_up(self) -> None:
        self.timed_out = True


def test_send_before_recv_is_kept_and_recv_times_out(engine):
    """DBOS's `DBOS.send(id, msg, topic)` / `DBOS.recv(topic, timeout)` (~12 lines):
    genflow's `Engine.send` and a `Wait` on the topic with a `Timeout` (14 lines).
    A message sent before the wait is kept in the mailbox, as DBOS's is."""
    engine.start(Notified(), id="n")  # it sleeps: no wait for the topic open yet
    kept = engine.send("n", "notification", "hello")
    assert kept is not None and kept.kept == 1
    engine.clock.advance(5)  # type: ignore[attr-defined]
    engine.work(until_idle=True)
    assert engine.get("n").data.messages == ["hello"]
    engine.clock.advance(60)  # type: ignore[attr-defined]
    engine.work(until_idle=True)
    done = engine.get("n")
    assert (done.status.value, done.data.timed_out) == ("finished", True)


# -- idempotency: starting twice with the same id ----------------------------------------

CHARGES: list[str] = []


@genflow.workflow("sample-idempotent")
@attrs.define
class Payment:
    amount: int
    receipt: str = ""

    def definition(self):
        yield Step("charge", self.charge)

    def charge(self) -> None:
        CHARGES.append(genflow.current_step().instance_id)
        self.receipt = f"charged {self.amount}"


def test_starting_twice_with_one_id_runs_once(shared):
    """DBOS's `with SetWorkflowID("pay-7"): payment(...)` called twice runs the
    workflow once and gives the first run's result (~8 lines); genflow's
    `start(..., id=..., if_exists="return")` and `result` (the workflow 10 lines)."""
    CHARGES.clear()
    first = shared.start(Payment(40), id="pay-7", if_exists="return")
    again = shared.start(Payment(99), id="pay-7", if_exists="return")
    assert first == again == "pay-7"
    assert CHARGES == ["pay-7"]
    assert shared.result("pay-7", timeout=5).receipt == "charged 40"
    with pytest.raises(DuplicateInstanceError, match="if_exists"):
        shared.start(Payment(99), id="pay-7")


# -- a queue with concurrency and a rate limit -------------------------------------------

RAN: list[int] = []


@genflow.workflow("sample-queued-task")
@attrs.define
class Task:
    n: int
    tenant: str = ""

    def definition(self):
        yield Step("process", lambda: RAN.append(self.n))


def test_a_queue_bounds_concurrency_and_rate(shared):
    """DBOS's `Queue("example", concurrency=2, limiter={"limit": 3, "period": 60})`
    and `queue.enqueue(task, n)` in a loop (~10 lines); genflow's (7 lines)."""
    RAN.clear()
    clock = shared.clock
    shared.queues.define(Queue("example", concurrency=2, rate=3, per=60))
    ids = [shared.start(Task(n), queue="example") for n in range(5)]
    assert len(shared.queues.admit().admitted) == 2  # the concurrency
    shared.work(until_idle=True)  # the worker admits as slots free, up to the rate
    assert sorted(RAN) == [0, 1, 2]
    blocked = shared.queues.admit()
    assert blocked.admitted == () and blocked.next_at == clock() + dt.timedelta(seconds=60)
    clock.advance(60)  # type: ignore[attr-defined]
    shared.work(until_idle=True)
    assert sorted(RAN) == [0, 1, 2, 3, 4]
    assert all(shared.get(i).status.value == "finished" for i in ids)


def test_a_queue_limits_per_partition_key(shared):
    """DBOS's partitioned queue (`Queue(..., partition_queue=True, concurrency=1)`,
    `SetEnqueueOptions(queue_partition_key=tenant)`): genflow's `per_key`."""
    shared.queues.define(Queue("tenants", per_key=1, key="tenant"))
    for n, tenant in enumerate(["a", "a", "b"]):
        shared.start(Task(n, tenant), queue="tenants")
    admitted = shared.queues.admit().admitted
    assert sorted(shared.get(i).data.tenant for i in admitted) == ["a", "b"]


# -- deduplication: one enqueued per deduplication id ------------------------------------

def test_a_deduplication_id_is_the_instance_id(shared):
    """DBOS's `SetEnqueueOptions(deduplication_id="user-1")`: a second enqueue
    while the first is queued raises DBOSQueueDeduplicatedError. genflow's
    instance id is the deduplication id (3 lines): the second start is
    refused, nothing written, or with `if_exists="return"` given the first."""
    shared.queues.define(Queue("signups", concurrency=1))
    first = shared.start(Task(1), id="signup-user-1", queue="signups")
    before = shared.store.get(first)
    with pytest.raises(DuplicateInstanceError):
        shared.start(Task(2), id="signup-user-1", queue="signups")
    assert shared.start(Task(2), id="signup-user-1", queue="signups",
                        if_exists="return") == first
    assert shared.store.get(first) == before
    assert shared.queues.counts("signups") == (1, 0)


# -- a workflow timeout -------------------------------------------------------------------

@genflow.workflow("sample-timeout")
@attrs.define
class Approval:
    approved: bool = False
    cleaned_up: bool = False

    def definition(self):
        yield Try("approve",
                  Wait("approval", On("approve", lambda: setattr(self, "approved", True))),
                  ).Catch("timed out", Step("clean up", self.clean_up), errors=Cancelled)

    def clean_up(self) -> None:
        self.cleaned_up = True


def test_a_workflow_timeout_cancels_it(shared):
    """DBOS's `with SetWorkflowTimeout(3600): approval()` (~5 lines) cancels the
    workflow at its timeout; genflow's `start(..., deadline=3600)` does (the
    workflow's 11 lines know nothing of it): a worker cancels the instance at
    the deadline, and the cancellation's cleanup runs as any cancel's."""
    shared.start(Approval(), id="late", deadline=3600)
    shared.start(Approval(), id="on-time", deadline=3600)
    shared.send("on-time", "approve")
    shared.clock.advance(3600)  # type: ignore[attr-defined]
    shared.work(until_idle=True)
    on_time, late = shared.get("on-time"), shared.get("late")
    assert (on_time.status.value, on_time.data.approved) == ("finished", True)
    assert (late.status.value, late.data.cleaned_up) == ("cancelled", True)
