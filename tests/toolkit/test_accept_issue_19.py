"""Acceptance of issue 19, as a user writes it from docs/testing.md: the
toolkit's documented entry points catch each kind of broken workflow the
issue lists, in the forms a user writes them (a file looked at with
`os.path.exists`, a `cached_property` on attrs' default slotted class), and
the report names what differs; an argument that cannot work (one event where
the list goes, a payload that is no strategy) is an `ArgumentError` at once."""

from __future__ import annotations

import functools
import os.path
import pathlib

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genflow
from genflow import For, If, On, Step, Wait
from genflow.errors import ArgumentError
from genflow.testing import Send, assert_replay_equivalent, check_determinism, check_replay, runs


def noop() -> None:
    pass


@genflow.workflow("accept19-flag-file")
@attrs.define
class FlagFile:
    path: str = "/etc/hostname"

    def definition(self):
        yield If(os.path.exists(self.path), "flag set?", Step("fast", noop))


@genflow.workflow("accept19-flag-path")
@attrs.define
class FlagPath:
    path: str = "/etc/hostname"

    def definition(self):
        yield If(pathlib.Path(self.path).is_file(), "flag set?", Step("fast", noop))


@pytest.mark.parametrize("workflow", [FlagFile, FlagPath])
def test_a_definition_that_looks_at_a_file_is_refused(workflow) -> None:
    # whether a file exists is another answer on another machine: file I/O
    report = check_determinism(workflow())
    assert report is not None
    assert report.splitlines()[0].endswith("reads files")
    assert "os.stat()" in report and "If 'flag set?'" in report
    assert check_determinism(workflow(), allow=["files"]) is None


@genflow.workflow("accept19-cached")
@attrs.define  # slotted, attrs' default
class Cart:
    items: list[str] = attrs.field(factory=list)

    @functools.cached_property
    def first(self) -> str:
        return self.items[0] if self.items else ""

    def definition(self):
        yield Wait("add?", On("add", self.add))
        yield If(self.first == "", "empty?", Step("empty", noop))

    def add(self, item: str) -> None:
        self.items.append(item)


def test_a_cached_property_on_a_slotted_class_is_named() -> None:
    result = check_replay(Cart(), [("add", "tea")])
    assert not result.ok
    text = result.problems[0].text()
    assert "first: '' in memory" in text
    assert "a cached_property" in text


@genflow.workflow("accept19-counter")
@attrs.define
class Counter:
    total: int = 0

    def definition(self):
        yield For("counting", self.total < 3, Wait("add?", On("add", self.add)))

    def add(self, n: int) -> None:
        self.total += 1


@pytest.mark.parametrize("events", ["add", ("add", 1), Send("add", 1)])
def test_one_event_where_the_list_goes_is_refused(events) -> None:
    # a str would be one event per letter: 'a', 'd', 'd', each refused, and the check passes
    with pytest.raises(ArgumentError, match="the events are a list of them"):
        check_replay(Counter(), events)
    with pytest.raises(ArgumentError, match="the events are a list of them"):
        assert_replay_equivalent(Counter(), events)


def test_a_list_of_events_in_any_of_the_documented_forms_is_taken() -> None:
    result = check_replay(Counter(), [Send("add", 1), ("add", 2), ("add", 3)])
    assert result.ok and result.data.total == 3
    with pytest.raises(ArgumentError, match="is not an event"):
        check_replay(Counter(), [1])


@pytest.mark.parametrize(("call", "words"), [
    (lambda: runs(Counter()), r"runs takes the workflow's class \(runs\(Counter\)\)"),
    (lambda: runs(Counter, payloads={"add": 1}), r"payloads\['add'\] is a strategy"),
    (lambda: runs(Counter, payloads=["add"]), "payloads maps an event name"),
    (lambda: runs(Counter, types={int: 5}), r"types\[<class 'int'>\] is a strategy"),
    (lambda: runs(Counter, start=5), "start must be a Counter"),
])
def test_runs_refuses_what_it_cannot_draw_from_at_once(call, words) -> None:
    with pytest.raises(ArgumentError, match=words):
        call()


def test_runs_takes_a_strategy_or_a_function_of_the_data_per_event() -> None:
    @settings(max_examples=5, deadline=None, database=None)
    @given(runs(Counter, payloads={"add": lambda counter: st.just(counter.total)}))
    def check(scenario) -> None:
        assert all(send.payload == index for index, send in enumerate(
            s for s in scenario.events if s.awaited))

    check()


def test_check_workflow_refuses_an_option_it_does_not_know() -> None:
    from genflow.testing.suite import check_workflow

    # a mistyped key of a module's `genflow_testing` (the plugin's per-workflow options)
    with pytest.raises(ArgumentError, match=r"unknown option\(s\) \['max_evnts'\].*max_events"):
        check_workflow(Counter, examples=2, max_evnts=3)
    check_workflow(Counter, examples=2, max_events=3, payloads={"add": st.just(1)})
