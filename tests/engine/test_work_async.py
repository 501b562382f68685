"""`Engine.work_async`: the worker loop of `work`, its rounds run by the async
API, on every store: async steps after a Sleep, retries, async handlers
reached through the outbox, schedules, stop, store failures, and sync
workloads that end exactly as under `work`."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genflow
from genflow import Engine, FakeClock, On, Retry, Sleep, Step, Wait, current_step
from genflow.errors import ArgumentError, StoreUnavailableError
from genflow.state import WorkflowStatus
from genflow.stores import MemoryStore

CALLS: list[str] = []


@genflow.workflow("wa-napper")
@attrs.define
class Napper:
    woke: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Sleep("nap", 5)
        yield Step("wake", self.wake)

    async def wake(self) -> None:
        await asyncio.sleep(0)
        self.woke += 1


@genflow.workflow("wa-flaky")
@attrs.define
class Flaky:
    failures: int = 2
    tries: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("call", self.call, retry=Retry(attempts=5, backoff=1.0, factor=2.0))

    async def call(self) -> None:
        await asyncio.sleep(0)
        CALLS.append(current_step().instance_id)  # (a failed attempt's writes are dropped)
        self.tries = CALLS.count(current_step().instance_id)
        if self.tries <= self.failures:
            raise ConnectionError("down")


@genflow.workflow("wa-inbox")
@attrs.define
class Inbox:
    got: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Wait("letter", On("note", self.note))

    async def note(self, text: str) -> None:
        await asyncio.sleep(0)
        self.got = text


@genflow.workflow("wa-sender")
@attrs.define
class Sender:
    target: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("tell", self.tell)

    def tell(self) -> None:
        ctx = current_step()
        ctx.send(self.target, "note", "later", at=ctx.now + dt.timedelta(minutes=10))


@genflow.workflow("wa-sync")
@attrs.define
class Plain:
    steps: int = 1
    naps: int = 0
    failures: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        for n in range(self.steps):
            if n < self.naps:
                yield Sleep(f"nap {n}", 3 * (n + 1))
            yield Step(f"step {n}", self.step, retry=Retry(attempts=4, backoff=1.0))

    def step(self) -> None:
        self.log.append(current_step().name)
        if self.failures:
            self.failures -= 1
            raise ValueError("not yet")


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


def test_async_steps_after_a_sleep_run_under_work_async(store):
    """The gap `work` leaves: the worker reaches an async step after a Sleep."""
    clock = FakeClock()
    engine = Engine(store, clock=clock)

    async def scenario() -> int:
        iid = await engine.start_async(Napper())
        assert engine.get(iid).status is WorkflowStatus.WAITING
        done = await engine.work_async(until_done=True)
        assert engine.get(iid).data.woke == 1
        return done

    start = clock()
    assert asyncio.run(scenario()) == 1
    assert clock() - start == dt.timedelta(seconds=5)  # the FakeClock jumped to the timer


def test_the_sync_loop_still_refuses_an_async_step(store):
    engine = Engine(store, clock=FakeClock())
    iid = asyncio.run(engine.start_async(Napper()))
    engine.work(until_done=True)
    assert engine.get(iid).status is WorkflowStatus.FAILED
    assert "is async: the sync API cannot await it" in engine.get(iid).error


def test_an_instance_started_without_running_runs_its_async_step(store):
    engine = Engine(store, clock=FakeClock())
    iid = engine.start(Flaky(failures=0), run=False)
    assert asyncio.run(engine.work_async(until_idle=True)) == 1
    assert engine.get(iid).data.tries == 1


def test_an_async_step_is_retried_with_its_backoff(store):
    clock = FakeClock()
    engine = Engine(store, clock=clock)
    iid = engine.start(Flaky(failures=2), run=False)
    start = clock()
    assert asyncio.run(engine.work_async(until_done=True)) == 3
    inst = engine.get(iid)
    assert (inst.status, inst.data.tries) == (WorkflowStatus.FINISHED, 3)
    assert clock() - start == dt.timedelta(seconds=1 + 2)  # the waits of its backoff


def test_a_relayed_event_reaches_an_async_handler(store):
    """A row of the outbox due later is relayed by the worker's round, and its
    delivery moves the target: its async handler is awaited."""
    clock = FakeClock()
    engine = Engine(store, clock=clock)
    inbox = engine.start(Inbox(), id="inbox")
    engine.start(Sender(target=inbox))
    assert engine.get(inbox).data.got == ""
    assert asyncio.run(engine.work_async(until_idle=True, idle_sleep=3600)) >= 1
    inst = engine.get(inbox)
    assert (inst.status, inst.data.got) == (WorkflowStatus.FINISHED, "later")
    assert store.list_outbox() == []


def test_schedules_fire_under_work_async(store):
    clock = FakeClock()
    engine = Engine(store, clock=clock)
    engine.schedules.add("naps", Napper(), every=dt.timedelta(minutes=1), overlap="allow")
    end = clock() + dt.timedelta(minutes=3, seconds=30)
    asyncio.run(engine.work_async(stop=lambda: clock() >= end, idle_sleep=60))
    runs = engine.list(workflow="wa-napper")
    assert len(runs) == 3  # the ticks of minutes 1, 2 and 3
    finished = [r for r in runs if r.status == WorkflowStatus.FINISHED.value]
    assert len(finished) >= 2 and all(engine.get(r.id).data.woke == 1 for r in finished)


def test_stop_ends_work_async_and_the_loop_stays_responsive(store):
    """An idle worker sleeps on the store in a thread: another task of the
    event loop ticks meanwhile, and its start wakes the worker."""
    engine = Engine(store)  # the system clock: the sleeps are the store's waits
    ticks: list[int] = []
    stopping: list[bool] = []

    async def other() -> str:
        for n in range(5):
            ticks.append(n)
            await asyncio.sleep(0.01)
        iid = await engine.start_async(Flaky(failures=0), run=False)
        while engine.get(iid).status is not WorkflowStatus.FINISHED:
            await asyncio.sleep(0.01)
        stopping.append(True)
        engine.store.notify_wake()  # cut the worker's sleep short
        return iid

    async def scenario() -> tuple[int, str]:
        worker = asyncio.create_task(engine.work_async(stop=lambda: bool(stopping),
                                                       idle_sleep=0.2))
        iid = await other()
        return await worker, iid

    done, iid = asyncio.run(scenario())
    assert ticks == [0, 1, 2, 3, 4] and done == 1
    assert engine.get(iid).data.tries == 1


def test_work_async_waits_out_store_failures(caplog):
    clock = FakeClock()
    store = MemoryStore()
    engine = Engine(store, clock=clock)
    iid = engine.start(Napper(), run=False)
    failures = iter([StoreUnavailableError("down"), StoreUnavailableError("down")])
    real = store.claim_due

    def claim(*args, **kwargs):  # type: ignore[no-untyped-def]
        for error in failures:
            raise error
        return real(*args, **kwargs)

    store.claim_due = claim  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="genflow.worker")
    assert asyncio.run(engine.work_async(until_done=True)) == 2  # the start, the timer
    assert engine.get(iid).data.woke == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.attempt, r.wait) for r in warnings] == [(1, 0.5), (2, 1.0)]
    assert any("works again after 2" in r.getMessage() for r in caplog.records)


def test_work_async_refuses_what_work_refuses(store):
    engine = Engine(store)
    iid = engine.start(Plain(steps=1), run=False)  # due: a refused loop must not run it
    before = store.get(iid)
    for kwargs, words in (({"stop": True}, "stop is a function"),
                          ({"batch": 0}, "limit is a count of 1 or more"),
                          ({"until_idle": True, "until_done": True}, "not both"),
                          ({"until_idle": "no"}, "are True or False"),
                          ({"idle_sleep": 0}, "would poll the store with no pause"),
                          ({"idle_sleep": -1}, "idle_sleep is a number of seconds, not -1"),
                          ({"idle_sleep": float("nan")}, "seconds, not nan"),
                          ({"idle_sleep": "1"}, "seconds, not '1'")):
        with pytest.raises(ArgumentError, match=words):
            engine.work(**kwargs)
        with pytest.raises(ArgumentError, match=words):
            asyncio.run(engine.work_async(**kwargs))
    assert store.get(iid) == before


_plain = st.builds(Plain, steps=st.integers(1, 3), naps=st.integers(0, 2),
                   failures=st.integers(0, 2))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=st.lists(st.tuples(_plain, st.booleans()), min_size=1, max_size=4),
       until_done=st.booleans())
def test_sync_workloads_end_the_same_under_both_loops(store, workload, until_done):
    """Same instances, same clock: `work` and `work_async` leave the same rows."""
    rows = []
    for loop in ("work", "work_async"):
        for record in store.list():  # (one database for every example)
            store.delete(record.id)
        clock = FakeClock()
        engine = Engine(store, clock=clock)
        for n, (data, run) in enumerate(workload):
            engine.start(attrs.evolve(data, log=[]), id=f"i{n}", run=run)
        kwargs = {"until_done": True} if until_done else {"until_idle": True,
                                                            "idle_sleep": 2.0}
        done = engine.work(**kwargs) if loop == "work" else \
            asyncio.run(engine.work_async(**kwargs))
        got = []
        for n in range(len(workload)):
            inst = engine.get(f"i{n}")
            got.append((inst.status, inst.data, inst.attempts, inst.wake_at, inst.error))
        rows.append((done, clock(), got))
    assert rows[0] == rows[1]
