"""The seed library's own scenarios, each run plain, reloaded between operations,
and crashed-and-reloaded after every checkpoint: all three must end identically."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

import genflow
from genflow import (
    MAIN_THREAD,
    Break,
    Case,
    CheckpointType,
    Continue,
    Default,
    DuplicateThreadError,
    EventHandler,
    For,
    Go,
    If,
    On,
    Return,
    Step,
    StepError,
    Switch,
    ThreadStatus,
    Wait,
    WaitGroup,
    WorkflowStatus,
)
from genflow.codec import dumps
from genflow.testing import MODES, Instance

#: outside effects of handlers and steps, keyed by instance id (not workflow data)
EFFECTS: dict[str, list[Any]] = {}
#: how many more times a step should fail, keyed by instance id
FAILS: dict[str, int] = {}


def effects(run: Instance) -> list[Any]:
    return EFFECTS.setdefault(run.state.id, [])


# -- workflows -------------------------------------------------------------------------


@genflow.workflow("seed-empty")
@attrs.define
class Empty:
    def definition(self):
        yield from ()


@genflow.workflow("seed-single")
@attrs.define
class Single:
    done: int = 0

    def definition(self):
        yield Step("only", self.only)

    def only(self) -> None:
        self.done += 1


@genflow.workflow("seed-flaky")
@attrs.define
class FlakyStep:
    before: int = 0
    attempts: int = 0
    after: int = 0

    def definition(self):
        yield Step("first", self.first)
        yield Step("flaky", self.flaky)
        yield Step("last", self.last)

    def first(self) -> None:
        self.before += 1

    def flaky(self) -> None:
        self.attempts += 1  # rolled back when the step fails
        key = genflow.current_step().instance_id
        if FAILS.get(key, 0) > 0:
            FAILS[key] -= 1
            raise RuntimeError("service down")

    def last(self) -> None:
        self.after += 1


class Token(EventHandler):
    """Setup hands out a token; teardown records who won."""

    def setup(self, req):
        EFFECTS.setdefault(req.instance_id, []).append(("setup", req.event))
        return f"token-{req.event}-{req.pc}"

    def handle(self, req, payload: int) -> str:
        return f"{req.event}:{payload}:{req.setup_data}"

    def teardown(self, req, handled):
        EFFECTS.setdefault(req.instance_id, []).append(
            ("teardown", req.event, handled, req.setup_data)
        )


@genflow.workflow("seed-setup-data")
@attrs.define
class SetupData:
    winner: str = ""

    def definition(self):
        yield Wait(
            "choose",
            On("left", Token(), Step("went left", lambda: self.went("left"))),
            On("right", Token(), Step("went right", lambda: self.went("right"))),
        )

    def went(self, side: str) -> None:
        self.winner = side


@genflow.workflow("seed-loops")
@attrs.define
class Loops:
    i: int = 0
    j: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("outer", self.i < 3,
            Step("reset j", self.reset_j),
            For("inner", self.j < self.i + 1,
                Step("inner step", self.inner),
            ),
            Step("next i", self.next_i),
        )
        yield Step("after", lambda: self.log.append("after"))

    def reset_j(self) -> None:
        self.j = 0

    def inner(self) -> None:
        self.log.append(f"{self.i}.{self.j}")
        self.j += 1

    def next_i(self) -> None:
        self.i += 1


@genflow.workflow("seed-jumps")
@attrs.define
class Jumps:
    i: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("loop", True,
            Step("count", self.count),
            If(self.i % 2 == 1, "odd", Continue(), Step("after continue", self.never)),
            If(self.i >= 6, "stop", Break(), Step("after break", self.never)),
            Step("keep", self.keep),
        )
        yield Step("after loop", lambda: self.log.append("loop done"))
        yield Return()
        yield Step("after return", self.never)

    def count(self) -> None:
        self.i += 1

    def keep(self) -> None:
        self.log.append(str(self.i))

    def never(self) -> None:
        raise AssertionError("a statement after Break/Continue/Return ran")


@genflow.workflow("seed-branches")
@attrs.define
class Branches:
    x: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield If(self.x > 10, "big", Step("say big", lambda: self.say("big")))\
            .ElseIf(self.x > 5, "medium", Step("say medium", lambda: self.say("medium")))\
            .Else("small", Step("say small", lambda: self.say("small")))
        yield Switch(
            Case(self.x % 3 == 0, "fizz", Step("say fizz", lambda: self.say("fizz"))),
            Case(self.x % 3 == 1, "one", Step("say one", lambda: self.say("one"))),
            Default("other", Step("say other", lambda: self.say("other"))),
        )
        # the condition picks the entry, not the stay: the step makes it false
        yield If(self.x >= 0, "stay",
            Step("negate", self.negate),
            Step("still here", lambda: self.say("stayed")),
        )

    def say(self, word: str) -> None:
        self.log.append(word)

    def negate(self) -> None:
        self.x = -1


@genflow.workflow("seed-threads")
@attrs.define
class Threads:
    n: int = 3
    started: int = 0
    log: list[str] = attrs.field(factory=list)
    reuse_id: bool = False

    def definition(self):
        yield For("spawn", self.started < self.n,
            Go("worker", self.worker, id="w" if self.reuse_id else f"w{self.started}"),
            Step("count", self.count),
        )

    def worker(self, thread_id: str):
        yield Wait("go?", On("go", lambda: self.log.append(f"{thread_id} got go")))
        yield Step("work", lambda: self.log.append(f"{thread_id} worked"))

    def count(self) -> None:
        self.started += 1


@genflow.workflow("seed-waitgroup")
@attrs.define
class Group:
    wg: WaitGroup = attrs.field(factory=WaitGroup)
    started: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("start", self.started < 3,
            self.wg.go("job", self.job, id=f"job{self.started}"),
            Step("count", self.count),
        )
        yield self.wg.wait("all done", lambda: self.log.append("joined"))
        yield Step("report", lambda: self.log.append(f"report {len(self.log)}"))

    def job(self, thread_id: str):
        yield Wait("finish?", On("finish", lambda: self.log.append(f"{thread_id} finished")))

    def count(self) -> None:
        self.started += 1


@genflow.workflow("seed-subflows")
@attrs.define
class SubFlows:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield from self.part("a")
        yield [Step("list 1", lambda: self.add("l1")), [Step("list 2", lambda: self.add("l2"))]]
        yield self.generator_object()
        yield self.generator_function  # called lazily by the replay
        yield If(True, "branch of gens", self.part("b"), [self.generator_function_2])
        yield Wait("w", On("e", lambda: self.add("e"), self.part("c")))

    def part(self, tag: str):
        yield Step(f"{tag} 1", lambda: self.add(f"{tag}1"))
        yield Step(f"{tag} 2", lambda: self.add(f"{tag}2"))

    def generator_object(self):
        yield Step("gen obj", lambda: self.add("obj"))

    def generator_function(self):
        yield Step("gen fn", lambda: self.add("fn"))
        yield from self.part("nested")

    def generator_function_2(self):
        yield Step("gen fn 2", lambda: self.add("fn2"))

    def add(self, tag: str) -> None:
        self.log.append(tag)


# -- scenarios -------------------------------------------------------------------------
# Each takes a fresh Instance and returns nothing; it asserts as it goes.


def empty(run: Instance) -> None:
    run.resume()
    assert run.state.status is WorkflowStatus.FINISHED
    assert run.state.threads == []
    assert run.kinds == [CheckpointType.AFTER_RESUME]


def single(run: Instance) -> None:
    run.resume()
    assert run.wf.done == 1
    assert run.state.status is WorkflowStatus.FINISHED
    assert run.kinds == [
        CheckpointType.AFTER_RESUME,
        CheckpointType.AFTER_STEP,
        CheckpointType.AFTER_RESUME,
    ]


def flaky(run: Instance) -> None:
    FAILS[run.state.id] = 2
    for _ in range(2):
        with pytest.raises(StepError) as err:
            run.resume()
        assert err.value.step == "flaky" and err.value.thread == MAIN_THREAD
        assert "service down" in str(err.value)
        assert isinstance(err.value.__cause__, RuntimeError)
        # rolled back: what the failing step changed is gone; earlier steps stay
        assert (run.wf.before, run.wf.attempts, run.wf.after) == (1, 0, 0)
        assert run.blob() == run.checkpointed
        thread = run.state.threads[0]
        assert (thread.stmt, thread.status) == ("flaky", ThreadStatus.EXECUTING)
    run.resume()
    assert (run.wf.before, run.wf.attempts, run.wf.after) == (1, 1, 1)
    assert run.state.status is WorkflowStatus.FINISHED


def setup_data(run: Instance) -> None:
    run.resume()
    assert run.state.status is WorkflowStatus.WAITING
    events = {e.event: e for e in run.state.threads[0].events}
    pc = run.state.threads[0].pc
    assert events["left"].req.setup_data == f"token-left-{pc}"
    assert events["right"].req.setup_data == f"token-right-{pc}"
    assert run.handle_callback("right", 7) == f"right:7:token-right-{pc}"
    run.resume()
    assert run.wf.winner == "right"
    assert run.state.status is WorkflowStatus.FINISHED
    assert sorted(effects(run), key=repr) == sorted([
        ("setup", "left"),
        ("setup", "right"),
        ("teardown", "left", False, f"token-left-{pc}"),
        ("teardown", "right", True, f"token-right-{pc}"),
    ], key=repr)


def loops(run: Instance) -> None:
    run.resume()
    assert run.wf.log == ["0.0", "1.0", "1.1", "2.0", "2.1", "2.2", "after"]
    assert run.state.status is WorkflowStatus.FINISHED


def jumps(run: Instance) -> None:
    run.resume()
    assert run.wf.log == ["2", "4", "loop done"]
    assert run.wf.i == 6
    assert run.state.status is WorkflowStatus.FINISHED


def branches(x: int, expected: list[str]) -> Callable[[Instance], None]:
    def scenario(run: Instance) -> None:
        run.wf.x = x
        run.resume()
        assert run.wf.log == expected
        assert run.state.status is WorkflowStatus.FINISHED

    scenario.__name__ = f"branches_{x}"
    return scenario


def threads(run: Instance) -> None:
    run.resume()
    ids = [t.id for t in run.state.threads]
    assert ids == ["w0", "w1", "w2"]  # main finished after starting them
    assert all(t.status is ThreadStatus.WAITING_EVENT for t in run.state.threads)
    assert all(t.stmt == "go?" for t in run.state.threads)
    run.send("go", thread="w1")
    assert run.wf.log == ["w1 got go", "w1 worked"]
    assert [t.id for t in run.state.threads] == ["w0", "w2"]
    run.send("go", thread="w2")
    run.send("go", thread="w0")
    assert run.wf.log[2:] == ["w2 got go", "w2 worked", "w0 got go", "w0 worked"]
    assert run.state.status is WorkflowStatus.FINISHED


def duplicate_thread(run: Instance) -> None:
    run.wf.reuse_id = True
    with pytest.raises(DuplicateThreadError, match="'w'"):
        run.resume()
    # the first thread started; the second Go was refused with nothing changed
    assert run.blob() == run.checkpointed
    assert [t.id for t in run.state.threads] == [MAIN_THREAD, "w"]
    assert run.wf.started == 1
    with pytest.raises(DuplicateThreadError):  # and again: it is deterministic
        run.resume()
    assert run.blob() == run.checkpointed


def waitgroup(run: Instance) -> None:
    run.resume()
    main = run.state.thread(MAIN_THREAD)
    assert main is not None and main.status is ThreadStatus.WAITING_CONDITION
    assert main.stmt == "all done"
    assert run.wf.wg.pending == ["job0", "job1", "job2"]
    for job in ("job2", "job0"):
        run.send("finish", thread=job)
        assert job not in run.wf.wg.pending
        assert run.state.thread(MAIN_THREAD).status is ThreadStatus.WAITING_CONDITION
    assert "joined" not in run.wf.log
    run.send("finish", thread="job1")
    assert run.wf.log == [
        "job2 finished", "job0 finished", "job1 finished", "joined", "report 4",
    ]
    assert run.wf.wg.pending == []
    assert run.state.status is WorkflowStatus.FINISHED


def subflows(run: Instance) -> None:
    run.resume()
    assert run.wf.log == [
        "a1", "a2", "l1", "l2", "obj", "fn", "nested1", "nested2", "b1", "b2", "fn2",
    ]
    assert run.state.threads[0].stmt == "w"
    run.send("e")
    assert run.wf.log[-2:] == ["c1", "c2"]
    assert run.state.status is WorkflowStatus.FINISHED


SCENARIOS: list[tuple[type, Callable[[Instance], None]]] = [
    (Empty, empty),
    (Single, single),
    (FlakyStep, flaky),
    (SetupData, setup_data),
    (Loops, loops),
    (Jumps, jumps),
    (Branches, branches(11, ["big", "other", "stayed"])),
    (Branches, branches(9, ["medium", "fizz", "stayed"])),
    (Branches, branches(7, ["medium", "one", "stayed"])),
    (Branches, branches(2, ["small", "other", "stayed"])),
    (Branches, branches(0, ["small", "fizz", "stayed"])),
    (Threads, threads),
    (Threads, duplicate_thread),
    (Group, waitgroup),
    (SubFlows, subflows),
]
IDS = [scenario.__name__ for _, scenario in SCENARIOS]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("cls", "scenario"), SCENARIOS, ids=IDS)
def test_scenario(cls: type, scenario: Callable[[Instance], None], mode: str) -> None:
    run = Instance(cls(), mode=mode, instance_id=f"{scenario.__name__}-{mode}")
    scenario(run)


@pytest.mark.parametrize(("cls", "scenario"), SCENARIOS, ids=IDS)
def test_modes_end_identically(cls: type, scenario: Callable[[Instance], None]) -> None:
    ends = {}
    for mode in MODES:
        run = Instance(cls(), mode=mode, instance_id=f"same-{scenario.__name__}")
        EFFECTS.pop(run.state.id, None)
        scenario(run)
        ends[mode] = (dumps(run.wf, run.state), list(EFFECTS.get(run.state.id, [])))
    assert ends["reload"] == ends["plain"]
    assert ends["crash"] == ends["plain"]
