"""Replaying less: a replay is kept across user code that changed no field it read,
and from one operation to the next on the same objects.

The rule (genflow.replay, "Reads"; `Operation._run_user_code`): every replay
records the fields of the data it reads; after a step or handler, the frames it
located are kept when the saved values of those fields are unchanged, and the
definition is replayed otherwise. The property below runs random definitions
(branches, loops, waits, conditions and threads reading a few fields; steps and
handlers writing random ones, in place too) with the rule and with
`Operation.reuse = False` (a replay after all user code) and requires the same
calls, data and `State` at every point. Between a `handle_callback` and the
`resume` after it, the caller changes fields too (in place as well): what the
first operation located is carried to the second only where the fields its
replays read hold the same plain values (`genflow.runtime._carried`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genflow
from genflow import (
    DefinitionError,
    For,
    Go,
    If,
    On,
    Step,
    Wait,
    WaitFor,
    deliver,
    dumps,
    handle_callback,
    loads,
    new_state,
    resume,
)
from genflow.errors import GenflowError
from genflow.runtime import Operation

FIELDS = ("a", "b", "items", "box", "note")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def clock() -> dt.datetime:
    return NOW


@attrs.define
class Box:
    n: int = 0


@functools.lru_cache(maxsize=256)
def _parse(tree: str) -> Any:
    return json.loads(tree)


@genflow.workflow("test-reads-tree")
@attrs.define
class Reads:
    tree: str = "[]"
    a: int = 0
    b: int = 0
    items: list[int] = attrs.field(factory=list)
    box: Box = attrs.field(factory=Box)
    note: str = ""
    counters: dict[str, int] = attrs.field(factory=dict)
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield self.body(_parse(self.tree), "n")

    def read(self, field: str) -> int:
        """A field's value as a number (read the way definitions read: directly,
        through a helper, through a nested object, by its length)."""
        if field == "items":
            return len(self.items)
        if field == "box":
            return self.box.n
        if field == "note":
            return len(self.note)
        return int(getattr(self, field))

    def body(self, nodes: list[Any], path: str) -> list[Any]:
        return [self.node(n, f"{path}.{i}") for i, n in enumerate(nodes)]

    def node(self, node: list[Any], name: str) -> Any:
        kind = node[0]
        if kind == "step":
            return Step(name, functools.partial(self.write, name, tuple(node[1])))
        if kind == "if":
            return If(self.read(node[1]) % 2 == node[2], f"{name}/then",
                      self.body(node[3], name + "t")).Else(f"{name}/else",
                                                           self.body(node[4], name + "e"))
        if kind == "for":
            return [
                Step(f"{name}/reset", functools.partial(self.count, name, 0)),
                For(name, self.counters.get(name, 0) < node[1],
                    Step(f"{name}/inc", functools.partial(self.count, name, None)),
                    self.body(node[2], name)),
            ]
        if kind == "while":  # a loop on a field that its steps may change, or not
            return For(name, self.read(node[1]) < node[2], self.body(node[3], name))
        if kind == "wait":
            return Wait(name, *(
                On(f"e{i}", functools.partial(self.write, f"{name}/e{i}", tuple(writes)),
                   self.body(b, f"{name}e{i}"))
                for i, (writes, b) in enumerate(node[1])
            ))
        if kind == "waitfor":
            return WaitFor(name, self.read(node[1]) >= node[2])
        if kind == "go":
            return Go(name, lambda b=node[1], n=name: self.body(b, n + "g"))
        raise AssertionError(node)

    def write(self, name: str, fields: tuple[str, ...]) -> None:
        self.log.append(name)
        for field in fields:
            if field == "items":
                self.items.append(len(self.log))  # in place: the same list object
            elif field == "box":
                self.box.n += 1  # in place, one level down
            elif field == "note":
                self.note += "x"
            else:
                setattr(self, field, getattr(self, field) + 1)

    def count(self, key: str, value: int | None) -> None:
        self.log.append(key)
        self.counters[key] = self.counters.get(key, 0) + 1 if value is None else value


fields = st.sampled_from(FIELDS)
writes = st.lists(fields, max_size=2)
leaves = st.one_of(
    st.builds(lambda w: ["step", w], writes),
    st.builds(lambda w: ["step", w], writes),
    st.builds(lambda e: ["wait", [[w, []] for w in e]], st.lists(writes, min_size=1,
                                                                 max_size=2)),
    st.builds(lambda f, k: ["waitfor", f, k], fields, st.integers(0, 3)),
)


def _compound(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    bodies = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        st.builds(lambda f, k, t, e: ["if", f, k, t, e], fields, st.integers(0, 1), bodies,
                  st.lists(children, max_size=2)),
        st.builds(lambda n, b: ["for", n, b], st.integers(1, 3), bodies),
        st.builds(lambda f, k, b: ["while", f, k, b], fields, st.integers(1, 3), bodies),
        st.builds(lambda evs: ["wait", evs],
                  st.lists(st.tuples(writes, st.lists(children, max_size=2)).map(list),
                           min_size=1, max_size=2)),
        st.builds(lambda b: ["go", b], bodies),
    )


trees = st.lists(st.recursive(leaves, _compound, max_leaves=10), min_size=1, max_size=5)


MOVES = 60  # a loop that never ends (its steps change other fields) stops here


class _Run:
    """One instance driven in memory, with the rule on or off."""

    def __init__(self, tree: list[Any], reuse: bool):
        self.reuse = reuse
        self.wf = Reads(tree=json.dumps(tree))
        self.state = new_state("r", self.wf)
        self.kinds: list[str] = []
        self.outcomes: list[str] = []

    def op(self, fn: Any, *args: Any) -> None:
        saved = Operation.reuse
        Operation.reuse = self.reuse
        try:
            fn(*args)
            self.outcomes.append("ok")
        except GenflowError as exc:
            self.outcomes.append(type(exc).__name__)
        finally:
            Operation.reuse = saved

    def resume(self) -> None:
        self.op(functools.partial(resume, clock=clock, max_moves=MOVES), self.wf, self.state,
                self.kinds.append)

    def ready(self) -> list[Any]:
        return [e.req for t in self.state.threads for e in t.events
                if e.due is None and e.status.value == "setup"]

    def point(self) -> tuple[Any, ...]:
        return (dumps(self.wf, self.state), self.kinds, self.outcomes)


@settings(max_examples=200, deadline=None)
@given(trees, st.data())
def test_keeping_frames_across_user_code_is_the_always_replay_path(tree, data) -> None:
    runs = [_Run(tree, reuse=True), _Run(tree, reuse=False)]
    for run in runs:
        run.resume()
    assert runs[0].point() == runs[1].point()
    for _ in range(12):
        ready = runs[0].ready()
        assert [r.event for r in ready] == [r.event for r in runs[1].ready()]
        if not ready:
            break
        pick = data.draw(st.integers(0, len(ready) - 1))
        together = data.draw(st.booleans())  # deliver (one operation) or callback + resume
        # what the caller changes between operations (the frames an operation
        # leaves are carried to the next one on the same objects: `_carried`)
        between = data.draw(st.lists(fields, max_size=2))
        for run in runs:
            req = run.ready()[pick]
            if together:
                run.op(functools.partial(deliver, clock=clock, max_moves=MOVES), req, run.wf,
                       run.state, None, run.kinds.append)
            else:
                run.op(handle_callback, req, run.wf, run.state)
                run.wf.write("caller", tuple(between))
                run.resume()
        assert runs[0].point() == runs[1].point()


# -- the rule, case by case -----------------------------------------------------------------


CALLS: list[str] = []


@genflow.workflow("test-reads-counted")
@attrs.define
class Counted:
    limit: int = 3
    done: int = 0
    notes: list[str] = attrs.field(factory=list)
    box: Box = attrs.field(factory=Box)

    def definition(self):
        CALLS.append("definition")
        yield Step("note", self.note)  # changes nothing the definition reads
        yield Step("again", self.note)
        yield For("loop", self.done < self.limit, Step("work", self.work))
        yield If(self.box.n > 0, "boxed?", Step("unbox", self.note))

    def note(self) -> None:
        self.notes.append("n")

    def work(self) -> None:
        self.done += 1
        if self.done == self.limit:
            self.box.n += 1  # in place, one level down


def _replays(wf: Any, reuse: bool) -> int:
    CALLS.clear()
    saved = Operation.reuse
    Operation.reuse = reuse
    try:
        resume(wf, new_state("c", wf))
    finally:
        Operation.reuse = saved
    return len(CALLS)


def test_a_step_that_changes_nothing_read_is_not_followed_by_a_replay() -> None:
    kept, always = Counted(), Counted()
    # no replay after "note", "again" and "unbox": the definition has read nothing
    # they change (the first two run before the loop's condition is even built)
    assert (_replays(kept, True), _replays(always, False)) == (4, 7)
    assert kept == always
    assert kept.notes == ["n", "n", "n"] and kept.box.n == 1  # the If saw the nested change


def test_a_field_changed_in_place_or_one_level_down_is_seen() -> None:
    wf = Counted(limit=1)
    wf.box.n = 0
    _replays(wf, True)
    assert wf.done == 1 and wf.notes == ["n", "n", "n"]


@genflow.workflow("test-reads-dict")
@attrs.define(slots=False)
class NoSlots:
    notes: list[str] = attrs.field(factory=list)

    def definition(self):
        CALLS.append("definition")
        yield Step("a", self.note)
        yield Step("b", self.note)

    def note(self) -> None:
        self.notes.append("n")


def test_data_without_slots_is_replayed_after_all_user_code() -> None:
    wf = NoSlots()
    assert _replays(wf, True) == _replays(NoSlots(), False) == 3
    assert wf.notes == ["n", "n"]


@genflow.workflow("test-reads-raises")
@attrs.define
class Raises:
    n: int = 0

    def definition(self):
        yield Step("bump", self.bump)
        if self.n:
            raise ValueError("the definition fails on this data")

    def bump(self) -> None:
        self.n += 1


def test_the_data_keeps_its_class_when_the_definition_raises() -> None:
    wf = Raises()
    with pytest.raises(DefinitionError):
        resume(wf, new_state("x", wf))
    assert type(wf) is Raises and wf == Raises(n=1)


# -- carried from one operation to the next -------------------------------------------------


@genflow.workflow("test-reads-carried")
@attrs.define
class Carried:
    rounds: int = 2
    done: int = 0
    notes: list[str] = attrs.field(factory=list)
    items: list[int] = attrs.field(factory=list)

    def definition(self):
        CALLS.append("definition")
        yield For("rounds", self.done < self.rounds,
                  Wait("wait", On("go", self.note)),
                  Step("count", self.count))
        yield For("items", len(self.items) < 2, Wait("more", On("item", self.note)),
                  Step("take", self.take))

    def note(self) -> None:
        self.notes.append("n")

    def count(self) -> None:
        self.done += 1

    def take(self) -> None:
        self.items.append(len(self.items))


def _waiting(state: Any) -> Any:
    return state.threads[0].events[0].req


def test_the_next_operation_on_the_same_objects_replays_nothing_more() -> None:
    wf = Carried()
    state = new_state("c", wf)
    resume(wf, state)  # (the first operations learn that keeping these frames pays)
    handle_callback(_waiting(state), wf, state)
    resume(wf, state)
    CALLS.clear()
    handle_callback(_waiting(state), wf, state)  # the wait's frames, from the resume before
    assert CALLS == [] and wf.notes == ["n", "n"]
    resume(wf, state)
    assert CALLS == ["definition"]  # after "count": `done` changed, so one replay


def test_a_field_the_caller_changes_between_operations_is_replayed_on() -> None:
    wf = Carried(rounds=5)
    state = new_state("c", wf)
    for _ in range(2):
        resume(wf, state)
        handle_callback(_waiting(state), wf, state)
    resume(wf, state)
    assert state.threads[0].stmt == "wait"
    wf.rounds = 2  # read by the loop's condition: the carried frames are not taken
    CALLS.clear()
    handle_callback(_waiting(state), wf, state)
    assert CALLS == ["definition"]
    resume(wf, state)
    assert wf.done == 3 and state.threads[0].stmt == "more"  # the loop saw rounds = 2


def test_a_field_changed_in_place_between_operations_is_seen() -> None:
    wf = Carried(rounds=0)
    state = new_state("c", wf)
    resume(wf, state)
    handle_callback(_waiting(state), wf, state)
    resume(wf, state)
    assert state.threads[0].stmt == "more" and wf.items == [0]
    wf.items.append(7)  # in place: the list is not a plain value, so nothing is carried
    CALLS.clear()
    handle_callback(_waiting(state), wf, state)
    resume(wf, state)
    assert wf.items == [0, 7, 2] and state.status.value == "finished"


def test_only_the_very_same_objects_take_what_was_carried() -> None:
    wf = Carried()
    state = new_state("c", wf)
    resume(wf, state, clock=clock)
    handle_callback(_waiting(state), wf, state)
    resume(wf, state, clock=clock)
    copy_wf, copy_state = loads(dumps(wf, state))  # equal, but other objects
    CALLS.clear()
    handle_callback(_waiting(copy_state), copy_wf, copy_state)
    assert CALLS == ["definition"]
    # the originals were left where they were: an operation on them still works
    handle_callback(_waiting(state), wf, state)
    resume(wf, state, clock=clock)
    resume(copy_wf, copy_state, clock=clock)
    assert dumps(wf, state) == dumps(copy_wf, copy_state)


def test_a_refused_operation_leaves_nothing_to_carry() -> None:
    wf = Carried()
    state = new_state("c", wf)
    resume(wf, state)
    handle_callback(_waiting(state), wf, state)
    resume(wf, state)
    stale = _waiting(state)
    handle_callback(stale, wf, state)
    with pytest.raises(GenflowError):  # (the wait it was for is over: stale)
        handle_callback(stale, wf, state)
    CALLS.clear()
    resume(wf, state)
    # the refusal took what the first callback left: the Wait is replayed to,
    # then the definition after "count" (one replay, unrefused: the first test)
    assert CALLS == ["definition", "definition"] and state.threads[0].stmt == "more"
