"""Failure, time and cancellation inside a definition (issue 15), on the pure core.

Every scenario runs in the three modes of genflow.testing.Instance (plain; reloaded at every
checkpoint; crashed after every checkpoint and resumed from the saved blob) and
must end the same way: Try/Catch/Finally, Raise, cancellation with cleanup,
daemon threads, Sleep and absolute timeouts, step timeouts, current_step().
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genflow
from genflow import (
    For,
    Go,
    If,
    On,
    Retry,
    Return,
    Step,
    Timeout,
    Wait,
    WorkflowStatus,
    current_step,
    resume,
)
from genflow.errors import (
    Cancelled,
    DefinitionError,
    GenflowError,
    StepError,
    StepTimeoutError,
)
from genflow.runtime import resume_async
from genflow.saga import Saga
from genflow.state import Failure, new_state
from genflow.statements import Break, Continue, Raise, Sleep, Try
from genflow.testing import MODES, Instance

LOG: list[str] = []
FAIL: dict[str, int] = {}  # step name -> failures left


class Declined(Exception):
    pass


class Transient(Exception):
    pass


def act(name: str, error: type[Exception] = Declined) -> Any:
    """A step action that logs its name and fails while FAIL[name] says so."""
    def run() -> None:
        LOG.append(name)
        if FAIL.get(name, 0) > 0:
            FAIL[name] -= 1
            raise error(f"{name} failed")
    run.__qualname__ = name
    return run


@pytest.fixture(autouse=True)
def _clean():
    LOG.clear()
    FAIL.clear()


# -- Try / Catch / Finally ------------------------------------------------------------------


@genflow.workflow("f-transfer")
@attrs.define
class Transfer:
    failure: Failure | None = None
    seen: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("withdraw", act("withdraw"))
        yield Try("deposit or refund",
            Step("deposit", act("deposit"), retry=Retry(attempts=2, backoff=0)),
            Step("notify", act("notify")),
        ).Catch("refund", Step("refund", self.refund), errors=Declined, into="failure"
        ).Finally("close", Step("close", act("close")))
        yield Step("done", act("done"))

    def refund(self) -> None:
        LOG.append("refund")
        ctx = current_step()
        assert ctx.failure is not None and self.failure is not None
        self.seen.append(f"{ctx.failure.type}:{ctx.failure.step}:{ctx.failure.attempt}")


@pytest.mark.parametrize("mode", MODES)
def test_a_caught_failure_runs_the_catch_then_the_finally_then_goes_on(mode):
    FAIL["deposit"] = 2  # both attempts fail
    run = Instance(Transfer(), mode=mode)
    run.resume()
    assert run.state.status is WorkflowStatus.FINISHED
    assert [n for n in LOG if n != "deposit"] == ["withdraw", "refund", "close", "done"]
    assert LOG.count("deposit") == 2 and "notify" not in LOG
    assert run.wf.seen == ["Declined:deposit:2"]
    assert run.wf.failure == Failure(
        type="Declined", message="deposit failed", step="deposit", attempt=2,
        types=run.wf.failure.types, path=run.wf.failure.path, at="deposit or refund")
    assert "tests.test_failure.Declined" in run.wf.failure.types or \
        "test_failure.Declined" in run.wf.failure.types


@pytest.mark.parametrize("mode", MODES)
def test_success_runs_the_finally_and_no_catch(mode):
    run = Instance(Transfer(), mode=mode)
    run.resume()
    assert LOG == ["withdraw", "deposit", "notify", "close", "done"]
    assert run.wf.failure is None and run.state.status is WorkflowStatus.FINISHED


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_no_catch_matches_runs_the_finally_and_fails_the_instance(mode):
    FAIL["deposit"] = 5

    @genflow.workflow("f-uncaught")
    @attrs.define
    class Uncaught:
        def definition(self):
            yield Try("t", Step("deposit", act("deposit", Transient))
                      ).Catch("c", Step("never", act("never")), errors=Declined
                      ).Finally("f", Step("close", act("close")))
            yield Step("after", act("after"))

    run = Instance(Uncaught(), mode=mode)
    with pytest.raises(GenflowError):
        run.resume()
    assert LOG == ["deposit", "close"]
    assert run.state.status is WorkflowStatus.FAILED
    (thread,) = run.state.threads  # it carries the failure that ended it, after its cleanup
    assert thread.status is genflow.ThreadStatus.UNWINDING and thread.unwind == "fail"


@pytest.mark.parametrize("mode", MODES)
def test_without_any_try_a_failure_fails_at_the_step_as_before(mode):
    FAIL["deposit"] = 5

    @genflow.workflow("f-plain")
    @attrs.define
    class Plain:
        def definition(self):
            yield Step("deposit", act("deposit"))

    run = Instance(Plain(), mode=mode)
    with pytest.raises(StepError):
        run.resume()
    assert run.state.status is WorkflowStatus.FAILED
    assert (run.state.threads[0].stmt, run.state.threads[0].attempts) == ("deposit", 1)


@pytest.mark.parametrize("mode", MODES)
def test_a_crash_inside_a_catch_body_resumes_inside_it(mode):
    FAIL["deposit"] = 1

    @genflow.workflow("f-long-catch")
    @attrs.define
    class LongCatch:
        def definition(self):
            yield Try("t", Step("deposit", act("deposit"))
                      ).Catch("c", Step("undo 1", act("undo 1")), Step("undo 2", act("undo 2")))

    run = Instance(LongCatch(), mode=mode)
    run.resume()
    assert LOG == ["deposit", "undo 1", "undo 2"]  # each once, also when crashed between
    assert run.state.status is WorkflowStatus.FINISHED


@pytest.mark.parametrize("mode", MODES)
def test_nested_trys_the_inner_catch_wins_and_raise_goes_outward(mode):
    FAIL["charge"] = 1

    @genflow.workflow("f-nested")
    @attrs.define
    class Nested:
        outer: Failure | None = None

        def definition(self):
            yield Try("outer",
                Try("inner", Step("charge", act("charge"))
                    ).Catch("inner catch", Step("log", act("log")), Raise()),
                Step("unreached", act("unreached")),
            ).Catch("outer catch", Step("alert", act("alert")), into="outer")

    run = Instance(Nested(), mode=mode)
    run.resume()
    assert LOG == ["charge", "log", "alert"]
    assert run.wf.outer is not None and run.wf.outer.step == "charge"
    assert run.wf.outer.at == "outer"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["break", "continue", "return"])
def test_break_continue_and_return_run_the_finally_first(mode, how):
    @genflow.workflow(f"f-jump-{how}")
    @attrs.define
    class Jump:
        n: int = 0

        def definition(self):
            yield For("loop", self.n < 2,
                Step("count", self.count),
                Try("t",
                    If(how == "break", "b", Break())
                    .ElseIf(how == "continue", "c", Continue())
                    .Else("r", Return()),
                ).Finally("f", Step("cleanup", self.cleanup)),
                Step("skipped", act("skipped")),
            )
            yield Step("after", act("after"))

        def count(self) -> None:
            self.n += 1
            LOG.append(f"count {self.n}")

        def cleanup(self) -> None:
            LOG.append(f"cleanup {self.n}")

    run = Instance(Jump(), mode=mode)
    run.resume()
    expected = {
        "break": ["count 1", "cleanup 1", "after"],
        "continue": ["count 1", "cleanup 1", "count 2", "cleanup 2", "after"],
        "return": ["count 1", "cleanup 1"],
    }[how]
    assert expected == LOG and run.state.status is WorkflowStatus.FINISHED


@pytest.mark.parametrize("mode", MODES)
def test_raise_starts_a_failure_from_the_definition(mode):
    @genflow.workflow("f-raise")
    @attrs.define
    class Overdraft:
        balance: int = -5
        caught: Failure | None = None

        def definition(self):
            yield Try("check",
                If(self.balance < 0, "overdrawn", Raise(Declined, "balance below zero")),
            ).Catch("handle", Step("notify", act("notify")), errors=Declined, into="caught")

    run = Instance(Overdraft(), mode=mode)
    run.resume()
    assert LOG == ["notify"] and run.wf.caught is not None
    assert (run.wf.caught.type, run.wf.caught.message) == ("Declined", "balance below zero")


def test_misuse_of_try_and_raise_is_refused_by_validate():
    @genflow.workflow("f-misuse")
    @attrs.define
    class Misuse:
        def definition(self):
            yield Try("bare", Step("a", act("a")))
            yield Try("t", Step("b", act("b"))).Catch("b", Step("c", act("c")), into="nope")
            yield Raise()

    with pytest.raises(DefinitionError) as err:
        genflow.validate(Misuse())
    text = str(err.value)
    assert "Try 'bare' has neither a Catch nor a Finally" in text
    assert "name 'b' is used twice" in text
    assert "into='nope' is not a field of Misuse" in text
    assert "Raise() outside a Catch body" in text
    with pytest.raises(DefinitionError, match="exception classes"):
        Try("t").Catch("c", errors=int)  # type: ignore[arg-type]


# -- cancellation -------------------------------------------------------------------------


@genflow.workflow("f-cancellable")
@attrs.define
class Cancellable:
    def definition(self):
        yield Go("helper", self.helper)
        yield Try("main work",
            Wait("approval?", On("approve", lambda: LOG.append("approved"))),
        ).Catch("on cancel", Step("release hold", act("release hold")), errors=Cancelled
        ).Finally("always", Step("audit", act("audit")))
        yield Step("ship", act("ship"))

    def helper(self):
        yield Wait("ping?", On("ping"))


@pytest.mark.parametrize("mode", MODES)
def test_cancellation_runs_the_cleanup_durably_then_the_instance_is_cancelled(mode):
    run = Instance(Cancellable(), mode=mode)
    run.resume()
    assert run.state.status is WorkflowStatus.WAITING
    run.cancel()
    assert LOG == ["release hold", "audit"]  # each once, even when crashed in between
    assert run.state.status is WorkflowStatus.CANCELLED and run.state.threads == []
    with pytest.raises(genflow.WorkflowFinishedError):
        run.cancel()


@pytest.mark.parametrize("mode", MODES[:2])
def test_a_second_cancel_during_cleanup_does_not_restart_it(mode):
    @genflow.workflow("f-slow-cleanup")
    @attrs.define
    class SlowCleanup:
        def definition(self):
            yield Try("t", Wait("w", On("go"))).Finally(
                "f", Step("first", act("first")), Wait("confirm?", On("confirmed")),
                Step("second", act("second")))

    run = Instance(SlowCleanup(), mode=mode)
    run.resume()
    run.cancel()
    assert LOG == ["first"] and run.state.status is WorkflowStatus.CANCELLING
    run.cancel()  # goes on where it stands: waiting in the cleanup, nothing run again
    assert LOG == ["first"]
    run.send("confirmed")
    assert LOG == ["first", "second"] and run.state.status is WorkflowStatus.CANCELLED


@genflow.workflow("f-failing-cleanup")
@attrs.define
class FailingCleanup:
    finally_: bool = False

    def definition(self):
        if self.finally_:  # (fixed at start)
            yield Try("work", Wait("w", On("go"))).Catch(
                "on cancel", Step("release", act("release")), Step("after", act("after")),
                errors=Cancelled).Finally("always", Step("audit", act("audit")))
        else:
            yield Try("work", Wait("w", On("go"))).Catch(
                "on cancel", Step("release", act("release")), Step("after", act("after")),
                errors=Cancelled)
        yield Step("ship", act("ship"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("finally_", [False, True])
def test_a_cleanup_step_out_of_attempts_ends_its_thread_and_the_instance_is_cancelled(
        mode, finally_):
    """docs/failure.md: "a step that fails for good during cleanup ends its thread
    (the instance is cancelled all the same)". Without a Finally after the Catch,
    the instance was FAILED instead, stood at the cleanup step."""
    FAIL["release"] = 1
    run = Instance(FailingCleanup(finally_=finally_), mode=mode)
    run.resume()
    run.cancel()
    assert ["release", *(["audit"] if finally_ else [])] == LOG
    assert run.state.status is WorkflowStatus.CANCELLED and run.state.threads == []


@pytest.mark.parametrize("mode", MODES)
def test_daemon_threads_are_cancelled_when_the_main_thread_ends(mode):
    @genflow.workflow("f-monitor")
    @attrs.define
    class Monitor:
        def definition(self):
            yield Go("reminder", self.reminder, daemon=True)
            yield Wait("done?", On("done"))

        def reminder(self):
            yield Try("remind", For("forever", True, Sleep("a while", 3600),
                                    Step("remind", act("remind")))
                      ).Finally("stop reminding", Step("bye", act("bye")))

    run = Instance(Monitor(), mode=mode)
    run.resume()
    run.clock.advance(seconds=3600)
    run.resume()
    assert LOG == []  # a timer fires by its due time, through the engine or a callback
    run.send("done")
    assert LOG == ["bye"] and run.state.status is WorkflowStatus.FINISHED


# -- time -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_one_deadline_across_several_waits(mode):
    @genflow.workflow("f-sms")
    @attrs.define
    class Verify:
        deadline: dt.datetime | None = None
        tries: int = 0
        verified: bool = False

        def definition(self):
            yield Step("start clock", self.start_clock)
            yield For("three tries", self.tries < 3 and not self.verified,
                Wait("code?",
                    On("code", self.on_code),
                    Timeout("expired", at=self.deadline, raises=Declined),
                ),
            )

        def start_clock(self) -> None:
            self.deadline = current_step().now + dt.timedelta(seconds=180)

        def on_code(self, code: str) -> None:
            self.tries += 1
            self.verified = code == "1234"

    run = Instance(Verify(), mode=mode)
    run.resume()
    start = run.clock()
    for _ in range(2):
        run.send("code", "0000")
    due = run.state.threads[0].events[1].due
    assert due == start + dt.timedelta(seconds=180)  # the same deadline for every try
    run.clock.advance(seconds=181)
    timer = run.state.threads[0].events[1].req
    genflow.handle_callback(timer, run.wf, run.state)
    with pytest.raises(GenflowError):  # nothing catches it: the instance fails
        run.resume()
    assert run.state.status is WorkflowStatus.FAILED


def test_naive_and_negative_times_are_refused():
    with pytest.raises(genflow.errors.StatementError, match="aware datetime"):
        Timeout("t", at=dt.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="negative"):
        Sleep("s", -1)
    with pytest.raises(genflow.errors.StatementError, match="either"):
        Timeout("t")


@pytest.mark.parametrize("mode", MODES)
def test_sleep_is_a_durable_wait_with_only_a_timer(mode):
    @genflow.workflow("f-sleep")
    @attrs.define
    class Nap:
        def definition(self):
            yield Sleep("nap", dt.timedelta(minutes=5))
            yield Step("up", act("up"))

    run = Instance(Nap(), mode=mode)
    run.resume()
    event = run.state.threads[0].events[0]
    assert event.due == run.clock() + dt.timedelta(minutes=5)
    run.clock.advance(seconds=300)
    genflow.handle_callback(event.req, run.wf, run.state)
    run.resume()
    assert LOG == ["up"]


# -- what a step sees; retries; timeouts ------------------------------------------------------


def test_current_step_gives_the_clock_attempt_deadline_and_key():
    seen: list[Any] = []

    @genflow.workflow("f-context")
    @attrs.define
    class Context:
        def definition(self):
            yield Step("look", self.look, retry=Retry(attempts=3, backoff=10, factor=1),
                       timeout=30)

        def look(self) -> None:
            ctx = current_step()
            seen.append((ctx.attempt, ctx.now, ctx.deadline, ctx.idempotency_key))
            if ctx.attempt < 2:
                raise Transient("once")

    run = Instance(Context())
    run.resume()
    run.clock.advance(seconds=10)
    run.resume()
    (a1, now1, dl1, key1), (a2, now2, dl2, key2) = seen
    assert dl2 == now2 + dt.timedelta(seconds=30)
    assert (a1, a2) == (1, 2) and key1 == key2
    assert now2 == now1 + dt.timedelta(seconds=10) and dl1 == now1 + dt.timedelta(seconds=30)


def test_retry_forever_and_errors_that_are_never_retried():
    forever = Retry(attempts=None, backoff=1, factor=10, max_backoff=60)
    assert forever.allows(10 ** 9) and forever.delay(1000) == 60
    policy = Retry(attempts=5, never=(Declined,))
    assert policy.retries(Transient()) and not policy.retries(Declined())


class CardDeclined(genflow.NonRetryable):
    pass


@genflow.workflow("f-non-retryable")
@attrs.define
class Charge:
    declined: bool = True
    failure: Failure | None = None

    def definition(self):
        yield Try("charge", Step("charge card", self.charge, retry=Retry(attempts=None)),
                  ).Catch("declined", errors=CardDeclined, into="failure")

    def charge(self) -> None:
        LOG.append("charge")
        if self.declined:
            raise CardDeclined("the card was declined")


@pytest.mark.parametrize("mode", MODES)
def test_a_non_retryable_error_fails_at_its_first_attempt_whatever_the_policy(mode):
    assert not Retry(attempts=None, on=(Exception,)).retries(CardDeclined())
    run = Instance(Charge(), mode=mode)
    run.resume()  # (retried forever, it would wait for its next attempt)
    assert LOG == ["charge"]
    assert run.wf.failure is not None and run.wf.failure.attempt == 1
    assert run.state.status is WorkflowStatus.FINISHED


def test_a_sync_step_that_overruns_its_timeout_fails_its_attempt():
    run: Instance

    @genflow.workflow("f-overrun")
    @attrs.define
    class Overrun:
        done: bool = False

        def definition(self):
            yield Step("slow", self.slow, timeout=5)

        def slow(self) -> None:
            run.clock.advance(seconds=6)  # the step took six seconds of the engine's clock
            self.done = True

    run = Instance(Overrun())
    with pytest.raises(StepError) as err:
        run.resume()
    assert isinstance(err.value.__cause__, StepTimeoutError)
    assert run.wf.done is False  # its changes rolled back


def test_an_async_step_is_cancelled_at_its_timeout():
    @genflow.workflow("f-async-timeout")
    @attrs.define
    class Hang:
        def definition(self):
            yield Step("hang", self.hang, timeout=0.05)

        async def hang(self) -> None:
            await asyncio.sleep(30)

    wf = Hang()
    state = new_state("a", wf)
    with pytest.raises(StepError) as err:
        asyncio.run(resume_async(wf, state))
    assert isinstance(err.value.__cause__, StepTimeoutError)


def test_on_without_a_handler_is_a_bare_trigger():
    on = On("go", Step("s", act("s")))
    assert on.bodies[0] and getattr(on.handler, "input_type", "x") is None

    @genflow.workflow("f-trigger")
    @attrs.define
    class Trigger:
        def definition(self):
            yield Wait("w", On("go", Step("after go", act("after go"))))

    run = Instance(Trigger())
    run.resume()
    with pytest.raises(genflow.PayloadError, match="takes no payload"):
        run.handle_callback("go", "a payload")
    run.send("go")
    assert LOG == ["after go"]


# -- a saga ---------------------------------------------------------------------------------


@genflow.workflow("f-saga")
@attrs.define
class Trip:
    saga: Saga = attrs.field(factory=Saga)

    def definition(self):
        yield Try("book",
            self.saga.step("flight", act("flight"), compensate=act("cancel flight")),
            self.saga.step("hotel", act("hotel"), compensate=act("cancel hotel")),
            self.saga.step("car", act("car"), compensate=act("cancel car")),
        ).Catch("roll back", self.saga.compensate())


@pytest.mark.parametrize("mode", MODES)
def test_a_saga_compensates_what_was_done_in_reverse_order(mode):
    FAIL["car"] = 1
    run = Instance(Trip(), mode=mode)
    run.resume()
    assert LOG == ["flight", "hotel", "car", "cancel hotel", "cancel flight"]
    assert run.wf.saga.done == ["flight", "hotel"]
    assert run.state.status is WorkflowStatus.FINISHED


@genflow.workflow("f-saga-loop")
@attrs.define
class Reservations:
    items: list[str] = attrs.field(factory=lambda: ["a", "b", "c"])
    reserved: int = 0
    saga: Saga = attrs.field(factory=Saga)

    def definition(self):
        yield Try("reserve all",
            For("each item", self.reserved < len(self.items),
                self.saga.step("reserve", self.reserve, compensate=self.release)),
            Step("pay", act("pay")),
        ).Catch("release all", self.saga.compensate())

    def reserve(self) -> None:
        LOG.append(f"reserve {self.items[self.reserved]}")
        self.reserved += 1

    def release(self) -> None:  # (the compensation reads the iteration from the data)
        self.reserved -= 1
        LOG.append(f"release {self.items[self.reserved]}")


@pytest.mark.parametrize("mode", MODES)
def test_a_saga_step_done_in_a_loop_is_undone_once_per_time(mode):
    """It was owed once however often it was done: 'b' and 'a' stayed reserved."""
    FAIL["pay"] = 1
    run = Instance(Reservations(), mode=mode)
    run.resume()
    assert LOG == ["reserve a", "reserve b", "reserve c", "pay",
                   "release c", "release b", "release a"]
    assert run.wf.saga.done == ["reserve"] * 3
    list(run.wf.definition())  # (a replay registers the compensations of this data's saga)
    assert [s.name for s in run.wf.saga.compensate()] == \
        ["undo reserve 3", "undo reserve 2", "undo reserve"]
    assert run.state.status is WorkflowStatus.FINISHED


# -- failures anywhere in nested structures: every mode ends the same way -------------------


@genflow.workflow("f-maze")
@attrs.define
class Maze:
    fails: list[str] = attrs.field(factory=list)
    rounds: int = 0

    def definition(self):
        yield Go("side", self.side)
        yield For("rounds", self.rounds < 2,
            Try("round",
                Step("a", self.step_a),
                Try("inner", Step("b", self.step_b)).Catch("inner catch", Step("b2", self.b2),
                                                           errors=Transient),
            ).Catch("round catch", Step("c", self.step_c)
            ).Finally("round end", Step("d", self.step_d)),
        )

    def side(self):
        yield Try("side try", Step("s", self.step_s)).Finally("side end", Step("t", self.step_t))

    def _maybe(self, name: str) -> None:
        key = f"{name}{self.rounds}"
        LOG.append(key)
        if key in self.fails:
            self.fails.remove(key)
            raise (Transient if name in "bs" else Declined)(key)

    def step_a(self) -> None:
        self._maybe("a")

    def step_b(self) -> None:
        self._maybe("b")

    def b2(self) -> None:
        self._maybe("b2")

    def step_c(self) -> None:
        self._maybe("c")

    def step_d(self) -> None:
        self._maybe("d")
        self.rounds += 1

    def step_s(self) -> None:
        self._maybe("s")

    def step_t(self) -> None:
        self._maybe("t")


@settings(max_examples=40, deadline=None)
@given(fails=st.lists(st.sampled_from(["a0", "b0", "b1", "c0", "b20", "d1", "s0", "t0", "a1"]),
                      unique=True, max_size=4))
def test_failures_placed_anywhere_end_the_same_in_every_mode(fails):
    outcomes = []
    for mode in MODES:
        LOG.clear()
        run = Instance(Maze(fails=list(fails)), mode=mode)
        try:
            run.resume()
            error = None
        except GenflowError as exc:
            error = type(exc).__name__
        outcomes.append((error, run.blob(), list(LOG)))
    plain = outcomes[0]
    for mode, outcome in zip(MODES[1:], outcomes[1:], strict=True):
        assert outcome[1] == plain[1], mode  # byte-identical instance
        # a crash re-runs nothing that was checkpointed: the same calls, in order
        assert outcome[2] == plain[2], mode
        if mode == "reload":
            assert outcome[0] == plain[0]


def test_resume_raises_the_recorded_failure_after_the_finally_ran():
    FAIL["deposit"] = 1

    @genflow.workflow("f-recorded")
    @attrs.define
    class Recorded:
        def definition(self):
            yield Try("t", Step("deposit", act("deposit"))).Finally("f", Step("close",
                                                                            act("close")))

    wf = Recorded()
    state = new_state("r", wf)
    with pytest.raises(StepError, match="deposit") as err:
        resume(wf, state)
    assert isinstance(err.value.__cause__, genflow.errors.RecordedFailure)
    assert LOG == ["deposit", "close"]
