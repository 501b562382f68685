"""Runtime semantics: empty loops, select, setup/teardown statuses, counters, WaitFor,
move limits, timers, async, step contexts, cancel."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import warnings
from typing import Any

import attrs
import pytest

import genflow
from genflow import (
    MAIN_THREAD,
    CheckpointType,
    Continue,
    DuplicateThreadError,
    EmptyLoopError,
    EventHandler,
    EventNotReadyError,
    For,
    GenflowError,
    Go,
    HandlerError,
    If,
    MoveLimitError,
    On,
    StaleCallbackError,
    Step,
    StepContext,
    StepError,
    ThreadStatus,
    Timeout,
    Wait,
    WaitEventStatus,
    WaitFor,
    WaitGroup,
    WorkflowFinishedError,
    WorkflowStatus,
    cancel,
    cancel_async,
    dumps,
    handle_callback,
    handle_callback_async,
    new_state,
    resume,
    resume_async,
)
from genflow.clock import FakeClock
from genflow.testing import MODES, Instance
from genflow.testing.instance import request

#: what handlers did outside the data, in order
calls: list[tuple[Any, ...]] = []
#: how many more times each (handler name, phase) should fail
failures: dict[tuple[str, str], int] = {}


@pytest.fixture(autouse=True)
def _clean() -> None:
    calls.clear()
    failures.clear()


class Probe(EventHandler):
    """A handler that records its calls and fails on demand."""

    def __init__(self, name: str):
        self.name = name

    def _maybe_fail(self, phase: str) -> None:
        left = failures.get((self.name, phase), 0)
        if left:
            failures[(self.name, phase)] = left - 1
            raise ConnectionError(f"{self.name} {phase} unavailable")

    def setup(self, req):
        self._maybe_fail("setup")
        calls.append(("setup", self.name, req.pc))
        return f"{self.name}@{req.pc}"

    def handle(self, req, payload: str) -> str:
        calls.append(("handle", self.name, payload))
        return payload.upper()

    def teardown(self, req, handled):
        self._maybe_fail("teardown")
        calls.append(("teardown", self.name, handled, req.setup_data))


# -- empty loops ---------------------------------------------------------------------------


@genflow.workflow("rt-empty-loop")
@attrs.define
class EmptyLoop:
    kind: str = "false branch"
    i: int = 0

    def definition(self):
        if self.kind == "false branch":
            yield For("spin", True, If(False, "never", Step("x", self.inc)))
        elif self.kind == "no body":
            yield For("spin", True)
        elif self.kind == "continue only":
            yield For("spin", True, Continue(), Step("x", self.inc))
        elif self.kind == "go only":
            yield For("spin", True, Go("t", Step("x", self.inc)))
        elif self.kind == "after two steps":
            yield For("spin", self.i < 5, If(self.i < 2, "early", Step("x", self.inc)))

    def inc(self) -> None:
        self.i += 1


@pytest.mark.parametrize("kind", ["false branch", "no body", "continue only", "go only"])
def test_empty_loop_iteration_is_an_error_that_changes_nothing(kind: str) -> None:
    run = Instance(EmptyLoop(kind=kind))
    before = run.blob()
    with pytest.raises(EmptyLoopError, match="'spin'"):
        run.resume()
    assert run.blob() == before
    assert [t.id for t in run.state.threads] == [MAIN_THREAD]


def test_loop_that_becomes_empty_fails_at_its_last_checkpoint() -> None:
    run = Instance(EmptyLoop(kind="after two steps"))
    with pytest.raises(EmptyLoopError):
        run.resume()
    assert run.wf.i == 2
    assert run.blob() == run.checkpointed
    with pytest.raises(EmptyLoopError):  # deterministic: the same again
        run.resume()


# -- select ------------------------------------------------------------------------------------


@genflow.workflow("rt-select")
@attrs.define
class Select:
    rounds: int = 1
    done: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("rounds", self.done < self.rounds,
            Wait("pick",
                On("a", Probe("a"), Step("after a", lambda: self.log.append("A"))),
                On("b", Probe("b"), Step("after b", lambda: self.log.append("B"))),
                On("c", lambda: self.log.append("c handled")),
            ),
            Step("round done", self.round_done),
        )

    def round_done(self) -> None:
        self.done += 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("winner", ["a", "b"])
def test_select_exactly_one_event_wins(winner: str, mode: str) -> None:
    loser = "b" if winner == "a" else "a"
    run = Instance(Select(), mode=mode)
    run.resume()
    pc = run.state.threads[0].pc
    assert sorted(calls) == [("setup", "a", pc), ("setup", "b", pc)]
    calls.clear()
    assert run.handle_callback(winner, "hi") == "HI"
    assert calls == [("handle", winner, "hi")]
    thread = run.state.threads[0]
    assert thread.won == winner and thread.status is ThreadStatus.RESUMING
    # every event that was set up is torn down on the next resume, the winner too;
    # "c", a plain function with nothing to tear down, is done with at once
    assert {e.event: e.won for e in thread.events} == {
        "a": winner == "a", "b": winner == "b",
    }
    assert all(e.status is WaitEventStatus.PENDING_TEARDOWN for e in thread.events)
    calls.clear()
    run.resume()
    assert sorted(calls) == sorted([
        ("teardown", winner, True, f"{winner}@{pc}"),
        ("teardown", loser, False, f"{loser}@{pc}"),
    ])
    assert run.wf.log == [winner.upper()]
    assert run.state.status is WorkflowStatus.FINISHED


def test_second_callback_for_the_same_wait_is_stale() -> None:
    run = Instance(Select(rounds=2))
    run.resume()
    first = {e.event: e.req for e in run.state.threads[0].events}
    handle_callback(first["a"], run.wf, run.state, "x")
    for event, payload in (("b", "y"), ("a", "again"), ("c", None)):
        before = run.blob()
        with pytest.raises(StaleCallbackError):  # before the instance moved on
            handle_callback(first[event], run.wf, run.state, payload)
        assert run.blob() == before
    run.resume()  # now waiting again, in round two, at a later counter
    assert run.state.threads[0].stmt == "pick" and run.wf.done == 1
    for event, payload in (("b", "y"), ("a", "again"), ("c", None)):
        before = run.blob()
        with pytest.raises(StaleCallbackError):
            handle_callback(first[event], run.wf, run.state, payload)
        assert run.blob() == before
    assert run.handle_callback("c") is None
    run.resume()
    assert run.wf.log == ["A", "c handled"]
    assert run.state.status is WorkflowStatus.FINISHED


def test_forged_future_counter_is_refused() -> None:
    run = Instance(Select())
    run.resume()
    req = request(run.state, "a")
    forged = attrs.evolve(req, pc=req.pc + 5)
    before = run.blob()
    with pytest.raises(StaleCallbackError):
        handle_callback(forged, run.wf, run.state, "x")
    assert run.blob() == before


# -- setup and teardown statuses ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES[:2])
def test_failed_setup_is_recorded_and_retried(mode: str) -> None:
    failures[("b", "setup")] = 2
    run = Instance(Select(), mode=mode)
    for attempt in (1, 2):
        with pytest.raises(HandlerError) as err:
            run.resume()
        assert (err.value.phase, err.value.event, err.value.thread) == ("setup", "b", MAIN_THREAD)
        events = {e.event: e for e in run.state.threads[0].events}
        assert events["b"].status is WaitEventStatus.SETUP_ERROR
        assert "b setup unavailable" in events["b"].error
        assert events["a"].status is WaitEventStatus.SETUP  # set up once, not redone
        assert run.state.status is WorkflowStatus.RESUMING
        assert run.kinds[-1] is CheckpointType.AFTER_SETUP  # the failure was reported
        assert run.blob() == run.checkpointed
        with pytest.raises(EventNotReadyError):
            run.handle_callback("b", "early")
        assert [c for c in calls if c[0] == "setup"] == [("setup", "a", run.state.threads[0].pc)]
        assert attempt == 2 - failures[("b", "setup")]
    run.resume()
    events = {e.event: e for e in run.state.threads[0].events}
    assert events["b"].status is WaitEventStatus.SETUP and events["b"].error == ""
    assert events["b"].req.setup_data == f"b@{run.state.threads[0].pc}"
    assert run.state.status is WorkflowStatus.WAITING
    run.send("b", "go")
    assert run.wf.log == ["B"]


@pytest.mark.parametrize("mode", MODES[:2])
def test_failed_teardown_is_recorded_and_retried(mode: str) -> None:
    failures[("a", "teardown")] = 1
    run = Instance(Select(), mode=mode)
    run.resume()
    pc = run.state.threads[0].pc
    run.handle_callback("b", "x")
    with pytest.raises(HandlerError) as err:
        run.resume()
    assert (err.value.phase, err.value.event) == ("teardown", "a")
    event = run.state.threads[0].events[0]
    assert (event.event, event.status) == ("a", WaitEventStatus.TEARDOWN_ERROR)
    assert "a teardown unavailable" in event.error
    assert run.wf.log == []  # the winner's body waits for every teardown
    assert run.blob() == run.checkpointed
    run.resume()
    assert run.wf.log == ["B"]
    teardowns = [c for c in calls if c[0] == "teardown"]
    assert sorted(teardowns) == sorted([("teardown", "a", False, f"a@{pc}"),
                                        ("teardown", "b", True, f"b@{pc}")])
    assert run.state.status is WorkflowStatus.FINISHED


# -- counters ----------------------------------------------------------------------------------


def test_counter_grows_on_every_move_and_requests_carry_it() -> None:
    run = Instance(Select(rounds=3))
    seen = []
    run.resume()
    for _ in range(3):
        thread = run.state.threads[0]
        assert all(e.req.pc == thread.pc for e in thread.events)
        seen.append(thread.pc)
        run.send("c")
    assert seen == sorted(set(seen))  # strictly increasing


# -- WaitFor -----------------------------------------------------------------------------------


@genflow.workflow("rt-waitfor")
@attrs.define
class Gate:
    open: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("opener", [
            Wait("knock", On("knock", lambda: self.log.append("knocked"))),
            Step("open", self.do_open),
            Step("after open", lambda: self.log.append("opener done")),
        ])
        yield WaitFor("gate", self.open, lambda: self.log.append("through"))
        yield Step("inside", lambda: self.log.append("inside"))
        yield WaitFor("already", self.open)  # holds: passes without stopping
        yield WaitFor("with handler", self.open, lambda: self.log.append("handler"))

    def do_open(self) -> None:
        self.open = True
        self.log.append("opened")


@pytest.mark.parametrize("mode", MODES)
def test_waitfor_wakes_when_another_threads_step_makes_it_true(mode: str) -> None:
    run = Instance(Gate(), mode=mode)
    run.resume()
    main = run.state.thread(MAIN_THREAD)
    assert (main.stmt, main.status) == ("gate", ThreadStatus.WAITING_CONDITION)
    assert run.state.status is WorkflowStatus.WAITING
    run.send("knock", thread="opener")
    # every move is made by the first thread that can move: once the opener's step
    # makes the gate's condition true, the main thread goes first
    assert run.wf.log == ["knocked", "opened", "through", "inside", "handler", "opener done"]
    assert CheckpointType.AFTER_CONDITION in run.kinds
    assert run.state.status is WorkflowStatus.FINISHED


def test_waitfor_handler_failure_rolls_back_and_retries() -> None:
    broken = {"on": True}

    @genflow.workflow("rt-waitfor-broken")
    @attrs.define
    class Broken:
        n: int = 0

        def definition(self):
            yield WaitFor("ready", True, self.handler)

        def handler(self) -> None:
            self.n += 1
            if broken["on"]:
                raise ValueError("no")

    run = Instance(Broken())
    with pytest.raises(HandlerError) as err:
        run.resume()
    assert err.value.phase == "condition handler" and err.value.event == "ready"
    assert run.wf.n == 0 and run.blob() == run.checkpointed
    assert run.state.threads[0].status is ThreadStatus.WAITING_CONDITION
    broken["on"] = False
    run.resume()
    assert run.wf.n == 1 and run.state.status is WorkflowStatus.FINISHED


def test_waitgroup_duplicate_id_is_refused_in_its_add_step() -> None:
    @genflow.workflow("rt-wg-dup")
    @attrs.define
    class Dup:
        wg: WaitGroup = attrs.field(factory=WaitGroup)
        started: int = 0

        def definition(self):
            yield For("start", self.started < 2,
                self.wg.go("job", Wait("hold", On("go", lambda: None)), id="same"),
                Step("count", self.count),
            )

        def count(self) -> None:
            self.started += 1

    run = Instance(Dup())
    with pytest.raises(StepError) as err:
        run.resume()
    assert isinstance(err.value.__cause__, DuplicateThreadError)
    assert run.wf.wg.pending == ["same"] and run.blob() == run.checkpointed


# -- move limit --------------------------------------------------------------------------------


@genflow.workflow("rt-runaway")
@attrs.define
class Runaway:
    n: int = 0

    def definition(self):
        yield For("forever", True, Step("inc", self.inc))

    def inc(self) -> None:
        self.n += 1


def test_runaway_loop_hits_the_move_limit_at_a_checkpoint() -> None:
    run = Instance(Runaway())
    with pytest.raises(MoveLimitError):
        run.resume(max_moves=41)
    assert run.blob() == run.checkpointed
    assert len(run.kinds) == 41
    first = run.wf.n
    assert first == 20  # forward, step, forward, step...
    with pytest.raises(MoveLimitError):
        run.resume(max_moves=10)
    assert run.wf.n == first + 5


# -- timers ------------------------------------------------------------------------------------


@genflow.workflow("rt-timer")
@attrs.define
class Timer:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Wait("answer or time out",
            On("answer", lambda: self.log.append("answered")),
            Timeout("too slow", dt.timedelta(minutes=5), Step("expire", self.expire)),
            Timeout("way too slow", 3600),
        )

    def expire(self) -> None:
        self.log.append("expired")


@pytest.mark.parametrize("mode", MODES)
def test_timeout_gets_its_due_time_from_the_resume_clock(mode: str) -> None:
    start = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    run = Instance(Timer(), mode=mode, clock=FakeClock(start))
    run.resume()
    events = {e.event: e for e in run.state.threads[0].events}
    assert events["answer"].due is None
    assert events["too slow"].due == start + dt.timedelta(minutes=5)
    assert events["way too slow"].due == start + dt.timedelta(hours=1)
    assert run.state.threads[0].since == start
    run.clock.advance(seconds=301)
    run.send("too slow")
    assert run.wf.log == ["expired"]
    assert run.state.status is WorkflowStatus.FINISHED


def test_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Timeout("t", -1)


# -- async -------------------------------------------------------------------------------------


class AsyncProbe(EventHandler):
    async def setup(self, req):
        await asyncio.sleep(0)
        return "async token"

    async def handle(self, req, payload: int) -> int:
        await asyncio.sleep(0)
        return payload * 2

    async def teardown(self, req, handled):
        await asyncio.sleep(0)
        calls.append(("async teardown", handled))


@genflow.workflow("rt-async")
@attrs.define
class AsyncFlow:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("fetch", self.fetch)
        yield Wait("w", On("e", AsyncProbe()))
        yield Step("sync", lambda: self.log.append("sync"))

    async def fetch(self) -> None:
        await asyncio.sleep(0)
        self.log.append(f"fetched in {genflow.current_step().step}")


def test_async_steps_and_handlers_run_with_the_async_api() -> None:
    wf = AsyncFlow()
    state = new_state("a-1", wf)
    kinds: list[CheckpointType] = []

    async def checkpoint(kind: CheckpointType) -> None:
        await asyncio.sleep(0)
        kinds.append(kind)

    async def scenario() -> Any:
        await resume_async(wf, state, checkpoint)
        assert state.threads[0].events[0].req.setup_data == "async token"
        out = await handle_callback_async(state.threads[0].events[0].req, wf, state, 21)
        await resume_async(wf, state, checkpoint)
        return out

    assert asyncio.run(scenario()) == 42
    assert wf.log == ["fetched in fetch", "sync"]
    assert calls == [("async teardown", True)]
    assert CheckpointType.AFTER_SETUP in kinds and CheckpointType.AFTER_TEARDOWN in kinds
    assert state.status is WorkflowStatus.FINISHED


def test_sync_resume_refuses_an_async_step_cleanly() -> None:
    run = Instance(AsyncFlow(), asynchronous=False)  # driven as `resume` would
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a never-awaited coroutine would warn
        with pytest.raises(StepError, match="resume_async") as err:
            run.resume()
        gc.collect()
    assert err.value.step == "fetch"
    assert run.blob() == run.checkpointed
    assert run.state.threads[0].status is ThreadStatus.EXECUTING
    asyncio.run(resume_async(run.wf, run.state))  # the async API takes over from there
    assert run.wf.log == ["fetched in fetch"]


# -- step context ------------------------------------------------------------------------------


@genflow.workflow("rt-context")
@attrs.define
class Context:
    keys: list[str] = attrs.field(factory=list)
    i: int = 0

    def definition(self):
        yield For("twice", self.i < 2,
            Step("call out", self.call_out),
            Wait("next", On("next", lambda: None)),
        )

    def call_out(self) -> None:
        ctx = genflow.current_step()
        assert isinstance(ctx, StepContext)
        assert (ctx.workflow, ctx.thread_id, ctx.step) == ("rt-context", MAIN_THREAD, "call out")
        calls.append(("key", ctx.idempotency_key))
        self.keys.append(ctx.idempotency_key)
        self.i += 1
        if failures.get(("call out", "step"), 0):
            failures[("call out", "step")] -= 1
            raise TimeoutError("try again")


@pytest.mark.parametrize("mode", MODES[:2])
def test_idempotency_key_is_stable_across_retries_and_new_per_execution(mode: str) -> None:
    failures[("call out", "step")] = 2
    run = Instance(Context(), instance_id="ctx-1", mode=mode)
    for _ in range(2):
        with pytest.raises(StepError):
            run.resume()
    run.resume()
    tried = [c[1] for c in calls]
    assert len(tried) == 3 and len(set(tried)) == 1
    assert tried[0].startswith(f"ctx-1/{MAIN_THREAD}/call out/")
    assert run.wf.keys == tried[:1]  # failed attempts were rolled back
    run.send("next")
    assert len(run.wf.keys) == 2 and run.wf.keys[1] != run.wf.keys[0]


def test_current_step_outside_a_step_is_an_error() -> None:
    with pytest.raises(GenflowError, match="only available while a step or handler runs"):
        genflow.current_step()


# -- cancel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES[:2])
def test_cancel_tears_down_handlers_and_ends_the_instance(mode: str) -> None:
    run = Instance(Select(), mode=mode)
    run.resume()
    pc = run.state.threads[0].pc
    calls.clear()
    seen = len(run.kinds)
    cancel(run.wf, run.state, run.kinds.append)
    assert run.state.status is WorkflowStatus.CANCELLED
    assert sorted(calls) == sorted([("teardown", "a", False, f"a@{pc}"),
                                    ("teardown", "b", False, f"b@{pc}")])
    assert run.state.threads == []  # torn down, then ended: it had no cleanup to run
    assert run.kinds[seen] is CheckpointType.AFTER_CANCEL
    assert run.kinds[-1] is CheckpointType.AFTER_RESUME
    before = dumps(run.wf, run.state)
    for op in (
        lambda: resume(run.wf, run.state),
        lambda: handle_callback(attrs.evolve(request_for(run), event="c"), run.wf, run.state),
        lambda: cancel(run.wf, run.state),
    ):
        with pytest.raises(WorkflowFinishedError):
            op()
        assert dumps(run.wf, run.state) == before


def request_for(run: Instance) -> Any:
    return genflow.CallbackRequest(run.state.id, genflow.MAIN_THREAD, "a", run.state.pc)


def test_cancel_retries_a_failed_teardown() -> None:
    failures[("b", "teardown")] = 1
    run = Instance(Select())
    run.resume()
    pc = run.state.threads[0].pc
    with pytest.raises(HandlerError):
        cancel(run.wf, run.state)
    assert run.state.status is WorkflowStatus.CANCELLING  # until the teardown is done
    left = run.state.threads[0].events
    assert [(e.event, e.status) for e in left] == [
        ("b", WaitEventStatus.TEARDOWN_ERROR), ("c", WaitEventStatus.PENDING_TEARDOWN),
    ]
    cancel(run.wf, run.state)  # goes on where it stopped
    assert run.state.threads == [] and run.state.status is WorkflowStatus.CANCELLED
    assert ("teardown", "b", False, f"b@{pc}") in calls


def test_cancel_async_and_finished_instances() -> None:
    run = Instance(Select())
    run.resume()
    asyncio.run(cancel_async(run.wf, run.state))
    assert run.state.status is WorkflowStatus.CANCELLED
    done = Instance(EmptyLoop(kind="none"))
    done.resume()
    assert done.state.status is WorkflowStatus.FINISHED
    with pytest.raises(WorkflowFinishedError):
        cancel(done.wf, done.state)


def test_event_that_is_set_up_wins_over_one_whose_setup_failed() -> None:
    failures[("b", "setup")] = 1
    run = Instance(Select())
    with pytest.raises(HandlerError):
        run.resume()
    assert run.handle_callback("a", "first") == "FIRST"
    thread = run.state.threads[0]
    # b failed to set up and c was not set up yet: nothing of them to tear down
    assert [(e.event, e.status) for e in thread.events] == [
        ("a", WaitEventStatus.PENDING_TEARDOWN),
    ]
    run.resume()
    assert run.wf.log == ["A"]
    assert not [c for c in calls if c[:2] == ("teardown", "b")]
    assert run.state.status is WorkflowStatus.FINISHED


def test_every_checkpoint_but_a_navigation_is_durable() -> None:
    """`CheckpointType.durable` is what the engine saves at and the toolkit
    crashes at: every kind but AFTER_RESUME, a plain attribute of each member."""
    assert {kind for kind in CheckpointType if not kind.durable} == {CheckpointType.AFTER_RESUME}
    assert all(type(kind.durable) is bool for kind in CheckpointType)
