"""Mailboxes (issue 16): an event sent while no thread waits for it is kept, in
order, and delivered exactly once when a thread waits for it; signal-with-start;
idempotent start. On every store, through the core, the engine, the toolkit,
the CLI and crashes at every save."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genflow
from genflow import EventHandler, Go, On, Step, Timeout, Wait, WorkflowStatus
from genflow.clock import FakeClock
from genflow.describe import describe
from genflow.engine import Engine
from genflow.errors import (
    DefinitionError,
    DuplicateInstanceError,
    GenflowError,
    MailboxFullError,
    PayloadError,
    UnknownEventError,
    UnknownThreadError,
    WorkflowFinishedError,
)
from genflow.mailbox import Kept
from genflow.runtime import resume, send
from genflow.state import CheckpointType, Mailbox, Message, new_state
from genflow.testing import Instance, Send, check_replay
from genflow.validation import validate

# -- workflows ---------------------------------------------------------------------------------


@attrs.define
class Item:
    name: str
    qty: int = 1


@genflow.workflow("mail-order")
@attrs.define
class Order:
    """Waits for "approve" first, then takes `rounds` items, one per wait."""

    rounds: int = 3
    approved: bool = False
    items: list[str] = attrs.field(factory=list)
    shipped: bool = False

    def definition(self):
        yield Wait("approval", On("approve", self.on_approve))
        for n in range(self.rounds):
            yield Step(f"prepare {n}", self.prepare)
            yield Wait(f"item {n}", On("item", self.on_item), Timeout(f"give up {n}", 3600))
        yield Step("ship", self.ship)

    def on_approve(self) -> str:
        self.approved = True
        return "approved"

    def prepare(self) -> None:
        pass

    def on_item(self, item: Item) -> int:
        self.items.append(item.name)
        return len(self.items)

    def ship(self) -> None:
        self.shipped = True


@genflow.workflow("mail-strict")
@attrs.define
class Strict:
    """Two waits for the same events; "b" says keep=True on each of its Ons."""

    seen: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Wait("first", On("a", self.on_a), On("b", self.on_b, keep=True))
        yield Wait("second", On("a", self.on_a), On("b", self.on_b, keep=True))

    def on_a(self) -> None:
        self.seen.append("a")

    def on_b(self) -> None:
        self.seen.append("b")


REFUSALS: list[int] = []


class Picky(EventHandler):
    """Refuses odd numbers (a handler's own check, made when it runs)."""

    def handle(self, req, payload: int) -> int:
        if payload % 2:
            REFUSALS.append(payload)
            raise ValueError(f"{payload} is odd")
        return payload


@genflow.workflow("mail-picky")
@attrs.define
class Evens:
    got: list[int] = attrs.field(factory=list)

    def definition(self):
        yield Wait("open", On("open"))
        for n in range(2):
            yield Wait(f"number {n}", On("number", Picky(), Step(f"keep {n}", self.keep)))

    def keep(self) -> None:
        self.got.append(len(self.got))


@genflow.workflow("mail-threads")
@attrs.define
class TwoThreads:
    got: dict[str, list[int]] = attrs.field(factory=dict)

    def definition(self):
        yield Wait("go?", On("go"))
        yield Go("left", self.side("left"), id="left")
        yield Go("right", self.side("right"), id="right")

    def side(self, name: str):
        def body():
            yield Step(f"{name} warms up", lambda: None)
            yield Wait(f"{name} waits", On("ping", lambda value: self.take(name, value)))
        return body

    def take(self, name: str, value: int) -> None:
        self.got.setdefault(name, []).append(value)


@genflow.workflow("mail-loop")
@attrs.define
class Loop:
    """Takes `n` messages, one per wait, with a step between waits."""

    n: int = 4
    got: list[int] = attrs.field(factory=list)

    def definition(self):
        for k in range(self.n):
            yield Step(f"work {k}", lambda: None)
            yield Wait(f"take {k}", On("msg", self.take))

    def take(self, value: int) -> None:
        self.got.append(value)


@genflow.workflow("mail-napper")
@attrs.define
class Napper:
    got: list[int] = attrs.field(factory=list)

    def definition(self):
        yield genflow.Sleep("nap", 60)
        yield Wait("awake", On("go", self.on_go))

    def on_go(self, value: int) -> None:
        self.got.append(value)


# -- the core ----------------------------------------------------------------------------------


def test_an_early_event_is_kept_then_delivered_when_the_wait_begins():
    wf = Order(rounds=1)
    state = new_state("o", wf)
    kinds: list[CheckpointType] = []
    resume(wf, state, kinds.append)
    kept = send(wf, state, "item", {"name": "tea"}, kinds.append)  # waits for "approve"
    assert kept == Kept("o", "item", 0, 1)
    assert kinds[-1] is CheckpointType.AFTER_MAILBOX
    assert [m.payload for m in state.mailbox.kept] == [{"name": "tea", "qty": 1}]
    assert send(wf, state, "approve", None, kinds.append) == "approved"
    # the wait for "item" began in the moves after "approve": the kept one is taken there
    assert wf.items == ["tea"] and wf.shipped and state.status is WorkflowStatus.FINISHED
    assert state.mailbox.kept == [] and state.mailbox.undelivered == []
    assert kinds.count(CheckpointType.AFTER_EVENT) == 2


def test_kept_events_are_delivered_oldest_first_each_once():
    wf = Order(rounds=3)
    state = new_state("o", wf)
    resume(wf, state)
    for name in ("a", "b", "c", "d"):
        assert isinstance(send(wf, state, "item", {"name": name}), Kept)
    send(wf, state, "approve")
    assert wf.items == ["a", "b", "c"] and wf.shipped
    # the fourth came too late: the instance ended with it kept, so it is set aside
    [left] = state.mailbox.undelivered
    assert (left.seq, left.payload["name"]) == (3, "d")
    assert left.reason == "the instance finished before a thread waited for it"


def test_a_send_never_overtakes_kept_messages_of_its_event():
    wf = Loop(n=2)
    state = new_state("l", wf)
    resume(wf, state)  # waits at "take 0", its handler set up
    # a message kept while the wait's handler was not set up yet, say: it is ahead
    state.mailbox = Mailbox(1, [Message(0, "msg", 1)])
    assert send(wf, state, "msg", 2) is None  # kept behind it, taken by the moves after it
    assert wf.got == [1, 2] and state.status is WorkflowStatus.FINISHED


def test_a_handler_that_refuses_a_kept_message_sets_it_aside_and_waits_on():
    REFUSALS.clear()
    wf = Evens()
    state = new_state("e", wf)
    resume(wf, state)
    for n in (3, 4, 6):
        send(wf, state, "number", n)
    send(wf, state, "open")
    assert REFUSALS == [3] and wf.got == [0, 1]
    [refused] = state.mailbox.undelivered
    assert refused.payload == 3 and refused.reason.startswith("HandlerError")
    assert "3 is odd" in refused.reason
    assert state.status is WorkflowStatus.FINISHED


def test_messages_to_one_thread_wait_for_that_thread():
    wf = TwoThreads()
    state = new_state("t", wf)
    resume(wf, state)
    send(wf, state, "ping", 1, thread="right")
    send(wf, state, "ping", 2)  # any thread
    with pytest.raises(UnknownThreadError):
        send(wf, state, "ping", 3, thread="middle")
    send(wf, state, "go")
    assert wf.got == {"left": [2], "right": [1]}


@pytest.mark.parametrize(("event", "payload", "error", "words"), [
    ("refund", None, UnknownEventError,
     "workflow 'mail-order' has no event 'refund' at all (no statement of it can ever wait "
     "for one): its events are 'approve', 'item'"),
    ("give up 0", None, UnknownEventError, "'give up 0' is a timer of workflow 'mail-order'"),
    ("item", {"name": 7}, PayloadError, "name: expected str, got int 7"),
    ("item", {"name": "x", "colour": "red"}, PayloadError, "unknown field 'colour'"),
    ("item", None, PayloadError, "needs a payload of type Item"),
    ("item", {"name": "x", "qty": 2 ** 70}, PayloadError, "64-bit range"),
])
def test_bad_sends_are_refused_before_they_are_kept(event, payload, error, words):
    wf = Order()
    state = new_state("o", wf)
    resume(wf, state)
    before = genflow.dumps(wf, state)
    with pytest.raises(error) as refused:
        send(wf, state, event, payload)
    assert words in str(refused.value)
    assert genflow.dumps(wf, state) == before


def test_a_full_mailbox_refuses_and_changes_nothing():
    wf = Order()
    state = new_state("o", wf)
    resume(wf, state)
    send(wf, state, "item", {"name": "a"}, limit=2)
    send(wf, state, "item", {"name": "b"}, limit=2)
    before = genflow.dumps(wf, state)
    with pytest.raises(MailboxFullError, match="holds 2"):
        send(wf, state, "item", {"name": "c"}, limit=2)
    assert genflow.dumps(wf, state) == before


def test_keep_is_declared_per_event_and_per_send():
    wf = Strict()
    state = new_state("s", wf)
    resume(wf, state)
    send(wf, state, "a")  # awaited at "first": delivered
    assert send(wf, state, "b", keep=True) is None  # awaited at "second": delivered
    assert wf.seen == ["a", "b"] and state.status is WorkflowStatus.FINISHED
    order = Order()
    order_state = new_state("o", order)
    resume(order, order_state)
    with pytest.raises(UnknownEventError, match="does not wait for 'item'"):
        send(order, order_state, "item", {"name": "x"}, keep=False)
    assert order_state.mailbox is None


def test_the_workflow_default_refuses_unless_the_event_says_keep():
    @genflow.workflow("mail-strict-2", keep=False)
    @attrs.define
    class Gate:
        log: list[str] = attrs.field(factory=list)

        def definition(self):
            yield Wait("one", On("start"))
            yield Wait("two", On("a", lambda: self.log.append("a")),
                       On("b", lambda: self.log.append("b"), keep=True))

    wf = Gate()
    state = new_state("g", wf)
    resume(wf, state)
    with pytest.raises(UnknownEventError, match="does not wait for 'a'"):
        send(wf, state, "a")
    assert isinstance(send(wf, state, "b"), Kept)
    assert isinstance(send(wf, state, "a", keep=True), Kept)  # the send's own word wins
    send(wf, state, "start")
    assert wf.log == ["b"] and state.status is WorkflowStatus.FINISHED
    assert [m.event for m in state.mailbox.undelivered] == ["a"]


def test_ons_of_one_event_must_agree_on_keep():
    @attrs.define
    class Split:
        def definition(self):
            yield Wait("one", On("x", keep=True))
            yield Wait("two", On("x", keep=False))

    with pytest.raises(DefinitionError, match="'x' is declared both keep=True and keep=False"):
        validate(Split())


def test_no_event_is_kept_for_a_finished_or_cancelling_instance():
    wf = Order(rounds=0)
    state = new_state("o", wf)
    resume(wf, state)
    send(wf, state, "approve")
    assert state.status is WorkflowStatus.FINISHED
    with pytest.raises(WorkflowFinishedError):
        send(wf, state, "item", {"name": "late"})


@settings(max_examples=60, deadline=None)
@given(plan=st.lists(st.sampled_from(["send", "resume"]), min_size=1, max_size=14),
       n=st.integers(min_value=1, max_value=6))
def test_any_interleaving_delivers_in_order_once_each_none_lost(plan, n):
    """Sends and moves in any order: the instance takes the messages in the order
    they were sent, each once; the rest are kept, then set aside at the end."""
    wf = Loop(n=n)
    state = new_state("l", wf)
    sent: list[int] = []
    for action in plan:
        if state.status is WorkflowStatus.FINISHED:
            break
        if action == "send":
            sent.append(len(sent))
            send(wf, state, "msg", sent[-1])
        else:
            resume(wf, state)
    if state.status is not WorkflowStatus.FINISHED:
        resume(wf, state)
    box = state.mailbox
    kept = [] if box is None else [m.payload for m in box.kept]
    undelivered = [] if box is None else [m.payload for m in box.undelivered]
    assert wf.got == sent[:len(wf.got)]  # in order, no repeats
    assert wf.got + kept + undelivered == sent  # nothing lost
    assert len(wf.got) == min(n, len(sent))
    if state.status is WorkflowStatus.FINISHED:
        assert kept == []


# -- the toolkit: every mode, crashes at every durable checkpoint --------------------------------


def _early_signals(mode: str) -> Instance:
    run = Instance(Order(rounds=2), mode=mode)
    run.resume()
    assert isinstance(run.send("item", Item("tea")), Kept)
    assert isinstance(run.send("item", Item("milk", 2)), Kept)
    assert run.send("approve") == "approved"
    return run


@pytest.mark.parametrize("mode", ["plain", "reload", "crash"])
def test_the_toolkit_keeps_and_delivers_in_every_mode(mode):
    run = _early_signals(mode)
    assert run.wf.items == ["tea", "milk"] and run.finished
    assert CheckpointType.AFTER_MAILBOX in run.kinds


def test_every_mode_ends_with_the_same_blob():
    blobs = {mode: _early_signals(mode).blob() for mode in ("plain", "reload", "crash")}
    assert len(set(blobs.values())) == 1


@pytest.mark.parametrize("crash_at", range(12))
def test_a_crash_at_any_durable_checkpoint_loses_no_message_and_repeats_none(crash_at):
    """The process dies right after the n-th durable checkpoint's save: memory
    is lost, a worker goes on from the stored blob. Every durable checkpoint of a
    send comes after its message is in (kept, or handled), so nothing is sent
    again: each message is delivered once, in order."""
    seen = {"n": 0}

    class Dies(Exception):
        pass

    def on_checkpoint(kind):
        if kind.durable:
            seen["n"] += 1
            if seen["n"] == crash_at + 1:
                raise Dies

    run = Instance(Order(rounds=2), on_checkpoint=on_checkpoint)
    for operation in (run.resume, lambda: run.send("item", Item("tea")),
                      lambda: run.send("item", Item("milk")), lambda: run.send("approve")):
        try:
            operation()
        except Dies:
            run.wf, run.state = genflow.loads(run.checkpointed)  # what the store holds
            run.resume()
    assert seen["n"] > crash_at or crash_at >= 6  # (the scenario has 6 durable checkpoints)
    assert run.wf.items == ["tea", "milk"] and run.finished
    assert run.state.mailbox.kept == [] and run.state.mailbox.undelivered == []


def test_check_replay_crashes_a_kept_then_taken_send_at_every_checkpoint():
    """The checker runs the scenario uninterrupted, reloaded at every checkpoint
    and crashed at each in turn: the same outcome every time, nothing lost."""
    scenario = [Send("item", {"name": "tea"}, keep=True), Send("item", {"name": "jam"},
                                                              keep=True),
                Send("approve"), Send("give up 2", timer=True)]
    result = check_replay(Order(rounds=3), scenario)
    assert result.ok, result.report()
    assert [o.output for o in result.outcomes] == [{"kept": 0}, {"kept": 1}, "approved", None]
    assert result.data.items == ["tea", "jam"] and result.data.shipped
    assert result.crash_runs >= 5 and all(o.accepted for o in result.outcomes)
    refused = check_replay(Order(), [Send("refund", keep=True)])
    assert [o.error_type for o in refused.outcomes] == ["UnknownEventError"]


# -- the engine, on every store ----------------------------------------------------------------


@pytest.fixture
def engine(make_store):
    return Engine(make_store(), clock=FakeClock(), journal=True, mailbox_size=5)


def row(engine: Engine, instance_id: str) -> tuple[Any, ...]:
    r = engine.store.get(instance_id)
    return (r.blob, r.version, r.status, r.wake_at, r.waiting_for)


def test_the_engine_keeps_and_delivers_when_a_worker_reaches_the_wait(engine):
    iid = engine.start(Napper(), id="o1")  # asleep: the wait for "go" comes after the nap
    assert engine.send(iid, "go", 7) == Kept("o1", "go", 0, 1)
    assert engine.get(iid).state.mailbox.kept[0].payload == 7
    engine.clock.advance(seconds=60)
    engine.run_due()  # the timer fires in a worker; its moves reach the wait: taken there
    inst = engine.get(iid)
    assert inst.data.got == [7] and inst.state.mailbox.kept == []
    assert inst.status is WorkflowStatus.FINISHED
    kinds = [e.kind for e in engine.store.journal(iid)]
    assert "kept" in kinds and "taken" in kinds


def test_a_send_that_moves_the_instance_on_returns_what_the_handler_did(engine):
    iid = engine.start(Order(rounds=1), id="o1b", run=False)  # due: not started yet
    # kept, then the moves of this call reach the wait and take it: the handler's answer
    assert engine.send(iid, "approve") == "approved"
    assert engine.send(iid, "item", {"name": "tea"}) == 1  # awaited now: delivered at once
    assert engine.get(iid).status is WorkflowStatus.FINISHED


def test_kept_messages_are_visible_in_get_and_show(engine):
    iid = engine.start(Order(), id="o2")
    engine.send(iid, "item", {"name": "tea"})
    engine.send(iid, "item", {"name": "jam", "qty": 2})
    inst = engine.get(iid)
    text = describe(inst.state, now=engine.clock())
    assert "mailbox: 2 messages kept until a thread waits for its event (oldest first):" in text
    assert "#0 'item', sent" in text and 'payload {"name": "jam", "qty": 2}' in text


def test_what_the_instance_ends_with_is_set_aside_on_record(engine):
    iid = engine.start(Order(rounds=1), id="o3")
    engine.send(iid, "item", {"name": "jam"})
    engine.send(iid, "item", {"name": "tea"})  # one too many: no wait will take it
    engine.send(iid, "approve")
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED
    [left] = inst.state.mailbox.undelivered
    assert left.reason == "the instance finished before a thread waited for it"
    text = describe(inst.state, now=engine.clock())
    assert "undelivered: 1 message set aside:" in text
    assert "the instance finished before a thread waited for it" in text
    [entry] = [e for e in engine.store.journal(iid) if e.kind == "undelivered"]
    assert entry.detail["event"] == "item" and entry.detail["payload"] == {"name": "tea",
                                                                           "qty": 1}


def test_cancelling_sets_kept_messages_aside(make_store):
    engine = Engine(make_store(), clock=FakeClock())  # journal off: still on record
    iid = engine.start(Order(), id="o4")
    engine.send(iid, "item", {"name": "tea"})
    engine.cancel(iid)
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.CANCELLED
    assert inst.state.mailbox.undelivered[0].reason.startswith("the instance was cancelled")
    assert [e.kind for e in engine.store.journal(iid)].count("undelivered") == 1


def test_refusals_change_nothing_on_the_store(engine):
    iid = engine.start(Order(), id="o5")
    for _ in range(5):
        engine.send(iid, "item", {"name": "x"})
    for event, payload, error in [
            ("item", {"name": "y"}, MailboxFullError), ("nope", None, UnknownEventError),
            ("item", {"name": 1}, PayloadError), ("give up 0", None, UnknownEventError),
            ("item", {"name": "y"}, UnknownEventError)]:
        before = row(engine, iid)
        with pytest.raises(error):
            engine.send(iid, event, payload, keep=False if error is UnknownEventError and
                        event == "item" else None)
        assert row(engine, iid) == before


def test_signal_with_start_starts_once_and_delivers(engine):
    kept = engine.send("o6", "item", {"name": "tea"}, start=Order(rounds=1))
    assert kept == Kept("o6", "item", 0, 1)  # the new instance waits for "approve" first
    inst = engine.get("o6")
    assert inst.state.mailbox.kept[0].event == "item" and inst.version >= 1
    # it exists now: the same call is an ordinary send (the data is not used)
    assert engine.send("o6", "approve", start=Order(rounds=9)) == "approved"
    inst = engine.get("o6")
    assert inst.data.items == ["tea"] and inst.status is WorkflowStatus.FINISHED
    assert engine.store.count() == 1


def test_signal_with_start_delivers_at_once_when_the_new_instance_waits(engine):
    assert engine.send("o7", "approve", start=Order(rounds=0)) == "approved"
    assert engine.get("o7").status is WorkflowStatus.FINISHED


def test_signal_with_start_refuses_with_nothing_written(engine):
    for event, payload, error in [("nope", None, UnknownEventError),
                                  ("item", {"name": 3}, PayloadError)]:
        with pytest.raises(error):
            engine.send("o8", event, payload, start=Order())
    assert engine.store.count() == 0
    engine.start(Loop(), id="taken")
    with pytest.raises(DuplicateInstanceError, match="workflow 'mail-loop', not 'mail-order'"):
        engine.send("taken", "approve", start=Order())


def test_signal_with_start_to_an_instance_that_exists_asks_its_own_definition(engine):
    engine.start(Order(rounds=1), id="o11")
    # Order(rounds=0) has no wait for "item": the instance that exists has one
    assert isinstance(engine.send("o11", "item", {"name": "tea"}, start=Order(rounds=0)), Kept)
    with pytest.raises(UnknownEventError):
        engine.send("o12", "item", {"name": "tea"}, start=Order(rounds=0))
    assert engine.store.count() == 1


def test_idempotent_start(engine):
    assert engine.start(Order(), id="o9") == "o9"
    before = row(engine, "o9")
    with pytest.raises(DuplicateInstanceError):
        engine.start(Order(), id="o9")
    assert engine.start(Order(rounds=7), id="o9", if_exists="return") == "o9"
    assert row(engine, "o9") == before and engine.get("o9").data.rounds == 3
    with pytest.raises(DuplicateInstanceError, match="workflow 'mail-order', not 'mail-loop'"):
        engine.start(Loop(), id="o9", if_exists="return")
    with pytest.raises(GenflowError, match="if_exists is 'raise' or 'return'"):
        engine.start(Order(), id="o10", if_exists="ignore")
    assert engine.store.count() == 1


def test_the_async_twins(engine):
    async def go() -> None:
        assert await engine.start_async(Order(rounds=1), id="a1") == "a1"
        assert await engine.start_async(Order(), id="a1", if_exists="return") == "a1"
        kept = await engine.send_async("a1", "item", {"name": "tea"})
        assert isinstance(kept, Kept)
        with pytest.raises(UnknownEventError):
            await engine.send_async("a1", "item", {"name": "tea"}, keep=False)
        assert await engine.send_async("a2", "approve", start=Order(rounds=0)) == "approved"

    asyncio.run(go())
    assert engine.get("a2").status is WorkflowStatus.FINISHED


def test_a_crash_after_any_save_loses_no_message_and_repeats_none(make_store):
    """The process dies right after each save in turn, its lease left behind; a
    new worker takes over once the lease expires: each message is delivered
    once, in order, whatever save the crash followed (every save of a send
    comes after its message is in, so the sender has nothing to send again)."""

    class Died(BaseException):
        pass

    def calls(iid: str) -> list[Any]:
        return [lambda e: e.send(iid, "item", {"name": "tea"}),
                lambda e: e.send(iid, "item", {"name": "jam"}),
                lambda e: e.send(iid, "approve"),
                lambda e: e.work(until_idle=True)]

    store = make_store()
    original = store.save
    crash_after = 0
    while True:
        iid = f"c{crash_after}"
        clock = FakeClock()
        Engine(store, clock=clock).start(Order(rounds=2), id=iid, run=False)
        count = {"n": 0}

        def dying_save(*args: Any, _n: int = crash_after, _count: dict = count,
                       **kwargs: Any) -> Any:
            saved = original(*args, **kwargs)
            _count["n"] += 1
            if _count["n"] == _n + 1:
                raise Died
            return saved

        engine = Engine(store, clock=clock)
        store.save = dying_save  # type: ignore[method-assign]
        for call in calls(iid):
            try:
                call(engine)
            except Died:  # the process is gone; another one starts after its lease
                store.save = original  # type: ignore[method-assign]
                clock.advance(seconds=120)
                engine = Engine(store, clock=clock)
        store.save = original  # type: ignore[method-assign]
        engine.work(until_idle=True)
        inst = engine.get(iid)
        assert inst.data.items == ["tea", "jam"] and inst.data.shipped, (crash_after, inst)
        assert inst.state.mailbox.kept == [] and inst.state.mailbox.undelivered == []
        if count["n"] <= crash_after:
            break  # every save has been crashed after once
        crash_after += 1
    assert crash_after >= 5


@genflow.workflow("mail-napping-loop")
@attrs.define
class NappingLoop:
    """Naps before each wait: most messages arrive while no thread waits."""

    n: int = 12
    got: list[int] = attrs.field(factory=list)

    def definition(self):
        for k in range(self.n):
            yield genflow.Sleep(f"nap {k}", 1)
            yield Wait(f"take {k}", On("msg", self.take))

    def take(self, value: int) -> None:
        self.got.append(value)


def test_concurrent_senders_each_message_once_in_each_senders_order(make_store, store_kind):
    """Four senders at once (each its own engine, as processes are), a worker
    firing the naps meanwhile: every message taken once, each sender's in the
    order it sent them."""
    import threading

    if store_kind == "memory":
        pytest.skip("one process's store: the engines here stand for processes")
    clock = FakeClock()
    Engine(make_store(), clock=clock).start(NappingLoop(), id="n")
    errors: list[BaseException] = []

    def sender(who: int) -> None:
        engine = Engine(make_store(), clock=clock, lease_seconds=3600)
        try:
            for k in range(3):
                engine.send("n", "msg", who * 10 + k, timeout=60)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(who,)) for who in range(4)]
    for thread in threads:
        thread.start()
    # (the fake clock runs fast: leases long enough that none expires mid-send)
    worker = Engine(make_store(), clock=clock, lease_seconds=3600)
    while any(thread.is_alive() for thread in threads):
        clock.advance(seconds=1)
        worker.run_due()
        time.sleep(0.005)
    for thread in threads:
        thread.join()
    assert errors == []
    for _ in range(30):
        clock.advance(seconds=1)
        worker.run_due()
    got = worker.get("n").data.got
    assert sorted(got) == sorted(who * 10 + k for who in range(4) for k in range(3))
    for who in range(4):
        assert [v for v in got if v // 10 == who] == [who * 10 + k for k in range(3)]
    assert worker.get("n").status is WorkflowStatus.FINISHED


def test_an_event_for_an_instance_its_queue_has_not_admitted_is_kept_for_later(make_store):
    from genflow.queues import Queue

    engine = Engine(make_store(), clock=FakeClock())
    engine.queues.define(Queue("orders", concurrency=1))
    engine.start(Order(rounds=0), id="first", queue="orders")
    engine.start(Order(rounds=0), id="second", queue="orders")
    engine.work(until_idle=True)  # "first" is admitted and waits; "second" is queued
    assert engine.send("second", "approve") == Kept("second", "approve", 0, 1)
    second = engine.get("second")
    assert second.state.threads[0].stmt == "" and second.wake_at is None  # not run by us
    engine.send("first", "approve")  # "first" finishes: the queue admits "second"
    engine.work(until_idle=True)
    assert engine.get("second").data.approved
    assert engine.get("second").status is WorkflowStatus.FINISHED


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.sampled_from(["send", "tick", "work"]), min_size=1, max_size=16))
def test_any_interleaving_through_the_engine_delivers_in_order_once_each(make_store, plan):
    """Sends, clock ticks and worker rounds in any order, on every store: the
    instance takes the messages in the order sent, each once, none lost."""
    engine = Engine(make_store(), clock=FakeClock(), mailbox_size=20)
    iid = engine.start(NappingLoop(n=5), id=f"h{len(engine.store.list())}")
    sent: list[int] = []
    for action in plan:
        if action == "send":
            try:
                engine.send(iid, "msg", len(sent))
            except WorkflowFinishedError:
                break
            sent.append(len(sent))
        elif action == "tick":
            engine.clock.advance(seconds=1)
        else:
            engine.run_due()
    engine.clock.advance(seconds=10)
    engine.work(until_idle=True)
    inst = engine.get(iid)
    box = inst.state.mailbox
    kept = [] if box is None else [m.payload for m in box.kept]
    undelivered = [] if box is None else [m.payload for m in box.undelivered]
    got = inst.data.got
    assert got == sent[:len(got)] and got + kept + undelivered == sent
    assert len(got) == min(5, len(sent))
