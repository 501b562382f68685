"""Acceptance of issue 5, as a user writes it from docs/testing.md on a small
workflow of their own: `runs` draws events the instance can receive, with
payloads of the handlers' annotated types, and sometimes ones it must refuse;
the checker passes a sound workflow and, for a broken one, names the problem,
the event sequence and the checkpoint; a Python `if` on data a step changes
before a wait is caught naming the statement; `WorkflowMachine`, `events`,
`payloads`, a timer sent through the fake clock."""

from __future__ import annotations

import datetime as dt
from typing import Optional

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, run_state_machine_as_test

import genflow
from genflow import For, If, On, Step, Timeout, Wait, new_state, resume
from genflow.errors import ArgumentError
from genflow.testing import (
    ReplayError,
    Send,
    WorkflowMachine,
    assert_replay_equivalent,
    check_determinism,
    check_replay,
    events,
    payloads,
    runs,
)


@attrs.define
class Book:
    title: str
    copies: int = attrs.field(validator=[attrs.validators.ge(1), attrs.validators.le(3)])
    note: Optional[str] = None  # noqa: UP045 - the spelling users still write


@genflow.workflow("acc5-library")
@attrs.define
class Library:
    books: list[Book] = attrs.field(factory=list)
    open: bool = True
    shipped: int = 0

    def definition(self):
        yield For("shelf", self.open,
                  Wait("cart", On("lend", self.lend), On("close", self.close),
                       Timeout("idle", dt.timedelta(hours=1), Step("auto-close", self.close))))
        yield If(bool(self.books), "any?", Step("ship", self.ship))

    def lend(self, book: Book) -> int:
        self.books.append(book)
        return len(self.books)

    def close(self) -> None:
        self.open = False

    def ship(self) -> None:
        self.shipped = sum(b.copies for b in self.books)


@settings(max_examples=15, deadline=None)
@given(runs(Library, max_events=6))
def test_drawn_scenarios_are_replay_equivalent_and_payloads_fit_the_types(scenario) -> None:
    result = assert_replay_equivalent(scenario)
    assert all(isinstance(b, Book) and 1 <= b.copies <= 3 for b in result.data.books)
    if result.state.status.value == "finished":
        assert result.data.shipped == sum(b.copies for b in result.data.books)


def test_unexpected_events_are_drawn_and_refused_cleanly() -> None:
    seen: set[str] = set()

    @settings(max_examples=40, deadline=None)
    @given(runs(Library, max_events=5, unexpected=0.5))
    def check(scenario) -> None:
        result = assert_replay_equivalent(scenario)
        seen.update(o.error_type for o in result.outcomes if o.error_type)

    check()
    assert seen & {"UnknownEventError", "StaleCallbackError", "NotWaitingError",
                   "WorkflowFinishedError", "PayloadError"}


def test_events_and_payloads_for_tests_of_ones_own() -> None:
    wf = Library()
    state = new_state("lib-1", wf)
    resume(wf, state)

    @settings(max_examples=20, deadline=None)
    @given(events(wf, state), payloads(Book))
    def check(event, book) -> None:
        assert isinstance(book, Book) and 1 <= book.copies <= 3
        assert event is not None

    check()


def test_a_timer_goes_through_the_fake_clock() -> None:
    result = assert_replay_equivalent(Library(), [("lend", Book("Dune", 2)),
                                                  Send("idle", timer=True)])
    assert result.data.shipped == 2 and result.state.status.value == "finished"


class LibraryMachine(WorkflowMachine):
    workflow = Library

    @invariant()
    def shipped_only_when_closed(self) -> None:
        assert self.data.shipped == 0 or not self.data.open


def test_the_state_machine_helper_runs() -> None:
    run_state_machine_as_test(LibraryMachine, settings=settings(
        max_examples=5, stateful_step_count=5, deadline=None))


@genflow.workflow("acc5-needs-customer")
@attrs.define
class NeedsCustomer:
    customer: str

    def definition(self):
        yield Wait("w", On("go"))


def test_a_class_without_defaults_asks_for_an_instance() -> None:
    for check in (check_replay, assert_replay_equivalent):
        with pytest.raises(ArgumentError, match=r"give the start data as an instance, "
                                                r"NeedsCustomer\(\.\.\.\)"):
            check(NeedsCustomer, ["go"])
    assert check_replay(NeedsCustomer("ann"), ["go"]).ok


# -- broken workflows -------------------------------------------------------------


SENT: list[str] = []


@genflow.workflow("acc5-double-mail")
@attrs.define
class DoubleMail:
    mails: int = 0

    def definition(self):
        yield Wait("order", On("order", self.order))
        yield Step("mail", self.mail)
        yield Step("done", self.done)

    def order(self, item: str) -> None:
        pass

    def mail(self) -> None:
        SENT.append("mail")
        self.mails += 1

    def done(self) -> None:
        pass


@genflow.workflow("acc5-python-if")
@attrs.define
class PythonIf:
    stage: str = "new"
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        if self.stage == "new":  # a Python if on data the step below changes
            yield Step("prepare", self.prepare)
        yield Wait("confirm", On("confirm"))

    def prepare(self) -> None:
        self.stage = "prepared"


def test_a_python_if_on_data_a_step_changes_before_a_wait_is_caught_naming_the_statement():
    result = check_replay(PythonIf(), ["confirm"])
    assert not result.ok
    text = result.report()
    assert "prepare" in text
    with pytest.raises(ReplayError, match="prepare"):
        assert_replay_equivalent(PythonIf(), ["confirm"])


def test_check_determinism_is_quiet_for_a_sound_definition() -> None:
    assert check_determinism(Library()) is None


@settings(max_examples=10, deadline=None)
@given(st.lists(st.sampled_from(["order", "nope"]), max_size=3))
def test_a_sound_workflow_passes_with_any_events_sent(names) -> None:
    result = check_replay(DoubleMail(), [(n, "x") for n in names])
    assert result.ok, result.report()


@genflow.workflow("acc5-small-cart")
@attrs.define
class SmallCart:
    books: list[Book] = attrs.field(factory=list)
    open: bool = True
    shipped: bool = False

    def definition(self):
        if len(self.books) < 2:  # the seeded bug: a Python if on data a handler changes
            yield For("shelf", self.open,
                      Wait("cart", On("lend", self.lend), On("close", self.close)))
        yield Step("ship", self.ship)

    def lend(self, book: Book) -> None:
        self.books.append(book)

    def close(self) -> None:
        self.open = False

    def ship(self) -> None:
        self.shipped = True


def test_a_seeded_bug_is_found_and_reported_with_the_shortest_sequence() -> None:
    @settings(max_examples=100, deadline=None, database=None)
    @given(runs(SmallCart, max_events=6, unexpected=False))
    def check(scenario) -> None:
        assert_replay_equivalent(scenario)

    with pytest.raises(ReplayError) as err:
        check()
    text = str(err.value)
    assert "'acc5-small-cart'" in text and "'cart'" in text, text
    sequence = text.split("Event sequence", 1)[1].split("Problem", 1)[0]
    assert sequence.count("lend") == 2 and "close" not in sequence, text
    assert "a step or an event's handler changes" in text
