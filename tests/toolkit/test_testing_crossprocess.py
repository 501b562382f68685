"""Cross-process replay: a checkpoint's data walked again in fresh interpreters that differ."""

from __future__ import annotations

import os

import attrs
import pytest
import toolkit_cases

import genflow
from genflow import Step
from genflow.testing import check_replay
from genflow.testing.crossprocess import (
    _CHILDREN,
    CrossProcessError,
    _variation,
    shapes_elsewhere,
)


@genflow.workflow("test-crossprocess-flag")
@attrs.define
class Flagged:
    def definition(self):
        value = os.environ.get("GENFLOW_TEST_FLAG")  # genflow: allow[environment]
        yield Step(f"mode {value}", lambda: None)


def test_a_set_built_in_definition_differs_in_another_process() -> None:
    assert check_replay(toolkit_cases.Deduplicated()).ok  # one process cannot tell
    result = check_replay(toolkit_cases.Deduplicated(), cross_process=True)
    assert result.kinds == ["non-deterministic"]
    problem = result.problems[0]
    assert problem.title == ("definition() of 'toolkit-set-built' takes another shape in "
                             "another process")
    assert "it depends on PYTHONHASHSEED (the iteration order of a set of strings)" in \
        problem.details[0]


def test_local_time_differs_in_another_time_zone() -> None:
    result = check_replay(toolkit_cases.Brunch(), cross_process=True)
    assert result.kinds == ["non-deterministic"]
    assert "it depends on the time zone (TZ=" in result.problems[0].details[0]
    assert "statement 'breakfast?' (If): the condition of branch 'breakfast?'" in \
        result.problems[0].details[0]


def test_an_environment_variable_allowed_here_differs_elsewhere(monkeypatch) -> None:
    monkeypatch.setenv("GENFLOW_TEST_FLAG", "on")
    _close_children()  # started again with this environment to copy
    result = check_replay(Flagged(), cross_process=True)
    assert result.kinds == ["non-deterministic"]
    assert "it depends on the environment" in result.problems[0].details[0]
    assert "statement 'mode on' (Step) is there here and missing in the other process" in \
        result.problems[0].details[0]
    monkeypatch.delenv("GENFLOW_TEST_FLAG")
    _close_children()


def test_a_correct_workflow_agrees_everywhere_and_the_interpreters_are_kept() -> None:
    result = check_replay(toolkit_cases.Labels(), cross_process=True)
    assert result.ok and result.processes == 2
    children = dict(_CHILDREN)
    assert check_replay(toolkit_cases.Labels(), cross_process=3).processes == 3
    assert all(_CHILDREN[v] is c for v, c in children.items())  # reused, not started again
    assert "replayed in 3 other processes" in check_replay(
        toolkit_cases.Labels(), cross_process=3).report()


def test_a_workflow_that_cannot_be_imported_elsewhere_is_a_clear_error() -> None:
    @genflow.workflow("test-crossprocess-local")
    @attrs.define
    class Local:
        def definition(self):
            yield Step("x", lambda: None)

    with pytest.raises(CrossProcessError, match="cannot be imported there: define it at the "
                                                "top level of an importable module"):
        check_replay(Local(), cross_process=True)


def test_a_module_the_other_interpreter_cannot_import_is_named() -> None:
    class Stray:
        __module__ = "no_such_module_here"
        __qualname__ = "Stray"

    with pytest.raises(CrossProcessError, match="could not import 'no_such_module_here'"):
        shapes_elsewhere(Stray, [], _variation(1201))


def _close_children() -> None:
    for child in _CHILDREN.values():
        child.close()
    _CHILDREN.clear()
