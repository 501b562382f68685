"""The toolkit's prose: runs, checkpoints, threads and calls in words a workflow author reads.

Everything a report says about *where* (a checkpoint, a thread's position)
and *what* (a call of user code, an event's outcome) is written here, from
the plain records of `genflow.testing.records`, so that the checker's logic
and its wording stay apart. Positions and checkpoint kinds are read
generically (by thread status and checkpoint kind), so new statements need
no words of their own.
"""

from __future__ import annotations

from typing import Any

from genflow.state import MAIN_THREAD, CheckpointType, State, ThreadStatus
from genflow.testing.records import Call, Mark, Outcome, Position, positions
from genflow.testing.scenario import Scenario

__all__ = [
    "at",
    "call_words",
    "cap",
    "event_of",
    "outcome_words",
    "positions_words",
    "short",
    "state_words",
    "thread_words",
    "where_words",
]


def thread_words(thread_id: str) -> str:
    return "the main thread" if thread_id == MAIN_THREAD else f"thread {thread_id!r}"


def short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def call_words(call: Call) -> str:
    if call.kind == "step":
        return f"step {call.name!r} ({thread_words(call.thread)})"
    if call.kind == "condition handler":
        return f"the handler of WaitFor {call.name!r} ({thread_words(call.thread)})"
    return f"the {call.kind} of event {call.name!r} ({thread_words(call.thread)})"


def outcome_words(outcome: Outcome) -> str:
    if outcome.accepted:
        out = f", the handler returned {outcome.output!r}" if outcome.output is not None else ""
        return f"accepted by {thread_words(outcome.thread or MAIN_THREAD)}{out}"
    return f"refused: {outcome.error}"


def event_of(op: int) -> int:
    """The 1-based event an operation delivers (0: the start)."""
    return max(op, 0)


def at(mark: Mark, scenario: Scenario) -> str:
    """A mark in words, with the event it happened after."""
    if mark.kind == "start":
        return "when the instance was created"
    event = event_of(mark.op)
    if mark.kind == CheckpointType.AFTER_EVENT.value:
        return mark.where
    return f"{mark.where}, {during(event, scenario)}"


def during(event: int, scenario: Scenario) -> str:
    if event == 0:
        return "while the instance started"
    return f"after event #{event} {scenario.events[event - 1].event!r}"


# -- where a move left the instance --------------------------------------------------------


def where_words(kind: str, before: dict[str, Position], now: dict[str, Position],
                last: Call | None) -> str:
    """What the move that ended at a checkpoint of `kind` did, from the positions
    before and after it and the user call it made (if any)."""
    if kind == CheckpointType.AFTER_STEP.value and last is not None:
        return f"after step {last.name!r} ran ({thread_words(last.thread)})"
    if kind == CheckpointType.AFTER_SETUP.value:
        if last is not None and last.kind == "setup":
            return f"after event {last.name!r} was set up ({thread_words(last.thread)})"
        for tid, event in _changed_events(before, now):
            return f"after timer {event!r} was set ({thread_words(tid)})"
        return "after a handler was set up"
    if kind == CheckpointType.AFTER_TEARDOWN.value:
        if last is not None and last.kind == "teardown":
            return f"after event {last.name!r} was torn down ({thread_words(last.thread)})"
        for tid, event in _changed_events(before, now):
            return f"after event {event!r} was torn down ({thread_words(tid)})"
        return "after a handler was torn down"
    if kind == CheckpointType.AFTER_CONDITION.value:
        for tid, pos in before.items():
            if pos[1] == ThreadStatus.WAITING_CONDITION.value and now.get(tid) != pos:
                return f"after the condition of {pos[0]!r} held ({thread_words(tid)})"
        return "after a condition held"
    if kind == CheckpointType.AFTER_RESUME.value:
        return _moved(before, now)
    if kind == CheckpointType.AFTER_FAILURE.value and last is not None:
        return f"after {call_words(last)} failed (an attempt counted, a retry due)"
    if last is not None:
        return f"after {call_words(last)} ran ({kind.replace('_', ' ')})"
    return kind.replace("_", " ")


def _changed_events(before: dict[str, Position], now: dict[str, Position]
                    ) -> list[tuple[str, str]]:
    changed = []
    for tid, pos in now.items():
        old = dict(before.get(tid, (None, None, None, ()))[3])
        new = dict(pos[3])
        for event in sorted(set(old) | set(new)):
            if old.get(event) != new.get(event):
                changed.append((tid, event))
    for tid, pos in before.items():
        if tid in now:
            continue
        changed.extend((tid, event) for event, _ in pos[3])
    return changed


_STOPS = {
    ThreadStatus.EXECUTING.value: "moved on to step {!r}",
    ThreadStatus.WAITING_EVENT.value: "moved on to wait {!r}",
    ThreadStatus.WAITING_CONDITION.value: "moved on to WaitFor {!r}",
    ThreadStatus.RESUMING.value: "moved on after {!r}",
}


def _moved(before: dict[str, Position], now: dict[str, Position]) -> str:
    parts = []
    for tid, pos in before.items():
        if tid not in now:
            parts.append(f"{thread_words(tid)} ended")
        elif now[tid] != pos:
            stop = _STOPS.get(now[tid][1], "moved on at {!r}")
            parts.append(f"{thread_words(tid)} " + stop.format(now[tid][0]))
    started = [tid for tid in now if tid not in before]
    if started:
        parts.append("started " + ", ".join(thread_words(t) for t in started))
    return "; ".join(parts) or "a thread moved on"


# -- where the threads stand ----------------------------------------------------------------


def positions_words(where: dict[str, Position]) -> str:
    if not where:
        return "finished (no thread left)"
    parts = []
    for tid, (stmt, status, won, events) in where.items():
        who = thread_words(tid)
        if status == ThreadStatus.EXECUTING.value:
            parts.append(f"{who} about to run step {stmt!r}")
        elif status == ThreadStatus.WAITING_EVENT.value:
            names = ", ".join(repr(e) for e, _ in events)
            parts.append(f"{who} waiting at {stmt!r} for {names}")
        elif status == ThreadStatus.WAITING_CONDITION.value:
            parts.append(f"{who} waiting at {stmt!r} for its condition")
        elif won:
            parts.append(f"{who} moving on after event {won!r} of {stmt!r}")
        elif stmt:
            parts.append(f"{who} moving on after {stmt!r}")
        else:
            parts.append(f"{who} at its start")
    return "; ".join(parts)


def state_words(state: State) -> str:
    if not state.threads:
        return state.status.value
    return f"{state.status.value} ({positions_words(positions(state))})"
