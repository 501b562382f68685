"""genflow.testing against its catalog: every broken workflow caught, no correct one flagged.

The workflows are in `toolkit_cases.py`, each checked as docs/testing.md tells
a user to (`runs(...)` then `assert_replay_equivalent(...)`, 25 scenarios). A
broken one must be caught by the check its `caught_by` names, with the
problem kind it names; the in-process check must not catch what only another
process shows (else the cross-process check would prove nothing). A correct
one must pass the default check, the cross-process check and the static check.
The rare branch needs 100 scenarios: it is checked on five seeds, as the
issue's figure asks, and must be found on most of them.
"""

from __future__ import annotations

import pytest
import toolkit_cases
from toolkit_cases import CASES, Case, check, linted

from genflow.registry import workflow_name

BROKEN = [c for c in CASES if c.broken and c.kind != "rare branch"]
CORRECT = [c for c in CASES if not c.broken]
LINTED = linted()


def test_the_catalog_is_as_large_as_the_issue_asks() -> None:
    assert len([c for c in CASES if c.broken]) >= 23 and len(CORRECT) >= 9
    kinds = {c.kind.partition(":")[0] for c in CASES if c.broken}
    assert {"sandbox", "another process", "not saved", "outside the data", "python if",
            "validation on later data", "crash inside a step", "crash inside a handler",
            "rare branch", "runaway"} <= kinds


@pytest.mark.parametrize("case", BROKEN, ids=lambda c: c.name)
def test_a_broken_workflow_is_caught(case: Case) -> None:
    found = check(case)
    if case.caught_by == "cross-process":
        assert found is None, "caught in one process: the case does not need another"
        found = check(case, cross_process=True)
        assert found is not None, f"{case.name}: not caught by the cross-process check"
        assert "takes another shape in another process" in found.report()
        return
    assert found is not None, f"{case.name}: not caught"
    expected = case.expect or ("not saved" if case.kind.startswith("not saved")
                               else "non-deterministic")
    if case.kind.startswith("not saved"):  # the shape check or the reload run: both say so
        assert found.kinds[0] in ("not saved", "non-deterministic")
        assert "not saved" in found.report() or "loses data" in found.report()
    else:
        assert found.kinds[0] == expected, found.report()


@pytest.mark.parametrize("case", CORRECT, ids=lambda c: c.name)
def test_a_correct_workflow_passes_every_check(case: Case) -> None:
    found = check(case)
    assert found is None, found.report()
    found = check(case, examples=10, cross_process=True)
    assert found is None, found.report()
    assert LINTED.get(workflow_name(case.workflow), []) == []


def test_the_rare_branch_is_found_at_100_scenarios_by_most_seeds() -> None:
    case = next(c for c in CASES if c.kind == "rare branch")
    found = [check(case, examples=100, seed=seed, shrink=False) is not None
             for seed in range(5)]
    assert sum(found) >= 4, found


def test_the_static_check_flags_what_it_can_see_in_the_file() -> None:
    """Reads written in the workflow's own file; not those behind a helper of
    another module (the sandbox's part), nor data-shaped mistakes."""
    flagged = {workflow_name(c.workflow) for c in CASES if c.broken} & set(LINTED)
    by_name = {workflow_name(c.workflow): c for c in CASES}
    assert {by_name[name].name for name in flagged} >= {
        "clock in definition()", "time.localtime()", "random.choice()", "uuid4() in a name",
        "os.environ", "secrets", "a file read", "the network", "a set[str] field iterated",
        "a module frozenset iterated", "a set built in definition()",
        "local time of a stored timestamp", "a global a step changes",
        "a class attribute a step changes", "a Python if on data a step changes"}
    assert "toolkit-clock-helper" not in LINTED  # behind a helper: the sandbox sees it, not lint
    warning = LINTED["toolkit-clock"][0]
    assert warning.path.endswith("toolkit_cases.py") and warning.code == "GF101"
    assert str(warning).startswith(f"{warning.path}:{warning.line}:")
    assert toolkit_cases.__name__ == "toolkit_cases"
