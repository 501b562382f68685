"""`Engine.result`: wait for an instance's result while workers move it
(Temporal's `handle.result()`, DBOS's `get_result()`), on every store.

The worker here is a second engine on the same database, in a thread: what a
service that starts work and waits for it does, with its workers elsewhere."""

from __future__ import annotations

import asyncio
import threading
import time

import attrs
import pytest

import genflow
from genflow import (
    Engine,
    InstanceFailedError,
    InstanceNotFoundError,
    On,
    ResultTimeoutError,
    Retry,
    Sleep,
    Step,
    Wait,
    WorkflowFinishedError,
)
from genflow.errors import ArgumentError, InvalidIdError


@genflow.workflow("result-order")
@attrs.define
class Order:
    items: int = 0
    total: int = 0
    paid: bool = False

    def definition(self):
        yield Step("price", self.price)
        yield Sleep("settle", 0.2)
        yield Wait("payment", On("paid", self.on_paid))

    def price(self) -> None:
        self.total = self.items * 5

    def on_paid(self) -> None:
        self.paid = True


@genflow.workflow("result-broken")
@attrs.define
class Broken:
    def definition(self):
        yield Step("charge", self.charge, retry=Retry(attempts=1))

    def charge(self) -> None:
        raise RuntimeError("card declined")


def _worker(store, stop: threading.Event) -> threading.Thread:
    engine = Engine(store)
    thread = threading.Thread(target=engine.work, kwargs={"stop": stop.is_set,
                                                          "idle_sleep": 0.01}, daemon=True)
    thread.start()
    return thread


def test_result_waits_while_a_worker_moves_the_instance(make_store) -> None:
    caller = Engine(make_store())
    iid = caller.start(Order(items=3))
    stop = threading.Event()
    worker = _worker(make_store(), stop)
    try:
        with pytest.raises(ResultTimeoutError, match="had not finished"):
            caller.result(iid, timeout=0.05)  # it waits for "paid": no result yet
        before = caller.store.get(iid)
        assert before.status == "waiting"
        threading.Timer(0.1, caller.send, (iid, "paid")).start()
        data = caller.result(iid, timeout=20)
    finally:
        stop.set()
        worker.join(10)
    assert data == Order(items=3, total=15, paid=True)
    assert caller.get(iid).status is genflow.WorkflowStatus.FINISHED


def test_a_timeout_writes_nothing(store) -> None:
    engine = Engine(store)
    iid = engine.start(Order(items=1))
    before = store.get(iid)
    with pytest.raises(ResultTimeoutError):
        engine.result(iid, timeout=0)
    after = store.get(iid)
    assert (after.blob, after.version, after.status) == (before.blob, before.version,
                                                          before.status)


def test_a_failed_instance_raises_with_its_error(store) -> None:
    engine = Engine(store)
    iid = engine.start(Broken())
    with pytest.raises(InstanceFailedError, match="card declined") as raised:
        engine.result(iid, timeout=5)
    assert "retry" in str(raised.value)


def test_a_cancelled_instance_has_no_result(store) -> None:
    engine = Engine(store)
    iid = engine.start(Order())
    engine.cancel(iid)
    with pytest.raises(WorkflowFinishedError, match="cancelled"):
        engine.result(iid)


def test_a_finished_instance_answers_at_once(store) -> None:
    engine = Engine(store)
    iid = engine.start(Order(items=2), run=False)
    engine.work(until_done=True, idle_sleep=0.01)
    engine.send(iid, "paid")
    start = time.monotonic()
    assert engine.result(iid, timeout=0) == Order(items=2, total=10, paid=True)
    assert time.monotonic() - start < 5  # (no wait when it has finished: not a timing claim)


@pytest.mark.parametrize("timeout", [-1, "5", True, float("nan"), float("inf")])
def test_a_timeout_that_is_no_number_of_seconds_is_refused(store, timeout) -> None:
    engine = Engine(store)
    iid = engine.start(Order())
    with pytest.raises(ArgumentError, match="timeout is a number of seconds"):
        engine.result(iid, timeout=timeout)


def test_an_unknown_or_bad_id_is_refused_at_once(store) -> None:
    engine = Engine(store)
    with pytest.raises(InstanceNotFoundError):
        engine.result("no-such-order", timeout=60)
    with pytest.raises(InvalidIdError):
        engine.result(42, timeout=60)  # type: ignore[arg-type]


def test_result_async_waits_without_blocking_the_loop(make_store) -> None:
    async def main() -> tuple[Order, int]:
        engine = Engine(make_store())
        iid = await engine.start_async(Order(items=4))
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.ensure_future(tick())
        stop = threading.Event()
        worker = _worker(make_store(), stop)
        asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(
            engine.send_async(iid, "paid")))
        try:
            data = await engine.result_async(iid, timeout=20)
        finally:
            ticking.cancel()
            stop.set()
            worker.join(10)
        with pytest.raises(ResultTimeoutError):
            other = await engine.start_async(Order())
            await engine.result_async(other, timeout=0.02)
        return data, ticks

    data, ticks = asyncio.run(main())
    assert data == Order(items=4, total=20, paid=True)
    assert ticks > 0  # the loop ran other tasks while result_async waited


# -- until: what a running instance publishes (DBOS's get_event) ------------------------


@genflow.workflow("result-checkout")
@attrs.define
class Checkout:
    payment_url: str = ""
    paid: bool = False

    def definition(self):
        yield Sleep("queued", 0.05)
        yield Step("create payment", self.create)
        yield Wait("payment", On("paid", lambda: setattr(self, "paid", True)))

    def create(self) -> None:
        self.payment_url = f"https://pay.example.com/{genflow.current_step().instance_id}"


def test_until_answers_what_a_running_instance_publishes(make_store) -> None:
    caller = Engine(make_store())
    iid = caller.start(Checkout(), id="c-1")
    assert caller.get(iid).data.payment_url == ""
    stop = threading.Event()
    worker = _worker(make_store(), stop)
    try:
        data = caller.result(iid, until=lambda d: d.payment_url, timeout=20)
        assert data.payment_url == "https://pay.example.com/c-1" and not data.paid
        # it runs on (its step's save, RESUMING, may be what the caller read first)
        assert caller.get(iid).status.value in ("resuming", "waiting")
        with pytest.raises(ResultTimeoutError, match="had not met the condition"):
            caller.result(iid, until=lambda d: d.paid, timeout=0.05)
        assert asyncio.run(caller.result_async(iid, until=lambda d: d.payment_url,
                                               timeout=5)).payment_url
    finally:
        stop.set()
        worker.join(10)


def test_until_on_an_ended_instance_says_why_it_will_never_hold(store) -> None:
    engine = Engine(store)
    iid = engine.start(Order(items=1))
    engine.cancel(iid)
    with pytest.raises(WorkflowFinishedError, match="cancelled"):
        engine.result(iid, until=lambda d: d.paid, timeout=1)
    done = engine.start(Checkout(paid=True), id="done", run=False)
    before = engine.store.get(done)
    with pytest.raises(ResultTimeoutError):
        engine.result(done, until=lambda d: d.payment_url == "never", timeout=0)
    assert engine.store.get(done) == before
    with pytest.raises(ArgumentError, match="until is a function of the instance's data"):
        engine.result(done, until="payment_url", timeout=1)  # type: ignore[arg-type]


@genflow.workflow("result-quick")
@attrs.define
class Quick:
    n: int = 0

    def definition(self):
        yield Step("one", lambda: setattr(self, "n", 1))


def test_until_on_a_finished_instance_that_never_met_it_is_refused(store) -> None:
    engine = Engine(store)
    iid = engine.start(Quick())
    assert engine.result(iid, until=lambda d: d.n == 1).n == 1
    with pytest.raises(WorkflowFinishedError, match="never held"):
        engine.result(iid, until=lambda d: d.n == 2, timeout=5)
