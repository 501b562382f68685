"""`WaitFor(..., timeout=Timeout(...))` through the Engine, on memory, SQLite and PostgreSQL:
the timer is the instance's `wake_at`, a worker's `run_due` fires it once the
clock reaches it, and the condition holding first leaves nothing due."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
from faults import dies_at_call
from waitfor_app import BEFORE_TIMEOUTS, DEADLINE, Approval, Deadline, OldBlob, Strict

import genflow
from genflow import WaitFor, WorkflowStatus
from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import DefinitionError, UnknownEventError
from genflow.state import MAIN_THREAD
from genflow.stores import MemoryStore
from genflow.stores.base import InstanceRecord


@pytest.fixture
def engine(make_store):
    return Engine(make_store(), [Approval, Deadline, Strict], clock=FakeClock(), journal=True)


def test_the_timer_is_the_wake_and_fires_by_run_due(engine):
    iid = engine.start(Approval())
    assert engine.store.get(iid).wake_at == engine.clock() + DEADLINE
    engine.clock.advance(DEADLINE - dt.timedelta(seconds=1))
    assert engine.run_due() == 0
    engine.clock.advance(dt.timedelta(seconds=1))
    assert engine.run_due() == 1
    instance = engine.get(iid)
    assert instance.status is WorkflowStatus.FINISHED
    assert instance.data.log == ["escalate", "close"]
    assert engine.store.get(iid).wake_at is None
    assert ("timer", {"event": "expired", "thread": MAIN_THREAD}) in [
        (entry.kind, entry.detail) for entry in engine.store.journal(iid)]


def test_the_condition_first_leaves_nothing_due(engine):
    iid = engine.start(Approval())
    engine.send(iid, "approve", "ada")
    instance = engine.get(iid)
    assert instance.status is WorkflowStatus.FINISHED
    assert instance.data.log == ["approve ada", "approved", "close"]
    assert engine.store.get(iid).wake_at is None
    engine.clock.advance(DEADLINE * 2)
    assert engine.run_due() == 0
    assert engine.get(iid).data.log == ["approve ada", "approved", "close"]


def test_a_timer_waiting_across_a_reload_is_still_the_wake(engine, make_store):
    iid = engine.start(Approval())
    again = Engine(make_store(), [Approval], clock=engine.clock)
    thread = again.get(iid).state.thread(MAIN_THREAD)
    [timer] = thread.events
    assert timer.due == engine.clock() + DEADLINE
    engine.clock.advance(DEADLINE)
    assert again.run_due() == 1
    assert again.get(iid).data.log == ["escalate", "close"]


def test_a_deadline_a_step_set_fires_at_that_time(engine):
    iid = engine.start(Deadline())
    assert engine.store.get(iid).wake_at == engine.clock() + dt.timedelta(hours=3)
    engine.clock.advance(dt.timedelta(hours=3))
    engine.work(until_done=True)
    assert engine.get(iid).data.log == ["expired"]


def test_a_timeout_that_raises_is_caught_by_the_try(engine):
    iid = engine.start(Strict())
    engine.clock.advance(DEADLINE)
    assert engine.run_due() == 1
    instance = engine.get(iid)
    assert instance.status is WorkflowStatus.FINISHED
    assert instance.data.log == ["refuse: Expired", "close"]


def test_a_timeout_that_raises_uncaught_fails_the_instance(engine):
    iid = engine.start(Strict(caught=False))
    engine.clock.advance(DEADLINE)
    engine.run_due()
    instance = engine.get(iid)
    assert instance.status is WorkflowStatus.FAILED
    assert instance.error == ("StepError: step 'approved?' in thread '_main_' failed: "
                              "Expired: timer 'expired' fired")
    assert instance.data.log == []
    assert engine.store.get(iid).wake_at is None


def test_cancelling_a_waitfor_with_a_timer_ends_it(engine):
    iid = engine.start(Approval())
    engine.cancel(iid)
    assert engine.get(iid).status is WorkflowStatus.CANCELLED
    assert engine.store.get(iid).wake_at is None


def test_sending_the_timers_name_is_refused_and_the_row_unchanged(engine):
    iid = engine.start(Approval())
    before = engine.store.get(iid)
    with pytest.raises(UnknownEventError) as refused:
        engine.send(iid, "expired")
    assert "'expired' is a timer of workflow 'wft-approval': timers fire by themselves" \
        in str(refused.value)
    after = engine.store.get(iid)
    assert (after.blob, after.version, after.wake_at) == (before.blob, before.version,
                                                          before.wake_at)


# -- a process that dies at any write of the timer's run -------------------------------


class Crash(BaseException):
    pass


def _run_with_crash(crash_at: int | None, approve: bool) -> tuple[object, ...]:
    """Start, then (approve or) let the deadline pass and run the due work, the
    process dying at store write number `crash_at`; a second worker goes on."""
    store, clock = MemoryStore(), FakeClock()
    with dies_at_call(store, crash_at, ("create", "save", "release"), Crash) as count:
        engine = Engine(store, [Approval], clock=clock, lease_seconds=10)
        try:
            engine.start(Approval(), id="a")
            if approve:
                engine.send("a", "approve", "ada")
            clock.advance(DEADLINE)
            engine.work(until_idle=True)
        except Crash:
            pass
    worker = Engine(store, [Approval], clock=clock, lease_seconds=10)
    if not any(r.id == "a" for r in store.list()):
        worker.start(Approval(), id="a")
    for wait in (dt.timedelta(seconds=100), DEADLINE):  # past the dead process's lease,
        clock.advance(wait)  # then past the deadline of a wait it had not saved
        worker.work(until_idle=True, idle_sleep=30)
    instance = worker.get("a")
    return instance.status.value, tuple(instance.data.log), store.get("a").wake_at, count["n"]


@pytest.mark.parametrize("approve", [False, True])
def test_a_crash_at_every_write_of_a_waitfor_with_a_timeout_loses_nothing(approve):
    *expected, writes = _run_with_crash(None, approve)
    assert expected[:2] == (["finished", ("approve ada", "approved", "close")] if approve
                            else ["finished", ("escalate", "close")])
    escalated = ["finished", ("escalate", "close"), None]
    ends = []
    for crash_at in range(1, writes + 1):
        got = list(_run_with_crash(crash_at, approve)[:3])
        # (dying before the approval was saved, the deadline passes first: escalated)
        assert got == expected or (approve and got == escalated), crash_at
        ends.append(got == expected)
    assert ends[-1] and (not approve or not ends[0])  # (the approval lost, then saved)


def test_the_async_api_fires_it_too(engine):
    import asyncio

    iid = engine.start(Approval())
    engine.clock.advance(DEADLINE)
    assert asyncio.run(engine.run_due_async()) == 1
    assert engine.get(iid).data.log == ["escalate", "close"]


@genflow.workflow("wft-bad-timeout")
@attrs.define
class BadTimeout:
    approved: bool = False

    def definition(self):
        yield WaitFor("approved?", self.approved, timeout=dt.timedelta(days=2))


def test_a_definition_with_a_bad_timeout_is_refused_at_start_storing_nothing(make_store):
    engine = Engine(make_store(), [BadTimeout], clock=FakeClock())
    with pytest.raises(DefinitionError) as refused:
        engine.start(BadTimeout(), id="bad")
    assert "WaitFor 'approved?': timeout= takes a genflow.Timeout, not " \
           "datetime.timedelta(days=2) (write timeout=Timeout('expired', after=seconds" \
           in str(refused.value)
    assert [r.id for r in engine.store.list()] == []


def test_a_row_saved_before_waitfor_took_a_timeout_moves_on_with_its_timer(make_store):
    """A store row as genflow wrote it before (the thread at the WaitFor, no timer,
    no wake): it loads, and its next move sets the timeout's timer, due from
    when its wait began, which a worker then fires."""
    store = make_store()
    began = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    store.create(InstanceRecord(id="i-1", workflow="wft-old-blob", status="waiting",
                                blob=BEFORE_TIMEOUTS))
    engine = Engine(store, [OldBlob], clock=FakeClock(began + dt.timedelta(hours=1)))
    assert engine.get("i-1").state.thread(MAIN_THREAD).events == []
    engine.send("i-1", "approve")  # (the inbox's bare trigger: the condition still fails)
    assert store.get("i-1").wake_at == began + DEADLINE
    engine.clock.advance(DEADLINE)
    assert engine.run_due() == 1
    instance = engine.get("i-1")
    assert (instance.status, instance.data.log) == (WorkflowStatus.FINISHED, ["escalate"])
