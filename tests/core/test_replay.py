"""The trampoline: deep definitions, path hints and the name search, non-determinism."""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import attrs
import pytest

import genflow
from genflow import (
    MAIN_THREAD,
    Break,
    Continue,
    For,
    Go,
    If,
    NonDeterminismError,
    On,
    Step,
    StepError,
    ThreadStatus,
    Wait,
    WaitFor,
    WorkflowStatus,
    handle_callback,
    resume,
    validate,
    walk,
)
from genflow.codec import dumps
from genflow.replay import Definition, path_of, search
from genflow.testing import MODES, Instance
from genflow.testing.instance import request

DEPTH = 500


# -- deep definitions --------------------------------------------------------------------


def nested_ifs(inner: Any, depth: int = DEPTH) -> Any:
    for level in range(depth):
        inner = If(True, f"if {level}", inner)
    return inner


def nested_loops(inner: Any, depth: int = DEPTH) -> Any:
    for level in range(depth):
        inner = For(f"for {level}", True, inner, Break())
    return inner


@genflow.workflow("replay-deep")
@attrs.define
class Deep:
    shape: str = "ifs"
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        body = [
            Step("before", lambda: self.log.append("before")),
            Wait("deep wait", On("poke", lambda: self.log.append("poked"))),
            Step("after", lambda: self.log.append("after")),
        ]
        if self.shape == "ifs":
            yield nested_ifs(body)
        elif self.shape == "loops":
            yield nested_loops(body)
        else:  # generator functions, each yielding the next level
            yield self.level(0, body)

    def level(self, k: int, body: Any):
        if k == DEPTH:
            yield body
        else:
            yield If(True, f"gen {k}", lambda: self.level(k + 1, body))


@contextlib.contextmanager
def shallow_stack(room: int = 150) -> Iterator[None]:
    """Allow only `room` more Python frames: a replay that recursed per level would fail."""
    depth = len(inspect.stack(0))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + room)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


@pytest.mark.parametrize("shape", ["ifs", "loops", "generators"])
@pytest.mark.parametrize("mode", MODES)
def test_deep_definition_resumes_without_recursion(shape: str, mode: str) -> None:
    run = Instance(Deep(shape=shape), mode=mode)
    run.resume()  # warm up: cattrs builds its converters for these classes
    run = Instance(Deep(shape=shape), mode=mode, instance_id="i-2")
    with shallow_stack():
        run.resume()
    thread = run.state.threads[0]
    assert thread.stmt == "deep wait"
    assert len(thread.path) == 2 * DEPTH + 1  # an index per level, a branch between
    with shallow_stack():
        run.send("poke")
    assert run.wf.log == ["before", "poked", "after"]
    assert run.state.status is WorkflowStatus.FINISHED


def test_deep_definition_found_by_name_when_the_hint_is_useless() -> None:
    run = Instance(Deep())
    run.resume()
    run.state.threads[0].path = [7, 0, 3]  # points nowhere
    run.send("poke")
    assert run.wf.log == ["before", "poked", "after"]


def test_deep_definition_validates_and_walks() -> None:
    validate(Deep())
    names: list[str | None] = []
    assert walk(Deep(shape="loops"), lambda stmt: bool(names.append(stmt.name))) is False
    # every loop and its Break, then before, the wait, its event and after
    assert len(names) == 2 * DEPTH + 4
    assert names.count(None) == DEPTH
    assert names[:DEPTH] == [f"for {level}" for level in reversed(range(DEPTH))]
    assert names[DEPTH : DEPTH + 4] == ["before", "deep wait", "poke", "after"]


# -- editing a definition under an in-flight instance ------------------------------------


@genflow.workflow("replay-edit")
@attrs.define
class Edit:
    """Its definition is whatever `program` says: tests swap it to 'deploy new code'."""

    log: list[str] = attrs.field(factory=list)
    flag: bool = True
    program: ClassVar[Callable[[Edit], Any]] = staticmethod(lambda wf: [])

    def definition(self):
        yield type(self).program(self)

    def s(self, name: str) -> Step:
        return Step(name, lambda: self.log.append(name))

    def w(self, name: str, *events: str, body: Any = ()) -> Wait:
        return Wait(name, *(On(e, lambda e=e: self.log.append(f"<{e}>"), body) for e in events))


@pytest.fixture
def deploy(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[Edit], Any]], None]:
    def set_program(program: Callable[[Edit], Any]) -> None:
        monkeypatch.setattr(Edit, "program", staticmethod(program))

    return set_program


V1 = lambda wf: [  # noqa: E731
    wf.s("a"),
    If(wf.flag, "branch", wf.s("b"), wf.w("wait", "go"), wf.s("c")),
    wf.s("d"),
]

EDITS = {
    "insert before": lambda wf: [
        wf.s("new 1"),
        wf.s("a"),
        wf.s("new 2"),
        If(wf.flag, "branch", wf.s("new 3"), wf.s("b"), wf.w("wait", "go"), wf.s("c")),
        wf.s("d"),
    ],
    "remove before": lambda wf: [
        If(wf.flag, "branch", wf.w("wait", "go"), wf.s("c")),
        wf.s("d"),
    ],
    "reorder before": lambda wf: [
        If(wf.flag, "branch", wf.s("b"), wf.s("a"), wf.w("wait", "go"), wf.s("c")),
        wf.s("d"),
    ],
    "moved into a loop": lambda wf: [
        wf.s("a"),
        For("loop", wf.flag, wf.s("b"), wf.w("wait", "go"), Break()),
        wf.s("c"),
        wf.s("d"),
    ],
    "branch renamed and condition false": lambda wf: [
        wf.s("a"),
        If(not wf.flag, "other", wf.s("x")).Else("renamed", wf.s("b"), wf.w("wait", "go")),
        wf.s("c"),
        wf.s("d"),
    ],
}


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("mode", MODES)
def test_edit_before_the_saved_statement_resumes_at_it(deploy, edit: str, mode: str) -> None:
    deploy(V1)
    run = Instance(Edit(), mode=mode)
    run.resume()
    assert run.wf.log == ["a", "b"]
    assert run.state.threads[0].stmt == "wait"
    deploy(EDITS[edit])
    run.send("go")
    # nothing before the wait ran again, and everything after it ran once
    assert run.wf.log == ["a", "b", "<go>", "c", "d"]
    assert run.state.status is WorkflowStatus.FINISHED


@pytest.mark.parametrize("mode", MODES)
def test_edit_before_an_executing_step_runs_that_step(deploy, mode: str) -> None:
    failing = {"on": True}

    def risky(wf: Edit) -> None:
        if failing["on"]:
            raise RuntimeError("boom")
        wf.log.append("risky")

    deploy(lambda wf: [wf.s("a"), Step("risky", lambda: risky(wf)), wf.s("z")])
    run = Instance(Edit(), mode=mode)
    with pytest.raises(StepError):
        run.resume()
    assert run.state.threads[0].status is ThreadStatus.EXECUTING
    deploy(lambda wf: [wf.s("new"), If(True, "wrap", Step("risky", lambda: risky(wf))), wf.s("z")])
    failing["on"] = False
    run.resume()
    assert run.wf.log == ["a", "risky", "z"]


def _real_path(wf: Any, name: str) -> list[int]:
    found = search(Definition(wf.definition), name)
    assert found is not None
    return path_of(found[0])


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_statement_found_by_name_gets_its_new_path_hint(deploy, edit: str) -> None:
    deploy(V1)
    run = Instance(Edit())
    run.resume()
    deploy(EDITS[edit])
    stale = list(run.state.threads[0].path)
    run.handle_callback("go")  # found by name: the hint it leaves is the wait's real path
    assert run.state.threads[0].path == _real_path(run.wf, "wait")
    if edit == "insert before":
        assert stale == [1, 0, 1] and run.state.threads[0].path == [3, 0, 2]


def test_a_step_found_by_name_gets_its_new_path_hint(deploy) -> None:
    failing = {"on": True}

    def risky(wf: Edit) -> None:
        if failing["on"]:
            raise RuntimeError("boom")

    deploy(lambda wf: [wf.s("a"), Step("risky", lambda: risky(wf))])
    run = Instance(Edit())
    with pytest.raises(StepError):
        run.resume()
    deploy(lambda wf: [wf.s("new"), If(True, "wrap", Step("risky", lambda: risky(wf)))])
    failing["on"] = False
    paths = []
    resume(run.wf, run.state,
           lambda kind: paths.append((kind, [list(t.path) for t in run.state.threads])))
    assert paths[0] == (genflow.CheckpointType.AFTER_STEP, [_real_path(run.wf, "risky")])
    assert paths[0][1] == [[1, 0, 0]]


@pytest.mark.parametrize("mode", MODES)
def test_edit_before_a_go_keeps_its_thread(deploy, mode: str) -> None:
    def v1(wf: Edit) -> Any:
        return [Go("child", [wf.s("c1"), wf.w("child wait", "go"), wf.s("c2")]), wf.s("main")]

    def v2(wf: Edit) -> Any:
        return [
            wf.s("new"),
            If(True, "wrapped", Go("child", [wf.w("child wait", "go"), wf.s("c2")])),
            wf.s("main"),
        ]

    deploy(v1)
    run = Instance(Edit(), mode=mode)
    run.resume()
    assert [t.id for t in run.state.threads] == ["child"]
    deploy(v2)
    run.send("go", thread="child")
    assert run.wf.log == ["main", "c1", "<go>", "c2"]


# -- non-determinism ----------------------------------------------------------------------


def _refused(run: Instance, op: Callable[[], Any], statement: str, thread: str = MAIN_THREAD):
    before = run.blob()
    with pytest.raises(NonDeterminismError) as err:
        op()
    assert run.blob() == before
    assert (err.value.workflow, err.value.thread, err.value.statement) == (
        "replay-edit", thread, statement,
    )
    for word in ("replay-edit", thread, statement):
        assert repr(word) in str(err.value)
    return err.value


def test_vanished_wait_is_refused_on_callback_and_resume(deploy) -> None:
    deploy(V1)
    run = Instance(Edit())
    run.resume()
    deploy(lambda wf: [wf.s("a"), wf.s("b"), wf.s("c"), wf.s("d")])
    req = request(run.state, "go")
    _refused(run, lambda: handle_callback(req, run.wf, run.state), "wait")
    # a thread whose setup is still pending needs the Wait too
    run.state.threads[0].events[0].status = genflow.WaitEventStatus.PENDING_SETUP
    _refused(run, lambda: resume(run.wf, run.state), "wait")


def test_vanished_statement_after_the_event_is_refused_on_resume(deploy) -> None:
    deploy(V1)
    run = Instance(Edit())
    run.resume()
    run.handle_callback("go")
    deploy(lambda wf: [wf.s("a"), wf.s("c"), wf.s("d")])
    _refused(run, lambda: resume(run.wf, run.state), "wait")


def test_vanished_executing_step_is_refused(deploy) -> None:
    deploy(lambda wf: [wf.s("a"), Step("b", lambda: 1 / 0)])
    run = Instance(Edit())
    with pytest.raises(StepError):
        run.resume()
    deploy(lambda wf: [wf.s("a"), wf.s("c")])
    _refused(run, lambda: resume(run.wf, run.state), "b")


def test_vanished_go_is_refused_naming_it(deploy) -> None:
    deploy(lambda wf: [Go("child", wf.w("child wait", "go"))])
    run = Instance(Edit())
    run.resume()
    deploy(lambda wf: [wf.w("child wait", "go")])  # same wait, but no longer in a thread
    req = request(run.state, "go", "child")
    err = _refused(run, lambda: handle_callback(req, run.wf, run.state), "child", "child")
    assert "Go" in str(err)


def test_wait_that_became_a_step_is_refused(deploy) -> None:
    deploy(V1)
    run = Instance(Edit())
    run.resume()
    deploy(lambda wf: [wf.s("a"), wf.s("b"), wf.s("wait"), wf.s("c")])
    req = request(run.state, "go")
    err = _refused(run, lambda: handle_callback(req, run.wf, run.state), "wait")
    assert "Step" in str(err) and "Wait" in str(err)


def test_step_that_became_a_wait_is_refused(deploy) -> None:
    deploy(lambda wf: [Step("b", lambda: 1 / 0)])
    run = Instance(Edit())
    with pytest.raises(StepError):
        run.resume()
    deploy(lambda wf: [wf.w("b", "go")])
    _refused(run, lambda: resume(run.wf, run.state), "b")


def test_event_removed_from_a_wait_is_refused(deploy) -> None:
    deploy(lambda wf: [wf.w("wait", "go", "stop")])
    run = Instance(Edit())
    run.resume()
    deploy(lambda wf: [wf.w("wait", "stop")])
    req = request(run.state, "go")
    err = _refused(run, lambda: handle_callback(req, run.wf, run.state), "wait")
    assert "'go'" in str(err)


def test_waitfor_that_became_a_step_is_refused(deploy) -> None:
    deploy(lambda wf: [WaitFor("until", not wf.flag)])
    run = Instance(Edit())
    run.resume()
    assert run.state.threads[0].status is ThreadStatus.WAITING_CONDITION
    deploy(lambda wf: [wf.s("until")])
    _refused(run, lambda: resume(run.wf, run.state), "until")


# -- generators consumed once, repeated by a loop -----------------------------------------


@genflow.workflow("replay-one-shot")
@attrs.define
class OneShot:
    i: int = 0
    j: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("outer", self.i < 2,
            Step("reset", self.reset),
            For("inner", self.j < 3,
                If(True, "wrap", self.body()),                 # a generator *object*
                If(self.j == 2, "skip", Continue()),
                Wait("w", On("e", lambda: None, self.body_after())),
            ),
            Step("next", self.next),
        )

    def body(self):
        yield Step("count", self.count)

    def body_after(self):
        yield Step("after", lambda: self.log.append(f"after {self.i}.{self.j}"))

    def reset(self) -> None:
        self.j = 0

    def count(self) -> None:
        self.j += 1
        self.log.append(f"{self.i}.{self.j}")

    def next(self) -> None:
        self.i += 1


@pytest.mark.parametrize("mode", MODES)
def test_generator_object_inside_a_loop_body_runs_every_iteration(mode: str) -> None:
    run = Instance(OneShot(), mode=mode)
    run.resume()
    while run.state.threads:
        run.send("e")
    assert run.wf.log == [
        "0.1", "after 0.1", "0.2", "0.3", "after 0.3",
        "1.1", "after 1.1", "1.2", "1.3", "after 1.3",
    ]


def test_reloaded_and_never_stopped_one_shot_runs_agree() -> None:
    ends = []
    for mode in MODES:
        run = Instance(OneShot(), mode=mode)
        run.resume()
        while run.state.threads:
            run.send("e")
        ends.append(dumps(run.wf, run.state))
    assert ends[0] == ends[1] == ends[2]
