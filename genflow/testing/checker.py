"""`check_replay`: does an instance interrupted anywhere end where an uninterrupted one does?

For one scenario (start data and events) the checker runs:

1. the instance uninterrupted, in memory (the reference);
2. the instance saved and reloaded (`dumps`/`loads`) at every checkpoint and
   between operations, going on from the loaded copy;
3. for each checkpoint in turn, a run that crashes right after it: memory is
   discarded, the blob a store held at that moment is loaded (a move that only
   navigated is not saved, so that is the checkpoint before), and the run goes on.

Every run must pass the same checkpoints with the same data and State, give
each event the same outcome, end the same, and call user code the same way:
a step that finished before a checkpoint must never run again. On top, the
definition is replayed in other worlds at every distinct data it went through
(see `genflow.testing.determinism`).

Problems come back as `Problem`s with a plain-words report, naming the events,
the checkpoint where the runs part and the statement at fault. Outside a
hypothesis test the event sequence is shrunk first (inside one, hypothesis
shrinks it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs

from genflow.codec import loads, unstructure
from genflow.errors import DefinitionError, NonDeterminismError
from genflow.state import State, ThreadStatus
from genflow.testing import determinism
from genflow.testing.runner import (
    Failure,
    Mark,
    Outcome,
    Run,
    data_diff,
    same_instance,
    thread_words,
)
from genflow.testing.scenario import Scenario, Send, as_scenario
from genflow.validation import validate

__all__ = ["Problem", "ReplayError", "ReplayResult", "assert_replay_equivalent", "check_replay"]


class ReplayError(AssertionError):
    """A workflow is not replay-equivalent (or not deterministic); the message is the report."""

    def __init__(self, result: ReplayResult):
        super().__init__(result.report())
        self.result = result


@attrs.frozen
class Problem:
    """One thing wrong, in words a workflow author understands."""

    kind: str  # short and stable: "step ran twice", "diverged", "non-deterministic", ...
    title: str
    details: tuple[str, ...] = ()
    #: the event during which it shows (0: while starting; None: at the end)
    event: int | None = None
    #: the checkpoint where the runs part, in words
    checkpoint: str = ""

    def text(self) -> str:
        lines = [self.title]
        if self.checkpoint:
            lines.append(f"  where: {self.checkpoint}")
        lines.extend("  " + line for line in self.details)
        return "\n".join(lines)


@attrs.define
class ReplayResult:
    """What `check_replay` found. `data` and `state` are where the uninterrupted run ended."""

    scenario: Scenario
    problems: list[Problem]
    outcomes: list[Outcome]
    data: Any
    state: State
    checkpoints: int
    crash_runs: int
    shrunk_from: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def kinds(self) -> list[str]:
        return [p.kind for p in self.problems]

    def report(self) -> str:
        name = self.scenario.name
        cls = self.scenario.workflow.__qualname__
        if self.ok:
            return (f"{cls} ({name!r}) is replay-equivalent on {len(self.scenario.events)} "
                    f"events: {self.checkpoints} checkpoints, {self.crash_runs} simulated crashes.")
        lines = [f"genflow.testing: workflow {name!r} ({cls}) failed its replay check."]
        count = len(self.scenario.events)
        what = "Event sequence"
        if self.shrunk_from is not None and self.shrunk_from != count:
            what += f" (shrunk from {self.shrunk_from} to {count} events)"
        lines.append("")
        lines.append(f"{what}, starting from {_short(self.scenario.data(), 200)}:")
        outcomes = {o.number: o for o in self.outcomes}
        if not self.scenario.events:
            lines.append("  (none: the problem shows while the instance starts)")
        for number, send in enumerate(self.scenario.events, 1):
            outcome = outcomes.get(number)
            suffix = f" -> {outcome.words()}" if outcome is not None else " -> (not reached)"
            lines.append(f"  {number}. {send}{suffix}")
        for index, problem in enumerate(self.problems, 1):
            lines.append("")
            head = f"Problem {index}: " if len(self.problems) > 1 else "Problem: "
            lines.append(head + problem.text())
        return "\n".join(lines)

    def raise_for_problems(self) -> ReplayResult:
        if self.problems:
            raise ReplayError(self)
        return self


def check_replay(
    workflow: Any,
    events: Iterable[Any] = (),
    *,
    reload: bool = True,
    crashes: bool = True,
    determinism: bool = True,
    ignore: Iterable[str] = (),
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
    names or `(event, payload[, thread])` tuples. `ignore` names data fields
    whose values may differ between runs (a step that stores the time or a
    random id). `shrink` (default: only outside a hypothesis test) removes
    events while the same problem remains, to report the shortest sequence.
    `max_moves` bounds one resume (a loop of steps that never waits fails).
    """
    scenario = as_scenario(workflow, events, instance_id)
    options = _Options(reload, crashes, determinism, frozenset(ignore), step_retries,
                       start_time, max_moves)
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
    step_retries: int
    start_time: Any
    max_moves: int


class _ShapeWatch:
    """Replays the definition in other worlds at each new data the plain run reaches."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.seen: set[bytes] = set()
        self.references: list[tuple[Mark, determinism.Shape]] = []
        self.problem: tuple[determinism.ShapeProblem, Mark] | None = None

    #: distinct data examined at most (a long scenario repeats itself)
    LIMIT = 200

    def __call__(self, run: Run, mark: Mark) -> None:
        if not self.enabled or self.problem is not None or not mark.durable:
            return
        if len(self.seen) >= self.LIMIT:
            return
        key = _data_key(run.wf)
        if key in self.seen:
            return
        self.seen.add(key)
        found, base = determinism.examine(run.wf)
        if found is None:
            loaded, _ = loads(mark.blob)
            diff = determinism.compare_shapes(base, determinism.reference(loaded),
                                              ("in memory", "after a save and reload"))
            if diff:
                lost = [name for name, _, _ in data_diff(run.wf, loaded)]
                lost.extend(n for n in _extra_attributes(run.wf))
                found = determinism.ShapeProblem("unsaved", diff, ", ".join(map(repr, lost)))
        if found is not None:
            self.problem = (found, mark)
            return
        self.references.append((mark, base))

    def later(self, cls: type) -> tuple[determinism.ShapeProblem, Mark] | None:
        """Replay the data of every mark again, now that the runs are over."""
        for mark, ref in self.references:
            wf, _ = loads(mark.blob)
            diff = determinism.compare_shapes(ref, determinism.reference(wf),
                                              ("then", "at the end of the run"))
            if diff:
                return determinism.ShapeProblem("outside", diff), mark
        return None


def _extra_attributes(wf: Any) -> list[str]:
    names = {f.name for f in attrs.fields(type(wf))}
    return [n for n in getattr(wf, "__dict__", {}) if n not in names]


def _data_key(wf: Any) -> bytes:
    import msgpack

    extra = {name: getattr(wf, name) for name in _extra_attributes(wf)}
    try:
        key = bytes(msgpack.packb(unstructure(wf), use_bin_type=True))
    except Exception:
        key = repr(unstructure(wf)).encode()
    return key + repr(extra).encode() if extra else key


def _check(scenario: Scenario, options: _Options) -> ReplayResult:
    name = scenario.name
    problems: list[Problem] = []
    try:
        validate(scenario.data())
    except DefinitionError as exc:
        problems.append(Problem("invalid definition", f"The definition of {name!r} is invalid.",
                                tuple(str(exc).splitlines()), event=0))
    watch = _ShapeWatch(options.determinism)
    plain = Run(scenario, policy="plain", start_time=options.start_time,
                step_retries=options.step_retries, max_moves=options.max_moves,
                on_mark=watch).run()
    crash_runs = 0

    def result() -> ReplayResult:
        return ReplayResult(scenario, problems, list(plain.outcomes), plain.wf, plain.state,
                            len(plain.trace) - 1, crash_runs)

    if watch.problem is not None:
        found, mark = watch.problem
        title, lines = determinism.explain_shape_problem(found, name, _at(mark, scenario))
        problems.append(Problem("non-deterministic", title, tuple(lines), event=_event_of(mark.op),
                                checkpoint=_at(mark, scenario)))
        return result()
    if _later_problem(watch, scenario, problems):
        return result()
    if plain.failure is not None:
        problems.append(_failure_problem(plain, plain.failure, scenario))
    problems.extend(_misdelivery_problems(plain))
    if problems:
        return result()

    if options.reload:
        again = Run(scenario, policy="reload", start_time=options.start_time,
                    step_retries=options.step_retries, max_moves=options.max_moves).run()
        if again.lost:
            problems.append(_lost_problem(again, scenario))
            return result()
        found_problem = _compare(plain, again, scenario, options.ignore,
                                 "the run saved and reloaded at every checkpoint")
        if found_problem is not None:
            _later_problem(watch, scenario, problems)  # the likely cause, when there is one
            problems.append(found_problem)
            return result()

    if options.crashes:
        for mark in plain.trace[1:]:
            if _failed_before(plain, mark):
                continue  # a failure checkpoint: the retry count is not part of the blob
            crashed = Run.from_mark(plain, mark.index).run()
            crash_runs += 1
            label = f"the run that crashed right after checkpoint #{mark.index}"
            found_problem = _compare(plain, crashed, scenario, options.ignore, label)
            if found_problem is not None:
                _later_problem(watch, scenario, problems)
                problems.append(found_problem)
                return result()

    _later_problem(watch, scenario, problems)
    return result()


def _later_problem(watch: _ShapeWatch, scenario: Scenario, problems: list[Problem]) -> bool:
    """Replay the data of every checkpoint again: has the shape changed since?"""
    if not watch.enabled:
        return False
    later = watch.later(scenario.workflow)
    if later is None:
        return False
    found, mark = later
    at = _at(mark, scenario)
    title, lines = determinism.explain_shape_problem(found, scenario.name, at)
    problems.append(Problem("non-deterministic", title, tuple(lines), event=_event_of(mark.op),
                            checkpoint=at))
    return True


def _failed_before(run: Run, mark: Mark) -> bool:
    """Whether the checkpoint reports a failure (a setup or teardown that raised)."""
    return mark.calls > 0 and not run.calls[mark.calls - 1].ok


# -- comparing two runs ------------------------------------------------------------------


def _compare(plain: Run, other: Run, scenario: Scenario, ignore: frozenset[str],
             label: str) -> Problem | None:
    cls = scenario.workflow
    start_other = (other.crashed_at + 1) if other.crashed_at is not None else 1
    start_plain = (other.redo_from + 1) if other.redo_from is not None else 1
    crash_words = ""
    if other.crashed_at is not None:
        mark = plain.trace[other.crashed_at]
        crash_words = f"A crash right after checkpoint #{mark.index} ({_at(mark, scenario)})"
        if other.redo_from != mark.index:
            saved = plain.trace[other.redo_from or 0]
            crash_words += (f", reloading the blob saved at checkpoint #{saved.index} "
                            "(a move that only navigates is not saved)")
        else:
            crash_words += ", reloading the blob saved there"
    else:
        crash_words = "Saving and reloading the instance at every checkpoint"

    details: list[str] = []
    kind = ""
    title = ""
    where = ""
    event: int | None = None

    # 1. the runs must pass the same checkpoints
    mine, theirs = plain.trace[start_plain:], other.trace[start_other:]
    for expected, got in zip(mine, theirs, strict=False):
        if expected.kind == got.kind and same_instance(expected.blob, got.blob, cls, ignore):
            continue
        kind, title = "diverged", f"{crash_words} makes the instance take another path."
        where = f"checkpoint #{expected.index} ({_at(expected, scenario)})"
        details.append(f"Checkpoint #{expected.index} of the run that never stopped: "
                       f"{expected.where}; then {_positions_words(expected)}.")
        details.append(f"The same checkpoint of {label}: {got.where}; then "
                       f"{_positions_words(got)}.")
        details.extend(_data_lines(expected.blob, got.blob, ignore))
        event = _event_of(expected.op)
        break
    else:
        if len(mine) != len(theirs) and other.failure is None:
            shorter = "fewer" if len(theirs) < len(mine) else "more"
            kind = "diverged"
            title = f"{crash_words} makes the instance pass {shorter} checkpoints."
            index = min(len(mine), len(theirs))
            mark = mine[index] if index < len(mine) else plain.trace[-1]
            where = f"checkpoint #{mark.index} ({_at(mark, scenario)})"
            event = _event_of(mark.op)

    # 2. a failure in one run only
    if other.failure is not None and plain.failure is None and not kind:
        failure = other.failure
        kind = "fails after reload"
        title = f"{crash_words} makes the instance fail: {failure.message}"
        event = _event_of(failure.op)
        if isinstance(failure.error, NonDeterminismError):
            details.append("After the reload, the replayed definition no longer has the "
                           "statement the thread stood at: the shape of definition() depends on "
                           "something the blob does not hold (a field with init=False, an "
                           "attribute that is not a field, a global).")
        # the plain run's checkpoint that matches the failing run's last one
        same = failure.mark - start_other + start_plain
        same = max(0, min(same, len(plain.trace) - 1))
        details.extend(_data_lines(plain.trace[same].blob, other.trace[-1].blob, ignore))

    # 3. user code must run the same: nothing twice
    ran_twice = _ran_twice(plain, other)
    if ran_twice:
        what, times_plain, times_other = ran_twice
        details.insert(0, f"{_cap(what)} ran {times_other} times in {label}, {times_plain} "
                          f"time{'s' if times_plain != 1 else ''} in the run that never stopped.")
        if not kind:
            where = ""
        kind = "step ran twice" if what.startswith("step") else "handler ran twice"
        title = f"{crash_words} makes {what} run again."

    # 4. the same outcome for every event
    if not kind:
        for a, b in zip(plain.outcomes, other.outcomes, strict=False):
            if not a.same_as(b):
                kind = "diverged"
                title = f"{crash_words} changes what event #{a.number} {a.send.event!r} gets."
                details.append(f"The run that never stopped: {a.words()}.")
                details.append(f"{_cap(label)}: {b.words()}.")
                event = a.number
                break

    # 5. and the same end
    if not same_instance(plain.blob(), other.blob(), cls, ignore):
        if not kind:
            kind, title = "diverged", f"{crash_words} makes the instance end elsewhere."
            details.append(f"The run that never stopped ends {_state_words(plain.state)}; "
                           f"{label} ends {_state_words(other.state)}.")
            details.extend(_data_lines(plain.blob(), other.blob(), ignore))
        else:
            details.extend("In the end, " + line
                           for line in _data_lines(plain.blob(), other.blob(), ignore))
    if not kind:
        return None
    if ignore:
        details.append(f"(fields ignored: {', '.join(sorted(ignore))})")
    elif any(line.startswith("field ") for line in details):
        details.append("If a step stores the time or a random value in such a field, that is "
                       "expected: pass ignore=[...] with its name, or make the step "
                       "deterministic in tests.")
    return Problem(kind, title, tuple(details), event=event, checkpoint=where)


def _ran_twice(plain: Run, other: Run) -> tuple[str, int, int] | None:
    ok_plain = [c for c in plain.calls if c.ok]
    ok_other = [c for c in other.calls if c.ok]
    if [c.key for c in ok_plain] == [c.key for c in ok_other]:
        return None
    per_key = Counter(c.key for c in ok_other)
    for call in ok_other:
        if per_key[call.key] > 1 and call.kind != "handle":
            return call.words(), 1, per_key[call.key]
    count_plain = Counter((c.kind, c.thread, c.name) for c in ok_plain)
    count_other = Counter((c.kind, c.thread, c.name) for c in ok_other)
    for call in ok_other:
        key = (call.kind, call.thread, call.name)
        if count_other[key] > count_plain[key]:
            return call.words(), count_plain[key], count_other[key]
    return None


# -- words --------------------------------------------------------------------------------


def _event_of(op: int) -> int:
    return (op + 1) // 2 if op >= 0 else 0


def _at(mark: Mark, scenario: Scenario) -> str:
    if mark.kind == "start":
        return "when the instance was created"
    event = _event_of(mark.op)
    during = "while the instance started" if event == 0 else (
        f"after event #{event} {scenario.events[event - 1].event!r}")
    if mark.kind == "after_event":
        return mark.where
    return f"{mark.where}, {during}"


def _positions_words(mark: Mark) -> str:
    if not mark.positions:
        return "finished (no thread left)"
    parts = []
    for tid, (stmt, status, handled, events) in mark.positions.items():
        who = thread_words(tid)
        if status == ThreadStatus.EXECUTING.value:
            parts.append(f"{who} about to run step {stmt!r}")
        elif status == ThreadStatus.WAITING_EVENT.value:
            names = ", ".join(repr(e) for e, _ in events)
            parts.append(f"{who} waiting at {stmt!r} for {names}")
        elif status == ThreadStatus.WAITING_CONDITION.value:
            parts.append(f"{who} waiting at {stmt!r} for its condition")
        elif handled:
            parts.append(f"{who} moving on after event {handled!r} of {stmt!r}")
        elif stmt:
            parts.append(f"{who} moving on after {stmt!r}")
        else:
            parts.append(f"{who} at its start")
    return "; ".join(parts)


def _state_words(state: State) -> str:
    if not state.threads:
        return state.status.value
    from genflow.testing.runner import positions

    fake = Mark(0, "", 0, "", b"", 0, 0, None, positions(state))
    return f"{state.status.value} ({_positions_words(fake)})"


def _data_lines(blob_a: bytes, blob_b: bytes, ignore: frozenset[str]) -> list[str]:
    a, _ = loads(blob_a)
    b, _ = loads(blob_b)
    return [f"field {name!r}: {_short(va)} in the run that never stopped, {_short(vb)} in the "
            "other" for name, va, vb in data_diff(a, b, ignore)]


def _failure_problem(run: Run, failure: Failure, scenario: Scenario) -> Problem:
    name = scenario.name
    if not run.trace:  # not even the start data could be saved
        return Problem("not saved", f"The start data of {name!r} cannot be saved.",
                       (failure.message,), event=0)
    mark = run.trace[max(failure.mark, 0)]
    event = _event_of(failure.op)
    during = "while the instance started" if event == 0 else (
        f"after event #{event} {scenario.events[event - 1].event!r}")
    err = failure.error
    if isinstance(err, NonDeterminismError):
        arrived = _arrival(run, err.thread, err.statement)
        before, _ = loads(arrived.blob)
        after = run.wf
        changed = data_diff(before, after)
        steps = [c.words() for c in run.calls[arrived.calls:] if c.ok and c.kind == "step"]
        lines = determinism.vanished(before, after, err.statement, changed, steps)
        lines.insert(0, str(err))
        return Problem(
            "non-deterministic",
            f"Statement {err.statement!r} vanished from the definition of {name!r} {during}: "
            f"{thread_words(err.thread)} stood at it.",
            tuple(lines), event=event, checkpoint=_at(mark, scenario))
    if failure.kind == "step failed":
        return Problem("step failed", f"A step of {name!r} keeps failing {during}.",
                       (failure.message,
                        f"(tried {run.step_retries + 1} times; the engine would retry it with "
                        "backoff, then mark the instance FAILED)"),
                       event=event, checkpoint=_at(mark, scenario))
    if failure.kind == "handler failed":
        return Problem("handler failed", f"An event handler of {name!r} keeps failing {during}.",
                       (failure.message,), event=event, checkpoint=_at(mark, scenario))
    if failure.kind == "move limit":
        return Problem("move limit", f"{name!r} does not stop moving {during}.",
                       (failure.message, "A loop of steps that never waits? If the loop is meant "
                        "to be that long, raise check_replay(..., max_moves=...)."),
                       event=event, checkpoint=_at(mark, scenario))
    if failure.kind == "not saved":
        return Problem("not saved", f"The instance of {name!r} cannot be saved {during}.",
                       (failure.message,), event=event, checkpoint=_at(mark, scenario))
    return Problem(failure.kind.replace(" ", "-") if failure.kind != "definition" else
                   "definition error", f"Running {name!r} failed {during}.", (failure.message,),
                   event=event, checkpoint=_at(mark, scenario))


def _arrival(run: Run, thread: str, statement: str) -> Mark:
    """The first mark of the latest stretch where `thread` stood at `statement`."""
    found = run.trace[-1]
    for mark in reversed(run.trace):
        pos = mark.positions.get(thread)
        if pos is None or pos[0] != statement:
            break
        found = mark
    return found


def _misdelivery_problems(run: Run) -> list[Problem]:
    problems = []
    for outcome, why in run.misdeliveries[:1]:
        state = "accepted" if outcome.accepted else "refused"
        problems.append(Problem(
            "event not refused cleanly" if outcome.accepted or "changed" in why
            else "wrong refusal",
            f"Event #{outcome.number} {outcome.send.event!r} was {state}, but {why}.",
            (f"It was sent to {thread_words(outcome.thread or '')} "
             f"({'which waited for it' if outcome.awaited else 'which did not wait for it'}).",
             "Every refusal must be an EventError that leaves data and State unchanged."),
            event=outcome.number))
    return problems


def _lost_problem(run: Run, scenario: Scenario) -> Problem:
    lost = run.lost[0]
    mark = run.trace[lost.mark]
    if lost.attribute:
        why = (f"`{lost.field}` is set on the workflow object but is not an attrs field, so it "
               "is not saved: after a reload it is gone.")
    else:
        why = (f"field {lost.field!r} is {_short(lost.in_memory)} in memory but "
               f"{_short(lost.loaded)} after dumps/loads: the blob does not keep it (a field with "
               "init=False, or a type the converter cannot round-trip).")
    others = ", ".join(repr(x.field) for x in run.lost[1:])
    details = [why]
    if others:
        details.append(f"Also lost: {others}.")
    details.append("Whatever is not saved is gone when the instance is resumed in another "
                   "process: keep it in an ordinary attrs field (for a type of your own, teach "
                   "genflow it with genflow.codec.register_hooks(cls, unstructure, structure)).")
    return Problem("not saved", f"Saving and reloading an instance of {scenario.name!r} loses "
                                f"data {_at(mark, scenario)}.", tuple(details),
                   event=_event_of(mark.op), checkpoint=f"checkpoint #{mark.index}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


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

