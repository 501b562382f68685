"""`genflow.testing` on a `WaitFor` with a timeout: its timer is a `Send(name,
timer=True)` like a Wait's, the checker reloads and crashes at every checkpoint
of it (the timer set, fired, dropped when the condition holds), and drawn
scenarios reach it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from waitfor_app import DEADLINE, Approval, Deadline, Reminders, Strict

from genflow.errors import ArgumentError
from genflow.state import MAIN_THREAD
from genflow.testing import Send, assert_replay_equivalent, check_replay, runs
from genflow.testing.instance import Instance
from genflow.testing.run import ready_events
from genflow.testing.strategies import can_send, wait_events

FEW = settings(max_examples=15, deadline=None, database=None)


def test_the_timer_fires_at_every_reload_and_crash_alike():
    result = assert_replay_equivalent(Approval(), [Send("expired", timer=True)],
                                      crash_in_calls=True)
    assert result.data.log == ["escalate", "close"]
    assert [o.accepted for o in result.outcomes] == [True]
    assert result.state.status.value == "finished"
    assert result.checkpoints and result.crash_runs > result.checkpoints  # (in calls too)


def test_the_condition_first_at_every_reload_and_crash_alike():
    result = assert_replay_equivalent(
        Approval(), [("approve", "ada"), Send("expired", timer=True)], crash_in_calls=True)
    assert result.data.log == ["approve ada", "approved", "close"]
    assert [o.accepted for o in result.outcomes] == [True, False]


def test_a_timer_that_raises_caught_and_uncaught():
    caught = assert_replay_equivalent(Strict(), [Send("expired", timer=True)])
    assert caught.data.log == ["refuse: Expired", "close"]
    uncaught = check_replay(Strict(caught=False), [Send("expired", timer=True)])
    assert uncaught.state.status.value == "failed"
    assert uncaught.data.log == []


def test_a_deadline_from_the_data():
    result = assert_replay_equivalent(Deadline(), [Send("expired", timer=True)])
    assert result.data.log == ["expired"]


def test_the_waitfors_timer_is_a_ready_event_and_its_timeout_the_on():
    run = Instance(Approval())
    run.resume()
    assert ready_events(run.state) == [(MAIN_THREAD, "expired"), ("inbox", "approve")]
    ons = wait_events(run.wf, run.state)
    assert [on.name for on in ons[MAIN_THREAD]] == ["expired"]
    assert ons[MAIN_THREAD][0].after == DEADLINE.total_seconds()
    assert can_send(run.wf, run.state, unexpected=False)


def test_a_timer_send_that_names_no_timer_lists_the_waitfors():
    try:
        assert_replay_equivalent(Approval(), [Send("late", timer=True)])
    except ArgumentError as exc:
        assert "its timers are 'expired'" in str(exc)
    else:  # pragma: no cover - the assertion's message
        raise AssertionError("a timer that does not exist was accepted")


def test_drawn_scenarios_fire_the_timer_or_approve_and_replay_alike():
    seen: set[tuple[str, ...]] = set()

    @FEW
    @given(runs(Approval, payloads={"approve": lambda wf: st.sampled_from(["ada", "bob"])}))
    def approvals(scenario) -> None:
        result = assert_replay_equivalent(scenario)
        seen.add(tuple(result.data.log))

    approvals()
    assert seen <= {("escalate", "close"), ("approve ada", "approved", "close"),
                    ("approve bob", "approved", "close"), ()}


def test_a_loop_of_waitfors_with_timeouts_replays_alike():
    result = assert_replay_equivalent(Reminders(), [
        Send("a day", timer=True), Send("a day", timer=True), "approve",
        Send("a day", timer=True)], crash_in_calls=True)
    assert result.data.log == ["remind 1", "remind 2", "approve", "close"]
    assert [o.accepted for o in result.outcomes] == [True, True, True, False]
