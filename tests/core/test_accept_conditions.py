"""Acceptance: a condition given as a function or a statement, as a user
coming from Temporal writes it (`WaitFor("done?", lambda: self.done)`, as
`workflow.wait_condition(lambda: ...)`), is refused when the statement is
built: it would be always true, so the wait would pass at once and the loop
never end, silently (docs/statements.md, "WaitFor and WaitGroup")."""

from __future__ import annotations

import attrs
import pytest

import genflow
from genflow import For, If, On, Step, Wait, WaitFor
from genflow.errors import StatementTypeError


@pytest.mark.parametrize("build", [
    lambda: WaitFor("done?", lambda: True),
    lambda: WaitFor("paid?", On("paid")),  # a Wait's event where the condition goes
    lambda: If(print, "printed?", Step("s", print)),
    lambda: For("polling", Step("poll", print)),
])
def test_a_condition_that_is_a_function_or_a_statement_is_refused(build) -> None:
    with pytest.raises(StatementTypeError, match="the condition is a value computed from the data"):
        build()


def test_conditions_that_are_values_are_taken_as_their_truth() -> None:
    assert WaitFor("any?", [1]).cond is True and WaitFor("none?", []).cond is False
    assert For("loop", 0).cond is False and If("x", "named?").cases[0].cond is True


@genflow.workflow("accept-conditions-approval")
@attrs.define
class Approval:
    approved: bool = False
    mailed: bool = False

    def definition(self):
        yield genflow.Go("approver", Wait("answer?", On("approve", self.approve)))
        yield WaitFor("approved?", lambda: self.approved)
        yield Step("mail", self.mail)

    def approve(self) -> None:
        self.approved = True

    def mail(self) -> None:
        self.mailed = True


def test_the_engine_refuses_such_a_definition_before_anything_runs() -> None:
    from genflow import Engine, open_store

    engine = Engine(open_store("memory:"))
    with pytest.raises(genflow.DefinitionError, match="approved\\?"):
        engine.start(Approval(), id="a1")
    assert engine.list() == []
