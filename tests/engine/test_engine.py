"""The Engine over real stores: start, send, timers, retries, leases, cancel, async."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import attrs
import pytest

import genflow
from genflow import (
    EventHandler,
    For,
    On,
    Retry,
    Step,
    Timeout,
    Wait,
    WaitFor,
    WorkflowStatus,
)
from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import (
    ConcurrencyError,
    DuplicateInstanceError,
    InstanceNotFoundError,
    NothingToRetryError,
    PayloadError,
    UnknownEventError,
    WorkflowFinishedError,
)

FLAKY: dict[str, int] = {}


@attrs.define
class Order:
    item: str
    qty: int


@genflow.workflow("engine-shop")
@attrs.define
class Shop:
    orders: list[Order] = attrs.field(factory=list)
    closed: bool = False
    shipped: int = 0

    def definition(self):
        yield For("open", not self.closed,
            Wait("next",
                On("order", self.on_order),
                On("close", self.on_close),
            ),
        )
        yield Step("ship", self.ship)

    def on_order(self, order: Order) -> int:
        self.orders.append(order)
        return len(self.orders)

    def on_close(self) -> None:
        self.closed = True

    def ship(self) -> None:
        self.shipped = sum(o.qty for o in self.orders)


@genflow.workflow("engine-flaky")
@attrs.define
class Flaky:
    key: str = "k"
    done: bool = False

    def definition(self):
        yield Step("call out", self.call_out, retry=Retry(attempts=3, backoff=10, factor=2))

    def call_out(self) -> None:
        FLAKY[self.key] = FLAKY.get(self.key, 0) - 1
        if FLAKY[self.key] >= 0:
            raise ConnectionError("service down")
        self.done = True


class Registry(EventHandler):
    """A handler with observable set-up and teardown."""

    live: set[str] = set()
    torn: list[tuple[str, bool]] = []

    def setup(self, req):
        token = f"{req.instance_id}/{req.event}"
        Registry.live.add(token)
        return token

    def handle(self, req, payload: str) -> str:
        return f"ok {payload} via {req.setup_data}"

    def teardown(self, req, handled):
        Registry.live.discard(req.setup_data)
        Registry.torn.append((req.event, handled))


@genflow.workflow("engine-timed")
@attrs.define
class Timed:
    outcome: str = ""

    def definition(self):
        yield Wait("answer",
            On("approve", Registry(), Step("approved", self.approve)),
            Timeout("too late", dt.timedelta(hours=1), Step("expired", self.expire)),
        )

    def approve(self) -> None:
        self.outcome = "approved"

    def expire(self) -> None:
        self.outcome = "expired"


@genflow.workflow("engine-async")
@attrs.define
class AsyncFlow:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("fetch", self.fetch)
        yield Wait("poke", On("poke", self.on_poke))
        yield Step("after", self.after)

    async def fetch(self) -> None:
        await asyncio.sleep(0)
        self.log.append(f"fetch {genflow.current_step().idempotency_key}")

    async def on_poke(self, who: str) -> None:
        await asyncio.sleep(0)
        self.log.append(f"poke {who}")

    def after(self) -> None:
        self.log.append("after")


@pytest.fixture
def engine(make_store):
    """An engine over each store kind (memory, SQLite, PostgreSQL), on a FakeClock."""
    return Engine(make_store(), clock=FakeClock())


def test_start_send_finish(engine):
    iid = engine.start(Shop(), id="s1")
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.WAITING
    assert engine.store.get(iid).waiting_for == ("close", "order")
    assert engine.send(iid, "order", {"item": "tea", "qty": 2}) == 1
    assert engine.send(iid, "order", {"item": "cake", "qty": 3}) == 2
    engine.send(iid, "close")
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED
    assert inst.data.shipped == 5
    assert inst.data.orders == [Order("tea", 2), Order("cake", 3)]
    with pytest.raises(WorkflowFinishedError):
        engine.send(iid, "close")


def test_duplicate_id_and_missing_instance(engine):
    engine.start(Shop(), id="dup")
    with pytest.raises(DuplicateInstanceError):
        engine.start(Shop(), id="dup")
    with pytest.raises(InstanceNotFoundError):
        engine.get("nope")
    with pytest.raises(InstanceNotFoundError):
        engine.send("nope", "close")


def test_bad_events_change_nothing(engine):
    iid = engine.start(Shop())
    before = engine.store.get(iid)
    with pytest.raises(UnknownEventError, match="waits for"):
        engine.send(iid, "refund")
    with pytest.raises(PayloadError, match="qty"):
        engine.send(iid, "order", {"item": "tea", "qty": "many"})
    with pytest.raises(PayloadError):
        engine.send(iid, "close", {"unexpected": 1})
    after = engine.store.get(iid)
    assert (after.version, after.blob) == (before.version, before.blob)
    # and the lease was released: a normal send still goes through at once
    assert engine.send(iid, "order", {"item": "tea", "qty": 1}, timeout=0.5) == 1


def test_retry_policy_backoff_then_success(engine):
    FLAKY["r1"] = 2  # fails twice, then works
    iid = engine.start(Flaky(key="r1"))
    record = engine.store.get(iid)
    assert record.attempts == 1 and "service down" in record.error
    assert record.wake_at == engine.clock() + dt.timedelta(seconds=10)
    assert engine.run_due() == 0  # not due yet
    engine.clock.advance(seconds=10)
    assert engine.run_due() == 1
    record = engine.store.get(iid)
    assert record.attempts == 2
    assert record.wake_at == engine.clock() + dt.timedelta(seconds=20)
    engine.clock.advance(seconds=20)
    engine.run_due()
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED and inst.data.done
    assert inst.attempts == 0 and inst.error == ""


def test_exhausted_retries_fail_then_operator_retry(engine):
    FLAKY["r2"] = 5
    iid = engine.start(Flaky(key="r2"))
    for _ in range(2):
        engine.clock.advance(seconds=100)
        engine.run_due()
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FAILED
    assert inst.attempts == 3 and "ConnectionError" in inst.error
    assert inst.wake_at is None
    engine.clock.advance(seconds=1000)
    assert engine.run_due() == 0  # a failed instance is left for an operator
    FLAKY["r2"] = 0  # the operator fixed the outside service
    engine.retry(iid)
    engine.run_due()
    assert engine.get(iid).status is WorkflowStatus.FINISHED
    before = engine.store.get(iid)
    with pytest.raises(NothingToRetryError, match=r"has not failed \(it is finished\): there is "
                                                  r"nothing to retry"):
        engine.retry(iid)  # an operator's second retry: refused, nothing changed
    assert engine.store.get(iid) == before


def test_timer_fires_when_due(engine):
    Registry.live.clear()
    Registry.torn.clear()
    iid = engine.start(Timed())
    record = engine.store.get(iid)
    assert record.wake_at == engine.clock() + dt.timedelta(hours=1)
    assert Registry.live == {f"{iid}/approve"}
    engine.clock.advance(dt.timedelta(minutes=59))
    assert engine.run_due() == 0
    engine.clock.advance(dt.timedelta(minutes=1))
    assert engine.run_due() == 1
    inst = engine.get(iid)
    assert inst.data.outcome == "expired"
    assert inst.status is WorkflowStatus.FINISHED
    assert Registry.live == set() and Registry.torn == [("approve", False)]


def test_event_beats_timer_and_timer_is_torn_down(engine):
    Registry.torn.clear()
    iid = engine.start(Timed())
    assert engine.send(iid, "approve", "bob") == f"ok bob via {iid}/approve"
    inst = engine.get(iid)
    assert inst.data.outcome == "approved"
    assert engine.store.get(iid).wake_at is None
    engine.clock.advance(dt.timedelta(hours=2))
    assert engine.run_due() == 0
    assert Registry.torn == [("approve", True)]


def test_cancel_tears_down(engine):
    Registry.live.clear()
    iid = engine.start(Timed())
    assert Registry.live
    engine.cancel(iid)
    assert Registry.live == set()
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.CANCELLED
    assert engine.store.get(iid).wake_at is None
    with pytest.raises(WorkflowFinishedError):
        engine.send(iid, "approve", "x")


def test_start_without_run_leaves_work_for_a_worker(engine):
    iid = engine.start(Shop(), run=False)
    assert engine.get(iid).status is WorkflowStatus.RESUMING
    assert engine.work(until_idle=True) == 1
    assert engine.get(iid).status is WorkflowStatus.WAITING


def test_async_api(engine):
    async def scenario():
        iid = await engine.start_async(AsyncFlow())
        await engine.send_async(iid, "poke", "ann")
        return iid

    iid = asyncio.run(scenario())
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED
    assert inst.data.log[0].startswith(f"fetch {iid}/_main_/fetch/")
    assert inst.data.log[1:] == ["poke ann", "after"]


def test_sync_api_refuses_async_steps_clearly(engine):
    iid = engine.start(AsyncFlow())
    inst = engine.get(iid)
    assert "async" in inst.error
    assert inst.data.log == []


def test_busy_instance_and_lease_takeover(engine):
    iid = engine.start(Shop())
    now = engine.clock()
    other = Engine(engine.store, clock=engine.clock, owner="other")
    assert engine.store.acquire(iid, "other", now, now + dt.timedelta(seconds=30)) is not None
    with pytest.raises(ConcurrencyError, match="busy"):
        engine.send(iid, "close", timeout=0.05)
    engine.clock.advance(seconds=31)  # the other worker died: its lease expired
    engine.send(iid, "close", timeout=0.05)
    assert engine.get(iid).status is WorkflowStatus.FINISHED
    del other


def test_journal_records_moves(make_store):
    store = make_store()
    engine = Engine(store, clock=FakeClock(), journal=True)
    iid = engine.start(Shop())
    engine.send(iid, "order", {"item": "tea", "qty": 1})
    engine.send(iid, "close")
    kinds = [e.kind for e in store.journal(iid)]
    assert kinds[0] == "start"
    assert kinds.count("event") == 2
    assert "after_step" in kinds
    events = [e.detail for e in store.journal(iid) if e.kind == "event"]
    assert events[0]["payload"] == {"item": "tea", "qty": 1}
    plain = Engine(store, clock=FakeClock())
    iid2 = plain.start(Shop())
    assert store.journal(iid2) == []


def test_two_engines_one_store_concurrent_sends(make_store):
    engines = [Engine(make_store(), lease_seconds=30) for _ in range(2)]
    iid = engines[0].start(Shop())
    errors = []

    def sender(engine, n):
        try:
            for k in range(n):
                engine.send(iid, "order", {"item": f"x{k}", "qty": 1}, timeout=30)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(e, 15)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engines[1].send(iid, "close")
    inst = engines[0].get(iid)
    assert inst.status is WorkflowStatus.FINISHED
    assert len(inst.data.orders) == 30 and inst.data.shipped == 30


@genflow.workflow("engine-cond")
@attrs.define
class Cond:
    ready: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield genflow.Go("watcher", self.watch)
        yield Wait("go", On("go", self.on_go))

    def watch(self):
        yield WaitFor("ready", self.ready, self.seen)

    def on_go(self) -> None:
        self.ready = True

    def seen(self) -> None:
        self.log.append("seen")


def test_waitfor_in_another_thread(engine):
    iid = engine.start(Cond())
    assert engine.get(iid).status is WorkflowStatus.WAITING
    engine.send(iid, "go")
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED and inst.data.log == ["seen"]
