"""Failure, time and cancellation through the Engine, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time

import attrs
import pytest

import genflow
from genflow import (
    Cancelled,
    Failure,
    On,
    Retry,
    Saga,
    Step,
    Try,
    Wait,
    WorkflowStatus,
    current_step,
    heartbeat,
)
from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.statements import Raise

CALLS: list[str] = []
DOWN: dict[str, int] = {}


class Declined(Exception):
    pass


def _act(name: str):
    def run() -> None:
        CALLS.append(name)
        if DOWN.get(name, 0):
            DOWN[name] -= 1
            raise Declined(f"{name} declined")
    run.__qualname__ = name
    return run


@pytest.fixture(autouse=True)
def _clean():
    CALLS.clear()
    DOWN.clear()


@pytest.fixture
def engine(make_store):
    return Engine(make_store(), clock=FakeClock(), journal=True)


@genflow.workflow("fe-transfer")
@attrs.define
class Transfer:
    amount: int = 10
    failure: Failure | None = None

    def definition(self):
        retry = Retry(attempts=3, backoff=10, factor=1, never=(KeyError,))
        yield Step("withdraw", _act("withdraw"), retry=retry)
        yield Try("deposit or refund",
            Step("deposit", _act("deposit"), retry=retry),
        ).Catch("deposit failed", Step("refund", _act("refund"), retry=retry), Raise(),
                into="failure")


def test_retries_back_off_then_the_catch_runs_and_the_failure_is_raised_on(engine):
    DOWN["deposit"] = 3
    iid = engine.start(Transfer())
    assert CALLS == ["withdraw", "deposit"]
    for _ in range(2):  # each retry waits its backoff: nothing runs before it is due
        assert engine.run_due() == 0
        engine.clock.advance(seconds=10)
        engine.run_due()
    assert CALLS == ["withdraw", "deposit", "deposit", "deposit", "refund"]
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FAILED and "deposit declined" in inst.error
    assert inst.data.failure is not None and inst.data.failure.attempt == 3
    kinds = [e.kind for e in engine.store.journal(iid)]
    # three failed attempts, then the failure raised on from the catch ends the instance
    assert kinds.count("after_failure") == 4 and "failure" in kinds


@genflow.workflow("fe-cleanup")
@attrs.define
class Reservation:
    released: bool = False

    def definition(self):
        yield Try("hold seats",
            Step("reserve", _act("reserve")),
            Wait("paid?", On("paid")),
            Step("issue", _act("issue")),
        ).Catch("on cancel", Step("release", self.release), errors=Cancelled
        ).Finally("always", Step("audit", _act("audit")))

    def release(self) -> None:
        CALLS.append("release")
        assert current_step().failure is not None
        assert current_step().failure.type == "Cancelled"
        self.released = True


def test_cancel_runs_the_cleanup_steps_durably_then_the_instance_is_cancelled(engine):
    iid = engine.start(Reservation())
    engine.cancel(iid)
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.CANCELLED and inst.data.released
    assert CALLS == ["reserve", "release", "audit"]
    kinds = [e.kind for e in engine.store.journal(iid)]
    assert kinds.index("after_cancel") < kinds.index("after_step", kinds.index("after_cancel"))
    with pytest.raises(genflow.WorkflowFinishedError):
        engine.cancel(iid)


@genflow.workflow("fe-saga")
@attrs.define
class Trip:
    saga: Saga = attrs.field(factory=Saga)

    def definition(self):
        yield Try("book",
            self.saga.step("flight", _act("flight"), compensate=_act("cancel flight")),
            self.saga.step("hotel", _act("hotel"), compensate=_act("cancel hotel")),
        ).Catch("roll back", self.saga.compensate())


def test_a_saga_through_the_engine(engine):
    DOWN["hotel"] = 1
    DOWN["cancel flight"] = 1  # the compensation itself retries until it works
    iid = engine.start(Trip())
    assert CALLS == ["flight", "hotel", "cancel flight"]
    engine.clock.advance(seconds=1)
    engine.run_due()
    assert CALLS[-1] == "cancel flight" and CALLS.count("cancel flight") == 2
    assert engine.get(iid).status is WorkflowStatus.FINISHED


@attrs.define
class Receipt:
    total: int
    lines: list[str]


@genflow.workflow("fe-update")
@attrs.define
class Cart:
    items: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Wait("add?", On("add", self.add))

    def add(self, item: str) -> Receipt:
        self.items.append(item)
        return Receipt(total=len(self.items), lines=list(self.items))


def test_an_update_handlers_result_comes_back_typed(engine):
    iid = engine.start(Cart())
    receipt = engine.send(iid, "add", "tea")
    assert receipt == Receipt(total=1, lines=["tea"])


@genflow.workflow("fe-long")
@attrs.define
class Long:
    def definition(self):
        yield Step("crunch", self.crunch)

    def crunch(self) -> None:
        for part in range(4):
            time.sleep(0.5)
            heartbeat(f"part {part} done", part=part)
        CALLS.append("crunched")


def test_a_step_longer_than_the_lease_keeps_it(make_store):
    store = make_store()
    # a 1 s lease, a 2 s step: without renewals the other engine takes it over
    worker = Engine(store, lease_seconds=1.0, journal=True)
    other = Engine(store if type(store).__name__ == "MemoryStore" else store.reopen(),
                   lease_seconds=1.0)
    iid = worker.start(Long(), run=False)
    taken: list[int] = []
    runner = threading.Thread(target=lambda: taken.append(worker.run_due()))
    runner.start()
    time.sleep(0.2)
    stolen = 0
    while runner.is_alive():  # the lease is renewed while the step runs: never taken over
        stolen += other.run_due()
        time.sleep(0.05)
    runner.join()
    assert taken == [1] and stolen == 0 and CALLS == ["crunched"]
    notes = [e.detail["note"] for e in store.journal(iid) if e.kind == "heartbeat"]
    assert notes == [f"part {n} done" for n in range(4)]
    assert worker.get(iid).status is WorkflowStatus.FINISHED
    if other.store is not store:
        other.store.close()


def test_heartbeat_outside_an_engine_is_harmless():
    @genflow.workflow("fe-pure-beat")
    @attrs.define
    class Pure:
        beat: bool = True

        def definition(self):
            yield Step("s", self.s)

        def s(self) -> None:
            self.beat = heartbeat("hi")

    wf = Pure()
    genflow.resume(wf, genflow.new_state("p", wf))
    assert wf.beat is False


def test_timeout_at_a_deadline_fires_by_the_engines_clock(engine):
    @genflow.workflow("fe-deadline")
    @attrs.define
    class Offer:
        expires: dt.datetime
        accepted: bool = False

        def definition(self):
            yield Wait("answer?", On("accept", self.accept),
                       genflow.Timeout("expired", at=self.expires))

        def accept(self) -> None:
            self.accepted = True

    expires = engine.clock() + dt.timedelta(hours=2)
    iid = engine.start(Offer(expires=expires))
    assert engine.store.get(iid).wake_at == expires
    engine.clock.advance(dt.timedelta(hours=2))
    assert engine.run_due() == 1
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED and not inst.data.accepted


class _Refused(Exception):
    pass


@genflow.workflow("test-error-text-never")
@attrs.define
class _FailsAtOnce:
    def definition(self):  # type: ignore[no-untyped-def]
        yield genflow.Step("pay", self.pay, retry=genflow.Retry(attempts=3, never=(_Refused,)))

    def pay(self) -> None:
        raise _Refused("A")


@genflow.workflow("test-error-text-retried")
@attrs.define
class _FailsAfterRetries:
    def definition(self):  # type: ignore[no-untyped-def]
        yield Try("t", genflow.Step("look up", self.look_up,
                                    retry=genflow.Retry(attempts=2, backoff=1))
                  ).Finally("f", genflow.Step("note", self.note))

    def look_up(self) -> None:
        raise KeyError("Z")

    def note(self) -> None:
        pass


def test_a_failure_reads_type_colon_message_whichever_path_recorded_it(store) -> None:
    # refused at once under `never`, after retries, and raised again from the State
    # after a Finally ran (RecordedFailure): one format, genflow.errors.error_text
    clock = FakeClock()
    engine = Engine(store, [_FailsAtOnce, _FailsAfterRetries], clock=clock)
    engine.start(_FailsAtOnce(), id="never")
    engine.start(_FailsAfterRetries(), id="retried")
    engine.work(until_done=True)
    never, retried = engine.get("never"), engine.get("retried")
    assert never.error == ("StepError: step 'pay' in thread '_main_' failed: _Refused: A")
    assert retried.error == ("StepError: step 'look up' in thread '_main_' failed: KeyError: 'Z'")
    assert never.state.threads[0].error == "_Refused: A"
    assert genflow.errors.error_text(KeyError()) == "KeyError"
