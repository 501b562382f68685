"""What a new user meets first, written from the docs (docs/together.md,
docs/mailbox.md, docs/failure.md) on every store: a child whose report its
parent's wait cannot take fails that wait (catchable) rather than leaving the
parent waiting for ever, and refusals say what is true of the instance."""

from __future__ import annotations

import asyncio
import datetime as dt

import attrs
import pytest

import genflow
from genflow import (
    Child,
    Children,
    DefinitionError,
    Engine,
    Failure,
    FakeClock,
    InstanceFailedError,
    On,
    PayloadError,
    Raise,
    Step,
    Timeout,
    Try,
    UnknownEventError,
    Wait,
)
from genflow.describe import describe
from genflow.handlers import EventHandler
from genflow.state import CallbackRequest


@genflow.workflow("accept-refusals-kid")
@attrs.define
class Kid:
    value: int = 0

    def definition(self):
        yield Step("work", self.work)

    def work(self) -> None:
        self.value += 1


@genflow.workflow("accept-refusals-into-int")
@attrs.define
class IntoInt:
    total: int = 0  # a fan-out's results are a list: they do not fit
    failure: Failure | None = None

    def definition(self):
        yield Try("gather",
                  Children("kids", [Kid(1), Kid(2)], into="total", result="value"),
                  ).Catch("unfit", errors=PayloadError, into="failure")


@genflow.workflow("accept-refusals-uncaught")
@attrs.define
class Uncaught:
    total: int = 0

    def definition(self):
        yield Children("kids", [Kid(1)], into="total", result="value")


@genflow.workflow("accept-refusals-no-field")
@attrs.define
class NoField:
    got: int = 0

    def definition(self):
        yield Child("kid", Kid(), into="got", result="valeu")


def test_children_results_that_do_not_fit_into_fail_the_wait(store):
    engine = Engine(store, clock=FakeClock())
    engine.start(IntoInt(), id="p")
    engine.start(Uncaught(), id="q")
    engine.work(until_idle=True)
    p = engine.get("p")
    assert p.status.value == "finished"
    assert p.data.failure is not None and p.data.failure.type == "PayloadError"
    assert "Children 'kids': the result does not fit into='total'" in p.data.failure.message
    assert [r.status for r in engine.list(parent="p")] == ["finished", "finished"]
    q = engine.get("q")
    assert q.status.value == "failed"
    assert "does not fit into='total'" in q.error


def test_a_result_that_is_no_field_of_the_child_is_refused_at_start(store):
    engine = Engine(store, clock=FakeClock())
    with pytest.raises(DefinitionError, match="result='valeu' is not a field of the child's Kid"):
        engine.start(NoField(), id="n")
    assert list(engine.list()) == []


class InvalidAccount(Exception):
    pass


@genflow.workflow("accept-refusals-refund")
@attrs.define
class Refund:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Try("try deposit", Step("deposit", self.deposit)).Catch(
            "on failure", Step("refund", lambda: self.log.append("refund")), Raise())

    def deposit(self) -> None:
        raise InvalidAccount("account 'nobody' does not exist")


def test_a_send_to_an_instance_that_cannot_be_retried_does_not_advise_a_retry(store):
    engine = Engine(store, clock=FakeClock())
    engine.start(Refund(), id="t")
    before = store.get("t")
    with pytest.raises(InstanceFailedError) as refused:
        engine.send("t", "anything")
    assert "cancel it, or move the failed thread" in str(refused.value)
    assert "retry it" not in str(refused.value)
    with pytest.raises(genflow.GenflowError, match="cannot be retried"):
        engine.retry("t")
    assert store.get("t") == before
    # `genflow show` gives the same advice, not a retry that would be refused
    shown = describe(engine.get("t").state, now=engine.clock())
    assert "to go on: `genflow cancel t`, or `genflow move` the failed thread" in shown
    assert "genflow retry" not in shown


@genflow.workflow("accept-refusals-approval")
@attrs.define
class Approval:
    decision: str = ""

    def definition(self):
        yield Step("ask", lambda: None)
        yield Wait("decision?", On("approve", lambda: setattr(self, "decision", "yes")),
                   Timeout("a day", dt.timedelta(days=1)))


def test_refusals_name_timers_once_and_a_not_started_instance_as_such(store):
    engine = Engine(store, clock=FakeClock())
    engine.start(Approval(), id="a")
    with pytest.raises(UnknownEventError) as refused:
        engine.send("a", "a day")
    words = str(refused.value)
    assert words.count("timers fire by themselves") == 1
    assert "instance 'a' does not wait for 'a day'; it waits for 'approve'" in words
    with pytest.raises(UnknownEventError) as refused:
        engine.send("b", "reject", start=Approval())
    assert str(refused.value).startswith("instance 'b' has not started yet; workflow "
                                         "'accept-refusals-approval' has no event 'reject'")
    assert list(engine.list()) == [store.get("a")]


@pytest.mark.parametrize("clock", [dt.datetime.utcnow, lambda: dt.datetime(2030, 1, 1), 5])
def test_an_engine_refuses_a_clock_of_naive_times_where_it_is_given(store, clock):
    from genflow.errors import ClockError

    with pytest.raises(ClockError, match="aware datetime"):
        Engine(store, clock=clock)
    assert list(store.list()) == []


@genflow.workflow("accept-refusals-kid-waits")
@attrs.define
class WaitingKid:
    n: int = 0

    def definition(self):
        yield Wait("go", On("go", lambda: setattr(self, "n", self.n * 10)))


@genflow.workflow("accept-refusals-opens")
@attrs.define
class Opens:
    got: list[int] = attrs.field(factory=list)

    def definition(self):
        yield Wait("open", On("open"))
        yield Children("kids", [WaitingKid(1), WaitingKid(2)], into="got", result="n")


def test_no_sender_can_send_a_childs_report(store):
    """'child ended' is the engine's: kept before the wait, it made every later
    move of the parent raise; sent during it, it could forge a child's result."""
    engine = Engine(store, clock=FakeClock())
    engine.start(Opens(), id="p")
    forged = {"index": 0, "id": "p/kids/3/0", "workflow": "accept-refusals-kid-waits",
              "status": "finished", "data": {"n": 99}}
    before = store.get("p")
    with pytest.raises(UnknownEventError, match="by the engine alone"):
        engine.send("p", "child ended", forged)
    with pytest.raises(UnknownEventError) as refused:
        engine.send("p", "nope")
    assert "its events are 'open'" in str(refused.value)  # not the engine's own
    assert store.get("p") == before
    engine.send("p", "open")
    kids = [r.id for r in engine.list(parent="p")]
    before = store.get("p")
    with pytest.raises(UnknownEventError, match="by the engine alone"):
        engine.send("p", "child ended", {**forged, "id": kids[0]})
    assert store.get("p") == before
    for kid in kids:
        engine.send(kid, "go")
    engine.work(until_idle=True)
    assert engine.get("p").status.value == "finished" and engine.get("p").data.got == [10, 20]


class _Ask(EventHandler):
    requests: list[CallbackRequest] = []

    def setup(self, req: CallbackRequest) -> None:
        _Ask.requests.append(req)

    async def handle(self, req: CallbackRequest, answer: str) -> str:
        await asyncio.sleep(0)
        return answer.upper()


@genflow.workflow("accept-refusals-ask")
@attrs.define
class AskOnce:
    def definition(self):
        yield Wait("ask", On("answer", _Ask()))


def test_deliver_has_its_async_twin_as_the_docs_say(store):
    """docs/stores.md: every call that runs the workflow's code has an `_async` twin."""
    engine = Engine(store, clock=FakeClock())

    async def main() -> None:
        await engine.start_async(AskOnce(), id="ask")
        req = _Ask.requests[-1]
        assert await engine.deliver_async(req, "yes") == "YES"
        before = store.get("ask")
        with pytest.raises(genflow.WorkflowFinishedError):
            await engine.deliver_async(req, "again")
        assert store.get("ask") == before

    asyncio.run(main())
    for name in ("start", "send", "deliver", "cancel", "move", "run_due"):
        assert callable(getattr(engine, f"{name}_async"))
