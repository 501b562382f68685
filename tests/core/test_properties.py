"""Properties over random definitions: replay-equivalence and clean refusals.

A definition is drawn as data: a small tree of steps, branches, loops (with
counters, so they end), Break/Continue/Return, waits on 1-3 events, WaitFor and
Go threads. `TreeFlow` keeps the tree (as JSON) in its data and interprets it in
`definition()`; every statement is named by its path in the tree, so names are
unique and stable. Events are then delivered in a random order: at each point
any event any thread is waiting for.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

import genflow
from genflow import (
    MAIN_THREAD,
    Break,
    CallbackRequest,
    Continue,
    EventError,
    For,
    Go,
    If,
    On,
    Return,
    Step,
    StepError,
    Switch,
    Wait,
    WaitFor,
    WorkflowStatus,
    handle_callback,
    validate,
)
from genflow.statements import Case
from genflow.testing import Instance
from genflow.testing.run import ready_events

# -- trees -------------------------------------------------------------------------------------

conds = st.integers(0, 2)
waits = st.builds(lambda n: ["wait", [[] for _ in range(n)]], st.integers(1, 3))
leaves = st.one_of(
    st.just(["step"]),
    st.just(["flaky"]),
    waits,
    waits,
    st.builds(lambda k, h: ["waitfor", k, h], st.integers(0, 4), st.booleans()),
    st.builds(lambda c: ["break", c], conds),
    st.builds(lambda c: ["continue", c], conds),
    st.builds(lambda c: ["return", c], conds),
)


def _compound(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    bodies = st.lists(children, min_size=1, max_size=3)
    loop = st.builds(lambda n, b: ["for", n, b], st.integers(1, 2), bodies)
    wait = st.builds(
        lambda events: ["wait", events],
        st.lists(st.lists(children, max_size=2), min_size=1, max_size=3),
    )
    go = st.builds(lambda b: ["go", b], bodies)
    return st.one_of(
        st.builds(lambda c, a, b: ["if", c, a, b], conds, bodies, st.lists(children, max_size=2)),
        st.builds(lambda cases, d: ["switch", cases, d],
                  st.lists(st.tuples(conds, bodies).map(list), min_size=1, max_size=2), bodies),
        loop, loop, wait, wait, go, go,
    )


trees = st.lists(st.recursive(leaves, _compound, max_leaves=12), min_size=1, max_size=6)


@functools.lru_cache(maxsize=256)
def _parse(tree: str) -> Any:
    return json.loads(tree)


@genflow.workflow("prop-tree")
@attrs.define
class TreeFlow:
    tree: str = "[]"
    ticks: int = 0
    counters: dict[str, int] = attrs.field(factory=dict)
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield self.body(_parse(self.tree), "n", MAIN_THREAD, ())

    # -- the interpreter: node lists -> statements, named by their path --

    def body(self, nodes: list[Any], path: str, thread: str, loops: tuple[str, ...]) -> list[Any]:
        return [self.node(n, f"{path}.{i}", thread, loops) for i, n in enumerate(nodes)]

    def cond(self, k: int) -> bool:
        return (self.ticks + k) % 3 == 0

    def node(self, node: list[Any], name: str, thread: str, loops: tuple[str, ...]) -> Any:
        kind = node[0]
        if kind == "step":
            return Step(name, functools.partial(self.tick, thread, name))
        if kind == "flaky":
            return Step(name, functools.partial(self.flaky, thread, name))
        if kind == "waitfor":
            handler = functools.partial(self.tick, thread, name) if node[2] else None
            return WaitFor(name, self.ticks >= node[1], handler)
        if kind in ("break", "continue"):
            if not loops:  # outside a loop of this thread: an ordinary step
                return Step(name, functools.partial(self.tick, thread, name))
            return If(self.cond(node[1]), name, Break() if kind == "break" else Continue())
        if kind == "return":
            return If(self.cond(node[1]), name, Return())
        if kind == "if":
            return If(self.cond(node[1]), f"{name}/then", self.body(node[2], name + "t", thread,
                                                                    loops)).Else(
                f"{name}/else", self.body(node[3], name + "e", thread, loops))
        if kind == "switch":
            cases = [
                Case(self.cond(c), f"{name}/case{i}", self.body(b, f"{name}c{i}", thread, loops))
                for i, (c, b) in enumerate(node[1])
            ]
            return Switch(*cases).Else(f"{name}/default", self.body(node[2], name + "d", thread,
                                                                    loops))
        if kind == "for":
            key = f"{thread}/{name}"
            return [
                Step(f"{name}/reset", functools.partial(self.set_counter, key, 0)),
                For(name, self.counters.get(key, 0) < node[1],
                    Step(f"{name}/inc", functools.partial(self.set_counter, key, None)),
                    self.body(node[2], name, thread, (*loops, key))),
            ]
        if kind == "wait":
            return Wait(name, *(
                On(f"e{i}", functools.partial(self.tick, thread, f"{name}/e{i}"),
                   self.body(b, f"{name}e{i}", thread, loops))
                for i, b in enumerate(node[1])
            ))
        if kind == "go":
            thread_id = f"{thread}>{name}" + "".join(f"#{self.counters.get(k, 0)}" for k in loops)
            return Go(name, lambda tid, b=node[1], n=name: self.body(b, n + "g", tid, ()),
                      id=thread_id)
        raise AssertionError(node)

    # -- what steps and handlers do to the data --

    def tick(self, thread: str, name: str) -> None:
        self.ticks += 1
        self.log.append(f"{thread}:{name}")

    def flaky(self, thread: str, name: str) -> None:
        """Fails the first attempt of each execution, after changing the data."""
        self.tick(thread, name)
        attempted = ATTEMPTED.setdefault(ACTIVE[0], set())
        key = genflow.current_step().idempotency_key
        if key not in attempted:
            attempted.add(key)
            raise RuntimeError(f"{key} fails once")

    def set_counter(self, key: str, value: int | None) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1 if value is None else value
        self.ticks += 1


MAX_EVENTS = 25
#: which run is moving now, and the flaky steps each run has attempted
ACTIVE = [""]
ATTEMPTED: dict[str, set[str]] = {}


def _settle(run: Instance, label: str) -> None:
    """Resume, and again after each failed step (it is rolled back and runs again)."""
    ACTIVE[0] = label
    for _ in range(100):
        try:
            run.resume()
            return
        except StepError as err:
            assert "fails once" in str(err)
            assert run.blob() == run.checkpointed
    raise AssertionError("a flaky step failed more than once")


def _start(tree: list[Any], label: str, mode: str) -> Instance:
    ATTEMPTED.pop(label, None)
    run = Instance(_flow(tree), mode=mode)
    _settle(run, label)
    return run


def _flow(tree: list[Any]) -> TreeFlow:
    return TreeFlow(tree=json.dumps(tree))


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(trees, st.data())
def test_reloading_at_every_checkpoint_ends_where_never_stopping_does(tree, data) -> None:
    validate(_flow(tree))
    steady = _start(tree, "steady", "plain")
    crashy = _start(tree, "crashy", "crash")
    assert crashy.blob() == steady.blob()
    for _ in range(MAX_EVENTS):
        ready = ready_events(steady.state)
        assert ready_events(crashy.state) == ready
        if not ready:
            break
        thread, event = data.draw(st.sampled_from(ready), label="event")
        for run, label in ((steady, "steady"), (crashy, "crashy")):
            run.handle_callback(event, thread=thread)
            _settle(run, label)
        assert crashy.blob() == steady.blob()
    assert crashy.kinds == steady.kinds
    if not ready_events(steady.state) and steady.state.status is not WorkflowStatus.FINISHED:
        # stuck only on conditions that no event can make true any more
        assert all(t.status is genflow.ThreadStatus.WAITING_CONDITION for t in steady.state.threads)


def _bogus(run: Instance, issued: list[CallbackRequest], pick: int) -> CallbackRequest | None:
    """A request the instance is not waiting for, of one of several kinds."""
    state = run.state
    live = {(e.req.thread_id, e.req.event, e.req.pc) for t in state.threads for e in t.events}
    stale = [r for r in issued if (r.thread_id, r.event, r.pc) not in live]
    threads = [t for t in state.threads]
    kinds = ["stale", "unknown event", "unknown thread", "other instance", "not waiting"]
    kind = kinds[pick % len(kinds)]
    if kind == "stale" and stale:
        return stale[pick % len(stale)]
    if not threads:
        return CallbackRequest(state.id, MAIN_THREAD, "e0", state.pc)
    thread = threads[pick % len(threads)]
    if kind == "unknown event":
        return CallbackRequest(state.id, thread.id, "no such event", thread.pc)
    if kind == "unknown thread":
        return CallbackRequest(state.id, thread.id + "?", "e0", thread.pc)
    if kind == "other instance":
        return CallbackRequest(state.id + "?", thread.id, "e0", thread.pc)
    if thread.status is genflow.ThreadStatus.WAITING_EVENT:
        return None  # it is waiting: no request of this kind
    return CallbackRequest(state.id, thread.id, "e0", thread.pc)


@settings(max_examples=100, deadline=None)
@given(trees, st.data())
def test_events_the_instance_is_not_waiting_for_change_nothing(tree, data) -> None:
    run = _start(tree, "bogus", "reload")
    issued: list[CallbackRequest] = []
    for _ in range(MAX_EVENTS):
        pick = data.draw(st.integers(0, 99), label="bogus")
        issued.extend(e.req for t in run.state.threads for e in t.events)
        bogus = _bogus(run, issued, pick)
        if bogus is not None:
            before = run.blob()
            try:
                handle_callback(bogus, run.wf, run.state, None)
            except EventError:
                pass
            else:
                raise AssertionError(f"{bogus} was accepted")
            assert run.blob() == before
        ready = ready_events(run.state)
        if not ready:
            break
        thread, event = data.draw(st.sampled_from(ready), label="event")
        run.handle_callback(event, thread=thread)
        _settle(run, "bogus")
