"""genflow.testing: property-based replay tests for your workflows (needs hypothesis:
``pip install 'genflow[test]'``).

* Strategies that know a workflow: `runs(Workflow)` draws scenarios (start
  data and events the instance can receive, sometimes ones it must refuse),
  `events(wf, state)` one event for an instance as it stands, `payloads(tp)`
  values of a handler's payload type.
* The checker: `check_replay(...)` / `assert_replay_equivalent(...)` run a
  scenario uninterrupted, saved and reloaded at every checkpoint, crashed
  right after each checkpoint in turn and (with `FakeService`s) inside each
  call of user code; they must agree, no finished step may run twice, no
  outside effect may happen twice, and the definition, walked in a sandbox
  (`genflow.testing.sandbox`) and optionally in other processes, must depend
  on nothing but the saved data. Problems are reported in words, with the
  shortest event sequence found.
* `check_determinism(wf)` does the determinism part for one instance;
  `lint(path)` is the static check of definitions (`genflow lint`).
* `WorkflowMachine`: a hypothesis `RuleBasedStateMachine` for one workflow.
* `Instance`: one instance driven by hand in plain, reload and crash modes.
* `FakeService` (an outside system keyed by idempotency key), `FakeClock`.
* A pytest plugin (``pytest --genflow-module app.flows``; see `genflow.testing.suite`).
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401 - the toolkit is built on it
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    from genflow.errors import GenflowError

    class MissingExtraError(GenflowError, ImportError):
        """genflow.testing is imported without its extra installed."""

    raise MissingExtraError(
        "genflow.testing needs hypothesis, which is not installed: "
        "pip install 'genflow[test]'") from exc

from genflow.clock import FakeClock
from genflow.lint import LintWarning, lint
from genflow.testing.checker import assert_replay_equivalent, check_replay
from genflow.testing.determinism import explain_shape_problem, shape_problem
from genflow.testing.instance import MODES, Instance, Unsaved
from genflow.testing.report import Problem, ReplayError, ReplayResult
from genflow.testing.scenario import Scenario, Send
from genflow.testing.services import Effect, FakeService, Fault
from genflow.testing.stateful import WorkflowMachine
from genflow.testing.strategies import events, payloads, runs

__all__ = [
    "MODES",
    "Effect",
    "FakeClock",
    "FakeService",
    "Fault",
    "Instance",
    "LintWarning",
    "Problem",
    "ReplayError",
    "ReplayResult",
    "Scenario",
    "Send",
    "Unsaved",
    "WorkflowMachine",
    "assert_deterministic",
    "assert_replay_equivalent",
    "check_determinism",
    "check_replay",
    "events",
    "lint",
    "payloads",
    "runs",
]


def check_determinism(wf: object, *, allow: tuple[str, ...] | list[str] = ()) -> str | None:
    """Walk `wf`'s definition on its current data in the sandbox and in other
    worlds; None if nothing depends on more than the data, else a report naming
    the statement, the call and the fix."""
    from genflow.registry import workflow_name

    found = shape_problem(wf, allow)
    if found is None:
        return None
    title, lines = explain_shape_problem(found, workflow_name(wf), "of the instance as it is")
    return "\n".join([title, *("  " + line for line in lines)])


def assert_deterministic(wf: object, *, allow: tuple[str, ...] | list[str] = ()) -> None:
    """`check_determinism`, raising AssertionError with the report."""
    report = check_determinism(wf, allow=allow)
    if report is not None:
        raise AssertionError(report)
