"""Crashes inside steps and handlers, the fake outside service, and fakes reset between runs."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.stateful import run_state_machine_as_test

import genflow
from genflow import EventHandler, On, Step, Wait
from genflow.testing import (
    FakeService,
    Fault,
    ReplayError,
    WorkflowMachine,
    assert_replay_equivalent,
    check_replay,
    runs,
)

bank = FakeService("bank")
mailer = FakeService("mailer", faults=[Fault("send", after_effect=True)])


def test_a_fake_service_does_each_keyed_request_once() -> None:
    service = FakeService("svc")
    assert service.charge(5, key="k1") == "svc-1"
    assert service.charge(5, key="k1") == "svc-1"  # the same request: no second effect
    assert service.charge(5) == "svc-2" and service.charge(5) == "svc-3"  # unkeyed: each
    assert service.count("charge") == 3
    assert [e.words() for e in service.effects] == ["svc.charge(5, key='k1')", "svc.charge(5)",
                                                   "svc.charge(5)"]
    before = service.snapshot()
    service.refund(1)
    service.restore(before)
    assert service.count() == 3
    service.reset()
    assert service.effects == []


def test_faults_fail_before_or_after_the_effect_and_come_back_on_reset() -> None:
    service = FakeService("svc", faults=[Fault("send"), Fault("send", after_effect=True)])
    with pytest.raises(ConnectionError):
        service.send("a")
    assert service.count() == 0  # failed before doing anything
    with pytest.raises(ConnectionError):
        service.send("a")
    assert service.count() == 1  # did it, the answer was lost
    service.send("a")
    service.reset()
    with pytest.raises(ConnectionError):
        service.send("a")


@genflow.workflow("test-crashes-charge")
@attrs.define
class Charge:
    keyed: bool = False
    receipt: str = ""

    def definition(self):
        yield Wait("pay?", On("pay", self.noop))
        yield Step("charge", self.charge)

    def noop(self) -> None:
        pass

    def charge(self) -> None:
        key = genflow.current_step().idempotency_key if self.keyed else None
        self.receipt = bank.charge(25, key=key)


def test_a_crash_inside_a_step_repeats_its_effect_unless_it_is_keyed() -> None:
    result = check_replay(Charge(), ["pay"], services=[bank])
    assert result.kinds == ["effect twice"]
    report = result.report()
    assert ("A crash inside step 'charge' (the main thread), after it did its work and before "
            "its checkpoint") in report
    assert ("bank.charge(25) happened in 2 attempts of one execution of step 'charge' (the "
            "main thread)") in report
    assert "pass genflow.current_step().idempotency_key to the service" in report
    result = check_replay(Charge(keyed=True), ["pay"], services=[bank])
    assert result.ok, result.report()
    assert result.crash_runs > len(result.scenario.events)  # crashes inside calls ran too


def test_without_services_no_crash_inside_calls_runs() -> None:
    with_services = check_replay(Charge(keyed=True), ["pay"], services=[bank]).crash_runs
    without = check_replay(Charge(keyed=True), ["pay"]).crash_runs
    assert with_services > without


class Refund(EventHandler):
    def __init__(self, keyed: bool):
        self.keyed = keyed

    def handle(self, req, payload: int) -> str:
        key = f"{req.instance_id}/{req.thread_id}/{req.event}/{req.pc}" if self.keyed else None
        return bank.refund(payload, key=key)


@genflow.workflow("test-crashes-refund")
@attrs.define
class Refunds:
    keyed: bool = False

    def definition(self):
        yield Wait("refund?", On("refund", Refund(self.keyed)))


def test_a_crash_inside_a_handler_delivers_the_event_again() -> None:
    result = check_replay(Refunds(), [("refund", 5)], services=[bank])
    assert result.kinds == ["effect twice"]
    assert "A crash inside the handle of event 'refund'" in result.report()
    assert "key the outside call by the request" in result.report()
    assert check_replay(Refunds(keyed=True), [("refund", 5)], services=[bank]).ok


@genflow.workflow("test-crashes-signup")
@attrs.define
class Signup:
    keyed: bool = False

    def definition(self):
        yield Step("welcome mail", self.mail)

    def mail(self) -> None:
        mailer.send("ada", key=genflow.current_step().idempotency_key if self.keyed else None)


def test_a_retry_after_a_lost_answer_repeats_an_unkeyed_effect() -> None:
    result = check_replay(Signup(), services=[mailer])
    assert result.kinds == ["effect twice"]
    assert "Step 'welcome mail' (the main thread) repeats an outside effect when it is tried " \
           "again" in result.report()
    assert check_replay(Signup(keyed=True), services=[mailer]).ok


# -- fakes reset between drawing and checking -------------------------------------------------

INBOX: list[str] = []


def fill_inbox() -> None:
    INBOX[:] = ["hello"]


@genflow.workflow("test-crashes-inbox")
@attrs.define
class Reader:
    read: list[str] = attrs.field(factory=list)
    answered: int = 0

    def definition(self):
        yield Step("read mail", self.read_mail)
        yield Wait("answer?", On("answer", self.answer))

    def read_mail(self) -> None:
        self.read.extend(INBOX)
        INBOX.clear()  # the outside state a step consumes

    def answer(self) -> None:
        self.answered += 1
        bank.charge(1)  # the bug: no key


def _check_every_scenario(**runs_options) -> ReplayError | None:
    @settings(max_examples=10, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow],
              phases=[Phase.explicit, Phase.generate])
    @given(runs(Reader, **runs_options))
    def every(scenario) -> None:
        result = assert_replay_equivalent(scenario)
        assert result.data.read == ["hello"], "the run met an inbox drained before it"

    try:
        every()
    except ReplayError as failed:
        return failed
    return None


def test_reset_gives_every_run_the_outside_state_it_needs() -> None:
    """Drawing runs the workflow too: without `reset`, it drains the inbox that
    the check's runs then miss; with it, every run starts afresh, and the
    unkeyed charge is found."""
    fill_inbox()
    with pytest.raises(AssertionError, match="drained"):
        _check_every_scenario(services=[bank])
    failed = _check_every_scenario(reset=fill_inbox, services=[bank])
    assert failed is not None and failed.result.kinds == ["effect twice"]


class ReaderMachine(WorkflowMachine):
    workflow = Reader
    services = (bank,)

    def reset(self) -> None:
        fill_inbox()


def test_a_machine_resets_its_fakes_for_each_run_of_its_check() -> None:
    with pytest.raises(ReplayError, match=r"happened in 2 attempts"):
        run_state_machine_as_test(ReaderMachine, settings=settings(
            max_examples=20, stateful_step_count=4, deadline=None, database=None,
            derandomize=True, phases=[Phase.generate]))
