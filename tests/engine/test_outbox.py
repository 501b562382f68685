"""The transactional outbox: starts and sends asked for inside steps and
handlers (`current_step()`), written with the checkpoint, carried out after
the commit exactly once, on every store."""

from __future__ import annotations

import datetime as _dt
from collections import Counter

import attrs
import pytest
from faults import dies_at_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genflow import (
    Engine,
    FakeClock,
    On,
    Step,
    Wait,
    current_step,
    workflow,
)
from genflow.errors import (
    InstanceNotFoundError,
    PayloadError,
    SerializationError,
    UnknownWorkflowError,
)
from genflow.stores import MemoryStore

CALLS: Counter[str] = Counter()

#: the store writes of a start and its relay's delivery (the relay's claim of a row too)
_RELAYED_WRITES = ("create", "save", "create_if_absent", "put_outbox", "done_outbox",
                   "retry_outbox", "claim_outbox")


class Crash(BaseException):
    """The process dies here (nothing after it runs)."""


@workflow("ob-inbox")
@attrs.define
class Inbox:
    got: list[str] = attrs.field(factory=list)
    rounds: int = 1

    def definition(self):  # type: ignore[no-untyped-def]
        for n in range(self.rounds):
            yield Wait(f"wait {n}", On("note", self.note))

    def note(self, text: str) -> None:
        self.got.append(text)


@workflow("ob-sender")
@attrs.define
class Sender:
    target: str = ""
    fail_first: bool = False
    started: str = ""
    mode: str = "send"

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("tell", self.tell)

    def tell(self) -> None:
        CALLS["tell"] += 1
        ctx = current_step()
        if self.mode == "send":
            ctx.send(self.target, "note", f"hello from {ctx.instance_id}")
        elif self.mode == "start":
            self.started = ctx.start(Inbox())
        elif self.mode == "start+send":
            self.started = ctx.start(Inbox(), id=self.target)
            ctx.send(self.target, "note", "first letter")
        if self.fail_first and CALLS["tell"] == 1:
            raise RuntimeError("flaky")


@workflow("ob-self")
@attrs.define
class SelfSend:
    got: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("remind me", self.remind)
        yield Wait("reminded", On("reminder", self.reminded))

    def remind(self) -> None:
        ctx = current_step()
        ctx.send(ctx.instance_id, "reminder", "later", at=ctx.now + _dt.timedelta(hours=1))

    def reminded(self, text: str) -> None:
        self.got = text


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


def _engine(store, clock=None, **kw) -> Engine:  # type: ignore[no-untyped-def]
    return Engine(store, clock=clock or FakeClock(), **kw)


def test_a_send_from_a_step_is_delivered_once_after_the_commit(store):
    engine = _engine(store)
    inbox = engine.start(Inbox(), id="inbox")
    sender = engine.start(Sender(target=inbox))
    assert engine.get(inbox).data.got == [f"hello from {sender}"]
    assert store.list_outbox() == []
    assert engine.work(until_idle=True) == 0  # nothing left to relay


def test_a_failed_attempt_asks_for_nothing(store):
    engine = _engine(store, default_retry=_retry(2))
    inbox = engine.start(Inbox(), id="inbox")
    sender = engine.start(Sender(target=inbox, fail_first=True))
    engine.work(until_idle=True, idle_sleep=5)
    assert CALLS["tell"] == 2
    assert engine.get(sender).status.value == "finished"
    assert engine.get(inbox).data.got == [f"hello from {sender}"]  # one letter, not two


def test_a_start_creates_the_instance_once_with_an_id_derived_from_the_step(store):
    engine = _engine(store)
    sender = engine.start(Sender(mode="start"))
    started = engine.get(sender).data.started
    assert started == f"{sender}/_main_/tell/1/0"
    assert engine.get(started).status.value == "resuming"  # due: any worker runs it
    assert [r.id for r in store.list(workflow="ob-inbox")] == [started]
    engine.work(until_idle=True)
    assert engine.get(started).status.value == "waiting"


def test_a_start_then_a_send_to_it_in_one_step(store):
    engine = _engine(store)
    engine.start(Sender(target="new-inbox", mode="start+send"))
    engine.work(until_idle=True)
    assert engine.get("new-inbox").data.got == ["first letter"]


def test_a_self_send_later_arrives_at_its_time(store):
    clock = FakeClock()
    engine = _engine(store, clock)
    iid = engine.start(SelfSend())
    assert engine.get(iid).data.got == ""
    [entry] = store.list_outbox(origin=iid)
    assert entry.target == iid and entry.due_at == clock() + _dt.timedelta(hours=1)
    engine.work(until_idle=True, idle_sleep=1)
    assert engine.get(iid).data.got == ""  # not yet
    clock.advance(seconds=3600)
    engine.work(until_idle=True)
    assert engine.get(iid).data.got == "later"
    assert engine.get(iid).status.value == "finished" and store.list_outbox() == []


def test_a_target_that_does_not_wait_yet_gets_the_letter_once_it_waits(store):
    clock = FakeClock()
    engine = _engine(store, clock)
    inbox = engine.start(Inbox(), id="inbox", run=False)  # not waiting yet
    engine.start(Sender(target=inbox))
    # kept in the inbox's mailbox (docs/mailbox.md): the row is done at once, and
    # the inbox takes the letter when it begins to wait
    assert store.list_outbox(target=inbox) == []
    box = engine.get(inbox).state.mailbox
    assert box is not None and box.sent == 1
    engine.work(until_idle=True)
    assert engine.get(inbox).data.got == ["hello from " + store.list(workflow="ob-sender")[0].id]
    assert store.list_outbox() == []


# -- bad input: refused in the step, nothing written --------------------------------


@workflow("ob-bad")
@attrs.define
class Bad:
    how: str

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("bad", self.bad)

    def bad(self) -> None:
        ctx = current_step()
        if self.how == "missing":
            ctx.send("nobody-home", "note", "x")
        elif self.how == "payload":
            ctx.send(ctx.instance_id, "note", 2 ** 70)
        elif self.how == "workflow":
            ctx.start(object())
        elif self.how == "data":
            ctx.start(Inbox(got=[1 << 70]))  # type: ignore[list-item]
        elif self.how == "naive":
            ctx.send(ctx.instance_id, "note", at=_dt.datetime(2030, 1, 1))


@pytest.mark.parametrize(("how", "error"), [
    ("missing", InstanceNotFoundError), ("payload", PayloadError),
    ("workflow", UnknownWorkflowError), ("data", SerializationError),
])
def test_bad_outbox_requests_fail_the_step_and_write_nothing(store, how, error):
    engine = _engine(store)
    iid = engine.start(Bad(how))
    got = engine.get(iid)
    assert got.status.value == "failed"
    assert error.__name__ in got.error
    assert store.list_outbox() == []
    assert [r.id for r in store.list()] == [iid]


def test_an_outbox_without_an_engine_is_still_there_for_pure_runs():
    from genflow.runtime import Operation, drive
    from genflow.state import new_state

    data = Sender(target="elsewhere")
    op = Operation(data, new_state("s", data), None, FakeClock())
    drive(op.resume(100))
    [intent] = op.outbox.intents  # what a test can look at: plain data
    assert intent.target == "elsewhere" and intent.payload == "hello from s"


# -- crashes --------------------------------------------------------------------------


def test_a_crash_before_the_checkpoint_loses_the_intents_with_the_step(store):
    engine = _engine(store, lease_seconds=10)
    clock = engine.clock
    real = store.put_outbox

    def crash(entries):  # type: ignore[no-untyped-def]
        raise Crash
    store.put_outbox = crash  # type: ignore[method-assign]
    inbox = engine.start(Inbox(), id="inbox")
    with pytest.raises(Crash):
        engine.start(Sender(target=inbox), id="sender")
    store.put_outbox = real  # type: ignore[method-assign]
    assert engine.get("sender").state.threads[0].stmt in ("", "tell")  # the step is not saved
    assert engine.get(inbox).data.got == []
    clock.advance(seconds=11)  # type: ignore[attr-defined]
    _engine(store, clock).work(until_idle=True)
    assert CALLS["tell"] == 2  # it ran again
    assert engine.get(inbox).data.got == ["hello from sender"]  # and one letter went


def test_a_crash_after_the_commit_leaves_the_letter_to_any_worker(store):
    engine = _engine(store)
    engine.outbox.after = lambda: iter(())  # type: ignore[method-assign]  # dies after commit
    inbox = engine.start(Inbox(), id="inbox")
    engine.start(Sender(target=inbox), id="sender")
    assert engine.get(inbox).data.got == [] and len(store.list_outbox()) == 1
    worker = _engine(store, engine.clock)
    assert worker.work(until_idle=True) >= 1
    assert engine.get(inbox).data.got == ["hello from sender"]
    assert store.list_outbox() == []


def test_a_crash_inside_the_delivery_delivers_it_again_once(store):
    clock = FakeClock()
    engine = _engine(store, clock, lease_seconds=10)
    inbox = engine.start(Inbox(), id="inbox")
    real = store.done_outbox

    def crash(seq):  # type: ignore[no-untyped-def]
        raise Crash
    store.done_outbox = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        engine.start(Sender(target=inbox), id="sender")
    store.done_outbox = real  # type: ignore[method-assign]
    # the target's save went with the row's deletion: neither happened
    assert engine.get(inbox).data.got == [] and len(store.list_outbox()) == 1
    clock.advance(seconds=61)  # the dead relay's lease on the row ends
    _engine(store, clock).work(until_idle=True)
    assert engine.get(inbox).data.got == ["hello from sender"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crash_at=st.integers(min_value=0, max_value=12), rounds=st.integers(1, 3))
def test_a_crash_at_any_store_write_delivers_every_letter_exactly_once(crash_at, rounds):
    """Crash at the n-th write of the store (of any kind), then let a fresh
    worker finish: every letter arrives once, every start happened once."""
    store = MemoryStore()
    clock = FakeClock()
    with dies_at_call(store, crash_at, _RELAYED_WRITES, Crash):
        engine = Engine(store, clock=clock, lease_seconds=10)
        try:
            engine.start(Inbox(rounds=rounds), id="inbox")
            for n in range(rounds):
                engine.start(Sender(target="inbox"), id=f"s{n}")
        except Crash:
            pass
    clock.advance(seconds=100)
    worker = Engine(store, clock=clock, lease_seconds=10)
    if not any(r.id == "inbox" for r in store.list()):
        worker.start(Inbox(rounds=rounds), id="inbox")
    for n in range(rounds):
        if not any(r.id == f"s{n}" for r in store.list()):
            worker.start(Sender(target="inbox"), id=f"s{n}")
    for _ in range(5):
        worker.work(until_idle=True, idle_sleep=30)
        clock.advance(seconds=120)
    got = worker.get("inbox").data.got
    assert sorted(got) == sorted(f"hello from s{n}" for n in range(rounds))
    assert store.list_outbox() == []


def _retry(attempts: int):  # type: ignore[no-untyped-def]
    from genflow import Retry

    return Retry(attempts=attempts, backoff=1)


@workflow("ob-wrong-event")
@attrs.define
class WrongEvent:
    target: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("tell", self.tell)

    def tell(self) -> None:
        current_step().send(self.target, "no such event", "x")


def test_a_letter_for_an_event_the_target_can_never_take_is_given_up_not_retried(store):
    """The target exists, so the step's own check lets it through; the relay
    then finds that no statement of the target's workflow can wait for the
    event: no later move makes it deliverable, so it is kept with its error
    for an operator instead of being retried forever."""
    engine = _engine(store)
    inbox = engine.start(Inbox(), id="inbox")
    before = store.get(inbox)
    engine.start(WrongEvent(target=inbox))
    engine.work(until_idle=True)
    (letter,) = store.list_outbox(target=inbox)
    assert letter.due_at is None and "UnknownEventError" in letter.error
    assert "no event 'no such event' at all" in letter.error
    after = store.get(inbox)
    assert (after.blob, after.version) == (before.blob, before.version)


# -- a cancel asked for by a step ---------------------------------------------------


@workflow("ob-canceller")
@attrs.define
class Canceller:
    target: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("cancel it", lambda: current_step().cancel(self.target or
                                                              current_step().instance_id))
        yield Step("after", lambda: CALLS.update(["after"]))
        yield Wait("hold", On("note"))


@workflow("ob-cancellable")
@attrs.define
class Cancellable:
    cleaned: bool = False

    def definition(self):  # type: ignore[no-untyped-def]
        from genflow import Cancelled, Try

        yield Try("wait", Wait("never", On("note")),
                  ).Catch("cleanup", Step("clean", lambda: setattr(self, "cleaned", True)),
                          errors=Cancelled)


def test_a_step_cancels_another_instance_once_after_the_commit(store):
    engine = _engine(store)
    target = engine.start(Cancellable(), id="target")
    engine.start(Canceller(target=target), id="canceller")
    got = engine.get(target)
    assert (got.status.value, got.data.cleaned) == ("cancelled", True)
    assert engine.get("canceller").status.value == "waiting"
    assert store.list_outbox() == []


def test_a_step_cancels_its_own_instance_and_the_cleanup_runs(store):
    engine = _engine(store)
    iid = engine.start(Canceller(), id="me")
    # the cancel is carried out after the operation: the step after it ran first
    assert engine.get(iid).status.value == "cancelled" and CALLS["after"] == 1
    assert engine.get(iid).state.threads == [] and store.list_outbox() == []


def test_a_cancel_of_no_instance_fails_the_step_and_writes_nothing(store):
    engine = _engine(store)
    iid = engine.start(Canceller(target="nobody"), id="c")
    got = engine.get(iid)
    assert got.status.value == "failed" and "InstanceNotFoundError" in got.error
    assert "nothing was cancelled" in got.error
    assert store.list_outbox() == [] and [r.id for r in store.list()] == [iid]


def test_a_cancel_of_an_ended_instance_leaves_it_as_it_is(store):
    engine = _engine(store)
    inbox = engine.start(Inbox(), id="inbox")
    engine.send(inbox, "note", "done")
    before = store.get(inbox)
    engine.start(Canceller(target=inbox), id="c")
    assert store.get(inbox) == before and store.list_outbox() == []


def test_a_crash_after_the_commit_leaves_the_cancel_to_any_worker(store):
    engine = _engine(store)
    target = engine.start(Cancellable(), id="target")
    engine.outbox.after = lambda: iter(())  # type: ignore[method-assign]  # dies after commit
    engine.start(Canceller(target=target), id="canceller")
    assert engine.get(target).status.value == "waiting" and len(store.list_outbox()) == 1
    _engine(store, engine.clock).work(until_idle=True)
    assert engine.get(target).status.value == "cancelled" and engine.get(target).data.cleaned
    assert store.list_outbox() == []


def test_a_cancel_from_a_step_is_plain_data_in_the_toolkit():
    from genflow.outbox import CancelIntent
    from genflow.testing import Instance

    run = Instance(Canceller(target="other"), "crash", instance_id="c")
    run.resume()
    assert run.outbox == [CancelIntent("other")]


@pytest.mark.parametrize("crash_at", range(10))
def test_a_crash_at_any_store_write_cancels_the_target_once(crash_at):
    """Crash at the n-th store write while a step asks for a cancel, then let a
    fresh worker finish: the target is cancelled, its cleanup ran once."""
    store = MemoryStore()
    clock = FakeClock()
    with dies_at_call(store, crash_at, _RELAYED_WRITES, Crash):
        engine = Engine(store, clock=clock, lease_seconds=10)
        try:
            engine.start(Cancellable(), id="target")
            engine.start(Canceller(target="target"), id="canceller")
        except Crash:
            pass
    clock.advance(seconds=100)
    worker = Engine(store, clock=clock, lease_seconds=10)
    for iid, data in (("target", Cancellable()), ("canceller", Canceller(target="target"))):
        if not any(r.id == iid for r in store.list()):
            worker.start(data, id=iid)
        worker.work(until_idle=True)  # (the target waits in its Try before the cancel)
    for _ in range(5):
        worker.work(until_idle=True, idle_sleep=30)
        clock.advance(seconds=120)
    got = worker.get("target")
    assert (got.status.value, got.data.cleaned) == ("cancelled", True)
    assert worker.get("canceller").status.value == "waiting" and store.list_outbox() == []
