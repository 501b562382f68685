"""Whole-module checks: every registered workflow of a module, and a real store's blobs.

What the pytest plugin (`genflow.pytest_plugin`) runs, usable on its own:

* `check_workflow(cls)` draws scenarios with `runs(cls)` and checks each with
  `check_replay`, the way docs/testing.md tells you to, with options a module
  may give per workflow in a mapping named `genflow_testing` (workflow name or
  class -> keyword arguments of `runs` and `check_replay`:
  ``genflow_testing = {"order": {"payloads": {...}, "services": [bank]}}``).
  `thorough=True` draws more scenarios, replays every checkpoint in other
  processes and crashes inside every call of user code.
* `workflows_of(module)`: the registered workflows a module defines.
* `replay_store(store)`: the deploy check (`genflow.deploy.check_store`: can
  the installed code find every in-flight thread's statement?) and, on every
  distinct data the store holds, the definition walked in the determinism
  sandbox with the installed code (does it read the clock on real data?).
  `assert_store_replays(store)` raises with the report.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings

from genflow.codec import loads
from genflow.deploy import IN_FLIGHT, CheckReport, check_store
from genflow.errors import ArgumentError, GenflowError
from genflow.registry import registered, workflow_name
from genflow.stores.base import Store
from genflow.testing.checker import assert_replay_equivalent, check_replay
from genflow.testing.compare import data_key
from genflow.testing.determinism import examine, explain_shape_problem
from genflow.testing.strategies import runs

__all__ = [
    "RUNS_OPTIONS",
    "StoreProblem",
    "StoreReplay",
    "assert_store_replays",
    "check_workflow",
    "options_for",
    "replay_store",
    "workflows_of",
]

#: the keyword arguments of `runs`; the others go to `check_replay`
RUNS_OPTIONS = frozenset({"start", "max_events", "min_events", "payloads", "types",
                          "unexpected", "instance_id", "start_time", "reset", "services",
                          "guide"})
EXAMPLES, THOROUGH_EXAMPLES = 20, 100


def workflows_of(module: str | types.ModuleType) -> list[type]:
    """The registered workflows the module defines (importing it registers them)."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    return [cls for cls in registered().values() if cls.__module__ == module.__name__]


def options_for(cls: type) -> dict[str, Any]:
    """What the workflow's module says about testing it (`genflow_testing`)."""
    module = sys.modules.get(cls.__module__)
    given_options: Mapping[Any, Any] = getattr(module, "genflow_testing", {}) or {}
    for key in (cls, workflow_name(cls), cls.__name__):
        if key in given_options:
            return dict(given_options[key])
    return {}


def check_workflow(cls: type, *, thorough: bool = False, examples: int | None = None,
                   **options: Any) -> None:
    """Draw scenarios of `cls` and check each; raises `ReplayError` for the first
    (shrunk) one that fails. `options` (and the module's `genflow_testing`) go to
    `runs` and `check_replay`."""
    merged = {**options_for(cls), **options}
    if thorough:
        merged.setdefault("cross_process", True)
        merged.setdefault("crash_in_calls", True)
    known = RUNS_OPTIONS | (set(inspect.signature(check_replay).parameters)
                            - {"workflow", "events"})
    unknown = sorted(set(merged) - known)
    if unknown:  # (a mistyped key of `genflow_testing` would be a TypeError mid-draw)
        raise ArgumentError(f"check_workflow({cls.__qualname__}): unknown option(s) {unknown}; "
                            f"the options are those of runs and check_replay: "
                            f"{', '.join(sorted(known))}")
    run_options = {k: v for k, v in merged.items() if k in RUNS_OPTIONS}
    check_options = {k: v for k, v in merged.items() if k not in RUNS_OPTIONS}
    count = examples or (THOROUGH_EXAMPLES if thorough else EXAMPLES)

    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(runs(cls, **run_options))
    def every_scenario(scenario: Any) -> None:
        assert_replay_equivalent(scenario, **check_options)

    every_scenario()


# -- a real store ------------------------------------------------------------------------


@attrs.frozen
class StoreProblem:
    """A stored instance whose data the installed definition cannot replay cleanly."""

    instance_id: str
    workflow: str
    message: str


@attrs.frozen
class StoreReplay:
    deploy: CheckReport
    problems: tuple[StoreProblem, ...]
    replayed: int  # distinct data walked in the sandbox

    @property
    def ok(self) -> bool:
        return self.deploy.ok and not self.problems

    def format(self) -> str:
        lines = [self.deploy.format()]
        if self.problems:
            lines.append(f"{len(self.problems)} stored instance(s) whose data the installed "
                         "definition does not replay cleanly:")
            for problem in self.problems:
                lines.append(f"  {problem.instance_id} ({problem.workflow}): "
                             + problem.message.replace("\n", "\n    "))
        else:
            lines.append(f"ok: the installed definitions replay all {self.replayed:,} distinct "
                         "data stored, in the determinism sandbox")
        return "\n".join(lines)


def replay_store(store: Store, workflows: Iterable[type] | None = None, *,
                 limit: int = 10_000, allow: Iterable[str] = ()) -> StoreReplay:
    """The deploy check, then every distinct in-flight data (at most `limit`)
    walked in the sandbox with the installed code."""
    classes = {workflow_name(c): c for c in workflows} if workflows is not None else registered()
    report = check_store(store, classes)
    problems: list[StoreProblem] = []
    seen: set[bytes] = set()
    for status in IN_FLIGHT:
        after = None
        while len(seen) < limit:
            rows = store.list(status=status.value, limit=500, after=after)
            for record in rows:
                if record.workflow not in classes or len(seen) >= limit:
                    continue
                try:
                    wf, _ = loads(record.blob, classes)
                except GenflowError:
                    continue  # the deploy check reports it
                key = data_key(wf)
                if key in seen:
                    continue
                seen.add(key)
                found, _ = examine(wf, allow)
                if found is not None:
                    title, lines = explain_shape_problem(found, record.workflow,
                                                         "of this stored instance")
                    problems.append(StoreProblem(record.id, record.workflow,
                                                 "\n".join([title, *lines])))
            if len(rows) < 500:
                break
            after = rows[-1].id
    return StoreReplay(report, tuple(problems), len(seen))


def assert_store_replays(store: Store, workflows: Iterable[type] | None = None, **options: Any
                         ) -> StoreReplay:
    """`replay_store`, raising AssertionError with the report when anything is wrong."""
    found = replay_store(store, workflows, **options)
    if not found.ok:
        raise AssertionError(found.format())
    return found
