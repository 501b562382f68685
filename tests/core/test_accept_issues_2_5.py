"""Acceptance of issues 2 and 5, as a user checks them from DESIGN.md's core API
contract and its "Semantics to get right": each statement under its contract
name and signature, each rule (Break/Continue/Return at once, an empty loop
iteration an error, select with the losers torn down, setup/teardown statuses
retried, stale callbacks, duplicate thread ids, WaitFor handlers, the move
guard, a vanished statement, atomic operations) through the public API only."""

from __future__ import annotations

import datetime as dt
import enum
import json

import attrs
import pytest

import genflow
import genflow.codec
import genflow.errors
from genflow import (
    MAIN_THREAD,
    Break,
    CallbackRequest,
    Case,
    CheckpointType,
    Continue,
    Default,
    DuplicateThreadError,
    EmptyLoopError,
    EventHandler,
    For,
    GenflowError,
    Go,
    If,
    NonDeterminismError,
    On,
    Return,
    S,
    Section,
    StaleCallbackError,
    State,
    Step,
    Switch,
    Thread,
    ThreadStatus,
    Timeout,
    Wait,
    WaitEvent,
    WaitEventStatus,
    WaitFor,
    WaitGroup,
    WorkflowStatus,
    dumps,
    handle_callback,
    loads,
    new_state,
    resume,
    validate,
    walk,
)

LOG: list[str] = []


def snap(wf, state) -> bytes:
    return dumps(wf, state)


def request(state: State, event: str, thread: str = MAIN_THREAD) -> CallbackRequest:
    for t in state.threads:
        if t.id == thread:
            for e in t.events:
                if e.event == event:
                    return e.req
    raise AssertionError(f"no {event} waiting on {thread}")


def test_the_contract_names_are_importable_from_genflow() -> None:
    for name in ["Step", "If", "Switch", "Case", "Default", "For", "Break", "Continue",
                 "Return", "Wait", "On", "WaitFor", "Go", "WaitGroup", "Timeout", "State",
                 "Thread", "WaitEvent", "CallbackRequest", "WorkflowStatus", "ThreadStatus",
                 "WaitEventStatus", "CheckpointType", "MAIN_THREAD", "workflow", "new_state",
                 "resume", "handle_callback", "validate", "walk", "dumps", "loads",
                 "GenflowError", "Section", "S"]:
        assert hasattr(genflow, name), name
    assert isinstance(Thread, type) and isinstance(WaitEvent, type)


@pytest.mark.parametrize("bad", ["", None, 5, "a\x00b"])
def test_new_state_refuses_an_id_no_blob_could_load_again(bad) -> None:
    with pytest.raises(genflow.InvalidIdError):
        new_state(bad, FlowControl())


# -- Break / Continue / Return act at once ------------------------------------------


@genflow.workflow("acc25-flow-control")
@attrs.define
class FlowControl:
    i: int = 0
    seen: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("loop", self.i < 5,
                  Step("count", self.count),
                  If(self.i == 2, "skip?", Continue(), Step("after-continue", self.never)),
                  If(self.i == 4, "stop?", Break(), Step("after-break", self.never)),
                  Step("tail", self.tail))
        yield Step("before-return", self.note)
        yield Return()
        yield Step("after-return", self.never)

    def count(self) -> None:
        self.i += 1

    def tail(self) -> None:
        self.seen.append(f"tail{self.i}")

    def note(self) -> None:
        self.seen.append("end")

    def never(self) -> None:
        self.seen.append("NEVER")


def test_break_continue_and_return_act_at_once() -> None:
    wf = FlowControl()
    state = new_state("fc-1", wf)
    resume(wf, state)
    assert state.status is WorkflowStatus.FINISHED
    assert wf.seen == ["tail1", "tail3", "end"]
    assert wf.i == 4


@genflow.workflow("acc25-return-in-thread")
@attrs.define
class ReturnInThread:
    seen: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("t", [Step("a", lambda: self.seen.append("a")), Return(),
                       Step("b", lambda: self.seen.append("b"))])
        yield Step("main", lambda: self.seen.append("main"))


def test_return_in_a_thread_ends_that_thread_only() -> None:
    wf = ReturnInThread()
    state = new_state("rt-1", wf)
    resume(wf, state)
    assert state.status is WorkflowStatus.FINISHED
    assert sorted(wf.seen) == ["a", "main"]


# -- an empty loop iteration is an error --------------------------------------------


@genflow.workflow("acc25-empty-loop")
@attrs.define
class EmptyLoop:
    n: int = 0

    def definition(self):
        yield Step("first", self.first)
        yield For("spin", True, If(self.n > 100, "never?", Step("x", self.first)))

    def first(self) -> None:
        self.n += 1


def test_a_loop_iteration_that_neither_steps_nor_waits_is_an_error_and_changes_nothing() -> None:
    wf = EmptyLoop()
    state = new_state("el-1", wf)
    with pytest.raises(EmptyLoopError, match="spin"):
        resume(wf, state)
    assert isinstance(EmptyLoopError("x"), GenflowError)


@genflow.workflow("acc25-empty-loop-continue")
@attrs.define
class EmptyContinueLoop:
    def definition(self):
        yield For("spin", True, Continue())


def test_a_loop_of_only_continue_is_an_empty_loop_error_not_a_hang() -> None:
    wf = EmptyContinueLoop()
    state = new_state("el-2", wf)
    before = snap(wf, state)
    with pytest.raises(EmptyLoopError, match="spin"):
        resume(wf, state)
    assert snap(wf, state) == before


# -- select: exactly one wins, the others torn down ----------------------------------


class Tracked(EventHandler):
    def __init__(self, name: str) -> None:
        self.name = name

    def setup(self, req: CallbackRequest):
        LOG.append(f"setup {self.name}")
        return {"hook": self.name}

    def handle(self, req: CallbackRequest, payload: int) -> int:
        LOG.append(f"handle {self.name} {payload} {req.setup_data}")
        return payload * 2

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        LOG.append(f"teardown {self.name} {handled}")


@genflow.workflow("acc25-select")
@attrs.define
class Select:
    got: str = ""

    def definition(self):
        yield Wait("choose",
                   On("left", Tracked("left"), Step("l", lambda: self.set("l"))),
                   On("right", Tracked("right"), Step("r", lambda: self.set("r"))),
                   On("up", Tracked("up")))
        yield Step("after", lambda: self.set(self.got + "+after"))

    def set(self, v: str) -> None:
        self.got = v


def test_waiting_on_several_events_is_a_select_and_the_losers_are_torn_down() -> None:
    LOG.clear()
    wf = Select()
    state = new_state("sel-1", wf)
    kinds: list[CheckpointType] = []
    resume(wf, state, kinds.append)
    assert state.status is WorkflowStatus.WAITING
    assert sorted(LOG) == ["setup left", "setup right", "setup up"]
    assert CheckpointType.AFTER_SETUP in kinds
    thread = state.threads[0]
    assert thread.status is ThreadStatus.WAITING_EVENT and thread.stmt == "choose"
    assert all(e.status is WaitEventStatus.SETUP for e in thread.events)
    wf, state = loads(dumps(wf, state))
    LOG.clear()
    req = request(state, "right")
    assert req.setup_data == {"hook": "right"}
    assert handle_callback(req, wf, state, 21) == 42
    resume(wf, state, kinds.append)
    assert LOG[0] == "handle right 21 {'hook': 'right'}"
    assert sorted(LOG[1:]) == ["teardown left False", "teardown right True", "teardown up False"]
    assert wf.got == "r+after" and state.status is WorkflowStatus.FINISHED
    assert CheckpointType.AFTER_TEARDOWN in kinds


def test_a_loser_cannot_be_delivered_after_the_winner() -> None:
    LOG.clear()
    wf = Select()
    state = new_state("sel-2", wf)
    resume(wf, state)
    left = request(state, "left")
    handle_callback(request(state, "right"), wf, state, 1)
    before = snap(wf, state)
    with pytest.raises(genflow.EventError):
        handle_callback(left, wf, state, 1)
    assert snap(wf, state) == before


@attrs.define
class Item:
    sku: str
    qty: int


class OwnHandler:  # setup/handle/teardown on a class of the user's own, no EventHandler
    input_type = Item

    def setup(self, req: CallbackRequest) -> str:
        LOG.append("own setup")
        return "own-token"

    def handle(self, req: CallbackRequest, payload: Item) -> str:
        LOG.append(f"own handle {payload.sku} {req.setup_data}")
        return payload.sku

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        LOG.append(f"own teardown {handled}")


@genflow.workflow("acc25-own-handler")
@attrs.define
class OwnHandlerFlow:
    def definition(self):
        yield Wait("w", On("item", OwnHandler()), On("other", OwnHandler()))


def test_a_handler_object_of_ones_own_class_takes_its_declared_payload() -> None:
    LOG.clear()
    wf = OwnHandlerFlow()
    state = new_state("own-1", wf)
    resume(wf, state)
    before = snap(wf, state)
    with pytest.raises(genflow.PayloadError, match="qty"):
        handle_callback(request(state, "item"), wf, state, {"sku": "a"})
    assert snap(wf, state) == before
    assert handle_callback(request(state, "item"), wf, state, {"sku": "a", "qty": 1}) == "a"
    resume(wf, state)
    assert state.status is WorkflowStatus.FINISHED
    assert LOG[:3] == ["own setup", "own setup", "own handle a own-token"]
    assert sorted(LOG[3:]) == ["own teardown False", "own teardown True"]


# -- setup/teardown statuses and retry ----------------------------------------------


FAIL = {"setup": 0, "teardown": 0}


class Flaky(EventHandler):
    def setup(self, req: CallbackRequest):
        if FAIL["setup"]:
            FAIL["setup"] -= 1
            raise RuntimeError("webhook service down")
        return "token-1"

    def handle(self, req: CallbackRequest, payload: None) -> str:
        return req.setup_data

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        if FAIL["teardown"]:
            FAIL["teardown"] -= 1
            raise RuntimeError("unhook failed")


@genflow.workflow("acc25-flaky-handler")
@attrs.define
class FlakyHandler:
    done: bool = False

    def definition(self):
        yield Wait("hook", On("ping", Flaky()))
        yield Step("done", self.finish)

    def finish(self) -> None:
        self.done = True


def test_a_failed_setup_is_recorded_and_retried_on_the_next_resume() -> None:
    FAIL.update(setup=1, teardown=1)
    wf = FlakyHandler()
    state = new_state("fh-1", wf)
    with pytest.raises(genflow.HandlerError, match="setup of event 'ping'"):
        resume(wf, state)
    ev = state.threads[0].events[0]
    assert ev.status is WaitEventStatus.SETUP_ERROR
    assert "webhook service down" in ev.error
    wf, state = loads(dumps(wf, state))
    resume(wf, state)
    ev = state.threads[0].events[0]
    assert ev.status is WaitEventStatus.SETUP and ev.req.setup_data == "token-1"
    assert handle_callback(ev.req, wf, state) == "token-1"
    with pytest.raises(genflow.HandlerError, match="teardown of event 'ping'"):
        resume(wf, state)
    assert not wf.done
    ev = state.threads[0].events[0]
    assert ev.status is WaitEventStatus.TEARDOWN_ERROR and "unhook failed" in ev.error
    resume(wf, state)
    assert wf.done and state.status is WorkflowStatus.FINISHED


class NoPayload(EventHandler):
    def handle(self, req: CallbackRequest, payload: None) -> str:
        return "handled"


@genflow.workflow("acc25-none-payload")
@attrs.define
class NonePayload:
    got: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Wait("w", On("obj", NoPayload()), On("fn", self.on_fn))

    def on_fn(self, payload: None) -> None:
        self.got.append("fn")


@pytest.mark.parametrize("event", ["obj", "fn"])
def test_a_payload_annotated_none_takes_no_payload(event: str) -> None:
    from genflow.render import to_dict

    drawn = json.dumps(to_dict(NonePayload()))
    assert "NoneType" not in drawn and '"input": null' in drawn
    wf = NonePayload()
    state = new_state("np-1", wf)
    resume(wf, state)
    before = snap(wf, state)
    with pytest.raises(genflow.PayloadError, match="takes no payload"):
        handle_callback(request(state, event), wf, state, {"x": 1})
    assert snap(wf, state) == before
    handle_callback(request(state, event), wf, state)
    resume(wf, state)
    assert state.status is WorkflowStatus.FINISHED


# -- stale callbacks are refused by counter ------------------------------------------


@genflow.workflow("acc25-stale")
@attrs.define
class Twice:
    n: int = 0

    def definition(self):
        yield For("loop", self.n < 3, Wait("tick", On("tick", self.tick)))

    def tick(self) -> None:
        self.n += 1


def test_a_callback_for_an_earlier_wait_is_refused_by_its_counter() -> None:
    wf = Twice()
    state = new_state("st-1", wf)
    resume(wf, state)
    first = request(state, "tick")
    handle_callback(first, wf, state)
    resume(wf, state)
    second = request(state, "tick")
    assert second.pc != first.pc
    before = snap(wf, state)
    with pytest.raises(StaleCallbackError):
        handle_callback(first, wf, state)
    assert snap(wf, state) == before and wf.n == 1
    handle_callback(second, wf, state)
    assert wf.n == 2


# -- duplicate thread ids ------------------------------------------------------------


@genflow.workflow("acc25-dup-threads")
@attrs.define
class DupThreads:
    items: list[int] = attrs.field(factory=lambda: [1, 2, 1])
    i: int = 0
    made: list[int] = attrs.field(factory=list)

    def definition(self):
        yield For("each", self.i < len(self.items),
                  Go("worker", Wait("w", On("go")), id=f"w{self.items[self.i]}"
                     if self.i < len(self.items) else None),
                  Step("next", self.next))

    def next(self) -> None:
        self.i += 1


def test_threads_with_a_duplicate_id_are_refused() -> None:
    wf = DupThreads()
    state = new_state("dt-1", wf)
    with pytest.raises(DuplicateThreadError, match="w1"):
        resume(wf, state)


def test_threads_with_distinct_ids_run_and_are_told_apart() -> None:
    wf = DupThreads(items=[1, 2, 3])
    state = new_state("dt-2", wf)
    resume(wf, state)
    ids = {t.id for t in state.threads}
    assert {"w1", "w2", "w3"} <= ids
    handle_callback(request(state, "go", "w2"), wf, state)
    resume(wf, state)
    assert "w2" not in {t.id for t in state.threads}


@genflow.workflow("acc25-go-loop")
@attrs.define
class GoLoop:
    items: list[str] = attrs.field(factory=lambda: ["x", "y"])
    i: int = 0
    done: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("each", self.i < len(self.items),
                  Go("worker", self.worker, id=f"w-{self.i}"), Step("next", self.next))

    def worker(self, thread_id: str):
        yield Wait("ready", On("ready", lambda: self.done.append(thread_id)))

    def next(self) -> None:
        self.i += 1


def test_a_thread_body_may_be_a_generator_function_of_its_thread_id() -> None:
    wf = GoLoop()
    state = new_state("gl-1", wf)
    resume(wf, state)
    wf, state = loads(dumps(wf, state))
    handle_callback(request(state, "ready", "w-1"), wf, state)
    resume(wf, state)
    assert wf.done == ["w-1"] and [t.id for t in state.threads] == ["w-0"]


@genflow.workflow("acc25-spawner")
@attrs.define
class Spawner:
    def definition(self):
        yield For("spawn", True, Go("t", Wait("tw", On("x")), id="t"))


@genflow.workflow("acc25-passing-waitfor")
@attrs.define
class PassingWaitFor:
    def definition(self):
        yield For("spin", True, WaitFor("always", True))


@pytest.mark.parametrize("cls", [Spawner, PassingWaitFor])
def test_iterations_that_only_start_threads_or_pass_a_waitfor_are_empty(cls) -> None:
    wf = cls()
    state = new_state("sp-1", wf)
    before = snap(wf, state)
    with pytest.raises(EmptyLoopError):
        resume(wf, state)
    assert snap(wf, state) == before


# -- WaitFor runs its handler when the condition holds, and WaitGroup ---------------


@genflow.workflow("acc25-waitfor")
@attrs.define
class WaitForFlow:
    wg: WaitGroup = attrs.field(factory=WaitGroup)
    paid: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        for name in ["a", "b"]:
            yield self.wg.go(f"job-{name}", self.job(name), id=f"job-{name}")
        yield Wait("pay", On("paid", self.pay))
        yield WaitFor("paid?", self.paid, self.on_paid)
        yield self.wg.wait("all-done", self.all_done)
        yield Step("after", lambda: self.log.append("after"))

    def job(self, name: str):
        return [Wait(f"wait-{name}", On(f"finish-{name}")),
                Step(f"end-{name}", lambda: self.log.append(name))]

    def pay(self) -> None:
        self.paid = True

    def on_paid(self) -> None:
        self.log.append("paid-handler")

    def all_done(self) -> None:
        self.log.append("all-handler")


def test_waitfor_runs_its_handler_when_the_condition_holds_and_waitgroup_waits_for_all() -> None:
    wf = WaitForFlow()
    state = new_state("wfor-1", wf)
    kinds: list[CheckpointType] = []
    resume(wf, state, kinds.append)
    handle_callback(request(state, "paid"), wf, state)
    resume(wf, state, kinds.append)
    assert wf.log == ["paid-handler"]
    assert CheckpointType.AFTER_CONDITION in kinds
    main = next(t for t in state.threads if t.id == MAIN_THREAD)
    assert main.status is ThreadStatus.WAITING_CONDITION and main.stmt == "all-done"
    wf, state = loads(dumps(wf, state))
    handle_callback(request(state, "finish-b", "job-b"), wf, state)
    resume(wf, state)
    assert wf.log == ["paid-handler", "b"] and state.status is WorkflowStatus.WAITING
    handle_callback(request(state, "finish-a", "job-a"), wf, state)
    resume(wf, state)
    assert wf.log == ["paid-handler", "b", "a", "all-handler", "after"]
    assert state.status is WorkflowStatus.FINISHED


# -- branches, sections, bodies of every kind, yield from -------------------------


@genflow.workflow("acc25-branches")
@attrs.define
class Branches:
    n: int = 0
    path: list[str] = attrs.field(factory=list)

    def definition(self):
        yield (If(self.n > 10, "big?", Step("big", lambda: self.go("big")))
               .ElseIf(self.n > 5, "medium?", Step("medium", lambda: self.go("medium")))
               .Else("small?", Step("small", lambda: self.go("small"))))
        yield Switch(Case(self.n == 1, "one?", Step("one", lambda: self.go("one"))),
                     Case(self.n == 7, "seven?", [Step("seven", lambda: self.go("seven"))]),
                     Default("other?", Step("other", lambda: self.go("other"))))
        yield Section([Step("in-part", lambda: self.go("part"))])
        yield S(Step("s-step", lambda: self.go("s")), self.gen())
        yield from self.sub_flow()

    def gen(self):
        yield Step("in-gen", lambda: self.go("gen"))

    def sub_flow(self):
        yield Wait("sub-wait", On("more", self.more))
        yield Step("sub-step", lambda: self.go("sub"))

    def more(self, payload: int) -> None:
        self.n += payload

    def go(self, where: str) -> None:
        self.path.append(where)


@pytest.mark.parametrize(("n", "first"), [(1, ["small", "one"]), (7, ["medium", "seven"]),
                                          (20, ["big", "other"])])
def test_if_elseif_else_switch_sections_and_sub_flows(n: int, first: list[str]) -> None:
    wf = Branches(n=n)
    state = new_state(f"br-{n}", wf)
    resume(wf, state)
    assert wf.path == [*first, "part", "s", "gen"]
    wf, state = loads(dumps(wf, state))
    handle_callback(request(state, "more"), wf, state, 100)
    resume(wf, state)
    assert wf.path == [*first, "part", "s", "gen", "sub"] and wf.n == n + 100
    assert state.status is WorkflowStatus.FINISHED


@genflow.workflow("acc25-first-case")
@attrs.define
class FirstCase:
    n: int = 7
    path: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Switch(Case(self.n > 0, "positive?", Step("pos", lambda: self.path.append("pos"))),
                     Case(self.n > 5, "big?", Step("big", lambda: self.path.append("big"))),
                     Default("else?", Step("else", lambda: self.path.append("else"))))
        yield (If(self.n > 0, "a?", Step("a", lambda: self.path.append("a")))
               .ElseIf(self.n > 5, "b?", Step("b", lambda: self.path.append("b"))))
        yield If(self.n < 0, "never?", Step("c", lambda: self.path.append("c")))


def test_switch_and_if_take_the_first_case_that_holds_only() -> None:
    wf = FirstCase()
    resume(wf, new_state("fc-2", wf))
    assert wf.path == ["pos", "a"]


def nested(depth: int, leaf):
    if depth == 0:
        return leaf
    return If(True, f"level-{depth}", nested(depth - 1, leaf))


@genflow.workflow("acc25-deep")
@attrs.define
class Deep:
    done: bool = False

    def definition(self):
        yield nested(500, [Wait("deep-wait", On("go")), Step("deep-step", self.finish)])

    def finish(self) -> None:
        self.done = True


def test_a_definition_nested_500_levels_deep_resumes() -> None:
    wf = Deep()
    state = new_state("deep-1", wf)
    resume(wf, state)
    wf, state = loads(dumps(wf, state))
    handle_callback(request(state, "go"), wf, state)
    resume(wf, state)
    assert wf.done and state.status is WorkflowStatus.FINISHED


# -- validate and walk ---------------------------------------------------------------


def test_validate_refuses_duplicate_names_and_break_outside_a_loop() -> None:
    def twice():
        yield Step("same", print)
        yield Step("same", print)

    with pytest.raises(genflow.DefinitionError, match="same"):
        validate(twice)
    with pytest.raises(genflow.DefinitionError, match="Break"):
        validate([Step("a", print), Break()])
    validate(Branches())


def test_walk_visits_every_branch_and_stops_when_told() -> None:
    names: list[str] = []
    stopped = walk(Branches(n=1), lambda s: names.append(getattr(s, "name", "")) or False)
    assert not stopped
    assert {"big", "medium", "small", "one", "seven", "other", "in-part", "in-gen",
            "sub-wait", "sub-step"} <= set(names)
    assert walk(Branches(), lambda s: getattr(s, "name", "") == "big") is True


@attrs.define
class Needs:
    item: Item

    def definition(self):
        yield Step("s", print)


def test_validate_and_walk_take_a_workflow_class_with_its_defaults() -> None:
    validate(Branches)
    names: list[str] = []
    walk(Branches, lambda s: names.append(getattr(s, "name", "")) or False)
    assert "sub-wait" in names
    for call in (lambda: validate(Needs), lambda: walk(Needs, print)):
        with pytest.raises(genflow.DefinitionError, match=r"give an instance, e.g. Needs\(...\)"):
            call()


# -- the infinite-loop guard, step failures, atomic operations ------------------------


@genflow.workflow("acc25-forever")
@attrs.define
class Forever:
    n: int = 0

    def definition(self):
        yield For("forever", True, Step("tick", self.tick))

    def tick(self) -> None:
        self.n += 1


def test_an_endless_loop_of_steps_is_stopped_by_the_move_guard() -> None:
    wf = Forever()
    state = new_state("fv-1", wf)
    with pytest.raises(genflow.MoveLimitError):
        resume(wf, state, max_moves=50)
    assert 0 < wf.n <= 50
    ran = wf.n
    wf, state = loads(dumps(wf, state))
    with pytest.raises(genflow.MoveLimitError):
        resume(wf, state, max_moves=50)
    assert wf.n > ran


TRIES = {"n": 0}


@genflow.workflow("acc25-failing")
@attrs.define
class Failing:
    before: int = 0
    touched: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("first", self.first)
        yield Step("charge", self.charge)

    def first(self) -> None:
        self.before += 1

    def charge(self) -> None:
        TRIES["n"] += 1
        self.touched.append("half-written")
        if TRIES["n"] == 1:
            raise RuntimeError("card declined")


def test_a_failing_step_is_an_error_naming_it_and_runs_again_on_the_next_resume() -> None:
    TRIES["n"] = 0
    wf = Failing()
    state = new_state("fa-1", wf)
    with pytest.raises(genflow.StepError, match="charge") as err:
        resume(wf, state)
    assert "card declined" in str(err.value)
    assert wf.before == 1 and wf.touched == []  # what the failed attempt wrote is undone
    resume(wf, state)
    assert wf.before == 1 and wf.touched == ["half-written"] and TRIES["n"] == 2
    assert state.status is WorkflowStatus.FINISHED


class Exploding(EventHandler):
    def handle(self, req: CallbackRequest, payload: int) -> None:
        raise ValueError("bad amount")


@genflow.workflow("acc25-refusals")
@attrs.define
class Refusals:
    items: list[Item] = attrs.field(factory=list)

    def definition(self):
        yield Go("side", Wait("side-wait", On("side-go")), id="side")
        yield Wait("cart", On("add", self.add), On("boom", Exploding()))
        yield Step("after", print)

    def add(self, item: Item) -> None:
        self.items.append(item)


def test_each_bad_event_is_its_own_error_and_changes_nothing() -> None:
    wf = Refusals()
    state = new_state("rf-1", wf)
    resume(wf, state)
    add = request(state, "add")
    before = snap(wf, state)

    def refused(error: type[BaseException], req: CallbackRequest, payload, words: str) -> None:
        with pytest.raises(error, match=words):
            handle_callback(req, wf, state, payload)
        assert snap(wf, state) == before

    refused(genflow.UnknownEventError, attrs.evolve(add, event="nope"), None, "nope")
    refused(genflow.UnknownThreadError, attrs.evolve(add, thread_id="ghost"), None, "ghost")
    refused(genflow.EventError, attrs.evolve(add, event="side-go"), None, "side-go")
    refused(StaleCallbackError, attrs.evolve(add, pc=add.pc + 5), None, "")
    refused(genflow.PayloadError, add, {"sku": "a", "qty": "three"}, "qty")
    refused(genflow.PayloadError, add, {"sku": "a"}, "qty")
    refused(genflow.HandlerError, request(state, "boom"), 3, "bad amount")
    handle_callback(add, wf, state, {"sku": "a", "qty": 2})
    handle_callback(request(state, "side-go", "side"), wf, state)
    resume(wf, state)
    assert state.status is WorkflowStatus.FINISHED and wf.items == [Item("a", 2)]
    with pytest.raises(genflow.WorkflowFinishedError):
        handle_callback(add, wf, state, {"sku": "b", "qty": 1})


def test_data_of_another_workflow_than_the_state_is_refused_and_changes_nothing() -> None:
    wf = Refusals()
    state = new_state("rf-2", wf)
    resume(wf, state)
    other = HalfHandler()
    before = snap(wf, state)
    for call in (lambda: resume(other, state),
                 lambda: handle_callback(request(state, "add"), other, state, 1)):
        with pytest.raises(genflow.errors.ArgumentError,
                           match="'acc25-half-handler' workflow but the state belongs to "
                                 "'acc25-refusals'"):
            call()
        assert snap(wf, state) == before and other == HalfHandler()


# -- a saved statement that vanished ----------------------------------------------


@genflow.workflow("acc25-edited")
@attrs.define
class Edited:
    version: int = 1

    def definition(self):
        if self.version == 1:
            yield Step("a", print)
            yield Wait("old-wait", On("go"))
        else:
            yield Step("new-a", print)
            yield Step("b", print)
            yield Wait("other-wait", On("go"))


def test_a_saved_statement_that_vanished_is_a_non_determinism_error_naming_it() -> None:
    wf = Edited()
    state = new_state("ed-1", wf)
    resume(wf, state)
    wf.version = 2
    before = snap(wf, state)
    with pytest.raises(NonDeterminismError) as err:
        handle_callback(request(state, "go"), wf, state)
    words = str(err.value)
    assert "acc25-edited" in words and "old-wait" in words and MAIN_THREAD in words
    assert snap(wf, state) == before


@genflow.workflow("acc25-reordered")
@attrs.define
class Reordered:
    version: int = 1
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        steps = [Step("x", lambda: self.log.append("x")), Step("y", lambda: self.log.append("y"))]
        if self.version == 2:
            steps.reverse()
            steps.insert(0, Step("z", lambda: self.log.append("z")))
        yield steps
        yield Wait("hold", On("go"))
        yield Step("end", lambda: self.log.append("end"))


def test_edits_of_statements_not_in_flight_are_survived() -> None:
    wf = Reordered()
    state = new_state("ro-1", wf)
    resume(wf, state)
    wf, state = loads(dumps(wf, state))
    wf.version = 2
    handle_callback(request(state, "go"), wf, state)
    resume(wf, state)
    assert wf.log == ["x", "y", "end"]


# -- the codec ------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.define
class Line:
    item: Item
    colours: list[Colour] = attrs.field(factory=list)
    at: dt.datetime | None = None


@genflow.workflow("acc25-codec")
@attrs.define
class Rich:
    when: dt.datetime = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    colour: Colour = Colour.BLUE
    lines: list[Line] = attrs.field(factory=list)
    by_sku: dict[str, Line] = attrs.field(factory=dict)
    day: dt.date = dt.date(2026, 2, 28)

    def definition(self):
        yield Wait("w", On("go"))


def test_dumps_and_loads_round_trip_datetimes_enums_and_nested_classes_exactly() -> None:
    local = dt.timezone(dt.timedelta(hours=5, minutes=30))
    line = Line(Item("a", 1), [Colour.RED, Colour.BLUE], dt.datetime(2026, 5, 1, 9, tzinfo=local))
    wf = Rich(lines=[line, Line(Item("b", 2))], by_sku={"a": line})
    state = new_state("codec-1", wf)
    resume(wf, state)
    blob = dumps(wf, state)
    assert isinstance(blob, bytes)
    wf2, state2 = loads(blob)
    assert wf2 == wf and state2 == state
    assert wf2.lines[0].at.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert type(wf2.colour) is Colour and type(wf2.lines[0].item) is Item
    assert dumps(wf2, state2) == blob


@pytest.mark.parametrize("mangle", [
    lambda b: b[: len(b) // 2],
    lambda b: b"",
    lambda b: b"\x00" * 20,
    lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]),
    lambda b: b"not msgpack at all",
])
def test_a_corrupt_or_truncated_blob_is_a_corrupt_state_error(mangle) -> None:
    wf = Rich()
    state = new_state("codec-2", wf)
    blob = mangle(dumps(wf, state))
    with pytest.raises(genflow.CorruptStateError):
        loads(blob)


def test_an_oversized_blob_and_one_of_another_workflow_are_refused() -> None:
    wf = Rich()
    state = new_state("codec-3", wf)
    blob = dumps(wf, state)
    with pytest.raises(genflow.CorruptStateError, match="acc25-codec"):
        loads(blob, {"acc25-select": Select})
    with pytest.raises(GenflowError):
        loads(b"\x00" * (genflow.codec.MAX_BLOB_SIZE + 1))
    with pytest.raises(genflow.SerializationError):
        dumps(Select(), state)


def test_a_field_added_with_a_default_still_loads_old_blobs() -> None:
    @attrs.define
    class V1:
        a: int = 1

        def definition(self):
            yield Wait("w", On("go"))

    genflow.workflow("acc25-grown")(V1)
    wf = V1(a=7)
    state = new_state("grown-1", wf)
    resume(wf, state)
    blob = dumps(wf, state)

    @attrs.define
    class V2:
        a: int = 1
        note: str = "new"
        tags: list[str] = attrs.field(factory=list)

        def definition(self):
            yield Wait("w", On("go"))

    wf2, state2 = loads(blob, {"acc25-grown": V2})
    assert wf2 == V2(a=7) and state2 == state


# -- atomic: a handler that raises after writing leaves nothing ----------------------


@genflow.workflow("acc25-half-handler")
@attrs.define
class HalfHandler:
    items: list[str] = attrs.field(factory=list)
    total: int = 0

    def definition(self):
        yield Wait("w", On("add", self.add))

    def add(self, payload: int) -> None:
        self.items.append(str(payload))
        self.total += payload
        if payload < 0:
            raise ValueError("negative amount")


def test_a_handler_that_raises_half_way_leaves_data_and_state_as_before() -> None:
    wf = HalfHandler()
    state = new_state("half-1", wf)
    resume(wf, state)
    before = snap(wf, state)
    with pytest.raises(genflow.HandlerError, match="negative amount"):
        handle_callback(request(state, "add"), wf, state, -5)
    assert snap(wf, state) == before and wf.items == [] and wf.total == 0
    handle_callback(request(state, "add"), wf, state, 5)
    assert wf.items == ["5"] and wf.total == 5


# -- checkpoints and Timeout as an event --------------------------------------------


@genflow.workflow("acc25-timeout")
@attrs.define
class Timed:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("start", lambda: self.log.append("start"))
        yield Wait("answer", On("yes", lambda: self.log.append("yes")),
                   Timeout("too-late", 60, Step("late", lambda: self.log.append("late"))))


def test_resume_calls_checkpoint_after_steps_and_a_timeout_is_an_event_of_the_select() -> None:
    clock = genflow.FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    wf = Timed()
    state = new_state("to-1", wf)
    kinds: list[CheckpointType] = []
    resume(wf, state, kinds.append, clock=clock)
    assert CheckpointType.AFTER_STEP in kinds
    assert all(isinstance(k, CheckpointType) for k in kinds)
    events = {e.event for e in state.threads[0].events}
    assert events == {"yes", "too-late"}
    clock.advance(61)
    handle_callback(request(state, "too-late"), wf, state)
    resume(wf, state, kinds.append, clock=clock)
    assert wf.log == ["start", "late"] and state.status is WorkflowStatus.FINISHED
