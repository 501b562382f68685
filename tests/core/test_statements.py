"""Statements as values, validate() and walk()."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

import genflow
import genflow.engine
import genflow.registry
from genflow import (
    Break,
    Case,
    Continue,
    Default,
    DefinitionError,
    For,
    Go,
    If,
    On,
    Retry,
    Return,
    S,
    Sleep,
    Step,
    Switch,
    Timeout,
    Wait,
    WaitFor,
    WaitGroup,
    validate,
    walk,
)
from genflow.stores import MemoryStore


def nop() -> None:
    return None


# -- construction -------------------------------------------------------------------------


def test_if_elseif_else_is_a_switch_of_named_cases() -> None:
    stmt = If(False, "a", Step("s1", nop)).ElseIf(True, "b", Step("s2", nop)).Else("c")
    assert [(c.name, c.cond) for c in stmt.cases] == [("a", False), ("b", True), ("c", True)]
    assert len(stmt.bodies) == 3
    assert repr(stmt) == "If('a', 'b', 'c')"


def test_conditions_are_plain_booleans() -> None:
    assert If([], "empty list", Step("s", nop)).cases[0].cond is False
    assert For("f", "non-empty", Step("s", nop)).cond is True
    assert WaitFor("w", 0).cond is False
    assert Default("d").cond is True


def test_statement_containers_check_what_they_are_given() -> None:
    with pytest.raises(TypeError, match="Case"):
        Switch(Case(True, "ok"), Step("s", nop))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="On/Timeout"):
        Wait("w", Step("s", nop))  # type: ignore[arg-type]


def test_timeout_takes_seconds_or_a_timedelta() -> None:
    assert Timeout("t", dt.timedelta(minutes=2)).after == 120.0
    assert Timeout("t", 1.5).after == 1.5
    assert Timeout("t", 0).event == "t"
    with pytest.raises(ValueError):
        Timeout("t", dt.timedelta(seconds=-1))


def test_a_timeout_at_a_moment_takes_its_body_right_after_the_name() -> None:
    """`Timeout("expired", Break(), at=...)` was refused with "give either
    `after` or `at`": the body was taken for a delay."""
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    timer = Timeout("expired", Break(), Step("s", nop), at=at)
    assert (timer.after, timer.at) == (None, at)
    assert [type(s).__name__ for s in timer.bodies[0]] == ["Break", "Step"]
    unset = Timeout("expired", [Break()], at=None)  # a deadline the data sets later
    assert (unset.after, unset.at) == (None, None)
    [[body]] = unset.bodies
    assert [type(s).__name__ for s in body] == ["Break"]
    with pytest.raises(genflow.errors.StatementError, match="either `after` or `at`"):
        Timeout("t", 5, at=at)
    with pytest.raises(genflow.errors.StatementError, match="a timer that raises has no body"):
        Timeout("t", Break(), at=at, raises=ValueError)


def test_go_id_defaults_to_its_name_and_callable_bodies_get_the_id() -> None:
    assert Go("g", Step("s", nop)).id == "g"
    assert Go("g", Step("s", nop), id=7).id == "7"
    seen = []

    def body(thread_id: str) -> Any:
        seen.append(thread_id)
        return Step("s", nop)

    go = Go("g", body, id="g-1")
    assert isinstance(go.body_for("g-1")[0], Step) and seen == ["g-1"]
    gen = Go("g", nop)  # no parameter: the body itself (called later by the replay)
    assert gen.body_for("x") == (nop,)


def test_retry_delays_grow_and_are_capped() -> None:
    retry = Retry(attempts=5, backoff=2, factor=3, max_backoff=30)
    assert [retry.delay(n) for n in (1, 2, 3, 4)] == [2, 6, 18, 30]
    only_key_errors = Retry(on=(KeyError,))
    assert only_key_errors.retries(KeyError()) and not only_key_errors.retries(OSError())
    for bad in ({"attempts": 0}, {"backoff": -1}, {"factor": 0.5}):
        with pytest.raises(ValueError):
            Retry(**bad)


def test_retry_takes_durations_and_error_lists_as_a_temporal_policy_gives_them() -> None:
    # RetryPolicy(initial_interval=timedelta(...), maximum_interval=..., non_retryable_...)
    retry = Retry(backoff=dt.timedelta(seconds=1), max_backoff=dt.timedelta(seconds=2),
                  never=[KeyError, LookupError])
    assert (retry.backoff, retry.max_backoff, retry.never) == (1.0, 2.0, (KeyError, LookupError))
    assert [retry.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 2.0]
    with pytest.raises(genflow.errors.StatementError) as refused:
        Retry(never=["InvalidAccount"])  # Temporal's non_retryable_error_types are names
    assert str(refused.value) == ("Retry.never takes exception classes, got 'InvalidAccount' "
                                  "(a name: give the class, never=(InvalidAccount,))")
    with pytest.raises(genflow.errors.StatementError, match="max_backoff=-1"):
        Retry(max_backoff=-1)


def test_waitgroup_helpers_are_statements() -> None:
    wg = WaitGroup()
    add, go = wg.go("job", Step("work", nop), id="j1")
    assert (type(add), add.name) == (Step, "job: add")
    assert (type(go), go.name, go.id) == (Go, "job", "j1")
    assert wg.wait("join").cond is True
    wg.pending.append("j1")
    assert wg.wait("join").cond is False


def test_section_groups_a_body() -> None:
    section = S(Step("a", nop), [Step("b", nop)])
    assert isinstance(section, tuple) and len(section) == 2


# -- validate ------------------------------------------------------------------------------


def _problems(definition: Any) -> str:
    with pytest.raises(DefinitionError) as err:
        validate(definition)
    return str(err.value)


def test_valid_definition_passes_every_form() -> None:
    def flow():
        yield Step("a", nop)
        yield For("loop", False, If(True, "inner", Break()).Else("other", Continue()))
        yield Wait("w", On("a", nop), On("b", lambda payload: None), Timeout("t", 1))
        yield Switch(Case(False, "x", Step("x step", nop)), Default("y", Return()))
        yield Go("g", [Step("in thread", nop), For("thread loop", True, Break())])
        yield WaitFor("cond", True, nop)

    assert validate(flow) is None
    assert validate([flow]) is None
    assert validate(Step("only", nop)) is None


def test_duplicate_names_are_found_in_every_branch() -> None:
    text = _problems([
        Step("a", nop),
        If(False, "never taken", Step("a", nop)),
        Go("thread", Step("b", nop)),
        Wait("w", On("e", nop, Step("b", nop))),
        If(True, "never taken", Step("c", nop)),
    ])
    assert "'a' is used twice" in text
    assert "'b' is used twice" in text
    assert "'never taken' is used twice" in text


def test_event_names_may_repeat_statement_names() -> None:
    validate([Wait("w1", On("go", nop)), Wait("w2", On("go", nop)), Step("go", nop)])


@pytest.mark.parametrize("jump", [Break, Continue])
def test_break_and_continue_must_be_inside_a_loop_of_their_thread(jump: type) -> None:
    assert f"{jump.__name__}() outside a For loop" in _problems([Step("s", nop), jump()])
    assert "outside a For loop" in _problems(If(True, "if", jump()))
    assert "outside a For loop" in _problems(For("loop", True, Go("g", jump())))


def test_wait_problems() -> None:
    assert "'empty' has no events" in _problems(Wait("empty"))
    assert "lists event 'e' twice" in _problems(Wait("w", On("e", nop), On("e", nop)))
    assert "event 'bad'" in _problems(Wait("w", On("bad", 42)))
    assert "event 'greedy'" in _problems(Wait("w", On("greedy", lambda a, b: None)))


def test_uncallable_actions_and_handlers() -> None:
    assert "action 5 is not callable" in _problems(Step("s", 5))  # type: ignore[arg-type]
    assert "WaitFor 'w': handler" in _problems(WaitFor("w", True, "not callable"))  # type: ignore[arg-type]


def test_bad_bodies_and_a_definition_that_raises() -> None:
    assert "is not a statement" in _problems([Step("s", nop), 42])

    def broken():
        yield Step("s", nop)
        raise KeyError("config")

    assert "KeyError" in _problems(broken)


def test_every_problem_is_listed_at_once() -> None:
    text = _problems([Step("a", nop), Step("a", nop), Break(), Wait("w")])
    assert text.count("\n  - ") == 3


def test_validate_takes_a_workflow_instance() -> None:
    @genflow.workflow("statements-bad")
    @attrs.define
    class Bad:
        flag: bool = False

        def definition(self):
            yield Step("same", nop)
            if self.flag:  # shape depends on data: validate sees this instance's shape
                yield Step("same", nop)

    validate(Bad())
    assert "'same' is used twice" in _problems(Bad(flag=True))


@genflow.workflow("statements-raises")
@attrs.define
class Raises:
    """A definition that raises where `where` says: the problem must say where too."""

    where: str = ""

    def definition(self):
        if self.where == "first":
            [][0]  # the IndexError of issue 13
        yield Step("begin", nop)
        yield If(True, "big order", self.branch())
        yield Go("courier", self.courier)

    def branch(self):
        yield Step("discount", nop)
        if self.where == "branch":
            raise KeyError("rate")

    def courier(self):
        yield Wait("pickup", On("picked", nop))
        if self.where == "thread":
            yield 42


@pytest.mark.parametrize(("where", "words"), [
    ("first", "main thread, before its first statement: building the definition raised "
              "IndexError('list index out of range') (test_statements.py, line "),
    ("branch", "main thread, in the branch 'big order' of If, after statement 'discount': "
               "building the definition raised KeyError('rate') (test_statements.py, line "),
    ("thread", "thread of Go 'courier', after statement 'pickup': 42 is not a statement"),
])
def test_a_definition_that_raises_says_which_workflow_thread_and_statement(where, words):
    validate(Raises())
    text = _problems(Raises(where=where))
    assert text.startswith("invalid definition of workflow 'statements-raises':\n  - "), text
    assert words in text, text
    line = {"first": "in definition)", "branch": "in branch)", "thread": None}[where]
    assert line is None or line in text
    with pytest.raises(DefinitionError, match="workflow 'statements-raises'"):
        genflow.engine.Engine(MemoryStore()).start(Raises(where=where))  # start validates


# -- walk ----------------------------------------------------------------------------------


def _tree() -> list[Any]:
    return [
        Step("a", nop),
        If(False, "no", Step("b", nop)).Else("yes", Step("c", nop)),
        For("loop", False, Step("d", nop), Break()),
        Wait("w", On("e1", nop, Step("after e1", nop)), Timeout("t", 5)),
        Go("thread", lambda: (yield Step("in thread", nop))),
        WaitFor("until", True),
    ]


def test_walk_visits_every_statement_whatever_the_conditions() -> None:
    seen: list[tuple[str, str | None]] = []
    assert walk(_tree(), lambda s: bool(seen.append((type(s).__name__, s.name)))) is False
    assert seen == [
        ("Step", "a"),
        ("If", None),
        ("Step", "b"),
        ("Step", "c"),
        ("For", "loop"),
        ("Step", "d"),
        ("Break", None),
        ("Wait", "w"),
        ("On", "e1"),
        ("Timeout", "t"),
        ("Step", "after e1"),
        ("Go", "thread"),
        ("Step", "in thread"),
        ("WaitFor", "until"),
    ]


def test_walk_stops_as_soon_as_fn_returns_true() -> None:
    seen: list[str | None] = []

    def fn(stmt: Any) -> bool:
        seen.append(stmt.name)
        return stmt.name == "d"

    assert walk(_tree(), fn) is True
    assert seen == ["a", None, "b", "c", "loop", "d"]


def test_walk_takes_a_statement_or_a_workflow() -> None:
    names: list[str | None] = []
    walk(For("f", True, Step("x", nop)), lambda s: bool(names.append(s.name)))
    assert names == ["f", "x"]

    @genflow.workflow("statements-walk")
    @attrs.define
    class Flow:
        def definition(self):
            yield from self.sub()

        def sub(self):
            yield Step("deep", nop)

    names.clear()
    walk(Flow(), lambda s: bool(names.append(s.name)))
    assert names == ["deep"]


def test_an_unknown_workflow_says_what_to_import() -> None:
    """The usual cause is a process that never imported the defining module."""
    for lookup in (genflow.registry.workflow_class, genflow.registry.workflow_name,
                   lambda name: genflow.new_state("x", name)):
        with pytest.raises(genflow.UnknownWorkflowError) as err:
            lookup("statements-nobody")
        text = str(err.value)
        assert text.startswith("no workflow is registered as 'statements-nobody' (registered: ")
        assert genflow.registry.name_list(genflow.registry.registered()) in text
        assert text.endswith(
            "): this process must import the module that defines it (its "
            "@genflow.workflow('statements-nobody') class registers it on import); the genflow "
            "command imports it with --app MODULE or --app FILE.py (or GENFLOW_APP)")


def test_what_is_no_workflow_says_what_to_give() -> None:
    """A class of one's own is to be decorated; a dict (the fields, say) is no
    class of the user's: the error asks for an instance of a workflow class,
    showing the value (cut short)."""
    class Plain:
        pass

    with pytest.raises(genflow.UnknownWorkflowError,
                       match=r"\.Plain is not a workflow: decorate it with @genflow\.workflow"):
        genflow.registry.workflow_name(Plain())
    for data, shown in (({"customer": "ada"}, "{'customer': 'ada'} is of type dict, "),
                        ([1, 2], "[1, 2] is of type list, "),
                        (("a" * 500,), f"('{'a' * 78} is of type tuple, ")):
        with pytest.raises(genflow.UnknownWorkflowError) as err:
            genflow.registry.workflow_name(data)
        assert str(err.value).startswith(shown), err.value
        assert str(err.value).endswith("not a workflow: give an instance of a workflow class "
                                       "(decorated with @genflow.workflow(name)), such as "
                                       "Order(...)")


def test_a_long_list_of_names_is_cut_short() -> None:
    names = [f"w{n:02}" for n in range(12)]
    assert genflow.registry.name_list(names) == (
        "w00, w01, w02, w03, w04, w05, w06, w07, w08, w09 and 2 more")
    assert genflow.registry.name_list(names[:3]) == "w00, w01, w02"
    assert genflow.registry.name_list([]) == "none"


def test_an_event_outside_a_wait_is_refused_with_what_to_write() -> None:
    # a Temporal user's `yield Timeout(...)` for a sleep: refused before any
    # instance relies on it, not an instance failed at its first move
    text = _problems([Step("a", nop), Timeout("a while", 5), Step("b", nop)])
    assert ("main thread, after statement 'a': Timeout 'a while' stands alone: it is an event "
            "of a Wait, not a statement: write Sleep('a while', seconds) for a durable sleep"
            in text), text
    text = _problems(If(True, "branch", On("go", nop)))
    assert "On 'go' stands alone" in text and "Wait(name, On('go', ...))" in text, text
    # the events of a Wait (a Sleep's timer too) are no problem
    validate([Wait("w", On("go", nop), Timeout("t", 1)), Sleep("nap", 5)])
