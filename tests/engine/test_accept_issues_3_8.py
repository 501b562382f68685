"""Acceptance: issues #3 (durable runtime), #6 (PostgreSQL), #7 (diagrams) and #8
(operations), checked as a user reads them: the Engine's public methods, stores'
compare-and-swap, timers on a FakeClock, Retry, the journal, on every store."""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import attrs
import pytest

import genflow
from genflow import (
    ConcurrencyError,
    DuplicateInstanceError,
    Engine,
    FakeClock,
    For,
    InstanceNotFoundError,
    MoveError,
    On,
    Retry,
    Step,
    Timeout,
    Wait,
    WorkflowStatus,
)
from genflow.errors import ArgumentError, GenflowError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: failures still to come per FlakyCharge.token (kept outside the data: a failed
#: step's changes roll back)
FAILURES: dict[str, int] = {}


@genflow.workflow("accept38-order")
@attrs.define
class Order:
    items: list[str] = attrs.Factory(list)
    stage: str = "new"
    keys: list[str] = attrs.Factory(list)

    def definition(self):
        yield For("shopping", self.stage == "new",
            Wait("cart",
                 On("add", self.add),
                 On("pay", self.pay, Step("ship", self.ship)),
                 Timeout("abandon", 60, Step("forget", self.forget))),
        )

    def add(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    def pay(self) -> None:
        self.stage = "paid"

    def ship(self) -> None:
        self.keys.append(genflow.current_step().idempotency_key)
        self.stage = "shipped"

    def forget(self) -> None:
        self.stage = "abandoned"


class Flaky(Exception):
    pass


@genflow.workflow("accept38-flaky")
@attrs.define
class FlakyCharge:
    token: str = ""
    done: bool = False

    def definition(self):
        yield Step("charge", self.charge, retry=Retry(attempts=3, backoff=10, on=(Flaky,)))

    def charge(self) -> None:
        if FAILURES[self.token] > 0:
            FAILURES[self.token] -= 1
            raise Flaky("card network down")
        self.done = True


@pytest.fixture
def clock():
    return FakeClock(T0)


def test_start_send_get_list_on_every_store(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    oid = engine.start(Order(), id="o-1")
    assert oid == "o-1"
    with pytest.raises(DuplicateInstanceError):
        engine.start(Order(), id="o-1")
    assert engine.send(oid, "add", "pizza") == 1
    inst = engine.get(oid)
    assert inst.data.items == ["pizza"]
    assert inst.status is WorkflowStatus.WAITING
    assert set(inst.waiting_for) >= {"add", "pay"}
    other = engine.start(Order())
    assert other != oid
    assert {r.id for r in engine.list(workflow="accept38-order")} == {oid, other}
    assert [r.id for r in engine.list(workflow="accept38-order", status="waiting",
                                      waiting="pay")] == sorted([oid, other])
    engine.send(oid, "pay")
    assert engine.get(oid).data.stage == "shipped"
    assert engine.get(oid).status is WorkflowStatus.FINISHED
    assert [r.id for r in engine.list(status=WorkflowStatus.FINISHED)] == [oid]
    with pytest.raises(InstanceNotFoundError):
        engine.get("nobody")


def test_a_handler_that_raises_changes_nothing(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    oid = engine.start(Order())
    before = store.get(oid)
    with pytest.raises(GenflowError):
        engine.send(oid, "add", 42)  # not a str
    with pytest.raises(GenflowError):
        engine.send(oid, "no-such-event")
    after = store.get(oid)
    assert (after.blob, after.version) == (before.blob, before.version)


def test_the_timer_fires_when_the_fake_clock_passes_it(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    oid = engine.start(Order())
    clock.advance(59)
    engine.run_due()
    assert engine.get(oid).data.stage == "new"
    clock.advance(2)
    assert engine.run_due() == 1
    assert engine.get(oid).data.stage == "abandoned"
    assert engine.get(oid).status is WorkflowStatus.FINISHED


def test_the_timer_is_torn_down_when_another_event_wins(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    oid = engine.start(Order())
    engine.send(oid, "pay")
    clock.advance(3600)
    engine.run_due()
    assert engine.get(oid).data.stage == "shipped"
    assert engine.get(oid).wake_at is None


def test_cancel_ends_the_instance_and_refuses_events(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    oid = engine.start(Order())
    engine.cancel(oid)
    assert engine.get(oid).status is WorkflowStatus.CANCELLED
    with pytest.raises(GenflowError):
        engine.send(oid, "add", "x")
    clock.advance(3600)
    assert engine.run_due() == 0


def test_retry_backs_off_counts_attempts_and_succeeds(store, clock):
    engine = Engine(store, workflows=[FlakyCharge], clock=clock)
    FAILURES["two"] = 2
    iid = engine.start(FlakyCharge("two"))
    inst = engine.get(iid)
    assert inst.status is not WorkflowStatus.FINISHED
    assert inst.attempts == 1 and "card network down" in inst.error
    assert inst.wake_at == T0 + dt.timedelta(seconds=10)
    assert engine.run_due() == 0  # not due before the backoff
    clock.advance(10)
    engine.run_due()
    assert engine.get(iid).attempts == 2
    clock.advance(20)
    engine.run_due()
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED and inst.data.done


def test_retries_exhausted_fail_the_instance_then_an_operator_retries(store, clock):
    engine = Engine(store, workflows=[FlakyCharge], clock=clock)
    FAILURES["five"] = 5
    iid = engine.start(FlakyCharge("five"))
    clock.advance(10)
    engine.run_due()
    clock.advance(20)
    engine.run_due()
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FAILED
    assert "card network down" in inst.error
    assert [r.id for r in engine.list(status="failed")] == [iid]
    engine.retry(iid)  # its whole policy again: 3 more attempts, 2 of them failing
    engine.work(until_done=True)
    while engine.get(iid).wake_at is not None:
        clock.advance(60)
        engine.run_due()
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED, inst.error
    journal = [e.kind for e in store.journal(iid)]
    assert "retry" in journal


def test_work_until_idle_runs_due_instances(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    ids = [engine.start(Order(), run=False) for _ in range(3)]
    assert engine.work(until_idle=True) >= 3
    assert all(engine.get(i).status is WorkflowStatus.WAITING for i in ids)


def test_a_stale_save_is_a_clear_conflict(make_store, clock):
    first = make_store()
    second = make_store()
    engine = Engine(first, workflows=[Order], clock=clock)
    oid = engine.start(Order())
    a = first.get(oid)
    b = second.get(oid)
    first.save(a, expected_version=a.version)
    with pytest.raises(ConcurrencyError, match="someone else saved it first"):
        second.save(b, expected_version=b.version)
    assert second.get(oid).version == a.version + 1


def test_two_engines_share_one_store(make_store, clock):
    one = Engine(make_store(), workflows=[Order], clock=clock)
    two = Engine(make_store(), workflows=[Order], clock=clock)
    oid = one.start(Order())
    two.send(oid, "add", "a")
    one.send(oid, "add", "b")
    assert two.get(oid).data.items == ["a", "b"]
    clock.advance(61)
    moved = one.run_due() + two.run_due()
    assert moved == 1
    assert one.get(oid).data.stage == "abandoned"


def test_the_idempotency_key_names_instance_thread_step_counter(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    oid = engine.start(Order(), id="k-1")
    engine.send(oid, "pay")
    (key,) = engine.get(oid).data.keys
    assert "k-1" in key and "ship" in key


@genflow.workflow("accept38-async")
@attrs.define
class AsyncOrder:
    got: str = ""

    def definition(self):
        yield Wait("w", On("hello", self.hello))
        yield Step("later", self.later)

    async def hello(self, name: str) -> str:
        self.got = name
        return f"hi {name}"

    async def later(self) -> None:
        self.got += "!"


def test_async_steps_and_handlers_through_the_async_api(store, clock):
    engine = Engine(store, workflows=[AsyncOrder], clock=clock)

    async def scenario() -> tuple[str, str]:
        iid = await engine.start_async(AsyncOrder())
        return iid, await engine.send_async(iid, "hello", "ann")

    iid, answer = asyncio.run(scenario())
    assert answer == "hi ann"
    assert engine.get(iid).data.got == "ann!"
    assert engine.get(iid).status is WorkflowStatus.FINISHED


def test_move_is_validated_and_recorded(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    oid = engine.start(Order())
    before = store.get(oid)
    with pytest.raises(MoveError):
        engine.move(oid, genflow.MAIN_THREAD, "no such statement")
    after = store.get(oid)
    assert (after.blob, after.version) == (before.blob, before.version)
    engine.move(oid, genflow.MAIN_THREAD, "ship")
    assert engine.get(oid).data.stage == "shipped"
    kinds = [e.kind for e in store.journal(oid)]
    assert "move" in kinds


def test_journal_when_on_records_steps_events_and_payloads(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock, journal=True)
    oid = engine.start(Order())
    engine.send(oid, "add", "pizza")
    engine.send(oid, "pay")
    entries = list(store.journal(oid))
    text = repr([(e.kind, e.detail) for e in entries])
    assert "pizza" in text and "ship" in text


def test_check_store_reports_what_the_new_code_lacks(store, clock):
    from genflow.deploy import check_store

    engine = Engine(store, workflows=[Order], clock=clock)
    engine.start(Order())
    report = check_store(store, workflows=[Order])
    assert report.ok


@attrs.define
class NeedsData:
    amount: int

    def definition(self):
        yield Step("pay", self.pay)

    def pay(self) -> None:
        pass


def test_a_definition_renders_from_its_class_or_an_instance():
    from genflow.render import to_dot, to_json, to_mermaid

    assert to_mermaid(Order) == to_mermaid(Order())
    assert to_dot(Order).startswith("digraph")
    assert "abandon" in to_json(Order)
    with pytest.raises(ArgumentError, match=r"pass an instance, NeedsData\(\.\.\.\)"):
        to_mermaid(NeedsData)
    assert "pay" in to_mermaid(NeedsData(5))


def test_an_instance_renders_on_its_definition_with_where_it_waits(store, clock):
    from genflow.render import to_mermaid

    engine = Engine(store, workflows=[Order], clock=clock)
    inst = engine.get(engine.start(Order()))
    drawn = to_mermaid(inst.data, inst.state)
    assert f"instance {inst.id} (waiting)" in drawn and "▶ main" in drawn


#: (webhook key, what happened to it) as the outside system saw it
HOOKS: list[tuple[str, str]] = []


class Webhook(genflow.EventHandler):
    """Registers a webhook at setup and removes it at teardown."""

    def __init__(self, key: str) -> None:
        self.key = key

    def setup(self, req):
        HOOKS.append((self.key, "registered"))

    def handle(self, req, payload: str) -> str:
        return payload.upper()

    def teardown(self, req, handled: bool) -> None:
        HOOKS.append((self.key, "removed"))


@genflow.workflow("accept38-hooked")
@attrs.define
class Hooked:
    key: str = ""
    got: str = ""

    def definition(self):
        yield Wait("hooked?", On("hook", Webhook(self.key), Step("keep", self.keep)))

    def keep(self) -> None:
        self.got = "kept"


def test_cancel_tears_down_the_handlers_it_set_up(store, clock):
    engine = Engine(store, workflows=[Hooked], clock=clock, journal=True)
    key = f"cancel-{store.__class__.__name__}"
    iid = engine.start(Hooked(key))
    assert HOOKS[-1] == (key, "registered")
    engine.cancel(iid)
    assert [h for h in HOOKS if h[0] == key] == [(key, "registered"), (key, "removed")]
    kinds = [e.kind for e in store.journal(iid)]
    assert "cancel" in kinds


def test_the_journal_shows_setup_event_and_teardown_in_order(store, clock):
    engine = Engine(store, workflows=[Hooked], clock=clock, journal=True)
    iid = engine.start(Hooked("j"))
    assert engine.send(iid, "hook", "ping") == "PING"
    entries = [(e.kind, e.detail) for e in store.journal(iid)]
    kinds = [k for k, _ in entries]
    assert kinds.index("after_setup") < kinds.index("event") < kinds.index("after_teardown")
    assert kinds.index("after_teardown") < kinds.index("after_step")
    event = next(d for k, d in entries if k == "event")
    assert event["event"] == "hook" and event["payload"] == "ping"
    assert [e.seq for e in store.journal(iid)] == sorted(e.seq for e in store.journal(iid))


def test_the_journal_is_off_by_default_but_repairs_are_recorded(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    oid = engine.start(Order())
    engine.send(oid, "add", "x")
    assert list(store.journal(oid)) == []
    engine.cancel(oid)
    assert [e.kind for e in store.journal(oid)] == ["cancel"]


def test_concurrent_senders_from_two_engines_lose_nothing(make_store, clock):
    import threading

    engines = [Engine(make_store(), workflows=[Order], clock=clock) for _ in range(2)]
    oid = engines[0].start(Order())
    errors: list[BaseException] = []

    def send_many(engine: Engine, prefix: str) -> None:
        try:
            for n in range(10):
                engine.send(oid, "add", f"{prefix}{n}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send_many, args=(e, p))
               for e, p in zip(engines, "ab", strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    items = engines[1].get(oid).data.items
    assert sorted(items) == sorted(f"{p}{n}" for p in "ab" for n in range(10))
    assert [i for i in items if i[0] == "a"] == [f"a{n}" for n in range(10)]


def test_work_stops_when_told(store, clock):
    engine = Engine(store, workflows=[Order], clock=clock)
    engine.start(Order(), run=False)
    rounds = []

    def stop() -> bool:
        rounds.append(1)
        return len(rounds) > 2

    assert engine.work(stop=stop, idle_sleep=0.01) == 1
    assert len(rounds) == 3


@genflow.workflow("accept38-approval")
@attrs.define
class ApprovalV1:
    approved: bool = False

    def definition(self):
        yield Wait("approve?", On("approve", self.approve))
        yield Step("notify", self.notify)

    def approve(self) -> None:
        self.approved = True

    def notify(self) -> None:
        pass


@attrs.define
class ApprovalSafe(ApprovalV1):
    def definition(self):  # a step added after the wait: safe for waiting instances
        yield Wait("approve?", On("approve", self.approve))
        yield Step("log", self.notify)
        yield Step("notify", self.notify)


@attrs.define
class ApprovalRenamed(ApprovalV1):
    def definition(self):  # the wait renamed: instances waiting on 'approve?' are stranded
        yield Wait("approval?", On("approve", self.approve))
        yield Step("notify", self.notify)


@attrs.define
class ApprovalEventGone(ApprovalV1):
    def definition(self):  # the event renamed
        yield Wait("approve?", On("accept", self.approve))
        yield Step("notify", self.notify)


def test_the_deploy_check_passes_safe_edits_and_names_unsafe_ones(store, clock):
    from genflow.deploy import check_store

    engine = Engine(store, workflows=[ApprovalV1], clock=clock)
    ids = sorted(engine.start(ApprovalV1()) for _ in range(3))
    name = "accept38-approval"
    assert check_store(store, {name: ApprovalV1}).ok
    assert check_store(store, {name: ApprovalSafe}).ok
    renamed = check_store(store, {name: ApprovalRenamed})
    assert not renamed.ok and renamed.checked == 3
    assert list(renamed.grouped()) == [(name, "approve?")]
    assert sorted(p.instance_id for p in renamed.problems) == ids
    assert "approve?" in renamed.format()
    gone = check_store(store, {name: ApprovalEventGone})
    assert not gone.ok
    assert "approve" in gone.format()
    assert not check_store(store, {}).ok  # the workflow is not installed at all


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_batch_drives_many_instances_to_the_end(tmp_path, capsys, kind, processes):
    from postgres_db import fresh_schema, postgres_dsn

    from genflow.batch import run_batch
    from genflow.stores import open_store

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'batch.db'}"
    else:
        dsn = postgres_dsn()
        url = f"{dsn}{'&' if '?' in dsn else '?'}schema={fresh_schema()}"
    try:
        result = run_batch(
            url, starts=[(f"b{k}", Order()) for k in range(20)],
            events=[(f"b{k}", e, p) for k in range(20) for e, p in (("add", "tea"), ("pay", None))],
            processes=processes, progress=True)
        assert (result.started, result.delivered, result.failed) == (20, 40, 0)
        assert "start" in capsys.readouterr().err
        with open_store(url) as store:
            engine = Engine(store, workflows=[Order])
            for k in range(20):
                data = engine.get(f"b{k}").data
                assert (data.items, data.stage) == (["tea"], "shipped")
                assert len(data.keys) == 1
    finally:
        if kind == "postgres":
            from genflow.stores.postgres import PostgresStore

            PostgresStore(dsn, schema=url.rsplit("schema=", 1)[1],
                          drop_schema_on_close=True).close()


def test_a_batch_refuses_processes_on_a_memory_store_as_a_bad_argument():
    from genflow.batch import run_batch

    with pytest.raises(ArgumentError, match="sqlite:/// or postgresql://"):
        run_batch("memory:", processes=2)


@genflow.workflow("accept38-tally")
@attrs.define
class Tally:
    seen: list[int] = attrs.Factory(list)
    senders: list[int] = attrs.Factory(list)

    def definition(self):
        yield For("notes", len(self.seen) < 4, Wait("note?", On("note", self.note)))

    def note(self, n: int) -> None:
        self.seen.append(n)
        self.senders.append(os.getpid())


@pytest.mark.parametrize("processes", [2, 3])
def test_a_batch_sends_one_instances_events_from_one_process_in_order(tmp_path, processes):
    from genflow.batch import run_batch
    from genflow.stores import open_store

    url = f"sqlite:///{tmp_path / 'tally.db'}"
    result = run_batch(url, starts=[(f"t{k}", Tally()) for k in range(12)],
                       events=[(f"t{k}", "note", n) for k in range(12) for n in range(4)],
                       processes=processes)
    assert result.failed == 0
    with open_store(url) as store:
        engine = Engine(store, workflows=[Tally])
        for k in range(12):
            data = engine.get(f"t{k}").data
            assert data.seen == [0, 1, 2, 3]
            assert len(set(data.senders)) == 1 and data.senders[0] != os.getpid()


class Declined(Exception):
    pass


@genflow.workflow("accept38-picky")
@attrs.define
class Picky:
    error: str = ""

    def definition(self):
        yield Step("charge", self.charge,
                   retry=Retry(attempts=5, backoff=1, on=(Flaky,), never=(Declined,)))

    def charge(self) -> None:
        raise {"flaky": Flaky, "declined": Declined, "other": KeyError}[self.error]("no")


@pytest.mark.parametrize(("error", "attempts_left"), [("flaky", True), ("declined", False),
                                                       ("other", False)])
def test_retry_only_retries_the_exceptions_it_names(store, clock, error, attempts_left):
    engine = Engine(store, workflows=[Picky], clock=clock)
    inst = engine.get(engine.start(Picky(error)))
    assert inst.attempts == 1
    if attempts_left:
        assert inst.status is not WorkflowStatus.FAILED and inst.wake_at is not None
    else:
        assert inst.status is WorkflowStatus.FAILED and inst.wake_at is None


@genflow.workflow("accept38-quick-timer")
@attrs.define
class QuickTimer:
    fired: bool = False

    def definition(self):
        yield Wait("w", On("never", self.fire), Timeout("soon", 0.5, Step("fire", self.fire)))

    def fire(self) -> None:
        self.fired = True


# (SQLite only: on PostgreSQL a worker asleep on LISTEN is not woken by another process's
# new timer, only by work due now; it sees the timer at its next look, `idle_sleep` at most)
@pytest.mark.parametrize("store_kind", ["sqlite"], indirect=True)
def test_an_idle_worker_wakes_for_a_timer_sooner_than_its_idle_sleep(make_store):
    import threading
    import time

    worker = Engine(make_store(), workflows=[QuickTimer])
    client = Engine(make_store(), workflows=[QuickTimer])
    stop = threading.Event()
    thread = threading.Thread(target=worker.work, kwargs={"stop": stop.is_set,
                                                          "idle_sleep": 30.0})
    thread.start()
    try:
        time.sleep(0.3)  # the worker is asleep
        iid = client.start(QuickTimer())
        began = time.monotonic()
        while not client.get(iid).data.fired:
            assert time.monotonic() - began < 5.0, "the timer did not fire"
            time.sleep(0.02)
    finally:
        stop.set()
        worker.store.notify_wake()
        thread.join(timeout=35)
    assert not thread.is_alive()


def test_show_says_an_overdue_timer_waits_for_a_worker(store, clock):
    from genflow.describe import describe

    engine = Engine(store, workflows=[Order], clock=clock)
    inst = engine.get(engine.start(Order()))
    told = describe(inst.state, inst.data, now=clock(), wake_at=inst.wake_at)
    assert "timer 'abandon': listening, fires 2026-01-01 00:01:00 UTC (in 1.0m)" in told
    assert "overdue" not in told
    clock.advance(30 * 60)
    told = describe(inst.state, inst.data, now=clock(), wake_at=inst.wake_at)
    assert "timer 'abandon': listening, due 2026-01-01 00:01:00 UTC (29.0m ago)" in told
    assert "overdue: a worker fires it" in told


@genflow.workflow("accept38-slow")
@attrs.define
class SlowThenWait:
    log: list[str] = attrs.Factory(list)

    def definition(self):
        yield Wait("go?", On("go", self.go))
        yield Step("slow", self.slow)
        yield Wait("after?", On("after", self.after))

    def go(self) -> None:
        self.log.append("go")

    def slow(self) -> None:
        import time

        time.sleep(0.5)
        self.log.append("slow")

    def after(self, note: str) -> None:
        self.log.append(note)


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)
def test_an_event_sent_while_another_engine_runs_a_step_is_not_lost(make_store):
    import threading
    import time

    one = Engine(make_store(), workflows=[SlowThenWait])
    two = Engine(make_store(), workflows=[SlowThenWait])
    iid = one.start(SlowThenWait())
    runner = threading.Thread(target=one.send, args=(iid, "go"))
    runner.start()
    time.sleep(0.15)  # `one` holds the instance in its slow step
    two.send(iid, "after", "late note")
    runner.join()
    inst = two.get(iid)
    assert inst.data.log == ["go", "slow", "late note"]
    assert inst.status is WorkflowStatus.FINISHED


def test_an_engine_given_a_built_in_type_for_a_workflow_asks_for_a_class(store):
    from genflow.errors import UnknownWorkflowError

    with pytest.raises(UnknownWorkflowError, match="int is a built-in type, not a workflow: "
                                                   "give a workflow class"):
        Engine(store, workflows=[int])
    with pytest.raises(UnknownWorkflowError, match="give an instance of a workflow class"):
        Engine(store, workflows=[Order]).start({"items": []})


def test_work_until_done_on_a_fake_clock_runs_the_timers_at_once(store, clock):
    import time

    engine = Engine(store, workflows=[Order, FlakyCharge], clock=clock)
    oid = engine.start(Order())
    FAILURES["until-done"] = 2
    fid = engine.start(FlakyCharge("until-done"))
    began = time.monotonic()
    engine.work(until_done=True)
    assert time.monotonic() - began < 5
    assert engine.get(oid).data.stage == "abandoned"
    assert engine.get(fid).data.done
    assert clock() >= T0 + dt.timedelta(seconds=60)
