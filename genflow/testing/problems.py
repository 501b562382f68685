"""From runs to `Problem`s: what differs between two runs of a scenario, and why a run stopped.

`compare_runs` sets a run that was interrupted (reloaded at every checkpoint,
crashed after a checkpoint, crashed inside a call of user code) against the
run that never stopped and says what differs first, in this order: the
checkpoints they pass (another branch, another step, another thread, other
data), a failure of one run only, a call of user code made twice for one
execution, an event's outcome, the outside effects (when the scenario's
`FakeService`s watch them), and where they end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from genflow.codec import loads
from genflow.errors import NonDeterminismError
from genflow.testing.compare import differences, same, type_name
from genflow.testing.determinism import ShapeProblem, explain_shape_problem, vanished
from genflow.testing.records import Call, Failure, Mark
from genflow.testing.report import Problem
from genflow.testing.run import Run
from genflow.testing.scenario import Scenario
from genflow.testing.words import (
    at,
    call_words,
    cap,
    during,
    event_of,
    outcome_words,
    positions_words,
    short,
    state_words,
    thread_words,
)

__all__ = [
    "compare_runs",
    "data_lines",
    "effect_advice",
    "failure_problem",
    "key_words",
    "lost_problem",
    "misdelivery_problems",
    "repeated_effects",
    "same_instance",
    "shape_problem",
]


def same_instance(blob_a: bytes, blob_b: bytes, ignore: Iterable[str] = ()) -> bool:
    """Whether two blobs hold the same data (but for `ignore`d fields) and State, exactly."""
    if blob_a == blob_b:
        return True
    wf_a, state_a = loads(blob_a)
    wf_b, state_b = loads(blob_b)
    return same(state_a, state_b) and same(wf_a, wf_b, ignore=ignore)


def data_lines(blob_a: bytes, blob_b: bytes, ignore: Iterable[str] = (),
               labels: tuple[str, str] = ("in the run that never stopped", "in the other")
               ) -> list[str]:
    """The data's differences between two blobs, one line each, naming field and types."""
    a, _ = loads(blob_a)
    b, _ = loads(blob_b)
    return ["field " + d.words(labels, quote=True) for d in differences(a, b, ignore=ignore)]


def shape_problem(found: ShapeProblem, mark: Mark, scenario: Scenario) -> Problem:
    title, lines = explain_shape_problem(found, scenario.name, at(mark, scenario))
    return Problem("non-deterministic", title, tuple(lines), event=event_of(mark.op),
                   checkpoint=at(mark, scenario))


# -- comparing two runs ---------------------------------------------------------------------


def compare_runs(plain: Run, other: Run, scenario: Scenario, ignore: frozenset[str],
                 label: str, effects: tuple[Any, Any] | None = None) -> Problem | None:
    """What first differs between the run that never stopped and `other` (None: nothing).
    `effects` are the two runs' outside effects at their ends, when services watch them."""
    start_other = len(other.trace) - _own_marks(other)
    start_plain = start_other + other.offset
    crash_words = _interruption_words(plain, other, scenario)

    details: list[str] = []
    kind = title = where = ""
    event: int | None = None

    # 1. the runs must pass the same checkpoints
    mine, theirs = plain.trace[start_plain:], other.trace[start_other:]
    for expected, got in zip(mine, theirs, strict=False):
        if expected.kind == got.kind and same_instance(expected.blob, got.blob, ignore):
            continue
        kind = "diverged"
        what, lines = _what_differs(plain, other, expected, got, label)
        title = f"{crash_words} makes {what}."
        where = f"checkpoint #{expected.index} ({at(expected, scenario)})"
        details.extend(lines)
        details.append(f"Checkpoint #{expected.index} of the run that never stopped: "
                       f"{expected.where}; then {positions_words(expected.positions)}.")
        details.append(f"The same checkpoint of {label}: {got.where}; then "
                       f"{positions_words(got.positions)}.")
        details.extend(data_lines(expected.blob, got.blob, ignore))
        event = event_of(expected.op)
        break
    else:
        if len(mine) != len(theirs) and other.failure is None:
            shorter = "fewer" if len(theirs) < len(mine) else "more"
            kind = "diverged"
            title = f"{crash_words} makes the instance pass {shorter} checkpoints."
            index = min(len(mine), len(theirs))
            mark = mine[index] if index < len(mine) else plain.trace[-1]
            where = f"checkpoint #{mark.index} ({at(mark, scenario)})"
            event = event_of(mark.op)

    # 2. a failure in one run only (a run that loops where the other stopped first of all)
    runaway = other.failure is not None and other.failure.kind == "runaway"
    if runaway and other.failure is not None:
        kind, title = "runs away", f"{crash_words} makes the instance run away."
        details.insert(0, f"{cap(label)}: {other.failure.message}")
        event = event_of(other.failure.op)
    elif other.failure is not None and plain.failure is None and not kind:
        failure = other.failure
        kind = "fails after reload"
        title = f"{crash_words} makes the instance fail: {failure.message}"
        event = event_of(failure.op)
        if isinstance(failure.error, NonDeterminismError):
            details.append("After the reload, the replayed definition no longer has the "
                           "statement the thread stood at: the shape of definition() depends on "
                           "something the blob does not hold (a field with init=False, an "
                           "attribute that is not a field, a global).")
        same_mark = failure.mark + other.offset
        same_mark = max(0, min(same_mark, len(plain.trace) - 1))
        details.extend(data_lines(plain.trace[same_mark].blob, other.trace[-1].blob, ignore))

    # 3. user code must run the same: nothing again that had run
    again = _ran_again(plain, other)
    if again is not None:
        call, times, before, same_execution = again
        how = ("for one execution (the same thread, the same counter)" if same_execution else
               "(a new execution: the instance went back to a statement it had passed)")
        details.insert(1 if runaway else 0,
                       f"{cap(call_words(call))} ran {times} times in {label} {how}, "
                       f"{before} time{'s' if before != 1 else ''} in the run that never "
                       "stopped.")
        if not kind:
            where = ""
        if not runaway:
            kind = "step ran twice" if call.kind == "step" else "handler ran twice"
            title = f"{crash_words} makes {call_words(call)} run again."

    # 4. the same outside effects, none of them twice for one execution
    if not kind and effects is not None:
        repeated = repeated_effects(effects[1])
        if repeated is not None:
            kind = "effect twice"
            title = f"{crash_words} makes an outside effect happen twice."
            details.extend(repeated[1])
            details.append(effect_advice(repeated[0][0]))
        found = None if kind else _effects_problem(effects[0], effects[1], label)
        if found is not None:
            kind = "effect twice"
            title = f"{crash_words} makes an outside effect happen {found[0]}."
            details.extend(found[1])
            if other.crashed_in is not None:
                details.append(effect_advice(other.crashed_in.kind))

    # 5. the same outcome for every event
    if not kind:
        for a, b in zip(plain.outcomes, other.outcomes, strict=False):
            if not a.same_as(b):
                kind = "diverged"
                title = f"{crash_words} changes what event #{a.number} {a.send.event!r} gets."
                details.append(f"The run that never stopped: {outcome_words(a)}.")
                details.append(f"{cap(label)}: {outcome_words(b)}.")
                event = a.number
                break

    # 6. and the same end
    if not same_instance(plain.blob(), other.blob(), ignore):
        if not kind:
            kind, title = "diverged", f"{crash_words} makes the instance end elsewhere."
            details.append(f"The run that never stopped ends {state_words(plain.state)}; "
                           f"{label} ends {state_words(other.state)}.")
            details.extend(data_lines(plain.blob(), other.blob(), ignore))
        else:
            details.extend("In the end, " + line
                           for line in data_lines(plain.blob(), other.blob(), ignore))
    if not kind:
        return None
    if ignore:
        details.append(f"(fields ignored: {', '.join(sorted(ignore))})")
    return Problem(kind, title, tuple(details), event=event, checkpoint=where)


def _own_marks(run: Run) -> int:
    """How many marks of `run` it made itself (the rest it shares with its base)."""
    if run.crashed_in is not None:
        return len(run.trace) - (run.crashed_in.saved + 1)
    if run.crashed_at is not None:
        return len(run.trace) - (run.crashed_at + 1)
    return len(run.trace) - 1


def _interruption_words(plain: Run, other: Run, scenario: Scenario) -> str:
    if other.crashed_in is not None:
        call = other.crashed_in
        saved = plain.trace[call.saved]
        return (f"A crash inside {call_words(call)}, after it did its work and before its "
                f"checkpoint, {during(event_of(call.op), scenario)}, reloading the blob saved "
                f"at checkpoint #{saved.index},")
    if other.crashed_at is not None:
        mark = plain.trace[other.crashed_at]
        text = f"A crash right after checkpoint #{mark.index} ({at(mark, scenario)})"
        if other.redo_from != mark.index:
            saved = plain.trace[other.redo_from or 0]
            return text + (f", reloading the blob saved at checkpoint #{saved.index} (a move "
                           "that only navigates is not saved)")
        return text + ", reloading the blob saved there"
    return "Saving and reloading the instance at every checkpoint"


def _calls_between(run: Run, before: Mark | None, mark: Mark) -> list[Call]:
    start = before.calls if before is not None else 0
    return [c for c in run.calls[start:mark.calls] if c.ok]


def _what_differs(plain: Run, other: Run, expected: Mark, got: Mark, label: str
                  ) -> tuple[str, list[str]]:
    """What the first differing checkpoint shows: another branch, another step,
    another thread, or the same move with other data."""
    before_plain = plain.trace[expected.index - 1] if expected.index else None
    before_other = other.trace[got.index - 1] if got.index else None
    mine = _calls_between(plain, before_plain, expected)
    theirs = _calls_between(other, before_other, got)
    if mine and theirs and mine[0].key != theirs[0].key:
        a, b = mine[0], theirs[0]
        line = (f"The run that never stopped ran {call_words(a)} there; {label} ran "
                f"{call_words(b)}.")
        if a.thread != b.thread:
            return "another thread move first", [line]
        if a.kind == b.kind and a.name != b.name:
            return "the instance take another branch", [line]
        return "the instance run other code", [line]
    if mine and not theirs:
        return "the instance skip a call", [f"The run that never stopped ran "
                                            f"{call_words(mine[0])} there; {label} ran no "
                                            "user code."]
    if theirs and not mine:
        return "the instance run code it should not", [f"{cap(label)} ran "
                                                       f"{call_words(theirs[0])} where the run "
                                                       "that never stopped ran none."]
    if expected.positions != got.positions:
        return _where_threads_part(expected.positions, got.positions, label)
    return "the instance hold other data", []


def _where_threads_part(mine: dict[str, Any], theirs: dict[str, Any], label: str
                        ) -> tuple[str, list[str]]:
    """Threads that stand elsewhere: another branch (the same thread, another
    statement), another thread (one that only one run has)."""
    for tid, pos in mine.items():
        other = theirs.get(tid)
        if other is not None and other[0] != pos[0] and pos[0] and other[0]:
            return "the instance take another branch", [
                f"{cap(thread_words(tid))} goes to {pos[0]!r} in the run that never stopped, "
                f"to {other[0]!r} in {label}."]
    lines = [f"{cap(thread_words(t))} goes to {mine[t][0]!r} in the run that never stopped "
             f"and has ended in {label}." for t in sorted(set(mine) - set(theirs))]
    lines += [f"{cap(thread_words(t))} has ended in the run that never stopped and goes to "
              f"{theirs[t][0]!r} in {label}." for t in sorted(set(theirs) - set(mine))]
    return "the instance take another path", lines


def _ran_again(plain: Run, other: Run) -> tuple[Call, int, int, bool] | None:
    """A call of user code that `other` made again: succeeded twice for one
    execution (same kind, thread, name, counter), or more often than the run
    that never stopped, which made it too. (A call the run that never stopped
    did not make at all is another branch, not a repeat: `_what_differs`.)
    Returns (call, times in other, times in plain, same execution)."""
    per_key = Counter(c.key for c in other.calls if c.ok)
    for call in other.calls:
        if call.ok and per_key[call.key] > 1:
            return call, per_key[call.key], 1, True
    mine = Counter(c.key[:3] for c in plain.calls if c.ok)
    theirs = Counter(c.key[:3] for c in other.calls if c.ok)
    for call in other.calls:
        what = call.key[:3]
        if call.ok and theirs[what] > mine[what] >= 1 and call.kind != "handle":
            return call, theirs[what], mine[what], False
    return None


def _effects_problem(plain: Any, other: Any, label: str) -> tuple[str, list[str]] | None:
    mine = Counter(e for service in plain for e in service.effects)
    theirs = Counter(e for service in other for e in service.effects)
    if mine == theirs:
        return None
    lines = []
    for effect, count in theirs.items():
        if count > mine[effect]:
            lines.append(f"{effect.words()} happened {count} times in {label}, {mine[effect]} "
                         f"time{'s' if mine[effect] != 1 else ''} in the run that never stopped.")
    for effect, count in mine.items():
        if count > theirs[effect]:
            lines.append(f"{effect.words()} happened {count} times in the run that never "
                         f"stopped, {theirs[effect]} in {label}.")
    more = sum(theirs.values()) > sum(mine.values())
    return ("twice" if more else "another way"), lines


def repeated_effects(snapshots: Any) -> tuple[tuple[str, str, str, int], list[str]] | None:
    """An outside effect made by two attempts of one execution of user code (a
    retry after a failure, a run again after a crash): the execution's key and
    lines saying which effect, how often."""
    attempts: dict[tuple[Any, ...], set[int]] = {}
    for service in snapshots:
        for effect in service.effects:
            if effect.by is not None:
                key, attempt = effect.by
                attempts.setdefault((key, effect), set()).add(attempt)
    for (key, effect), made in attempts.items():
        if len(made) > 1:
            return key, [f"{effect.words()} happened in {len(made)} attempts of one execution "
                         f"of {key_words(key)} (the same thread, the same counter)."]
    return None


def key_words(key: tuple[str, str, str, int]) -> str:
    kind, thread, name, pc = key
    return call_words(Call(kind, thread, name, pc, True))


def effect_advice(kind: str) -> str:
    """How to make an outside call of a step (or handler) safe to repeat."""
    if kind == "step":
        return ("A step runs again after a failure or a crash; an outside system must see the "
                "same request twice and act once. Fix: pass "
                "genflow.current_step().idempotency_key to the service (key=...), and let it "
                "drop a request it has seen.")
    return ("A handler runs again when its event is delivered again after a crash; key the "
            "outside call by the request (instance, thread, event and counter: "
            "f'{req.instance_id}/{req.thread_id}/{req.event}/{req.pc}') so that the service "
            "drops the second one.")


# -- why a run stopped ----------------------------------------------------------------------


def failure_problem(run: Run, failure: Failure, scenario: Scenario) -> Problem:
    name = scenario.name
    if not run.trace:  # not even the start data could be saved
        return Problem("not saved", f"The start data of {name!r} cannot be saved.",
                       (failure.message,), event=0)
    mark = run.trace[max(failure.mark, 0)]
    event = event_of(failure.op)
    when = during(event, scenario)
    err = failure.error
    if isinstance(err, NonDeterminismError):
        arrived = _arrival(run, err.thread, err.statement)
        before, _ = loads(arrived.blob)
        after = run.wf
        changed = [f"{d.path} {short(d.before, 60)} -> {short(d.after, 60)}"
                   for d in differences(before, after)]
        steps = [call_words(c) for c in run.calls[arrived.calls:] if c.ok and c.kind == "step"]
        lines = vanished(before, after, err.statement, changed, steps)
        lines.insert(0, str(err))
        return Problem(
            "non-deterministic",
            f"Statement {err.statement!r} vanished from the definition of {name!r} {when}: "
            f"{thread_words(err.thread)} stood at it.",
            tuple(lines), event=event, checkpoint=at(mark, scenario))
    if failure.kind == "step failed":
        return Problem("step failed", f"A step of {name!r} keeps failing {when}.",
                       (failure.message,
                        f"(tried {run.step_retries + 1} times; the engine would retry it with "
                        "backoff, then mark the instance FAILED)"),
                       event=event, checkpoint=at(mark, scenario))
    if failure.kind == "handler failed":
        return Problem("handler failed", f"An event handler of {name!r} keeps failing {when}.",
                       (failure.message,), event=event, checkpoint=at(mark, scenario))
    if failure.kind == "move limit":
        return Problem("move limit", f"{name!r} does not stop moving {when}.",
                       (failure.message, "A loop of steps that never waits? If the loop is meant "
                        "to be that long, raise check_replay(..., max_moves=...)."),
                       event=event, checkpoint=at(mark, scenario))
    if failure.kind == "not saved":
        return Problem("not saved", f"The instance of {name!r} cannot be saved {when}.",
                       (failure.message, "Register hooks for the type with "
                        "genflow.codec.register_hooks, or keep it out of the data."),
                       event=event, checkpoint=at(mark, scenario))
    return Problem("definition error" if failure.kind == "definition" else
                   failure.kind.replace(" ", "-"), f"Running {name!r} failed {when}.",
                   (failure.message,), event=event, checkpoint=at(mark, scenario))


def _arrival(run: Run, thread: str, statement: str) -> Mark:
    """The first mark of the latest stretch where `thread` stood at `statement`."""
    found = run.trace[-1]
    for mark in reversed(run.trace):
        pos = mark.positions.get(thread)
        if pos is None or pos[0] != statement:
            break
        found = mark
    return found


def misdelivery_problems(run: Run) -> list[Problem]:
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


def lost_problem(run: Run, scenario: Scenario) -> Problem:
    lost = run.lost[0]
    mark = run.trace[min(lost.mark, len(run.trace) - 1)]
    found = lost.difference
    if lost.attribute:
        why = (f"`{found.field}` is set on the workflow object but is not an attrs field "
               f"({found.note}): after a reload it is gone.")
    elif found.type_changed:
        why = (f"field {found.field!r}: {found.path} is a {type_name(found.before)} in memory "
               f"but a {type_name(found.after)} after dumps/loads ({short(found.before, 60)} -> "
               f"{short(found.after, 60)}): the converter gives it back as another type. "
               "Declare the field with the exact type it holds (tuple[int, ...], Decimal...), "
               "or register hooks for it.")
    else:
        why = (f"field {found.field!r} is {short(found.before)} in memory but "
               f"{short(found.after)} after dumps/loads: the blob does not keep it (a field with "
               "init=False, or a type the converter cannot round-trip).")
    details = [why]
    others = sorted({x.difference.path for x in run.lost[1:]} - {found.path})
    if others:
        details.append(f"Also lost: {', '.join(others)}.")
    details.append("Whatever is not saved is gone when the instance is resumed in another "
                   "process: keep it in an ordinary attrs field (for a type of your own, teach "
                   "genflow it with genflow.codec.register_hooks(cls, unstructure, structure)).")
    return Problem("not saved", f"Saving and reloading an instance of {scenario.name!r} loses "
                                f"data {at(mark, scenario)}.", tuple(details),
                   event=event_of(mark.op), checkpoint=f"checkpoint #{mark.index}")
