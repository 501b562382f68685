"""`WaitFor(name, cond, handler, timeout=Timeout(...))`: a condition with a deadline.

The timeout is a `Timeout`, as in a `Wait`: its timer is the waiting thread's
one `WaitEvent` (a due time, set up at once), fired by the clock (`fire_due`,
the engine's `run_due`); when it fires first, its body runs (or its `raises`
fails the thread at the WaitFor); when the condition holds first, the timer is
dropped and the handler runs. Checked here in every save mode of
`genflow.testing.Instance`, and against the same workflow written as a Wait
with a Timeout (a property over interleavings, through the Engine).
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from waitfor_app import (
    BEFORE_TIMEOUTS,
    DEADLINE,
    Approval,
    ApprovalAsWait,
    Deadline,
    Expired,
    OldBlob,
    Reminders,
    Strict,
    StrictAsWait,
)

import genflow
from genflow import (
    On,
    Step,
    StepError,
    ThreadStatus,
    Timeout,
    Wait,
    WaitFor,
    WorkflowStatus,
)
from genflow.clock import FakeClock
from genflow.codec import dumps, loads
from genflow.describe import describe
from genflow.engine import Engine
from genflow.errors import (
    DefinitionError,
    GenflowError,
    NotWaitingError,
    StatementError,
    StatementTypeError,
)
from genflow.state import MAIN_THREAD
from genflow.stores import MemoryStore
from genflow.testing import MODES, Instance

# -- definition time ------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [5, dt.timedelta(seconds=5), "expired", On("expired"),
                                     Step("expired", print)])
def test_a_timeout_that_is_not_a_timeout_is_refused_saying_what_to_write(timeout):
    with pytest.raises(StatementTypeError) as refused:
        WaitFor("approved?", False, timeout=timeout)
    assert str(refused.value).startswith(
        f"WaitFor 'approved?': timeout= takes a genflow.Timeout, not {timeout!r} (write "
        "timeout=Timeout('expired', after=seconds, *body)")


def test_a_timeout_without_a_time_or_with_a_body_and_raises_is_refused_by_timeout():
    with pytest.raises(StatementError, match="give either `after` or `at`"):
        WaitFor("approved?", False, timeout=Timeout("expired"))
    with pytest.raises(StatementError, match="a timer that raises has no body"):
        WaitFor("approved?", False,
                timeout=Timeout("expired", 5, Step("x", print), raises=Expired))
    with pytest.raises(StatementError, match="must be an aware datetime"):
        WaitFor("approved?", False, timeout=Timeout("expired", at=dt.datetime(2030, 1, 1)))


def test_the_timeout_is_part_of_the_statement_its_body_a_branch():
    timeout = Timeout("expired", 5, Step("escalate", print))
    wait_for = WaitFor("approved?", False, timeout=timeout)
    assert wait_for.timeout is timeout and wait_for.bodies == timeout.bodies
    assert WaitFor("approved?", False).bodies == () and WaitFor("x", False).timeout is None


def test_validate_walks_the_timeout_and_its_body():
    genflow.validate(Approval())
    genflow.validate(Strict(caught=False))
    genflow.validate(Deadline())  # (the deadline is not set yet: it still builds)

    @genflow.workflow("wft-bad-body")
    @attrs.define
    class BadBody:
        def definition(self):
            yield WaitFor("ready?", False, timeout=Timeout("expired", 5, Step("ready?", print)))

    with pytest.raises(DefinitionError, match=r"name 'ready\?' is used twice"):
        genflow.validate(BadBody())


# -- the moves, in every save mode ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_timer_fires_first_and_the_timeouts_body_runs(mode):
    run = Instance(Approval(), mode=mode)
    run.resume()
    main = run.state.thread(MAIN_THREAD)
    assert main.status is ThreadStatus.WAITING_CONDITION
    [timer] = main.events
    assert (timer.event, timer.due) == ("expired", run.clock() + DEADLINE)
    run.clock.advance(DEADLINE - dt.timedelta(seconds=1))
    assert run.fire_due() == []
    run.clock.advance(dt.timedelta(seconds=1))
    assert run.fire_due() == [(MAIN_THREAD, "expired")]
    assert run.wf.log == ["escalate", "close"]
    assert run.state.status is WorkflowStatus.FINISHED


@pytest.mark.parametrize("mode", MODES)
def test_the_condition_holds_first_the_timer_is_dropped_and_the_handler_runs(mode):
    run = Instance(Approval(), mode=mode)
    run.resume()
    run.send("approve", "ada", thread="inbox")
    assert run.wf.log == ["approve ada", "approved", "close"]
    assert run.state.status is WorkflowStatus.FINISHED
    run.clock.advance(DEADLINE * 2)


@pytest.mark.parametrize("mode", MODES)
def test_a_condition_that_holds_at_a_due_timer_wins(mode):
    """The clock passed the deadline, but the approval got in before any worker
    fired the timer: the condition is checked first, as a Wait's event wins a
    timer not fired yet."""
    run = Instance(Approval(), mode=mode)
    run.resume()
    run.clock.advance(DEADLINE * 2)
    run.send("approve", "ada", thread="inbox")
    assert run.wf.log == ["approve ada", "approved", "close"]
    assert run.state.status is WorkflowStatus.FINISHED


def test_a_condition_that_holds_on_arrival_sets_no_timer():
    @genflow.workflow("wft-at-once")
    @attrs.define
    class AtOnce:
        ready: bool = True
        log: list[str] = attrs.field(factory=list)

        def definition(self):
            yield WaitFor("ready?", self.ready, self.go, timeout=Timeout("expired", 0,
                                                                          Step("late", self.go)))

        def go(self) -> None:
            self.log.append("went")

    run = Instance(AtOnce())
    run.resume()
    assert run.wf.log == ["went"] and run.state.status is WorkflowStatus.FINISHED

    @genflow.workflow("wft-at-once-unset")
    @attrs.define
    class Unset:
        """Its deadline is never set: no timer is needed, none is armed (a wait
        that began with it unset would be refused, as a Wait's would)."""

        deadline: dt.datetime | None = None
        log: list[str] = attrs.field(factory=list)

        def definition(self):
            yield WaitFor("ready?", True, self.go, timeout=Timeout("expired", at=self.deadline))

        def go(self) -> None:
            self.log.append("went")

    run = Instance(Unset())
    run.resume()
    assert run.wf.log == ["went"] and run.state.status is WorkflowStatus.FINISHED


def test_a_wait_that_begins_with_its_deadline_unset_is_refused_clearly():
    @genflow.workflow("wft-never-set")
    @attrs.define
    class Never:
        deadline: dt.datetime | None = None

        def definition(self):
            yield WaitFor("ready?", False, timeout=Timeout("expired", at=self.deadline))

    run = Instance(Never())
    with pytest.raises(DefinitionError, match=r"Timeout 'expired'.*not set.*before the Wait"):
        run.resume()


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_that_raises_is_caught_by_a_try(mode):
    run = Instance(Strict(), mode=mode)
    run.resume()
    run.clock.advance(DEADLINE)
    run.fire_due()
    assert run.wf.log == ["refuse: Expired", "close"]
    assert run.state.status is WorkflowStatus.FINISHED


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_that_raises_uncaught_fails_the_instance_at_the_waitfor(mode):
    run = Instance(Strict(caught=False), mode=mode)
    run.resume()
    run.clock.advance(DEADLINE)
    with pytest.raises(StepError) as failed:
        run.fire_due()
    assert failed.value.step == "approved?" and "timer 'expired' fired" in str(failed.value)
    assert run.state.status is WorkflowStatus.FAILED
    main = run.state.thread(MAIN_THREAD)
    assert main.failures[-1].type == "Expired" and main.events == []
    assert run.wf.log == []


@pytest.mark.parametrize("mode", MODES)
def test_a_deadline_from_the_data_is_the_timers_due_time(mode):
    run = Instance(Deadline(), mode=mode)
    run.resume()
    [timer] = run.state.thread(MAIN_THREAD).events
    assert timer.due == run.wf.deadline == run.clock() + dt.timedelta(hours=3)
    run.clock.advance(dt.timedelta(hours=3))
    assert run.fire_due() == [(MAIN_THREAD, "expired")]
    assert run.wf.log == ["expired"]


def test_cancelling_drops_the_timer_with_nothing_to_tear_down():
    run = Instance(Approval())
    run.resume()
    run.cancel()
    assert run.state.status is WorkflowStatus.CANCELLED and run.wf.log == []


def test_an_operators_move_onto_a_waitfor_sets_its_timer_and_off_it_drops_it():
    run = Instance(Approval())
    run.resume()
    main = run.state.thread(MAIN_THREAD)
    genflow.runtime.drive(genflow.runtime.Operation(
        run.wf, run.state, None, run.clock).move(MAIN_THREAD, "close"))
    assert main.status is ThreadStatus.EXECUTING and main.events == []
    run.clock.advance(dt.timedelta(hours=1))
    genflow.runtime.drive(genflow.runtime.Operation(
        run.wf, run.state, None, run.clock).move(MAIN_THREAD, "approved?"))
    [timer] = main.events
    assert main.status is ThreadStatus.WAITING_CONDITION
    assert timer.due == run.clock() + DEADLINE and timer.req.pc == main.pc


def test_the_instance_is_described_with_its_timer():
    run = Instance(Approval())
    run.resume()
    text = describe(run.state, run.wf, now=run.clock())
    assert "  main thread: waiting at 'approved?' since 2030-01-01 00:00:00 UTC (now) until " \
           "its condition holds, or:\n    - timer 'expired': listening, fires 2030-01-03 " \
           "00:00:00 UTC (in 2.0d)\n" in text
    assert genflow.diagnose(run.wf, run.state) == []


# -- saved states ---------------------------------------------------------------------------


def _inbox():
    return genflow.Go("inbox", lambda: Wait("decision", On("approve")), daemon=True)


def test_a_state_saved_before_waitfor_took_a_timeout_still_loads_and_gets_its_timer():
    wf, state = loads(BEFORE_TIMEOUTS, {"wft-old-blob": OldBlob})
    main = state.thread(MAIN_THREAD)
    assert (main.status, main.events) == (ThreadStatus.WAITING_CONDITION, [])
    began = main.since
    assert genflow.diagnose(wf, state) == []
    clock = FakeClock(began + dt.timedelta(hours=1))
    run = Instance(wf, state=state, clock=clock, instance_id=state.id)
    run.resume()  # the timer is its timeout's, due from when the wait began
    [timer] = main.events
    assert (timer.event, timer.due, timer.req.pc) == ("expired", began + DEADLINE, main.pc)
    clock.advance(DEADLINE)
    assert run.fire_due() == [(MAIN_THREAD, "expired")] and run.wf.log == ["escalate"]
    # (loaded and saved again, it is the same blob, byte for byte)
    assert dumps(*loads(BEFORE_TIMEOUTS, {"wft-old-blob": OldBlob})) == BEFORE_TIMEOUTS


def test_a_timeout_added_renamed_or_removed_while_the_thread_waits_is_followed():
    """An edit of the definition while a thread waits (here the data says which
    timeout there is, as a deploy would change the code): the thread's timer
    becomes the timeout's, due from when the wait began, or goes."""

    @genflow.workflow("wft-evolving")
    @attrs.define
    class Evolving:
        timeout: str = "expired"
        approved: bool = False

        def definition(self):
            yield _inbox()
            yield WaitFor("approved?", self.approved, timeout=Timeout(self.timeout, DEADLINE)
                          if self.timeout else None)

    run = Instance(Evolving())
    run.resume()
    main = run.state.thread(MAIN_THREAD)
    began = main.since
    run.clock.advance(dt.timedelta(hours=1))
    run.wf.timeout = "late"
    run.resume()
    assert [(e.event, e.due) for e in main.events] == [("late", began + DEADLINE)]
    run.wf.timeout = ""
    run.resume()
    assert main.events == []
    run.clock.advance(DEADLINE)
    assert run.fire_due() == [] and main.status is ThreadStatus.WAITING_CONDITION


# -- the same as a Wait with a Timeout (through the Engine) ---------------------------------


_MOVES = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 3 * 24)),  # hours, then run_due
    st.tuples(st.just("late"), st.integers(0, 3 * 24)),  # hours, no worker runs meanwhile
    st.tuples(st.just("approve"), st.sampled_from(["ada", "bob"])),
), max_size=8)


def _outcome(cls: type, moves: list[tuple[str, object]]) -> tuple[object, ...]:
    clock = FakeClock()
    engine = Engine(MemoryStore(), [cls], clock=clock)
    iid = engine.start(cls())
    said = []
    for kind, arg in moves:
        if kind == "approve":
            try:
                engine.send(iid, "approve", *([arg] if cls in (Approval, ApprovalAsWait) else []))
                said.append("ok")
            except GenflowError as exc:
                said.append(type(exc).__name__)
        else:
            clock.advance(dt.timedelta(hours=arg))  # type: ignore[arg-type]
            if kind == "advance":
                engine.run_due()
    instance = engine.get(iid)
    return instance.status, tuple(instance.data.log), tuple(said), engine.store.get(iid).wake_at


@settings(max_examples=60, deadline=None, database=None)
@given(_MOVES)
def test_a_waitfor_with_a_timeout_does_what_the_wait_with_a_timeout_does(moves):
    assert _outcome(Approval, moves) == _outcome(ApprovalAsWait, moves)


@settings(max_examples=40, deadline=None, database=None)
@given(_MOVES)
def test_a_waitfor_whose_timeout_raises_does_what_the_wait_whose_timeout_raises_does(moves):
    assert _outcome(Strict, moves) == _outcome(StrictAsWait, moves)


@pytest.mark.parametrize("mode", MODES)
def test_the_low_level_callback_fires_a_waitfors_timer_by_name_as_a_waits(mode):
    """`handle_callback` runs any event's handler, a timer's too (the Engine
    fires timers by the clock only): a WaitFor's timer is no exception."""
    run = Instance(Approval(), mode=mode)
    run.resume()
    assert run.handle_callback("expired") is None
    assert run.state.thread(MAIN_THREAD).won == "expired"
    run.resume()
    assert run.wf.log == ["escalate", "close"]


def test_the_low_level_callback_refuses_a_timer_whose_condition_holds():
    run = Instance(Approval())
    run.resume()
    req = run.request("expired")
    run.wf.approved = True  # (as a handler of another instance's data would: not yet moved)
    before = run.blob()
    with pytest.raises(NotWaitingError, match="whose condition holds"):
        genflow.handle_callback(req, run.wf, run.state)
    assert run.blob() == before


@pytest.mark.parametrize("mode", MODES)
def test_the_async_driver_moves_it_alike(mode):
    fired = Instance(Approval(), mode=mode, asynchronous=True)
    fired.resume()
    fired.clock.advance(DEADLINE)
    assert fired.fire_due() == [(MAIN_THREAD, "expired")]
    approved = Instance(Approval(), mode=mode, asynchronous=True)
    approved.resume()
    approved.send("approve", "ada", thread="inbox")
    assert (fired.wf.log, approved.wf.log) == (["escalate", "close"],
                                               ["approve ada", "approved", "close"])


@pytest.mark.parametrize("mode", MODES)
def test_in_a_loop_each_round_has_a_timer_of_its_own(mode):
    run = Instance(Reminders(), mode=mode)
    run.resume()
    day = dt.timedelta(days=1)
    start = run.clock()
    dues = []
    for _ in range(2):
        [timer] = run.state.thread(MAIN_THREAD).events
        dues.append(timer.due)
        run.clock.advance(day)
        assert run.fire_due() == [(MAIN_THREAD, "a day")]
    assert dues == [start + day, start + 2 * day]
    run.clock.advance(day / 2)
    run.send("approve", thread="inbox")
    assert run.wf.log == ["remind 1", "remind 2", "approve", "close"]
    assert run.state.status is WorkflowStatus.FINISHED

    unanswered = Instance(Reminders(), mode=mode)
    unanswered.resume()
    for _ in range(3):
        unanswered.clock.advance(day)
        unanswered.fire_due()
    assert unanswered.wf.log == ["remind 1", "remind 2", "remind 3", "close"]


def test_a_failed_instance_fires_no_waitfor_timer_as_it_fires_no_wait_timer():
    @genflow.workflow("wft-failed-meanwhile")
    @attrs.define
    class FailsMeanwhile:
        approved: bool = False

        def definition(self):
            yield genflow.Go("breaks", lambda: Step("break", self.explode))
            yield WaitFor("approved?", self.approved, timeout=Timeout("expired", DEADLINE))

        def explode(self) -> None:
            raise RuntimeError("down")

    run = Instance(FailsMeanwhile())
    with pytest.raises(StepError):
        run.resume()
    assert run.state.status is WorkflowStatus.FAILED
    run.clock.advance(DEADLINE)
    before = run.blob()
    with pytest.raises(genflow.errors.InstanceFailedError):
        run.fire_due()
    assert run.blob() == before
