"""Acceptance of issues #15 (failure, time and context inside a definition) and
#16 (beyond one instance), written as a user who read the issues and the docs
writes them: through the public API, on SQLite and PostgreSQL (the `engine`
fixture), and through genflow.testing's modes and checker (plain, reload,
crash at every checkpoint) where the issue promises crash-safety.

What tests/samples/ already runs (the peers' samples) is not repeated here;
the tests named "before, ..." in their docstrings are the bugs this audit
found and fixed."""

from __future__ import annotations

import asyncio
import datetime as dt

import attrs
import pytest

import genflow
from genflow import (
    Break,
    Cancelled,
    Child,
    Children,
    Engine,
    Failure,
    FakeClock,
    For,
    Go,
    On,
    Retry,
    Sleep,
    Step,
    Timeout,
    Try,
    Wait,
    current_step,
)
from genflow.errors import GenflowError
from genflow.saga import Saga
from genflow.testing import MODES, Instance


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(make_store) -> Engine:
    return Engine(make_store(), clock=FakeClock())


def blob_of(engine: Engine, instance_id: str) -> tuple:
    record = engine.store.get(instance_id)
    return (record.blob, record.version, record.status)


# -- #15 Try/Catch/Finally --------------------------------------------------------------

class Declined(LookupError):
    pass


LOG: list[str] = []


@genflow.workflow("acc15-try")
@attrs.define
class Charge:
    fail_with: str = ""
    failure: Failure | None = None
    seen: str = ""
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Try("charge",
            Step("card", self.card, retry=Retry(attempts=2, backoff=0)),
            Step("after card", lambda: self.log.append("not reached")),
        ).Catch("declined", Step("note", self.note), errors=(KeyError, ValueError),
                into="failure",
        ).Catch("other", Step("note other", lambda: self.log.append("other"))
        ).Finally("always", Step("finally", lambda: self.log.append("finally")))
        yield Step("end", lambda: self.log.append("end"))

    def card(self) -> None:
        LOG.append(f"card {current_step().attempt}")
        if self.fail_with == "declined":
            raise Declined("card 4242 declined")  # a LookupError: matches KeyError? no
        if self.fail_with == "key":
            raise KeyError("no such card")

    def note(self) -> None:
        self.seen = f"{current_step().failure.type}"


def test_a_catch_matches_by_base_class_and_names_the_failure(engine):
    LOG.clear()
    i = engine.start(Charge(fail_with="key"))
    data = engine.get(i).data
    assert engine.get(i).status.value == "finished"
    assert LOG == ["card 1", "card 2"]  # a failed attempt's changes to the data are rolled back
    assert data.log == ["finally", "end"]
    assert data.failure.type == "KeyError"
    assert data.failure.step == "card" and data.failure.attempt == 2
    assert "no such card" in data.failure.message
    assert data.seen == "KeyError"
    j = engine.start(Charge(fail_with="declined"))
    assert engine.get(j).data.log == ["other", "finally", "end"]


@genflow.workflow("acc15-uncaught")
@attrs.define
class Uncaught:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Try("t", Step("boom", self.boom)).Catch(
            "only keys", Step("c", lambda: self.log.append("caught")), errors=KeyError,
        ).Finally("f", Step("fin", lambda: self.log.append("finally")))

    def boom(self) -> None:
        raise ValueError("bad")


def test_nothing_caught_fails_the_instance_after_finally(engine):
    i = engine.start(Uncaught())
    inst = engine.get(i)
    assert inst.status.value == "failed"
    assert inst.data.log == ["finally"]
    assert "ValueError" in inst.error


@genflow.workflow("acc15-loop")
@attrs.define
class LoopTry:
    n: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("loop", True,
            Try("body", Step("inc", self.inc),
                genflow.If(self.n >= 2, "enough", Break())
            ).Finally("f", Step("fin", lambda: self.log.append(f"fin {self.n}"))),
        )

    def inc(self) -> None:
        self.n += 1


def test_break_out_of_a_try_runs_its_finally(engine):
    i = engine.start(LoopTry())
    assert engine.get(i).status.value == "finished"
    assert engine.get(i).data.log == ["fin 1", "fin 2"]


# -- cancellation -----------------------------------------------------------------------

@genflow.workflow("acc15-cancel")
@attrs.define
class Approval:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Try("wait",
            Wait("approve?", On("approve")),
        ).Catch("cancelled", Step("cleanup", lambda: self.log.append("cleanup")),
                errors=Cancelled,
        ).Finally("f", Step("fin", lambda: self.log.append("finally")))


def test_cancel_runs_cleanup_then_cancelled_and_a_second_cancel_is_harmless(engine):
    i = engine.start(Approval())
    engine.cancel(i)
    inst = engine.get(i)
    assert inst.status.value == "cancelled"
    assert inst.data.log == ["cleanup", "finally"]
    before = blob_of(engine, i)
    with pytest.raises(GenflowError):
        engine.cancel(i)
    assert blob_of(engine, i) == before


# -- time -------------------------------------------------------------------------------

@genflow.workflow("acc15-sleep")
@attrs.define
class Sleeper:
    until: dt.datetime | None = None
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Sleep("nap", 60)
        yield Step("woke", lambda: self.log.append(f"{current_step().now:%H:%M:%S}"))
        yield Sleep("until", until=self.until)
        yield Step("woke again", lambda: self.log.append(f"{current_step().now:%H:%M:%S}"))


def test_sleep_for_seconds_and_until_a_time(engine):
    start = engine.clock()
    i = engine.start(Sleeper(until=start + dt.timedelta(hours=1)))
    engine.clock.advance(59)
    engine.run_due()
    assert engine.get(i).data.log == []
    engine.clock.advance(1)
    engine.run_due()
    assert engine.get(i).data.log == [f"{start + dt.timedelta(seconds=60):%H:%M:%S}"]
    engine.clock.advance(3600)
    engine.run_due()
    assert engine.get(i).status.value == "finished"


def test_a_naive_datetime_is_refused_and_nothing_is_written(engine):
    with pytest.raises(GenflowError) as caught:
        engine.start(Sleeper(until=dt.datetime(2030, 1, 1, 1)), id="naive")
    assert "naive" in str(caught.value) or "timezone" in str(caught.value)
    with pytest.raises(genflow.InstanceNotFoundError):
        engine.get("naive")


@genflow.workflow("acc15-expiry")
@attrs.define
class Expiring:
    expires_at: dt.datetime | None = None
    outcome: str = ""

    def definition(self):
        yield Wait("answer",
            On("yes", lambda: setattr(self, "outcome", "yes")),
            Timeout("expired", Step("x", lambda: setattr(self, "outcome", "expired")),
                    at=self.expires_at),
        )


def test_timeout_at_an_absolute_time_from_the_data(engine):
    i = engine.start(Expiring(expires_at=engine.clock() + dt.timedelta(minutes=3)))
    engine.clock.advance(dt.timedelta(minutes=2, seconds=59))
    engine.run_due()
    assert engine.get(i).data.outcome == ""
    engine.clock.advance(1)
    engine.run_due()
    assert engine.get(i).data.outcome == "expired"


# -- what a step sees -------------------------------------------------------------------

@genflow.workflow("acc15-context")
@attrs.define
class Context:
    seen: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("look", self.look, timeout=30)
        yield Wait("w", On("go", self.handler))

    def look(self) -> None:
        c = current_step()
        self.seen.append(f"{c.instance_id} {c.thread_id} {c.step} {c.attempt} "
                         f"{c.now.isoformat()} {(c.deadline - c.now).total_seconds()}")
        self.seen.append(c.idempotency_key)

    def handler(self, value: str) -> str:
        c = current_step()
        self.seen.append(f"{c.event} {c.step} {c.now.isoformat()} {c.attempt}")
        return value.upper()


def test_a_step_and_a_handler_see_the_engines_clock(engine):
    now = engine.clock()
    i = engine.start(Context(), id="ctx-1")
    seen = engine.get(i).data.seen
    assert seen[0] == f"ctx-1 _main_ look 1 {now.isoformat()} 30.0"
    assert seen[1]
    assert engine.send(i, "go", "abc") == "ABC"
    assert engine.get(i).data.seen[2] == f"go w {now.isoformat()} 1"


# -- retries ----------------------------------------------------------------------------

class Fatal(Exception):
    pass


TIMES: list[str] = []


@genflow.workflow("acc15-retry")
@attrs.define
class Flaky:
    failures: int = 0
    fatal: bool = False
    times: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("call", self.call,
                   retry=Retry(attempts=None, backoff=1, factor=2, max_backoff=4,
                               never=(Fatal,)))

    def call(self) -> None:
        TIMES.append(f"{current_step().attempt}@{current_step().now:%M:%S}")
        if self.fatal:
            raise Fatal("no")
        if current_step().attempt <= self.failures:
            raise ConnectionError("down")


def test_retry_forever_with_a_capped_backoff_and_never_for_some_errors(engine):
    TIMES.clear()
    i = engine.start(Flaky(failures=6))
    for _ in range(30):
        engine.clock.advance(1)
        engine.run_due()
    inst = engine.get(i)
    assert inst.status.value == "finished"
    assert [t.split("@")[0] for t in TIMES] == ["1", "2", "3", "4", "5", "6", "7"]
    # waits 1, 2, 4, 4, 4, 4 seconds
    assert [t.split("@")[1] for t in TIMES] == [
        "00:00", "00:01", "00:03", "00:07", "00:11", "00:15", "00:19"]
    j = engine.start(Flaky(fatal=True))
    assert engine.get(j).status.value == "failed"
    assert TIMES[-1] == "1@00:30"  # tried once: never retried


# -- daemon threads ---------------------------------------------------------------------

@genflow.workflow("acc15-daemon")
@attrs.define
class Monitor:
    reminders: int = 0
    done: bool = False

    def definition(self):
        yield Go("remind", self.reminder, daemon=True)
        yield Wait("done?", On("done", lambda: setattr(self, "done", True)))

    def reminder(self):
        yield For("forever", True, Sleep("a while", 60), Step("ping", self.remind))

    def remind(self) -> None:
        self.reminders += 1


def test_an_instance_ends_with_its_daemon_threads(engine):
    i = engine.start(Monitor())
    engine.clock.advance(60)
    engine.run_due()
    engine.send(i, "done")
    inst = engine.get(i)
    assert inst.status.value == "finished"
    assert inst.data.reminders == 1
    assert inst.state.threads == []


# -- #16 children -----------------------------------------------------------------------

@genflow.workflow("acc16-kid")
@attrs.define
class Kid:
    n: int = 0
    doubled: int = 0

    def definition(self):
        yield Step("double", self.double)

    def double(self) -> None:
        if self.n < 0:
            raise ValueError("negative")
        self.doubled = 2 * self.n


@genflow.workflow("acc16-parent")
@attrs.define
class Parent:
    items: list[int] = attrs.field(factory=list)
    results: list[int] = attrs.field(factory=list)
    one: int = 0
    failure: Failure | None = None

    def definition(self):
        yield Child("first", Kid(3), result="doubled", into="one")
        yield Try("all",
            Children("fan", [Kid(n) for n in self.items], result="doubled", into="results"),
        ).Catch("kid failed", errors=genflow.ChildFailed, into="failure")


def test_children_fan_out_fan_in_and_a_failed_child_is_caught(engine):
    p = engine.start(Parent(items=[1, 2, 3]), id="p1")
    engine.work(until_idle=True)
    inst = engine.get(p)
    assert inst.status.value == "finished", inst.error
    assert inst.data.one == 6 and inst.data.results == [2, 4, 6]
    kids = engine.list(parent="p1")
    assert len(kids) == 4
    assert engine.get(kids[0].id).state.parent.instance_id == "p1"
    q = engine.start(Parent(items=[1, -1]), id="p2")
    engine.work(until_idle=True)
    inst = engine.get(q)
    assert inst.status.value == "finished", inst.error
    assert inst.data.failure is not None and "negative" in inst.data.failure.message


# -- #16 mailbox ------------------------------------------------------------------------

@genflow.workflow("acc16-mail")
@attrs.define
class Mail:
    got: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Wait("first", On("go"))
        yield For("three", len(self.got) < 3, Wait("msg", On("msg", self.got.append)))


def test_early_signals_are_kept_in_order_and_delivered_once(engine):
    i = engine.start(Mail())
    for word in ("a", "b", "c"):
        kept = engine.send(i, "msg", word)
        assert isinstance(kept, genflow.Kept)
    engine.send(i, "go")
    inst = engine.get(i)
    assert inst.status.value == "finished"
    assert inst.data.got == ["a", "b", "c"]


def test_an_event_never_waited_for_is_refused_and_nothing_is_written(engine):
    i = engine.start(Mail())
    before = blob_of(engine, i)
    with pytest.raises(genflow.UnknownEventError) as caught:
        engine.send(i, "nope", "x")
    assert "msg" in str(caught.value)
    assert blob_of(engine, i) == before


def test_signal_with_start_and_idempotent_start(engine):
    engine.send("m1", "msg", "early", start=Mail())
    engine.send("m1", "go", start=Mail())
    assert engine.get("m1").data.got == ["early"]
    assert engine.start(Mail(), id="m1", if_exists="return") == "m1"
    with pytest.raises(genflow.DuplicateInstanceError):
        engine.start(Mail(), id="m1")


# -- #16 outbox -------------------------------------------------------------------------

@genflow.workflow("acc16-sender")
@attrs.define
class Sender:
    target: str = ""

    def definition(self):
        yield Step("tell", self.tell)
        yield Wait("self", On("note"))

    def tell(self) -> None:
        ctx = current_step()
        ctx.send(self.target, "msg", "from outbox")
        ctx.send(ctx.instance_id, "note", at=ctx.now + dt.timedelta(seconds=10))


def test_the_outbox_sends_to_another_instance_and_to_itself_later(engine):
    engine.start(Mail(), id="mb")
    s = engine.start(Sender(target="mb"))
    engine.work(until_idle=True)
    assert engine.get("mb").data.got == [] and engine.get("mb").state.mailbox.kept
    assert engine.get(s).status.value == "waiting"
    engine.clock.advance(10)
    engine.work(until_idle=True)
    assert engine.get(s).status.value == "finished"


def test_an_outbox_send_to_no_instance_fails_the_step(engine):
    s = engine.start(Sender(target="nobody"))
    engine.work(until_idle=True)
    assert engine.get(s).status.value == "failed"
    assert "nobody" in engine.get(s).error


# -- batch 2 ----------------------------------------------------------------------------



@genflow.workflow("acc15-async-timeout")
@attrs.define
class SlowCall:
    seconds: float = 5.0
    failure: Failure | None = None

    def definition(self):
        yield Try("call",
            Step("slow", self.slow, timeout=0.05, retry=Retry(attempts=2, backoff=0)),
        ).Catch("too slow", errors=genflow.StepTimeoutError, into="failure")

    async def slow(self) -> None:
        await asyncio.sleep(self.seconds)


def test_an_async_step_is_cancelled_at_its_timeout_retried_and_caught(engine):
    async def go() -> str:
        return await engine.start_async(SlowCall())
    i = asyncio.run(go())
    for _ in range(5):
        engine.clock.advance(1)
        asyncio.run(engine.work_async(until_idle=True))
    inst = engine.get(i)
    assert inst.status.value == "finished", inst.error
    assert inst.data.failure.type == "StepTimeoutError"
    assert inst.data.failure.attempt == 2


@genflow.workflow("acc15-sync-overrun")
@attrs.define
class SyncOverrun:
    failure: Failure | None = None

    def definition(self):
        yield Try("call", Step("slow", self.slow, timeout=10)).Catch(
            "too slow", errors=genflow.StepTimeoutError, into="failure")

    def slow(self) -> None:
        CLOCKS[0].advance(11)


CLOCKS: list[FakeClock] = []


def test_a_sync_steps_overrun_is_a_failed_attempt_when_it_returns(engine):
    CLOCKS[:] = [engine.clock]
    i = engine.start(SyncOverrun())
    inst = engine.get(i)
    assert inst.status.value == "finished", inst.error
    assert inst.data.failure.type == "StepTimeoutError"


@genflow.workflow("acc15-heartbeat")
@attrs.define
class Beating:
    def definition(self):
        yield Step("long", self.long)

    def long(self) -> None:
        assert genflow.heartbeat("half done")


def test_a_step_heartbeats_by_hand_into_the_journal(make_store):
    engine = Engine(make_store(), clock=FakeClock(), journal=True)
    i = engine.start(Beating())
    assert engine.get(i).status.value == "finished"
    notes = [e.detail.get("note") for e in engine.store.journal(i) if e.kind == "heartbeat"]
    assert notes == ["half done"]


@genflow.workflow("acc16-abandon")
@attrs.define
class Boss:
    policy: str = "cancel"

    def definition(self):
        yield Child("kid", Mail(), id="kid-of-boss-" + self.policy, on_cancel=self.policy)


def test_a_cancelled_parent_cancels_or_abandons_its_children(engine):
    a = engine.start(Boss("cancel"))
    b = engine.start(Boss("abandon"))
    engine.work(until_idle=True)
    engine.cancel(a)
    engine.cancel(b)
    engine.work(until_idle=True)
    assert engine.get("kid-of-boss-cancel").status.value == "cancelled"
    assert engine.get("kid-of-boss-abandon").status.value == "waiting"


@genflow.workflow("acc16-first")
@attrs.define
class FirstTwo:
    results: list[int] = attrs.field(factory=list)

    def definition(self):
        yield Children("race", [Kid(n) for n in (1, 2, 3, 4)], result="doubled",
                       into="results", first=2)


def test_fan_in_of_the_first_k(engine):
    p = engine.start(FirstTwo())
    engine.work(until_idle=True)
    inst = engine.get(p)
    assert inst.status.value == "finished", inst.error
    assert len(inst.data.results) == 2
    assert set(inst.data.results) <= {2, 4, 6, 8}
    statuses = sorted(r.status for r in engine.list(parent=p))
    assert statuses.count("finished") >= 2


def test_a_full_mailbox_is_refused_and_nothing_is_written(make_store):
    engine = Engine(make_store(), clock=FakeClock(), mailbox_size=2)
    i = engine.start(Mail())
    engine.send(i, "msg", "a")
    engine.send(i, "msg", "b")
    before = blob_of(engine, i)
    with pytest.raises(genflow.MailboxFullError):
        engine.send(i, "msg", "c")
    assert blob_of(engine, i) == before


def test_undelivered_messages_are_recorded_when_the_instance_ends(engine):
    i = engine.start(Mail())
    for w in "abcd":
        engine.send(i, "msg", w)
    engine.send(i, "go")
    inst = engine.get(i)
    assert inst.status.value == "finished"
    assert inst.data.got == ["a", "b", "c"]
    assert [m.payload for m in inst.state.mailbox.undelivered] == ["d"]
    assert "finished" in inst.state.mailbox.undelivered[0].reason


def test_keep_false_per_send_refuses_an_early_event(engine):
    i = engine.start(Mail())
    before = blob_of(engine, i)
    with pytest.raises(genflow.UnknownEventError, match="does not wait for 'msg'"):
        engine.send(i, "msg", "a", keep=False)
    assert blob_of(engine, i) == before


class NotAWorkflow:
    pass


@genflow.workflow("acc16-bad-child")
@attrs.define
class BadChild:
    def definition(self):
        yield Child("kid", NotAWorkflow())


def test_an_unknown_child_workflow_is_refused_at_start(engine):
    with pytest.raises(GenflowError):
        engine.start(BadChild(), id="bad")
    with pytest.raises(genflow.InstanceNotFoundError):
        engine.get("bad")


@genflow.workflow("acc16-dup-child")
@attrs.define
class DupChild:
    failure: Failure | None = None

    def definition(self):
        yield Try("t", Child("kid", Kid(1), id="taken")).Catch("dup", into="failure")


def test_a_child_id_that_exists_is_a_clear_error(engine):
    engine.start(Mail(), id="taken")
    p = engine.start(DupChild())
    engine.work(until_idle=True)
    inst = engine.get(p)
    assert inst.status.value == "finished"
    assert inst.data.failure.type == "ChildFailed"
    assert "instance 'taken' exists and is not this parent's child" in inst.data.failure.message
    assert engine.get("taken").data == Mail()  # left alone


@attrs.frozen
class Receipt:
    amount: int
    note: str


@genflow.workflow("acc15-typed-update")
@attrs.define
class Till:
    total: int = 0

    def definition(self):
        yield For("open", True, Wait("pay", On("pay", self.pay)))

    def pay(self, amount: int) -> Receipt:
        self.total += amount
        return Receipt(self.total, "ok")


def test_send_returns_the_handlers_result_typed(engine):
    i = engine.start(Till())
    r = engine.send(i, "pay", 5)
    assert r == Receipt(5, "ok")


@genflow.workflow("acc15-bare-on")
@attrs.define
class Bare:
    def definition(self):
        yield Wait("go?", On("go", Step("went", lambda: None)))


def test_on_without_a_handler(engine):
    i = engine.start(Bare())
    assert engine.send(i, "go") is None
    assert engine.get(i).status.value == "finished"


# -- batch 3: the crash tools of genflow.testing over the new statements ------------------



def every_mode(make, drive):
    """Drive a fresh instance in each of genflow.testing's modes; the blobs and the data."""
    ends = {}
    for mode in MODES:
        run = Instance(make(), mode)
        drive(run)
        ends[mode] = (run.blob(), run.wf)
    blobs = {blob for blob, _ in ends.values()}
    assert len(blobs) == 1, f"modes disagree: {ends}"
    return ends["plain"][1]


class Boom(Exception):
    pass


@genflow.workflow("acc15-nested")
@attrs.define
class Nested:
    fail_at: list[int] = attrs.field(factory=list)
    i: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("helper", self.helper)
        yield For("items", self.i < 3,
            Try("outer",
                Try("inner", Step("work", self.work)).Catch(
                    "inner catch", Step("note inner", lambda: self.log.append(f"inner {self.i}")),
                    Step("again", self.rethrow_odd), errors=Boom,
                ).Finally("inner fin", Step("inner f1", lambda: self.log.append("f1")),
                          Step("inner f2", lambda: self.log.append("f2"))),
            ).Catch("outer catch", Step("note outer",
                                        lambda: self.log.append(f"outer {self.i}")),
            ).Finally("outer fin", Step("next", self.next_item)),
        )

    def helper(self):
        yield Try("h", Step("h boom", self.h_boom)).Catch(
            "h catch", Step("h note", lambda: self.log.append("helper caught")))

    def h_boom(self) -> None:
        raise Boom("helper")

    def work(self) -> None:
        if self.i in self.fail_at:
            raise Boom(f"item {self.i}")

    def rethrow_odd(self) -> None:
        if self.i % 2:
            raise RuntimeError(f"odd {self.i}")

    def next_item(self) -> None:
        self.i += 1


def test_nested_try_in_loops_and_threads_is_the_same_in_every_mode():
    wf = every_mode(lambda: Nested(fail_at=[0, 1]), lambda run: run.resume())
    assert wf.log.count("helper caught") == 1
    assert wf.i == 3
    assert [x for x in wf.log if x != "helper caught"] == [
        "inner 0", "f1", "f2", "inner 1", "f1", "f2", "outer 1", "f1", "f2"]


@genflow.workflow("acc15-cancel-cleanup")
@attrs.define
class Cleanup:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("side", self.side)
        yield Try("main",
            Wait("approve?", On("approve")),
        ).Catch("cancelled",
                Step("undo 1", lambda: self.log.append("undo 1")),
                Step("undo 2", lambda: self.log.append("undo 2")),
                errors=Cancelled,
        ).Finally("fin", Step("fin 1", lambda: self.log.append("fin 1")),
                  Step("fin 2", lambda: self.log.append("fin 2")))

    def side(self):
        yield Try("side try", Sleep("nap", 3600)).Finally(
            "side fin", Step("side f", lambda: self.log.append("side fin")))


def test_cancellation_cleanup_is_the_same_in_every_mode():
    def drive(run):
        run.resume()
        run.cancel()
    wf = every_mode(Cleanup, drive)
    assert sorted(wf.log) == sorted(["undo 1", "undo 2", "fin 1", "fin 2", "side fin"])
    assert wf.log.index("undo 1") < wf.log.index("undo 2") < wf.log.index("fin 1")


@genflow.workflow("acc15-saga-loop")
@attrs.define
class Reserve:
    items: list[str] = attrs.field(factory=list)
    i: int = 0
    undone: list[str] = attrs.field(factory=list)
    saga: Saga = attrs.field(factory=Saga)
    failure: Failure | None = None

    def definition(self):
        yield Try("reserve all",
            For("items", self.i < len(self.items),
                self.saga.step("reserve", self.reserve, compensate=self.release),
            ),
        ).Catch("undo", self.saga.compensate(), into="failure")

    def reserve(self) -> None:
        if self.items[self.i] == "bad":
            raise Boom("no stock")
        self.i += 1

    def release(self) -> None:
        self.i -= 1
        self.undone.append(self.items[self.i])


def test_a_saga_in_a_loop_undoes_newest_first_in_every_mode():
    wf = every_mode(lambda: Reserve(items=["a", "b", "c", "bad"]), lambda run: run.resume())
    assert wf.undone == ["c", "b", "a"]
    assert wf.failure.type == "Boom"


@genflow.workflow("acc16-kids-core")
@attrs.define
class KidsCore:
    results: list[int] = attrs.field(factory=list)
    failure: Failure | None = None
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Try("all", Children("fan", [Kid(1), Kid(2), Kid(3)], result="doubled",
                                  into="results"),
        ).Catch("a kid failed", Step("note", lambda: self.log.append("caught")),
                errors=genflow.ChildFailed, into="failure")


def test_a_failed_child_is_caught_in_every_mode():
    def drive(run):
        run.resume()
        run.finish_child("fan", Kid(1, 2), index=0)
        run.fail_child("fan", "ValueError: no", index=1)
    wf = every_mode(KidsCore, drive)
    assert wf.log == ["caught"] and wf.failure is not None
    assert wf.failure.type == "ChildFailed"


# -- batch 4: bad input -----------------------------------------------------------------

@genflow.workflow("acc16-other")
@attrs.define
class Other:
    def definition(self):
        yield Wait("w", On("ping"))


def test_signal_with_start_refuses_an_instance_of_another_workflow(engine):
    """docs/mailbox.md: 'one of another workflow under that id is refused
    (DuplicateInstanceError)', also when the event is not one of `start`'s
    workflow (it was delivered to the other workflow's instance)."""
    engine.start(Mail(), id="shared-id")
    before = blob_of(engine, "shared-id")
    with pytest.raises(genflow.DuplicateInstanceError, match="acc16-mail"):
        engine.send("shared-id", "go", start=Other())
    with pytest.raises(genflow.DuplicateInstanceError):
        engine.send("shared-id", "ping", start=Other())
    assert blob_of(engine, "shared-id") == before


@genflow.workflow("acc16-outbox-ids")
@attrs.define
class AsksWithId:
    target: str = ""
    how: str = "start"

    def definition(self):
        yield Step("ask", self.ask)

    def ask(self) -> None:
        ctx = current_step()
        if self.how == "start":
            ctx.start(Mail(), id=self.target)
        elif self.how == "send":
            ctx.send(self.target, "msg", "x")
        else:
            ctx.cancel(self.target)


@pytest.mark.parametrize("how", ["start", "send", "cancel"])
@pytest.mark.parametrize("bad", ["a\x00b", "x" * 300])
def test_an_outbox_id_no_store_can_keep_fails_the_step(engine, how, bad):
    """As `Engine.start` refuses it: before, a step's start wrote a NUL id on
    SQLite and made PostgreSQL's save raise from the caller's `start`."""
    i = engine.start(AsksWithId(bad, how))
    engine.work(until_idle=True)
    inst = engine.get(i)
    assert inst.status.value == "failed"
    assert "InvalidIdError" in inst.error
    assert [r.id for r in engine.list()] == [i]


@genflow.workflow("acc15-sleep-unset")
@attrs.define
class SleepUnset:
    until: dt.datetime | None = None

    def definition(self):
        yield Sleep("until the slot", until=self.until)


def test_a_sleep_whose_time_the_data_never_set_is_named_in_the_error(engine):
    i = engine.start(SleepUnset())
    inst = engine.get(i)
    assert inst.status.value == "failed"
    assert "Sleep 'until the slot'" in inst.error and "before the Sleep" in inst.error


@genflow.workflow("acc15-daemon-last")
@attrs.define
class LastWorker:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("reminders", self.reminders, daemon=True)
        yield Go("worker", self.worker)  # no daemon: waited for after the main thread ends
        yield Step("main done", lambda: self.log.append("main done"))

    def reminders(self):
        yield Try("reminding", For("forever", True, Sleep("a while", 60),
                                Step("remind", lambda: self.log.append("reminded"))),
        ).Finally("stop", Step("stopped", lambda: self.log.append("reminders stopped")))

    def worker(self):
        yield Wait("work?", On("done"))


def test_daemons_end_with_the_last_other_thread_in_the_same_call(engine):
    """The last non-daemon thread to end is not the main thread: the daemon
    found waiting earlier in that move loop was left UNWINDING, the instance
    RESUMING until a worker came by."""
    i = engine.start(LastWorker())
    assert engine.get(i).status.value == "waiting"
    engine.send(i, "done")
    inst = engine.get(i)
    assert inst.status.value == "finished"
    assert inst.data.log == ["main done", "reminders stopped"]
    assert inst.state.threads == []


def test_daemons_end_with_the_last_other_thread_in_every_mode():
    def drive(run):
        run.resume()
        run.send("done")
    wf = every_mode(LastWorker, drive)
    assert wf.log == ["main done", "reminders stopped"]


@genflow.workflow("acc15-into-str")
@attrs.define
class IntoStr:
    error: str = ""

    def definition(self):
        yield Try("t", Step("boom", self.boom)).Catch("c", into="error")

    def boom(self) -> None:
        raise ValueError("x")


@genflow.workflow("acc15-into-ok")
@attrs.define
class IntoOk:
    plain: Failure | None = None
    optional: genflow.Failure | None = None

    def definition(self):
        yield Try("t", Step("boom", self.boom)).Catch("c", into="plain", errors=KeyError
        ).Catch("d", into="optional", errors=ValueError)

    def boom(self) -> None:
        raise ValueError("x")


def test_catch_into_a_field_that_cannot_hold_a_failure_is_refused_at_start(engine):
    """Before, validation let it through: the first catch failed the save
    (SerializationError from `start`), leaving the instance RESUMING."""
    with pytest.raises(genflow.DefinitionError, match=r"into='error' is a field of type str"):
        engine.start(IntoStr(), id="into-str")
    with pytest.raises(genflow.InstanceNotFoundError):
        engine.get("into-str")
    i = engine.start(IntoOk())
    assert engine.get(i).data.optional.type == "ValueError"


class RuleBroken(Exception):
    pass


@genflow.workflow("acc15-raise")
@attrs.define
class Rule:
    amount: int = 0

    def definition(self):
        yield genflow.If(self.amount < 0, "negative", genflow.Raise(RuleBroken, "no negative"))
        yield Step("book", lambda: None)


def test_an_uncaught_raise_of_the_definition_says_so(engine):
    """Its failure has no step: the instance's error read "step '' in thread ..."."""
    i = engine.start(Rule(-1))
    inst = engine.get(i)
    assert inst.status.value == "failed"
    assert inst.error == ("StepError: thread '_main_' (a Raise of the definition) failed: "
                          "RuleBroken: no negative")
    with pytest.raises(genflow.InstanceFailedError, match="a Raise of the definition"):
        engine.result(i, timeout=1)


UNDONE: list[str] = []


@genflow.workflow("acc15-saga-retried")
@attrs.define
class BookUntilItWorks:
    """Temporal's saga, retried whole: book the car, then the hotel; when the
    hotel is full, give the car back and try again (twice at most)."""

    tries: int = 0
    full: int = 1  # the hotel is full for this many tries
    booked: bool = False
    saga: Saga = attrs.field(factory=Saga)

    def definition(self):
        yield For("tries", not self.booked and self.tries < 3,
            Try("book",
                self.saga.step("car", self.car, compensate=self.car_back),
                Step("hotel", self.hotel),
            ).Catch("give back", self.saga.compensate()),
        )

    def car(self) -> None:
        self.tries += 1

    def car_back(self) -> None:
        UNDONE.append(f"car of try {self.tries}")

    def hotel(self) -> None:
        if self.tries <= self.full:
            raise LookupError("the hotel is full")
        self.booked = True


def test_a_saga_retried_in_a_loop_undoes_each_booking_once(engine):
    """Before, the second compensation undid the first try's car again."""
    UNDONE.clear()
    i = engine.start(BookUntilItWorks(full=2))
    inst = engine.get(i)
    assert inst.status.value == "finished" and inst.data.booked
    assert UNDONE == ["car of try 1", "car of try 2"]


def test_a_saga_retried_in_a_loop_is_the_same_in_every_mode():
    wf = every_mode(lambda: BookUntilItWorks(full=3), lambda run: run.resume())
    assert not wf.booked and wf.tries == 3
    assert wf.saga.done == ["car"] * 3


@genflow.workflow("acc15-saga-two-catches")
@attrs.define
class Trip:
    saga: Saga = attrs.field(factory=Saga)

    def definition(self):
        yield Try("trip",
            self.saga.step("car", lambda: None, compensate=lambda: UNDONE.append("car")),
            self.saga.step("hotel", lambda: None, compensate=lambda: UNDONE.append("hotel")),
            Wait("confirm?", On("confirm")),
        ).Catch("failed", self.saga.compensate(), genflow.Raise(),
        ).Catch("cancelled", self.saga.compensate("undo on cancel"), errors=Cancelled)


def test_a_saga_compensated_on_failure_and_on_cancel(engine):
    UNDONE.clear()
    i = engine.start(Trip())
    engine.cancel(i)
    assert engine.get(i).status.value == "cancelled"
    assert UNDONE == ["hotel", "car"]
    result = genflow.testing.check_replay(Trip(), ["confirm"])
    assert result.problems == []
    with pytest.raises(genflow.errors.StatementError, match="prefix"):
        Saga().compensate("")


# -- the money transfer through genflow.testing's checker ---------------------------------

BANK = genflow.testing.FakeService("bank")


class NoAccount(Exception):
    pass


@genflow.workflow("acc15-checked-transfer")
@attrs.define
class CheckedTransfer:
    """Temporal's sample: withdraw, deposit; if the deposit fails, refund and
    fail with the deposit's error."""

    target: str = "bob"
    keyed_refund: bool = True
    saga: Saga = attrs.field(factory=Saga)

    def definition(self):
        yield Try("transfer",
            self.saga.step("withdraw", self.withdraw, compensate=self.refund),
            Step("deposit", self.deposit, retry=Retry(attempts=3, backoff=1, never=(NoAccount,))),
        ).Catch("roll back", self.saga.compensate(), genflow.Raise())

    def withdraw(self) -> None:
        BANK.withdraw(40, key=current_step().idempotency_key)

    def deposit(self) -> None:
        if self.target == "nobody":
            raise NoAccount(f"no account {self.target!r}")
        BANK.deposit(40, key=current_step().idempotency_key)

    def refund(self) -> None:
        BANK.refund(40, key=current_step().idempotency_key if self.keyed_refund else None)


def test_a_transfer_that_fails_by_design_passes_the_crash_checker():
    """The instance fails with the deposit's error after its refund, as the
    sample says: an end the runs are compared at. Before, check_replay
    reported it as 'A step keeps failing' ('tried 3 times')."""
    result = genflow.testing.check_replay(CheckedTransfer("nobody"), services=[BANK])
    assert result.ok, [p.text() for p in result.problems]
    assert result.state.status.value == "failed"
    assert result.crash_runs > 0
    assert [e.operation for e in BANK.effects] == ["withdraw", "refund"]
    assert genflow.testing.check_replay(CheckedTransfer("bob"), services=[BANK]).ok


def test_the_crash_checker_still_finds_a_refund_made_twice_on_the_failing_path():
    result = genflow.testing.check_replay(CheckedTransfer("nobody", keyed_refund=False),
                                          services=[BANK])
    assert not result.ok
    assert "refund" in result.problems[0].text()


@genflow.workflow("acc15-plain-failure")
@attrs.define
class PlainFailure:
    def definition(self):
        yield Step("boom", self.boom)

    def boom(self) -> None:
        raise ConnectionError("the fake is not set up")


def test_a_step_failing_with_no_try_is_still_a_problem_for_the_checker():
    result = genflow.testing.check_replay(PlainFailure())
    assert [p.kind for p in result.problems] == ["step failed"]


KEYS: list[tuple[int, int, str]] = []
TORN: list[tuple[str, bool]] = []


class Webhook(genflow.EventHandler):
    input_type = None

    def teardown(self, req, handled: bool) -> None:
        TORN.append((req.event, handled))


@genflow.workflow("acc15-keys")
@attrs.define
class Keys:
    i: int = 0

    def definition(self):
        yield For("twice", self.i < 2, Step("call", self.call, retry=Retry(attempts=3, backoff=0)))
        yield Try("hook", Wait("hook?", On("hooked", Webhook()))).Catch(
            "cancelled", Step("note", lambda: None), errors=Cancelled)

    def call(self) -> None:
        ctx = current_step()
        KEYS.append((self.i, ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 2:
            raise ConnectionError("flaky")
        self.i += 1


def test_the_idempotency_key_is_kept_across_retries_and_new_per_execution(engine):
    KEYS.clear()
    TORN.clear()
    i = engine.start(Keys())
    engine.work(until_idle=True)
    assert [(n, attempt) for n, attempt, _ in KEYS] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    first, second = {k for n, _, k in KEYS if n == 0}, {k for n, _, k in KEYS if n == 1}
    assert len(first) == 1 and len(second) == 1 and first != second
    engine.cancel(i)  # the webhook's handler is torn down, then the cleanup runs
    assert TORN == [("hooked", False)]
    assert engine.get(i).status.value == "cancelled"


CLEANUPS: list[int] = []


@genflow.workflow("acc15-cancel-twice")
@attrs.define
class SlowCleanup:
    def definition(self):
        yield Try("hold", Wait("pay?", On("paid"))).Catch(
            "on cancel", Step("release", self.release, retry=Retry(attempts=3, backoff=10)),
            errors=Cancelled)

    def release(self) -> None:
        CLEANUPS.append(current_step().attempt)
        if current_step().attempt == 1:
            raise ConnectionError("the seat service is down")


def test_a_second_cancel_during_cleanup_does_not_restart_it(engine):
    CLEANUPS.clear()
    i = engine.start(SlowCleanup())
    engine.cancel(i)
    assert engine.get(i).status.value == "cancelling"  # the release waits for its retry
    before = blob_of(engine, i)
    engine.cancel(i)
    assert blob_of(engine, i)[0] == before[0] and CLEANUPS == [1]
    with pytest.raises(genflow.NotWaitingError):
        engine.send(i, "paid")
    engine.clock.advance(10)
    engine.run_due()
    assert engine.get(i).status.value == "cancelled" and CLEANUPS == [1, 2]


@pytest.mark.filterwarnings("ignore:coroutine 'SlowCall.slow' was never awaited")
def test_an_async_step_with_a_timeout_under_the_sync_api_names_the_users_function(engine):
    """The refusal named the timeout's wrapper (`_timed.<locals>.attempt`)."""
    i = engine.start(SlowCall())
    error = engine.get(i).error
    assert "SlowCall.slow" in error and "<locals>" not in error
    assert "start_async" in error


@genflow.workflow("acc15-go-in-try")
@attrs.define
class GoInTry:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Try("t", Go("worker", self.worker), Wait("go?", On("go"))).Catch(
            "c", Step("caught", lambda: self.log.append("main caught")))

    def worker(self):
        yield Try("own", Step("boom", self.boom)).Catch(
            "own catch", Step("noted", lambda: self.log.append("worker caught")))
        yield Step("boom again", self.boom)

    def boom(self) -> None:
        raise ValueError("in the worker")


def test_a_threads_failure_goes_to_its_own_try_not_to_the_one_around_its_go(engine):
    i = engine.start(GoInTry())
    inst = engine.get(i)
    assert inst.status.value == "failed"
    assert inst.data.log == ["worker caught"]
    assert "step 'boom again' in thread 'worker'" in inst.error


@genflow.workflow("acc15-catch-list")
@attrs.define
class CatchList:
    def definition(self):
        yield Try("t", Step("a", lambda: None)).Catch("c", errors=[KeyError, ValueError])


def test_catch_errors_given_as_a_list_is_refused_saying_a_tuple(engine):
    with pytest.raises(genflow.DefinitionError, match="a tuple of them, as `except` takes"):
        engine.start(CatchList(), id="catch-list")
    with pytest.raises(genflow.InstanceNotFoundError):
        engine.get("catch-list")


def test_a_child_is_created_due_with_its_parents_checkpoint_and_any_worker_runs_it(make_store):
    parent_engine = Engine(make_store(), clock=FakeClock())
    p = parent_engine.start(Parent(items=[5]), id="due-parent")
    (child,) = parent_engine.list(parent=p)  # the first Child: written with the parent's wait
    record = parent_engine.store.get(child.id)
    assert record.wake_at is not None and record.wake_at <= parent_engine.clock()
    # the parent's process "dies" here; another worker on the same store goes on
    other = Engine(make_store(), clock=parent_engine.clock)
    other.work(until_idle=True)
    inst = other.get(p)
    assert inst.status.value == "finished" and inst.data.one == 6 and inst.data.results == [10]
    assert len(other.list(parent=p)) == 2


SEEN_NOW: list[dt.datetime] = []


@genflow.workflow("acc15-now")
@attrs.define
class ReadsNow:
    def definition(self):
        yield Step("long", self.long)

    def long(self) -> None:
        SEEN_NOW.append(current_step().now)
        CLOCKS[0].advance(90)  # the step works for a minute and a half
        SEEN_NOW.append(current_step().now)


def test_current_step_now_is_the_engines_clock_when_read(engine):
    CLOCKS[:] = [engine.clock]
    SEEN_NOW.clear()
    began = engine.clock()
    engine.start(ReadsNow())
    assert [began, began + dt.timedelta(seconds=90)] == SEEN_NOW
