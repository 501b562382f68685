"""genflow.testing against its catalog: what it catches, what it wrongly flags, what it costs.

`python -m benchmarks toolkit` (add `--quick` for fewer seeds) checks every
workflow of `tests/support/toolkit_cases.py` the way docs/testing.md tells a user to
(`runs(...)` and `assert_replay_equivalent(...)`, 25 scenarios, hypothesis's
shrinking on), with the cross-process check when the case needs it, and prints
one row per case: the seconds it took and what caught it. Then the rates (a
broken workflow caught by the default check, by the cross-process check, by
`genflow lint`; a correct one flagged), how many seeds find the rare branch at
100 scenarios with and without the search guide, and what the sandbox and the
other interpreters cost.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from .common import Figure, figure, per_call_us

SUPPORT = Path(__file__).resolve().parent.parent / "tests" / "support"


def _cases() -> Any:
    if str(SUPPORT) not in sys.path:
        sys.path.insert(0, str(SUPPORT))
    import toolkit_cases

    return toolkit_cases


def _found(case: Any, seed: int, guide: bool) -> bool:
    """Whether 100 scenarios (no shrinking) find the case's bug with this seed."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, given, settings

    from genflow.testing import ReplayError, assert_replay_equivalent, runs

    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow],
              phases=[Phase.generate, Phase.target])
    @given(runs(case.workflow, guide=guide, **case.runs))
    def every(scenario: Any) -> None:
        assert_replay_equivalent(scenario, **case.check)

    try:
        hypothesis.seed(seed)(every)()
    except ReplayError:
        return True
    return False


def catalog() -> list[Figure]:
    cases = _cases()
    from genflow.registry import workflow_name

    linted = cases.linted()
    figures = []
    caught = {"check": 0, "cross-process": 0, "lint": 0}
    broken = [c for c in cases.CASES if c.broken]
    correct = [c for c in cases.CASES if not c.broken]
    flagged = 0
    for case in cases.CASES:
        examples = 100 if case.kind == "rare branch" else 25
        began = time.perf_counter()
        found = cases.check(case, examples=examples)
        by = "the default check" if found is not None else ""
        if found is not None and case.broken:
            caught["check"] += 1
        needs_processes = case.caught_by == "cross-process" or not case.broken
        if found is None and needs_processes:
            found = cases.check(case, examples=examples, cross_process=True)
            if found is not None:
                by = "the cross-process check"
                if case.broken:
                    caught["cross-process"] += 1
        seconds = time.perf_counter() - began
        lint = bool(linted.get(workflow_name(case.workflow)))
        if case.broken and lint:
            caught["lint"] += 1
        if not case.broken and (found is not None or lint):
            flagged += 1
        verdict = (f"caught by {by}" if found is not None else "not caught") if case.broken \
            else ("flagged" if found is not None or lint else "passes")
        note = f"{case.kind}; {verdict}{'; lint warns' if lint else ''}"
        figures.append(figure("toolkit", case.name, [seconds], "s", note))
    either = sum(1 for c in broken if c.caught_by != "lint")
    figures.append(figure("toolkit", "broken caught by the default check",
                          [caught["check"]], f"of {len(broken)}"))
    figures.append(figure("toolkit", "broken caught, with the cross-process check",
                          [caught["check"] + caught["cross-process"]], f"of {len(broken)}",
                          f"{either} expected"))
    figures.append(figure("toolkit", "broken flagged by genflow lint", [caught["lint"]],
                          f"of {len(broken)}"))
    figures.append(figure("toolkit", "correct flagged (false positives)", [flagged],
                          f"of {len(correct)}"))
    return figures


def rare_branch(seeds: int) -> list[Figure]:
    cases = _cases()
    case = next(c for c in cases.CASES if c.kind == "rare branch")
    figures = []
    for guide in (True, False):
        began = time.perf_counter()
        hits = sum(_found(case, seed, guide) for seed in range(seeds))
        seconds = time.perf_counter() - began
        figures.append(figure("toolkit", f"rare branch found at 100 scenarios, "
                                         f"{'guided' if guide else 'unguided'}", [hits],
                              f"of {seeds} seeds", f"{seconds:.0f} s in all"))
    return figures


def costs() -> list[Figure]:
    cases = _cases()
    from genflow.codec import dumps
    from genflow.state import new_state
    from genflow.testing.crossprocess import _CHILDREN, _variation, shapes_elsewhere
    from genflow.testing.determinism import examine, shape

    order = cases.Order(items=["margherita", "funghi"])
    walk = per_call_us(lambda: shape(order), number=200)
    sandboxed = per_call_us(lambda: examine(order), number=200)
    figures = [figure("toolkit", "definition walked (shape), the catalog's order", walk),
               figure("toolkit", "examined: in the sandbox, again, other set orders", sandboxed,
                      note=f"{min(sandboxed) / min(walk):.1f}x one walk")]
    blob = dumps(order, new_state("cost", order))
    variation = _variation(1201)
    for child in _CHILDREN.values():  # a fresh start: no interpreter left by the catalog
        child.close()
    _CHILDREN.clear()
    began = time.perf_counter()
    shapes_elsewhere(cases.Order, [blob], variation)
    first = time.perf_counter() - began
    steady = per_call_us(lambda: shapes_elsewhere(cases.Order, [blob], variation), number=50)
    figures.append(figure("toolkit", "another interpreter: started, module imported, a blob",
                          [first * 1000], "ms"))
    figures.append(figure("toolkit", "another interpreter, then: one blob walked", steady))
    for child in _CHILDREN.values():
        child.close()
    _CHILDREN.clear()
    return figures


def run(quick: bool = False) -> list[Figure]:
    return [*catalog(), *rare_branch(5 if quick else 20), *costs()]
