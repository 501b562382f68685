"""The toolkit on the statements of failure and time: Try/Catch/Finally, Raise, Sleep, Timeout(at=).

The checker reads statements generically (their slots, the State's threads,
the checkpoint kinds), so these need nothing of their own: scenarios are
drawn, crashed and compared as for the others, and their mistakes are named.
"""

from __future__ import annotations

import datetime as dt
import os

import attrs
from hypothesis import given, settings

import genflow
from genflow import Go, On, Raise, Sleep, Step, Timeout, Try, Wait
from genflow.testing import FakeService, Send, assert_replay_equivalent, check_replay, runs
from genflow.testing.determinism import shape

bank = FakeService("bank")


class Declined(Exception):
    pass


@genflow.workflow("test-statements-payment")
@attrs.define
class Payment:
    keyed: bool = True
    refunded: bool = False
    deadline: dt.datetime = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)

    def definition(self):
        yield Try("pay", Step("charge", self.charge)
        ).Catch("declined", Step("refund", self.refund), errors=Declined
        ).Finally("done", Step("log", self.noop))
        yield Sleep("cool down", 60)
        yield Go("reminder", self.remind, daemon=True)
        yield Wait("confirm?", On("confirm", self.noop),
                   Timeout("late", None, Step("too late", self.noop), at=self.deadline))

    def remind(self):
        yield Sleep("before reminding", 30)
        yield Step("remind", self.noop)

    def charge(self) -> None:
        raise Declined("card declined")

    def refund(self) -> None:
        key = genflow.current_step().idempotency_key if self.keyed else None
        bank.refund(10, key=key)
        self.refunded = True

    def noop(self) -> None:
        pass


def test_failures_sleeps_and_deadlines_pass_when_right() -> None:
    result = assert_replay_equivalent(Payment(), [Send("wake", timer=True), "confirm"],
                                      services=[bank])
    assert result.data.refunded and result.state.status.value == "finished"
    late = assert_replay_equivalent(Payment(), [Send("wake", timer=True),
                                                Send("late", timer=True)], services=[bank])
    assert late.state.status.value == "finished"


@settings(max_examples=15, deadline=None, database=None)
@given(runs(Payment, services=[bank]))
def test_any_scenario_of_them(scenario) -> None:
    assert_replay_equivalent(scenario)


def test_a_catch_body_that_repeats_an_effect_is_caught() -> None:
    result = check_replay(Payment(keyed=False), [Send("wake", timer=True)], services=[bank])
    assert result.kinds == ["effect twice"]
    assert "bank.refund(10) happened in 2 attempts of one execution of step 'refund'" in \
        result.report()


@genflow.workflow("test-statements-env")
@attrs.define
class Fallback:
    def definition(self):
        yield Try("try", Raise(Declined, "no")).Catch(
            "fallback", Step(f"via {os.environ.get('GENFLOW_FALLBACK', 'mail')}", lambda: None))


def test_a_read_inside_a_catch_body_is_named() -> None:
    result = check_replay(Fallback())
    assert result.kinds == ["non-deterministic"]
    assert "while building statement Try 'try'" in result.report()  # the Catch is its part


def test_the_shape_holds_what_a_try_and_a_timer_decide() -> None:
    nodes = {n.name: n for n in shape(Payment()).nodes}
    assert ("catches", (("CatchClause", "declined", (("errors", (
        "test_testing_statements.Declined",)), ("into", None), ("index", 1),
        ("names", None))),)) in nodes["pay"].detail or any(
        slot == "catches" for slot, _ in nodes["pay"].detail)
    late = dict(nodes["confirm?"].detail)["events"]
    assert any(event[1] == "late" and ("at", Payment().deadline) in event[2] for event in late)
