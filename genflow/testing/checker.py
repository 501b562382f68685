"""`check_replay`: does an instance interrupted anywhere end where an uninterrupted one does?

For one scenario (start data and events) the checker runs:

1. the instance uninterrupted, in memory (the reference), and on every
   distinct data it reaches: `validate`, and the definition walked in the
   determinism sandbox and in other worlds (`genflow.testing.determinism`);
2. optionally, every checkpoint's blob replayed in fresh interpreters with
   another `PYTHONHASHSEED`, `TZ` and environment (`genflow.testing.crossprocess`);
3. the instance saved and reloaded (`dumps`/`loads`) at every checkpoint and
   between operations, going on from the loaded copy;
4. for each checkpoint in turn, a run that crashes right after it: memory is
   discarded, the blob a store held at that moment is loaded, and the run
   goes on;
5. with outside services watched (`services=[...]`, see
   `genflow.testing.services`), for each call of user code, a run that crashes
   inside it: after each outside effect, before the checkpoint that would save
   the call's work.

Every run must pass the same checkpoints with the same data and State (compared
exactly: types too), give each event the same outcome, do the same outside
effects, end the same, and call user code the same way: a step that finished
before a checkpoint must never run again. A value that a step stores and
chooses anew when it runs again (a timestamp, a random id) is data: the run
takes the first run's choice and goes on (`ReplayResult.notes` says so).

`reset` (a function) is called before each run (and `runs()` calls it before
drawing each scenario), so fakes of outside systems start each run afresh.

Problems come back as `Problem`s with a plain-words report, naming the events,
the checkpoint where the runs part and the statement at fault. Outside a
hypothesis test the event sequence is shrunk first (inside one, hypothesis
shrinks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from genflow.codec import loads
from genflow.errors import DefinitionError
from genflow.testing.compare import data_key, differences
from genflow.testing.crossprocess import replay_elsewhere
from genflow.testing.determinism import ShapeProblem, compare_shapes, examine, shape
from genflow.testing.problems import (
    compare_runs,
    effect_advice,
    failure_problem,
    key_words,
    lost_problem,
    misdelivery_problems,
    repeated_effects,
    shape_problem,
)
from genflow.testing.records import Mark
from genflow.testing.report import Problem, ReplayError, ReplayResult
from genflow.testing.run import FAILED, Run
from genflow.testing.scenario import Scenario, Send, as_scenario
from genflow.testing.words import at, call_words, cap, event_of
from genflow.validation import validate

__all__ = ["Problem", "ReplayError", "ReplayResult", "assert_replay_equivalent", "check_replay"]


def check_replay(
    workflow: Any,
    events: Iterable[Any] = (),
    *,
    reload: bool = True,
    crashes: bool = True,
    determinism: bool = True,
    ignore: Iterable[str] = (),
    allow: Iterable[str] = (),
    reset: Callable[[], Any] | None = None,
    services: Sequence[Any] = (),
    crash_in_calls: bool | None = None,
    cross_process: bool | int = False,
    step_retries: int = 2,
    shrink: bool | None = None,
    start_time: Any = None,
    max_moves: int = 1_000,
    instance_id: str = "test-1",
) -> ReplayResult:
    """Run a scenario uninterrupted, reloaded at every checkpoint and crashed at
    each checkpoint in turn; compare. Returns a `ReplayResult` (never raises for
    a problem of the workflow: see `assert_replay_equivalent`).

    `workflow` is a `Scenario` (from `runs()`), a workflow instance (the start
    data) or a class (started with its defaults); `events` are `Send`s, event
    names or `(event, payload[, thread])` tuples.

    `allow` lets the definition make reads the sandbox would report (see
    `genflow.testing.sandbox`); `reset` is called before each run (default: the
    scenario's own, from `runs(reset=...)`); `services` are the
    `FakeService`s whose effects must happen as often in every run as in the
    one that never stopped (reset before each run, restored to the moment of
    each crash); `crash_in_calls` crashes inside each call of user code too
    (default: when there are services); `cross_process` replays every
    checkpoint in fresh interpreters (True: two, or the number given); `ignore`
    names data fields whose values may differ between runs. `shrink`
    (default: only outside a hypothesis test) removes events while the same
    problem remains. `max_moves` bounds one resume (a loop of steps that never
    waits fails).
    """
    scenario = as_scenario(workflow, events, instance_id)
    services = tuple(services) or scenario.services
    options = _Options(
        reload, crashes, determinism, frozenset(ignore), tuple(allow),
        reset if reset is not None else scenario.reset, services,
        bool(services) if crash_in_calls is None else crash_in_calls,
        2 if cross_process is True else int(cross_process), step_retries, start_time,
        max_moves)
    result = _check(scenario, options)
    if result.problems and _should_shrink(shrink):
        result = _shrink(result, options)
    return result


def assert_replay_equivalent(
    workflow: Any, events: Iterable[Any] = (), **options: Any
) -> ReplayResult:
    """`check_replay`, raising `ReplayError` (an AssertionError) with the report
    when anything is wrong. Returns the result (its `data`/`state` are where the
    uninterrupted run ended) for further assertions."""
    return check_replay(workflow, events, **options).raise_for_problems()


# -- the check ---------------------------------------------------------------------------


@attrs.frozen
class _Options:
    reload: bool
    crashes: bool
    determinism: bool
    ignore: frozenset[str]
    allow: tuple[str, ...]
    reset: Callable[[], Any] | None
    services: tuple[Any, ...]
    crash_in_calls: bool
    processes: int
    step_retries: int
    start_time: Any
    max_moves: int


class DataWatch:
    """At each distinct data a run reaches (at a durable mark): `validate`, and
    the definition examined in the sandbox and other worlds (and after a save
    and reload). Keeps each data's shape to replay it again at the end (`later`)."""

    #: distinct data examined at most (a long scenario repeats itself)
    LIMIT = 200

    def __init__(self, scenario: Scenario, *, determinism: bool = True,
                 allow: Iterable[str] = ()):
        self.scenario = scenario
        self.determinism = determinism
        self.allow = tuple(allow)
        self.seen: set[bytes] = set()
        self.references: list[tuple[Mark, Any]] = []
        self.problem: Problem | None = None

    def __call__(self, run: Run, mark: Mark) -> None:
        if self.problem is not None or not mark.durable or len(self.seen) >= self.LIMIT:
            return
        key = data_key(run.wf)
        if key in self.seen:
            return
        self.seen.add(key)
        if len(run.events) != len(self.scenario.events):  # a run the machine drives, event by event
            self.scenario = self.scenario.with_events(run.events)
        try:
            validate(run.wf)
        except DefinitionError as exc:
            where = at(mark, self.scenario)
            self.problem = Problem(
                "invalid definition", f"The definition of {self.scenario.name!r} is invalid "
                f"on the data {where}.", tuple(str(exc).splitlines()),
                event=event_of(mark.op), checkpoint=where)
            return
        if not self.determinism:
            return
        found, base = examine(run.wf, self.allow)
        if found is None:
            loaded, _ = loads(mark.blob)
            diff = compare_shapes(base, shape(loaded), ("in memory", "after a save and reload"))
            if diff:
                lost = [d.words(("in memory", "after a reload")) for d in
                        differences(run.wf, loaded)]
                found = ShapeProblem("unsaved", diff, "; ".join(lost) or (
                    "nothing in the data itself: the definition reads something that the "
                    "object in memory has and a copy loaded from the blob has not (its "
                    "identity, a registry keyed by it)"))
        if found is not None:
            self.problem = shape_problem(found, mark, self.scenario)
            return
        self.references.append((mark, base))

    def later(self) -> Problem | None:
        """Replay the data of every mark again, now that the runs are over: a
        shape that changed depends on something outside the saved data."""
        for mark, ref in self.references:
            wf, _ = loads(mark.blob)
            diff = compare_shapes(ref, shape(wf), ("then", "at the end of the run"))
            if diff:
                return shape_problem(ShapeProblem("outside", diff), mark, self.scenario)
        return None


def _prepare(options: _Options) -> None:
    """Before a run from the start: fakes afresh."""
    if options.reset is not None:
        options.reset()
    for service in options.services:
        service.reset()


def _restore(options: _Options, mark: Mark) -> None:
    """Before a run that crashed at `mark`: fakes as the world was then."""
    if options.reset is not None:
        options.reset()
    for service, snapshot in zip(options.services, mark.services, strict=False):
        service.restore(snapshot)


def _effects(options: _Options) -> tuple[Any, ...]:
    return tuple(service.snapshot() for service in options.services)


def _check(scenario: Scenario, options: _Options) -> ReplayResult:
    problems: list[Problem] = []
    notes: list[str] = []
    watch = DataWatch(scenario, determinism=options.determinism, allow=options.allow)
    _prepare(options)
    plain = Run(scenario, policy="plain", start_time=options.start_time,
                step_retries=options.step_retries, max_moves=options.max_moves,
                on_mark=watch, services=options.services).run()
    plain_effects = _effects(options)
    crash_runs = 0
    processes = 0

    def result() -> ReplayResult:
        return ReplayResult(scenario, problems, list(plain.outcomes), plain.wf, plain.state,
                            len(plain.trace) - 1, crash_runs, processes=processes,
                            notes=sorted(set(notes)))

    if watch.problem is not None:
        problems.append(watch.problem)
        return result()
    later = watch.later() if options.determinism else None
    if later is not None:
        problems.append(later)
        return result()
    if plain.failure is not None and plain.failure.kind != FAILED:
        problems.append(failure_problem(plain, plain.failure, scenario))
    problems.extend(misdelivery_problems(plain))
    repeated = repeated_effects(plain_effects)
    if repeated is not None:
        key, lines = repeated
        problems.append(Problem(
            "effect twice", f"{cap(key_words(key))} repeats an outside effect when it is tried "
            "again.", (*lines, effect_advice(key[0]))))
    if problems:
        return result()

    if options.processes:
        found, processes = replay_elsewhere(plain, options.processes)
        if found is not None:
            problems.append(found)
            return result()

    def compared(other: Run, label: str, effects: bool) -> bool:
        notes.extend(f"{call_words(call)} chose other values when it ran again ({label}): "
                     "taken as data" for _, call in other.adopted)
        found = compare_runs(plain, other, scenario, options.ignore, label,
                             (plain_effects, _effects(options)) if effects else None)
        if found is None:
            return False
        later = watch.later() if options.determinism else None
        if later is not None:  # the likely cause, when there is one
            problems.append(later)
        problems.append(found)
        return True

    if options.reload:
        _prepare(options)
        again = Run(scenario, policy="reload", start_time=options.start_time,
                    step_retries=options.step_retries, max_moves=options.max_moves,
                    twin=plain, services=options.services).run()
        if again.lost:
            problems.append(lost_problem(again, scenario))
            return result()
        if compared(again, "the run saved and reloaded at every checkpoint",
                    bool(options.services)):
            return result()

    if options.crashes:
        for mark in plain.trace[1:]:
            if _failed_before(plain, mark):
                continue  # a failure checkpoint: the retry count is not part of the blob
            _restore(options, mark)
            crashed = Run.from_mark(plain, mark.index, twin=plain).run()
            crash_runs += 1
            if compared(crashed, f"the run that crashed right after checkpoint #{mark.index}",
                        bool(options.services)):
                return result()

    if options.crash_in_calls:
        for index, call in enumerate(plain.calls):
            if not call.ok:
                continue
            for effect in range(call.effects) if call.effects else [None]:
                _restore(options, plain.trace[call.saved])
                crashed = Run.crashing_in(plain, index, effect, twin=plain).run()
                crash_runs += 1
                inside = "right after its outside effect" if effect is not None else (
                    "after it returned")
                label = (f"the run that crashed inside {call_words(call)} "
                         f"({inside}{f' #{effect + 1}' if effect is not None else ''})")
                if compared(crashed, label, bool(options.services)):
                    return result()
    return result()


def _failed_before(run: Run, mark: Mark) -> bool:
    """Whether the call just before `mark` failed (the checkpoint records the failure)."""
    if mark.index == 0:
        return False
    before = run.trace[mark.index - 1]
    return any(not c.ok for c in run.calls[before.calls:mark.calls])


# -- shrinking ------------------------------------------------------------------------------


def _should_shrink(shrink: bool | None) -> bool:
    if shrink is not None:
        return shrink
    try:
        from hypothesis.control import currently_in_test_context
    except ImportError:  # pragma: no cover - hypothesis is a test dependency
        return True
    return not currently_in_test_context()


_MAX_SHRINK_CHECKS = 60


def _shrink(result: ReplayResult, options: _Options) -> ReplayResult:
    """Drop events while the first problem (same kind) remains."""
    scenario = result.scenario
    kind = result.problems[0].kind
    best = result
    checks = 0

    def attempt(events: list[Send]) -> ReplayResult | None:
        nonlocal checks
        checks += 1
        candidate = _check(scenario.with_events(events), options)
        if candidate.problems and candidate.problems[0].kind == kind:
            return candidate
        return None

    events = list(scenario.events)
    first = result.problems[0].event
    if first is not None and first < len(events):
        found = attempt(events[: max(first, 0)])
        if found is not None:
            best, events = found, events[: max(first, 0)]
    index = len(events) - 1
    while index >= 0 and checks < _MAX_SHRINK_CHECKS:
        candidate = events[:index] + events[index + 1:]
        found = attempt(candidate)
        if found is not None:
            best, events = found, candidate
        index -= 1
    best.shrunk_from = len(scenario.events)
    return best
