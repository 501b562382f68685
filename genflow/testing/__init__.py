"""genflow.testing: property-based replay tests for your workflows (needs hypothesis).

* Strategies that know a workflow: `runs(Workflow)` draws scenarios (start
  data and events the instance can receive, sometimes ones it must refuse),
  `events(wf, state)` one event for an instance as it stands, `payloads(tp)`
  values of a handler's payload type.
* The checker: `check_replay(...)` / `assert_replay_equivalent(...)` run a
  scenario uninterrupted, saved and reloaded at every checkpoint, and crashed
  right after each checkpoint in turn; they must agree, no finished step may
  run twice, and the definition must not depend on anything but the saved data.
  Problems are reported in words, with the shortest event sequence found.
* `check_determinism(wf)` replays one definition in other worlds (random
  seeded, clock moved) and names the statement whose shape changes.
* `WorkflowMachine`: a hypothesis `RuleBasedStateMachine` for one workflow.
* `FakeClock` (from `genflow.clock`) for timers.

The engine (`runner`, `checker`, `determinism`) does not need hypothesis;
`strategies` and `stateful` are the hypothesis side, imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genflow.clock import FakeClock
from genflow.testing.checker import (
    Problem,
    ReplayError,
    ReplayResult,
    assert_replay_equivalent,
    check_replay,
)
from genflow.testing.determinism import explain_shape_problem, shape_problem
from genflow.testing.scenario import Scenario, Send

if TYPE_CHECKING:  # imported on first use, see __getattr__
    from genflow.testing.stateful import WorkflowMachine
    from genflow.testing.strategies import events, payloads, runs

__all__ = [
    "FakeClock",
    "Problem",
    "ReplayError",
    "ReplayResult",
    "Scenario",
    "Send",
    "WorkflowMachine",
    "assert_deterministic",
    "assert_replay_equivalent",
    "check_determinism",
    "check_replay",
    "events",
    "payloads",
    "runs",
]


_HYPOTHESIS_SIDE = {
    "events": "genflow.testing.strategies",
    "payloads": "genflow.testing.strategies",
    "runs": "genflow.testing.strategies",
    "WorkflowMachine": "genflow.testing.stateful",
}


def __getattr__(name: str) -> Any:
    """The hypothesis side, imported on first use (the checker works without hypothesis)."""
    module = _HYPOTHESIS_SIDE.get(name)
    if module is None:
        raise AttributeError(f"module 'genflow.testing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def check_determinism(wf: Any) -> str | None:
    """Replay `wf`'s definition on its current data in other worlds (twice as
    it is, `random` seeded differently, the clock moved on); None if the shape
    never changes, else a report naming the first statement that differs."""
    from genflow.registry import workflow_name

    found = shape_problem(wf)
    if found is None:
        return None
    title, lines = explain_shape_problem(found, workflow_name(wf), "its current data")
    return "\n".join([title, *("  " + line for line in lines)])


def assert_deterministic(wf: Any) -> None:
    """`check_determinism`, raising AssertionError with the report."""
    report = check_determinism(wf)
    if report is not None:
        raise AssertionError(report)
