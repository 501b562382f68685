"""Steps of different threads at once (the async API): each on its own copy of
the data, merged when it ends, one durable checkpoint per step applied.

What must hold, whatever order the steps end in and wherever a crash falls:
the data ends as the run with one step at a time ends (the steps write
disjoint places, or conflict and run again alone); a failing step behaves as it
does alone; a crash drops the steps in flight, which run again.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genflow
from genflow import (
    Engine,
    Failure,
    FakeClock,
    Go,
    Retry,
    Step,
    StepError,
    StepTimeoutError,
    Try,
    WaitFor,
    WorkflowStatus,
    dumps,
    loads,
    new_state,
)
from genflow.errors import GenflowError, StatementError
from genflow.runtime import Operation, drive, drive_async, resume_async
from genflow.state import CheckpointType, State
from genflow.testing import MODES, FakeService, Instance, check_replay


class Gauge:
    """How many steps run now, and the most that ever ran together."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: Any) -> None:
        with self.lock:
            self.now -= 1


GAUGE = Gauge()
#: per item: how many times its step yields to the event loop (hypothesis sets them)
PAUSES: dict[int, int] = {}
CANCELLED: list[int] = []


@genflow.workflow("par-fan")
@attrs.define
class Fan:
    """Each thread writes its own index of `results` and its own key of
    `by_name`; every thread also adds to `count`, a conflict the core resolves by
    running the later step again, alone."""

    n: int = 6
    results: list[int] = attrs.field(factory=lambda: [-1] * 6)
    by_name: dict[str, int] = attrs.field(factory=dict)
    count: int = 0
    total: int = -1

    def definition(self):
        for i in range(self.n):
            yield Go(f"item {i}", [
                Step(f"fetch {i}", functools.partial(self.fetch, i)),
                Step(f"count {i}", functools.partial(self.tally, i)),
            ], id=f"item-{i}")
        yield WaitFor("all in", all(r >= 0 for r in self.results) and self.count == self.n)
        yield Step("sum", self.add_up)

    async def fetch(self, i: int) -> None:
        with GAUGE:
            try:
                for _ in range(PAUSES.get(i, 1)):
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                CANCELLED.append(i)
                raise
        self.results[i] = i * i
        self.by_name[f"n{i}"] = i

    async def tally(self, i: int) -> None:
        for _ in range(PAUSES.get(i, 1) % 3):
            await asyncio.sleep(0)
        self.count += 1

    def add_up(self) -> None:
        self.total = sum(self.results)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    GAUGE.now = GAUGE.peak = 0
    PAUSES.clear()
    CANCELLED.clear()


def one_at_a_time(wf: Any) -> tuple[Any, bytes]:
    state = new_state("fan-1", wf)
    asyncio.run(drive_async(Operation(wf, state, None, None, parallel_steps=1).resume(1000)))
    return wf, dumps(wf, state)


def test_the_async_api_runs_the_steps_of_every_thread_at_once() -> None:
    wf = Fan()
    state = new_state("fan-1", wf)
    kinds: list[CheckpointType] = []
    asyncio.run(resume_async(wf, state, kinds.append))
    assert GAUGE.peak == 6  # all six fetches were running together
    assert state.status is WorkflowStatus.FINISHED
    assert wf.results == [i * i for i in range(6)] and wf.total == 55 and wf.count == 6
    assert wf.by_name == {f"n{i}": i for i in range(6)}
    # one durable checkpoint per step applied: 6 fetches, 6 counts, the sum
    assert kinds.count(CheckpointType.AFTER_STEP) == 13


def test_parallel_steps_bounds_the_steps_running_together() -> None:
    wf = Fan()
    state = new_state("fan-1", wf)
    asyncio.run(drive_async(Operation(wf, state, None, None, parallel_steps=3).resume(1000)))
    assert GAUGE.peak == 3 and wf.total == 55
    wf2, blob = one_at_a_time(Fan())
    assert GAUGE.peak == 3  # (one at a time adds no peak)
    assert (wf, state.pc) == (wf2, loads(blob)[1].pc)  # the same data and number of moves


def test_one_at_a_time_is_the_sync_order() -> None:
    wf, _ = one_at_a_time(Fan())
    assert GAUGE.peak == 1 and wf.total == 55


def test_a_conflict_is_run_again_alone_and_recorded() -> None:
    wf = Fan()
    state = new_state("fan-1", wf)
    op = Operation(wf, state, None, None)
    asyncio.run(drive_async(op.resume(1000)))
    assert wf.count == 6  # no addition lost to a conflict, none made twice
    assert op.conflicts and {c.place for c in op.conflicts} == {"count"}
    assert all(c.step.startswith("count ") for c in op.conflicts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pauses=st.lists(st.integers(0, 4), min_size=6, max_size=6),
       crashes=st.lists(st.integers(1, 14), max_size=3))
def test_any_completion_order_and_crash_ends_as_one_at_a_time(pauses: list[int],
                                                             crashes: list[int]) -> None:
    """The order steps end in (each yields `pauses[i]` times to the event loop)
    and crashes at any durable checkpoint (the process dies: memory and the
    steps in flight are lost; the last save goes on) change nothing at the end."""
    PAUSES.clear()
    _, expected = one_at_a_time(Fan())
    PAUSES.update(enumerate(pauses))
    wf = Fan()
    state = new_state("fan-1", wf)
    saved = [dumps(wf, state)]
    durable = [0]
    plan = sorted(set(crashes))

    class Crash(BaseException):
        pass

    def checkpoint(kind: CheckpointType) -> None:
        if kind.durable:
            saved.append(dumps(wf_box[0], state_box[0]))
            durable[0] += 1
            if plan and durable[0] == plan[0]:
                plan.pop(0)
                raise Crash

    wf_box, state_box = [wf], [state]
    for _ in range(len(crashes) + 1):
        try:
            asyncio.run(resume_async(wf_box[0], state_box[0], checkpoint))
            break
        except Crash:
            loaded = loads(saved[-1])
            wf_box[0], state_box[0] = loaded
    assert state_box[0].status is WorkflowStatus.FINISHED
    final = dumps(wf_box[0], state_box[0])
    # the same data (a dict's keys in the order steps added them, the order recorded)
    assert loads(final)[0] == loads(expected)[0]
    assert state_box[0].pc == loads(expected)[1].pc  # as many moves


def test_a_crash_drops_the_steps_in_flight_and_they_run_again() -> None:
    PAUSES.update({0: 0, 1: 5, 2: 5, 3: 5, 4: 5, 5: 5})
    wf = Fan()
    state = new_state("fan-1", wf)
    saved: list[bytes] = []

    class Crash(BaseException):
        pass

    def checkpoint(kind: CheckpointType) -> None:
        if kind is CheckpointType.AFTER_STEP:
            saved.append(dumps(wf, state))
            raise Crash  # right after the first step applied was saved

    with pytest.raises(Crash):
        asyncio.run(resume_async(wf, state, checkpoint))
    assert sorted(CANCELLED) == [1, 2, 3, 4, 5]  # cancelled, as a crash ends them
    wf2, state2 = loads(saved[0])
    assert wf2.results == [0, -1, -1, -1, -1, -1]  # no partial write of a dropped step
    assert {t.id: t.status.value for t in state2.threads if t.id != "_main_"} == {
        "item-0": "resuming", **{f"item-{i}": "executing" for i in range(1, 6)}}
    asyncio.run(resume_async(wf2, state2))
    assert wf2.total == 55 and state2.status is WorkflowStatus.FINISHED


# -- failures, as when the step runs alone ------------------------------------------------

DOWN: dict[str, int] = {}
RAN: list[str] = []


async def _call(name: str, pauses: int = 1) -> None:
    RAN.append(name)
    for _ in range(pauses):
        await asyncio.sleep(0)
    if DOWN.get(name, 0) > 0:
        DOWN[name] -= 1
        raise ConnectionError(f"{name} is down")


@genflow.workflow("par-fail")
@attrs.define
class Failing:
    done: dict[str, bool] = attrs.field(factory=dict)
    failure: Failure | None = None
    caught: bool = False
    timeout: float | None = None

    def definition(self):
        yield Go("go a", Step("a", functools.partial(self.act, "a", 3),
                           retry=Retry(attempts=2, backoff=0)), id="a")
        yield Go("go b", Try("b try", Step("b", functools.partial(self.act, "b", 1),
                                        timeout=self.timeout))
                 .Catch("b failed", Step("b caught", self.catch), into="failure"), id="b")
        yield Go("go c", Step("c", functools.partial(self.act, "c", 2)), id="c")

    async def act(self, name: str, pauses: int) -> None:
        if self.timeout is not None and name == "b":
            await asyncio.sleep(10)
        await _call(name, pauses)
        self.done[name] = True

    def catch(self) -> None:
        self.caught = True


@pytest.fixture(autouse=True)
def _calls() -> None:
    DOWN.clear()
    RAN.clear()


def _failing_run(wf: Failing, parallel: int) -> tuple[State, Operation]:
    state = new_state("fail-1", wf)
    op = Operation(wf, state, None, FakeClock(), parallel_steps=parallel)
    asyncio.run(drive_async(op.run(1000)))
    return state, op


@pytest.mark.parametrize("parallel", [1, 100])
def test_retries_and_catch_of_steps_at_once_behave_as_alone(parallel: int) -> None:
    DOWN.update({"a": 1, "b": 1})
    wf = Failing()
    state, op = _failing_run(wf, parallel)
    assert op.failure is None and state.status is WorkflowStatus.FINISHED
    assert sorted(wf.done) == ["a", "c"] and wf.caught
    assert wf.failure is not None and wf.failure.type == "ConnectionError"
    assert wf.failure.message == "b is down" and wf.failure.step == "b"
    assert sorted(RAN) == ["a", "a", "b", "c"]  # a was retried once (backoff 0)


@pytest.mark.parametrize("parallel", [1, 100])
def test_a_step_out_of_attempts_fails_the_instance_as_alone(parallel: int) -> None:
    DOWN.update({"a": 2})  # two attempts, both fail: nothing catches it
    wf = Failing()
    state, op = _failing_run(wf, parallel)
    assert isinstance(op.failure, StepError) and op.failure.attempt == 2
    assert "step 'a' in thread 'a' failed" in str(op.failure) and "a is down" in str(op.failure)
    assert state.status is WorkflowStatus.FAILED
    thread = state.thread("a")
    assert thread is not None and thread.attempts == 2 and "a is down" in thread.error
    assert "a" not in wf.done  # a failed step leaves no write behind


def test_a_timeout_of_a_step_at_once_is_caught_as_alone() -> None:
    wf = Failing(timeout=0.01)
    start = time.perf_counter()
    state, op = _failing_run(wf, 100)
    assert time.perf_counter() - start < 5  # b was cancelled at its timeout
    assert op.failure is None and state.status is WorkflowStatus.FINISHED
    assert wf.caught and wf.failure is not None and wf.failure.type == "StepTimeoutError"
    assert sorted(wf.done) == ["a", "c"]
    assert StepTimeoutError.__name__ == wf.failure.type


def test_cancelling_the_operation_cancels_the_steps_in_flight_and_changes_nothing() -> None:
    PAUSES.update({i: 10_000 for i in range(6)})
    wf = Fan()
    state = new_state("fan-1", wf)
    before = dumps(wf, state)
    saved: list[bytes] = []

    async def main() -> None:
        task = asyncio.ensure_future(resume_async(
            wf, state, lambda kind: saved.append(dumps(wf, state)) if kind.durable else None))
        for _ in range(20):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as cancelled:
            await task
        # The cancellation reached the caller as it was raised, and what genflow handled on
        # its way leaves no exception behind as the one being handled: compiled, a coroutine
        # that awaited inside an except or finally block left it so, and this test crashed
        # the interpreter (docs/compiled.md; tests/project/test_compiled.py keeps the rule).
        assert cancelled.value.__context__ is None
        assert sys.exc_info() == (None, None, None)

    asyncio.run(main())
    assert sorted(CANCELLED) == list(range(6))
    assert saved == [] and wf.results == [-1] * 6  # no step applied, none half-written
    assert loads(before)[0] == wf
    assert GAUGE.now == 0


@genflow.workflow("par-daemon")
@attrs.define
class WithDaemon:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("helper", Step("slow", self.slow), id="helper", daemon=True)
        yield Step("quick", self.quick)

    async def slow(self) -> None:
        await asyncio.sleep(10)
        self.log.append("slow")

    async def quick(self) -> None:
        await asyncio.sleep(0)
        self.log.append("quick")


def test_a_daemon_step_in_flight_when_the_main_thread_ends_is_dropped() -> None:
    wf = WithDaemon()
    state = new_state("d-1", wf)
    start = time.perf_counter()
    asyncio.run(resume_async(wf, state))
    assert time.perf_counter() - start < 5
    assert state.status is WorkflowStatus.FINISHED and wf.log == ["quick"]


# -- sync steps that block, in worker threads ---------------------------------------------


@genflow.workflow("par-blocking")
@attrs.define
class Blocking:
    done: list[int] = attrs.field(factory=lambda: [0] * 4)
    threads: list[str] = attrs.field(factory=list)

    def definition(self):
        for i in range(4):
            yield Go(f"b{i}", Step(f"wait {i}", functools.partial(self.wait, i), blocking=True),
                     id=f"b{i}")

    def wait(self, i: int) -> None:
        with GAUGE:
            time.sleep(0.05)
        assert genflow.current_step().step == f"wait {i}"
        self.done[i] = 1


def test_blocking_steps_run_in_worker_threads_at_once_under_the_async_api() -> None:
    wf = Blocking()
    state = new_state("b-1", wf)
    asyncio.run(resume_async(wf, state))
    assert GAUGE.peak == 4 and wf.done == [1, 1, 1, 1]
    assert state.status is WorkflowStatus.FINISHED


def test_blocking_steps_run_one_by_one_under_the_sync_api() -> None:
    wf = Blocking()
    state = new_state("b-1", wf)
    drive(Operation(wf, state, None, None).resume(1000))
    assert GAUGE.peak == 1 and wf.done == [1, 1, 1, 1]


def test_blocking_is_refused_for_an_async_step() -> None:
    async def act() -> None:
        pass

    with pytest.raises(StatementError, match="blocking=True is for a sync action"):
        Step("s", act, blocking=True)
    with pytest.raises(StatementError, match="blocking is True or False"):
        Step("s", lambda: None, blocking="yes")  # type: ignore[arg-type]


# -- the toolkit and the engine ------------------------------------------------------------

upload = FakeService("blobs")


@genflow.workflow("par-copy")
@attrs.define
class Copy:
    files: list[str] = attrs.field(factory=lambda: ["a", "bb", "ccc", "dddd"])
    sizes: list[int] = attrs.field(factory=lambda: [-1] * 4)
    total: int = -1

    def definition(self):
        for i in range(len(self.files)):
            yield Go(f"copying {i}", Step(f"copy {i}", functools.partial(self.copy, i)),
                     id=f"copy-{i}")
        yield WaitFor("copied", all(s >= 0 for s in self.sizes))
        yield Step("sum", self.add_up)

    async def copy(self, i: int) -> None:
        for _ in range(i % 3):
            await asyncio.sleep(0)
        upload.put(self.files[i], key=genflow.current_step().idempotency_key)
        self.sizes[i] = len(self.files[i])

    def add_up(self) -> None:
        self.total = sum(self.sizes)


def test_instance_crash_mode_covers_steps_at_once() -> None:
    """Crashed at every durable checkpoint (the steps in flight dropped each
    time): the same blob as in memory, each upload done once per key."""
    blobs = {}
    for mode in MODES:
        upload.reset()
        run = Instance(Copy(), mode, asynchronous=True)
        run.resume()
        assert run.wf.total == 10
        assert upload.count("put") == 4
        blobs[mode] = run.blob()
        if mode == "crash":  # steps in flight at a crash ran again
            assert len([c for c in run.calls if c.kind == "step"]) > 5
    assert len(set(blobs.values())) == 1


def test_the_checker_accepts_the_fan_out() -> None:
    result = check_replay(Copy(), services=[upload])
    assert result.problems == []


def test_engine_async_api_runs_the_fan_out_at_once_on_every_store(make_store) -> None:
    engine = Engine(make_store(), clock=FakeClock())
    iid = asyncio.run(engine.start_async(Fan()))
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED and inst.data.total == 55
    assert GAUGE.peak == 6
    assert inst.version >= 13  # a durable save per step applied


def test_engine_store_failure_mid_fan_out_loses_no_step(make_store) -> None:
    from genflow.errors import StoreUnavailableError

    store = make_store()
    engine = Engine(store, clock=FakeClock())
    real = store.save
    saves = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        saves[0] += 1
        if saves[0] == 4:
            raise StoreUnavailableError("the disk went away")
        return real(*args, **kwargs)

    store.save = failing  # type: ignore[method-assign]
    iid = "fan-store"
    with pytest.raises(StoreUnavailableError):
        asyncio.run(engine.start_async(Fan(), id=iid))
    store.save = real  # type: ignore[method-assign]
    done = engine.get(iid).data
    assert 0 < sum(r >= 0 for r in done.results) < 6  # what was saved before the failure
    store.release(iid, engine.owner)
    asyncio.run(engine.run_due_async())
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED and inst.data.total == 55
    assert inst.data.count == 6


def test_engine_parallel_steps_is_checked() -> None:
    from genflow.stores import MemoryStore

    for bad in (0, -1, 1.5, True):
        with pytest.raises(GenflowError, match="parallel_steps is a number of steps"):
            Engine(MemoryStore(), parallel_steps=bad)  # type: ignore[arg-type]
    engine = Engine(MemoryStore(), parallel_steps=1)
    asyncio.run(engine.start_async(Fan()))
    assert GAUGE.peak == 1


def test_engine_a_step_at_once_out_of_attempts_fails_the_instance_then_retries(make_store):
    DOWN.update({"a": 2})
    engine = Engine(make_store(), [Failing], clock=FakeClock())
    iid = asyncio.run(engine.start_async(Failing()))
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FAILED
    assert "step 'a' in thread 'a' failed" in inst.error and "a is down" in inst.error
    assert inst.data.done == {"b": True, "c": True}  # the others were applied meanwhile
    engine.retry(iid)
    asyncio.run(engine.run_due_async())
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FINISHED and sorted(inst.data.done) == ["a", "b", "c"]


@genflow.workflow("par-backoff")
@attrs.define
class Backoff:
    done: dict[str, bool] = attrs.field(factory=dict)

    def definition(self):
        for name in ("a", "b", "c"):
            yield Go(f"go {name}", Step(name, functools.partial(self.act, name),
                                        retry=Retry(attempts=3, backoff=5, factor=1)),
                     id=name)

    async def act(self, name: str) -> None:
        await _call(name)
        self.done[name] = True


def test_a_backoff_keeps_its_thread_waiting_while_the_others_are_applied() -> None:
    DOWN.update({"a": 1})
    clock = FakeClock()
    wf = Backoff()
    state = new_state("bo-1", wf)
    kinds: list[CheckpointType] = []
    asyncio.run(resume_async(wf, state, kinds.append, clock=clock))
    assert wf.done == {"b": True, "c": True} and state.status is WorkflowStatus.WAITING
    thread = state.thread("a")
    assert thread is not None and thread.attempts == 1 and thread.retry_at is not None
    assert (thread.retry_at - clock()).total_seconds() == 5
    assert kinds.count(CheckpointType.AFTER_FAILURE) == 1
    asyncio.run(resume_async(wf, state, clock=clock))  # not due yet: nothing runs
    assert RAN.count("a") == 1
    clock.advance(seconds=5)
    asyncio.run(resume_async(wf, state, clock=clock))
    assert wf.done == {"a": True, "b": True, "c": True}
    assert state.status is WorkflowStatus.FINISHED and RAN.count("a") == 2


# -- steps at once asking other instances for work (the outbox) ---------------------------

@genflow.workflow("par-note")
@attrs.define
class Note:
    text: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("file it", lambda: None)


@genflow.workflow("par-notify")
@attrs.define
class Notifier:
    """Three threads' async steps each start a note; every thread also bumps
    `count`, so two of them conflict and run again alone: what a dropped run
    asked for must go with its writes."""

    count: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        for i in range(3):
            yield Go(f"go {i}", Step(f"note {i}", functools.partial(self.note, i)), id=f"t{i}")
        yield WaitFor("all noted", self.count == 3)

    async def note(self, i: int) -> None:
        await asyncio.sleep(0)
        genflow.current_step().start(Note(f"note {i}"), id=f"note-{i}")
        self.count += 1


def test_steps_at_once_write_what_they_asked_for_once_each(make_store):
    engine = Engine(make_store(), [Notifier, Note], clock=FakeClock())
    iid = asyncio.run(engine.start_async(Notifier()))
    assert engine.get(iid).status is WorkflowStatus.FINISHED
    assert engine.get(iid).data.count == 3
    notes = sorted(r.id for r in engine.list(workflow="par-note"))
    assert notes == ["note-0", "note-1", "note-2"]
    assert [engine.get(n).data.text for n in notes] == ["note 0", "note 1", "note 2"]
